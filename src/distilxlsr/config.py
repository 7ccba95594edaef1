"""The config machinery every task's config uses: dataclasses, YAML files holding only
differences, dotted overrides, checks when loading, and the keys' help.

Each task has its config beside it (`distill.recipe.DistillConfig`,
`pretraining.recipe.PretrainConfig`, `evaluate.recipe.EvaluationConfig`), each with one
`validate()` for the settings that depend on each other. A YAML file sets only what differs from
the defaults; `key=value` arguments on the command line override it (`train.lr=1e-4`,
`student.layers=jump:2`). Every value is checked when it loads: its type, its range
(`VALUE_RULES`), and a closed choice's value (`closed`) or a syntax (`checked`), so that a typo
fails before any model loads. The resolved config is written to the run directory and into every
checkpoint. Here too: the loader and optimizer sections every training run shares.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import re
import textwrap
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distilxlsr.errors import UserError

DECAYS = ("linear", "cosine", "constant")
OPTIMIZER_SHARDINGS = ("none", "zero1")
PRECISIONS = ("auto", "bf16", "fp16", "no")


def closed(default: str, choices: Sequence[str]) -> Any:
    """A field whose value is one of `choices`, checked when the config loads."""
    return field(default=default, metadata={"choices": tuple(choices)})


def checked(default: Any, check: Callable[[Any], None]) -> Any:
    """A field whose value `check` verifies when the config loads (it raises a one-line
    UserError; a layer map's syntax, say)."""
    return field(default=default, metadata={"check": check})


STATIC_DEFAULT_SHAPES = 5
"""Static shapes with `crop_lengths=[]`: max_seconds x 1/5, 2/5, ..., 5/5 (those below
min_seconds left out; why five: docs/design.md, "Data loading")."""
STATIC_MAX_SHAPES = 8
"""At most this many lengths: torch.compile keeps 8 graphs per function by default
(`torch._dynamo.config.recompile_limit`), one per shape."""


def default_crop_lengths(max_seconds: float, min_seconds: float = 0.0) -> list[float]:
    """max_seconds x k/5 for k = 1..5, rounded to 10 ms, those below `min_seconds` left out."""
    k = STATIC_DEFAULT_SHAPES
    lengths = [round(max_seconds * i / k, 2) for i in range(1, k)] + [max_seconds]
    return [x for x in lengths if x >= min_seconds] or [max_seconds]


def resolve_crop_lengths(
    crop_lengths: list[float],
    max_seconds: float,
    min_seconds: float,
    batch_seconds: float,
    section: str = "data",
    batch_section: str = "train",
) -> list[float]:
    """The sorted crop lengths of a static-shape run (the default for []); a one-line UserError
    naming the settings for lengths the loader cannot use."""
    if not crop_lengths:
        return default_crop_lengths(max_seconds, min_seconds)
    lengths = sorted(float(x) for x in crop_lengths)
    where = f"{section}.crop_lengths"
    if len(set(lengths)) != len(lengths):
        raise UserError(f"{where}={crop_lengths} names a length twice; list each once.")
    if len(lengths) > STATIC_MAX_SHAPES:
        raise UserError(
            f"{where} has {len(lengths)} lengths; at most {STATIC_MAX_SHAPES} (one compiled "
            "graph each)."
        )
    if lengths[-1] > max_seconds:
        raise UserError(
            f"{where}: {lengths[-1]:g} s is longer than {section}.max_seconds ({max_seconds:g}); "
            f"raise {section}.max_seconds or drop the length."
        )
    if lengths[0] < min_seconds:
        raise UserError(
            f"{where}: {lengths[0]:g} s is shorter than {section}.min_seconds ({min_seconds:g}), "
            f"below which cuts are skipped; lower {section}.min_seconds or drop the length."
        )
    if batch_seconds < lengths[-1]:
        raise UserError(
            f"{batch_section}.batch_seconds ({batch_seconds:g}) must be at least the longest of "
            f"{where} ({lengths[-1]:g}), or its batches hold no utterance."
        )
    return lengths


@dataclass
class LoaderConfig:
    """How training batches are cut from a corpus (shared by every training run)."""

    max_seconds: float = 15.0
    """Utterances longer than this are randomly cropped to it (seeded per cut and epoch)."""
    min_seconds: float = 0.5
    """Utterances shorter than this are skipped (counted and reported)."""
    num_buckets: int = 30
    """Duration buckets of the dynamic bucketing sampler (less padding with more buckets; 30
    gives 96.5% real samples on LibriSpeech-like durations, benchmarks/padding_efficiency.py)."""
    num_workers: int = 2
    """Data-loader worker processes per training process (0 = load in the training process)."""
    static_shapes: bool = False
    """Batches of fixed shapes, for compiled graphs (`train.compile`): each cut is cropped to the
    longest of `crop_lengths` it fills (a seeded random window) and batched with cuts of that
    length, floor(batch_seconds / length) per batch, so every batch has one of K shapes and no
    padding. Cuts shorter than the shortest length are skipped, and each epoch's last partial
    batch of each length is dropped (both counted at the start; docs/design.md, "Data
    loading"). `num_buckets` is then unused."""
    crop_lengths: list[float] = field(default_factory=list)
    """With `static_shapes`: the fixed crop lengths in seconds (at most 8, each between
    `min_seconds` and `max_seconds`); [] = `max_seconds` x 1/5, 2/5, ..., 5/5 (3, 6, 9, 12 and
    15 s for 15 s), those below `min_seconds` left out."""

    def check(self, batch_seconds: float, section: str = "data", batch: str = "train") -> None:
        """One-line errors for static-shape settings the loader cannot use (`batch`: the
        section of batch_seconds)."""
        if not self.static_shapes:
            if self.crop_lengths:
                raise UserError(
                    f"{section}.crop_lengths is set but {section}.static_shapes is false; set "
                    f"{section}.static_shapes=true, or drop {section}.crop_lengths."
                )
            return
        resolve_crop_lengths(
            self.crop_lengths,
            self.max_seconds,
            self.min_seconds,
            batch_seconds,
            section,
            batch,
        )


@dataclass
class OptimConfig:
    """Optimizer, precision and bookkeeping of the training loop (shared by every training run;
    the learning rate and its schedule are set per run or stage)."""

    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """AdamW's moment coefficients."""
    eps: float = 1e-6
    """AdamW's denominator term."""
    decay: str = closed("linear", DECAYS)
    """Decay after warm-up: `linear`, `cosine` or `constant`."""
    min_lr_ratio: float = 0.0
    """The learning rate decays to `lr * min_lr_ratio`."""
    grad_clip: float = 10.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    batch_seconds: float = 200.0
    """Audio seconds per micro-batch per process (after cropping)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    seed: int = 0
    """Seed of the sampler, crops, shuffling and dropout: the same seed gives the same run."""
    mixed_precision: str = closed("auto", PRECISIONS)
    """`auto` (bf16 on GPU, fp32 on CPU), `bf16`, `fp16` or `no`."""
    optimizer_sharding: str = closed("none", OPTIMIZER_SHARDINGS)
    """`none`, or `zero1`: with several processes each keeps 1/N of AdamW's state (two fp32
    moments, 8 bytes per trained parameter) and updates its share of the weights, which are
    then broadcast (torch's ZeroRedundancyOptimizer over DDP: ZeRO stage 1). Checkpoints hold
    the whole state, gathered on the main process when they are written."""
    checkpoint_every: int = 1000
    """Write a checkpoint every N steps (and at the end)."""
    keep_checkpoints: int = 3
    """Keep only the newest K checkpoints."""
    log_every: int = 50
    """Reduce and log metrics every N steps (no host-device sync in between)."""
    max_bad_steps: int = 20
    """Abort after this many consecutive steps with a non-finite loss or gradient."""
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Experiment trackers (through accelerate), writing under RUN/logs: `tensorboard`, and
    `wandb` or `mlflow` when installed; [] for none. metrics.jsonl and loss.png are always
    written."""

    def check(self, section: str = "train") -> None:
        """One-line errors for settings the loop cannot run with."""
        for name in ("grad_accum", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{section}.{name} must be at least 1.")
        if self.max_bad_steps < 1:
            raise UserError(f"{section}.max_bad_steps must be at least 1.")
        if not self.batch_seconds > 0:
            raise UserError(f"{section}.batch_seconds must be positive.")


def to_dict(config: Any) -> dict:
    """The config as plain dicts and lists (for YAML and checkpoints)."""
    return dataclasses.asdict(config)


def _rule(check, phrase: str):
    return check, phrase


_POSITIVE = _rule(lambda v: v > 0, "be positive")
_NON_NEGATIVE = _rule(lambda v: v >= 0, "not be negative")
_AT_LEAST_1 = _rule(lambda v: v >= 1, "be at least 1")
_FRACTION = _rule(lambda v: 0 <= v <= 1, "lie between 0 and 1")
_BELOW_1 = _rule(lambda v: 0 <= v < 1, "lie in [0, 1)")

# Ranges of numeric settings, by field name (every config section uses the names alike); a
# list's items are checked one by one. Non-finite numbers are refused everywhere.
VALUE_RULES = {
    "lr": _POSITIVE,
    "eps": _POSITIVE,
    "batch_seconds": _POSITIVE,
    "max_seconds": _POSITIVE,
    "crop_lengths": _POSITIVE,
    "sample_rate": _POSITIVE,
    "sample_seconds": _POSITIVE,
    "weight_decay": _NON_NEGATIVE,
    "grad_clip": _NON_NEGATIVE,
    "min_seconds": _NON_NEGATIVE,
    "num_workers": _NON_NEGATIVE,
    "warmup_steps": _NON_NEGATIVE,
    "steps": _NON_NEGATIVE,
    "seed": _NON_NEGATIVE,
    "cos_weight": _NON_NEGATIVE,
    "layer_weights": _NON_NEGATIVE,
    "unmasked_weight": _NON_NEGATIVE,
    "max_steps": _AT_LEAST_1,
    "grad_accum": _AT_LEAST_1,
    "checkpoint_every": _AT_LEAST_1,
    "keep_checkpoints": _AT_LEAST_1,
    "log_every": _AT_LEAST_1,
    "max_bad_steps": _AT_LEAST_1,
    "num_buckets": _AT_LEAST_1,
    "mask_length": _AT_LEAST_1,
    "iterations": _AT_LEAST_1,
    "min_lr_ratio": _FRACTION,
    "p": _FRACTION,
    "mask_prob": _FRACTION,
    "betas": _BELOW_1,
    "dropout": _BELOW_1,
}


def _check_value(name: str, value: Any, where: str) -> None:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float):
            continue
        if not math.isfinite(item):
            raise UserError(f"{where}={item} must be a finite number.")
        rule = VALUE_RULES.get(name)
        if rule is not None and not rule[0](item):
            raise UserError(f"{where}={item} must {rule[1]}.")


def _check_field(f: dataclasses.Field, value: Any, where: str) -> None:
    """A closed choice's value, or a checked field's syntax."""
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "."
        raise UserError(f"{where} '{value}' must be one of {', '.join(choices)}{hint}")
    check = f.metadata.get("check")
    if check is not None:
        check(value)


def check_fields(config: Any, where: str = "") -> None:
    """Every value's range, closed choice and syntax, as they are checked when a config loads:
    for a config built in code (`validate()` calls it)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            check_fields(value, name)
            continue
        _check_value(f.name, value, name)
        _check_field(f, value, name)


def from_dict(cls: type, values: dict, where: str = "config") -> Any:
    """Build dataclass `cls` from a (partial) dict; unknown keys and wrong types are user errors."""
    label = where or "config"
    if not isinstance(values, dict):
        raise UserError(f"{label}: expected a mapping of keys to values, got {values!r}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(
                f"{label}: unknown key '{key}'; {hint}valid keys are: {', '.join(sorted(names))}."
            )
        name = f"{where}.{key}" if where else key
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            value = _merge(_section_default(fields[key], hints[key]), value)
        kwargs[key] = _coerce(hints[key], value, name)
        _check_value(key, kwargs[key], name)
        _check_field(fields[key], kwargs[key], name)
    return cls(**kwargs)


def _section_default(f: dataclasses.Field, hint: type) -> dict:
    """A section's default values where its field's default differs from its class's (the
    log-mel floor's probe is a `ProbeConfig` with its own steps and lr): a section given in part
    keeps the field's default for the rest."""
    if f.default_factory is dataclasses.MISSING:
        return {}
    default = to_dict(f.default_factory())
    return default if default != to_dict(hint()) else {}


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0])
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):  # `a,b,c` on the command line
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {value!r}.")
        return [_coerce(item, v, where) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true or false, got {value!r}.")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UserError(f"{where}: expected a number, got {value!r}.")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{where}: expected an integer, got {value!r}.")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise UserError(f"{where}: expected a string, got {value!r}.")
    return value


def parse_overrides(overrides: list[str]) -> dict:
    """`["train.lr=1e-4", "teacher=T"]` -> nested dict with YAML-typed values."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(
                f"override '{item}' is not of the form key=value (e.g. train.max_steps=100)."
            )
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        # A bare `list:2,4` or path stays a string; numbers and booleans get their types.
        if isinstance(value, dict | list) and not raw.lstrip().startswith(("[", "{")):
            value = raw
        # Only true/false are booleans: YAML 1.1 also reads no, yes, on, off as booleans, which
        # would turn `train.mixed_precision=no` into False.
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw.strip()
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}' conflicts with an earlier override.")
        node[parts[-1]] = value
    return nested


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


SHIPPED_CONFIGS = Path(__file__).parent / "configs"
"""The configs that ship inside the package, addressable by name (`--config tiny-cpu`)."""


def shipped_configs() -> dict[str, Path]:
    """Name -> file of every shipped config."""
    return {p.stem: p for p in sorted(SHIPPED_CONFIGS.glob("*.yaml"))}


def resolve_config(name_or_path: str | Path) -> Path:
    """A YAML file: an existing path, else a shipped config's name (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.name.removesuffix(".yaml")
    if name in shipped and (len(path.parts) == 1 or path.parent.name == "configs"):
        return shipped[name]
    raise UserError(
        f"config '{name_or_path}' is neither a file nor a shipped config; shipped configs: "
        f"{', '.join(shipped)} (`distilxlsr config list`)."
    )


def load_config(
    cls: type,
    path: str | Path | None,
    overrides: list[str] = (),
    values: dict | None = None,
):
    """Defaults of config class `cls`, then the YAML file's differences (`path`: a file or a
    shipped config's name), then `values` (a nested dict of settings already typed, such as a
    command's options), then `key=value` overrides; every value checked."""
    given, values = values or {}, {}
    if path is not None:
        path = resolve_config(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as err:
            raise UserError(
                f"config file '{path}' is not UTF-8 text ({err.reason} at byte {err.start}); "
                "save it as UTF-8."
            ) from None
        except yaml.YAMLError as err:
            raise UserError(
                f"config file '{path}' is not valid YAML: {yaml_problem(err)}."
            ) from None
        if not isinstance(values, dict):
            raise UserError(f"config file '{path}' must hold a mapping of keys to values.")
    values = _merge(_merge(values, given), parse_overrides(list(overrides)))
    return from_dict(cls, values, where="")


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own text spans several)."""
    problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{problem}{where}"


def flatten_keys(d: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}."""
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_keys(value, name + "."))
        else:
            out[name] = value
    return out


def check_resume_compatible(saved: dict, current: Any, run_dir: Path, resumable: set[str]) -> None:
    """Refuse to resume a run directory with a different experiment (keys outside `resumable`)."""
    old, new = flatten_keys(saved), flatten_keys(to_dict(current))
    defaults = flatten_keys(to_dict(type(current)()))
    for key in sorted(set(old) | set(new)):
        if key in resumable or key == "out":
            continue
        if key not in old and new.get(key) == defaults.get(key):
            continue  # a setting added since the run began, left at its default
        if old.get(key) != new.get(key):
            raise UserError(
                f"run directory '{run_dir}' was started with {key}={old.get(key)!r}, now "
                f"{new.get(key)!r}; use the same settings to resume, or a new out=DIR."
            )


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def _field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass (and its bases), first line."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def describe_keys(cls: type, prefix: str = "", instance: Any = None) -> list[tuple[str, str, str]]:
    """(dotted key, default as YAML, doc) of every setting of a config dataclass (`instance`:
    the one whose values are the defaults, `cls()` if not given)."""
    rows = []
    docs = _field_docs(cls)
    instance = cls() if instance is None else instance
    defaults = to_dict(instance)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(f.type) or (
            isinstance(defaults[f.name], dict) and f.name in defaults
        ):
            section = getattr(instance, f.name)
            rows += describe_keys(typing.get_type_hints(cls)[f.name], key + ".", section)
            continue
        default = yaml.safe_dump(defaults[f.name], default_flow_style=True).strip()
        default = default.removesuffix("...").strip()
        rows.append((key, default, docs.get(f.name, "")))
    return rows


def keys_help(cls: type, required: set[str] = frozenset()) -> str:
    """Every key of a config with its default and one-line doc; `required` keys marked."""
    lines = ["settings (key=value; * = required, no default):"]
    for key, default, doc in describe_keys(cls):
        mark = "*" if key in required else " "
        first = re.split(r"(?<!e\.g)(?<!i\.e)\. ", doc)[0].rstrip(".")
        lines.append(f" {mark} {key} = {default}" + (f"  -- {first}" if first else ""))
    return "\n".join(lines)
