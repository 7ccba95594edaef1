"""Interop with the DistilXLSR authors' released students (DistilXLSR53, DistilXLSR128).

The authors' checkpoints are `torch.save`d dicts: `ckpt["Config"]["model"]` holds the config
fields of their fairseq-style model and `ckpt["Student"]` its state dict, with fairseq
wav2vec 2.0 tensor names. This module converts them to and from a plain Hugging Face
`Wav2Vec2Model` directory:

- `safe_load_checkpoint` reads such a file with `torch.load(weights_only=True)`; a file whose
  pickle would run code is refused before anything in it runs.
- `KEY_RULES` is the declarative table of tensor names (fairseq <-> transformers), used in both
  directions; a tensor no rule explains is an error, never silently dropped.
- `official_config_to_hf` / `hf_config_to_official` translate the configs.
- `import_official` / `export_official` convert whole models.

Two tensors have no exact counterpart, and are handled explicitly:
- `post_extract_proj` exists in the authors' model only when the CNN's channels differ from the
  transformer width; transformers always has the projection, so it is the identity otherwise
  (and a model whose projection is not the identity cannot be exported to that layout).
- `mask_emb` always exists in the authors' model; transformers creates `masked_spec_embed` only
  when masking is enabled in the config. Without masking the vector is used by neither model:
  import leaves it out with a warning, and export writes zeros.
"""

from __future__ import annotations

import ast
import collections
import logging
import pickle
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.errors import UserError
from distilxlsr.models.teacher import feature_extractor, load_config, load_model

logger = logging.getLogger(__name__)

ConvLayers = list[tuple[int, int, int]]

# ---------------------------------------------------------------------------------------------
# Safe loading
# ---------------------------------------------------------------------------------------------


def _omegaconf_globals() -> list[Any]:
    """The classes an OmegaConf config container pickles, when omegaconf is installed (else
    none: a checkpoint holding such a container is then refused like any other code)."""
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode
    except ImportError:
        return []
    return [
        DictConfig,
        ListConfig,
        ContainerMetadata,
        Metadata,
        AnyNode,
        StringNode,
        IntegerNode,
        FloatNode,
        BooleanNode,
        typing.Any,
        collections.defaultdict,
        dict,
        list,
        int,
        float,
        str,
        bool,
    ]


def _to_plain(value: Any) -> Any:
    """An OmegaConf container as plain dicts and lists (anything else unchanged)."""
    if type(value).__module__.startswith("omegaconf."):
        from omegaconf import OmegaConf

        # resolve=False: interpolations stay text (and fail validation) rather than running
        # resolvers.
        return OmegaConf.to_container(value, resolve=False)
    return value


def _unsafe_globals(path: Path, err: Exception) -> list[str]:
    """The globals the pickle names that weights_only does not allow: all of them for a zip
    checkpoint (found by scanning its opcodes; nothing is unpickled), else the one in `err`."""
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy (non-zip) pickles: only the error message names one
        names = []
    return names or re.findall(r"GLOBAL ([\w.]+) was not an allowed global", str(err))


def _torch_load(path: Path) -> Any:
    """`torch.load` with weights_only=True; every failure becomes a UserError naming `path`."""
    with torch.serialization.safe_globals(_omegaconf_globals()):
        try:
            return torch.load(path, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as err:
            if "Weights only load failed" not in str(err):
                raise _not_a_checkpoint(path, err) from None
            names = _unsafe_globals(path, err)
            what = (
                f"it references {', '.join(names)}" if names else "PyTorch's safe loader rejects it"
            )
            raise UserError(
                f"'{path}' cannot be loaded without letting it run code ({what}), which "
                "distilxlsr refuses; use a checkpoint that holds only tensors and plain data."
            ) from None
        except OSError as err:
            raise UserError(
                f"'{path}' cannot be read ({err.strerror or err}); check the file."
            ) from None
        except Exception as err:  # a truncated or foreign file fails in many different ways
            raise _not_a_checkpoint(path, err) from None


def _not_a_checkpoint(path: Path, err: Exception) -> UserError:
    return UserError(
        f"'{path}' is not a PyTorch checkpoint ({type(err).__name__}); pass the .pt file of a "
        "DistilXLSR student as released by its authors."
    )


def safe_load_checkpoint(path: str | Path) -> dict:
    """Read an authors' checkpoint without running code from it.

    Returns the checkpoint dict, with `["Config"]["model"]` as a plain dict and `["Student"]` a
    dict of tensors. Raises UserError for a missing file, a file that is not a checkpoint, a
    pickle that needs anything outside the allow-list, or a dict without those entries.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist; pass the path of the .pt file.")
    if path.is_dir():
        raise UserError(f"'{path}' is a directory; pass the checkpoint .pt file itself.")
    checkpoint = _torch_load(path)
    if not isinstance(checkpoint, Mapping) or not {"Config", "Student"} <= set(checkpoint):
        raise UserError(
            f"'{path}' is a PyTorch file but not a DistilXLSR student checkpoint (it needs "
            "'Config' and 'Student' entries); pass a checkpoint released by the authors."
        )
    config = _to_plain(checkpoint["Config"])
    model_cfg = _to_plain(config.get("model")) if isinstance(config, Mapping) else None
    if not isinstance(model_cfg, Mapping):
        raise UserError(
            f"'{path}' has no model config under ['Config']['model']; pass a checkpoint "
            "released by the DistilXLSR authors."
        )
    student = checkpoint["Student"]
    if not isinstance(student, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in student.items()
    ):
        raise UserError(
            f"'{path}' has a 'Student' entry that is not a state dict of tensors; pass a "
            "checkpoint released by the DistilXLSR authors."
        )
    result = dict(checkpoint)
    result["Config"] = {**config, "model": dict(model_cfg)}
    result["Student"] = dict(student)
    return result


# ---------------------------------------------------------------------------------------------
# conv_feature_layers: a Python list expression, evaluated without eval
# ---------------------------------------------------------------------------------------------

_MAX_CONV_LAYERS = 64
_MAX_SPEC_CHARS = 1000


def parse_conv_layers(spec: str) -> ConvLayers:
    """Parse `conv_feature_layers`, e.g. `"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"`.

    Only lists, tuples, integers, `+` and `* n` are understood; anything else (names, calls,
    attributes, other operators) is refused without being evaluated.
    """
    if not isinstance(spec, str) or len(spec) > _MAX_SPEC_CHARS:
        raise UserError(
            f"conv_feature_layers {spec!r:.80} must be a short text such as "
            "'[(512,10,5)] + [(512,3,2)] * 4'; fix the checkpoint config."
        )
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError:
        raise _bad_conv_spec(spec) from None
    value = _literal(tree.body, spec)
    if not isinstance(value, list) or not value:
        raise _bad_conv_spec(spec)
    layers: ConvLayers = []
    for item in value:
        if (
            not isinstance(item, tuple)
            or len(item) != 3
            or not all(isinstance(n, int) and n > 0 for n in item)
        ):
            raise _bad_conv_spec(spec)
        layers.append((item[0], item[1], item[2]))
    return layers


def _bad_conv_spec(spec: str) -> UserError:
    return UserError(
        f"conv_feature_layers {spec!r:.120} is not a list of (channels, kernel, stride) tuples "
        "built only from lists, tuples, integers, + and * n; fix the checkpoint config."
    )


def _literal(node: ast.AST, spec: str) -> Any:
    """Evaluate the few node types a conv spec may use; everything else is refused."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(element, spec) for element in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, spec), _literal(node.right, spec)
        if isinstance(left, list) and isinstance(right, list):
            return _bounded(left + right, spec)
        raise _bad_conv_spec(spec)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _literal(node.left, spec), _literal(node.right, spec)
        if isinstance(left, int) and isinstance(right, list):
            left, right = right, left
        if isinstance(left, list) and isinstance(right, int) and 0 <= right <= _MAX_CONV_LAYERS:
            return _bounded(left * right, spec)
        raise _bad_conv_spec(spec)
    raise _bad_conv_spec(spec)


def _bounded(items: list, spec: str) -> list:
    if len(items) > _MAX_CONV_LAYERS:
        raise _bad_conv_spec(spec)
    return items


def format_conv_layers(layers: ConvLayers) -> str:
    """The authors' compact text for a conv stack: runs of equal layers become `[(...)] * n`."""
    parts: list[str] = []
    index = 0
    while index < len(layers):
        run = 1
        while index + run < len(layers) and layers[index + run] == layers[index]:
            run += 1
        dim, kernel, stride = layers[index]
        part = f"[({dim},{kernel},{stride})]"
        parts.append(part if run == 1 else f"{part} * {run}")
        index += run
    return " + ".join(parts)


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigField:
    """One config field with the same meaning on both sides, only renamed."""

    official: str
    hf: str
    kind: type
    default: Any  # the authors' default (None: the field is required)


CONFIG_FIELDS: tuple[ConfigField, ...] = (
    ConfigField("encoder_layers", "num_hidden_layers", int, None),
    ConfigField("encoder_embed_dim", "hidden_size", int, None),
    ConfigField("encoder_ffn_embed_dim", "intermediate_size", int, None),
    ConfigField("encoder_attention_heads", "num_attention_heads", int, None),
    ConfigField("layer_norm_first", "do_stable_layer_norm", bool, False),
    ConfigField("conv_bias", "conv_bias", bool, False),
    ConfigField("conv_pos", "num_conv_pos_embeddings", int, 128),
    ConfigField("conv_pos_groups", "num_conv_pos_embedding_groups", int, 16),
    ConfigField("dropout", "hidden_dropout", float, 0.1),
    ConfigField("attention_dropout", "attention_dropout", float, 0.1),
    ConfigField("activation_dropout", "activation_dropout", float, 0.0),
    ConfigField("dropout_input", "feat_proj_dropout", float, 0.0),
    ConfigField("encoder_layerdrop", "layerdrop", float, 0.0),
    ConfigField("mask_prob", "mask_time_prob", float, 0.65),
    ConfigField("mask_length", "mask_time_length", int, 10),
    ConfigField("mask_channel_prob", "mask_feature_prob", float, 0.0),
    ConfigField("mask_channel_length", "mask_feature_length", int, 10),
)

# fairseq activation_fn -> transformers hidden_act (gelu_accurate is the tanh approximation).
ACTIVATIONS_TO_HF = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_accurate": "gelu_new",
    "gelu_fast": "gelu_new",
    "tanh": "tanh",
    "linear": "linear",
}
ACTIVATIONS_TO_OFFICIAL = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_accurate",
    "gelu_pytorch_tanh": "gelu_accurate",
    "tanh": "tanh",
    "linear": "linear",
}
EXTRACTOR_MODES_TO_HF = {"default": "group", "layer_norm": "layer"}
EXTRACTOR_MODES_TO_OFFICIAL = {hf: official for official, hf in EXTRACTOR_MODES_TO_HF.items()}

# The authors' model has no setting for these; fairseq's LayerNorm/GroupNorm use eps 1e-5, and
# their time masking always draws at least 2 spans.
_LAYER_NORM_EPS = 1e-5
_MASK_MIN_SPANS = 2


def _read_field(cfg: Mapping, name: str, kind: type, default: Any, source: str) -> Any:
    if name not in cfg or cfg[name] is None:
        if default is None:
            raise UserError(
                f"{source} has no '{name}' field; pass a checkpoint of the authors' DistilXLSR "
                "model (its Config.model lists the architecture)."
            )
        return default
    value = cfg[name]
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise UserError(
            f"{source} field '{name}' is {value!r}, not a {kind.__name__}; fix the checkpoint "
            "config."
        )
    return value


def _check_supported(cfg: Mapping, source: str) -> None:
    """Refuse the authors' options that a transformers Wav2Vec2Model cannot express."""
    unsupported = [name for name in ("relative_position_embedding", "gru_rel_pos") if cfg.get(name)]
    if cfg.get("layer_type", "transformer") != "transformer":
        unsupported.append(f"layer_type={cfg['layer_type']}")
    if cfg.get("pos_conv_depth", 1) != 1:
        unsupported.append(f"pos_conv_depth={cfg['pos_conv_depth']}")
    if unsupported:
        raise UserError(
            f"{source} uses {', '.join(unsupported)}, which a transformers Wav2Vec2Model cannot "
            "represent; only plain wav2vec 2.0-style students can be imported."
        )


def official_config_to_hf(
    cfg: Mapping[str, Any], source: str = "the checkpoint's Config.model"
) -> transformers.Wav2Vec2Config:
    """A transformers config for the authors' model config `cfg` (`checkpoint["Config"]["model"]`).

    Fields the authors' model would default are taken at their defaults; the architecture fields
    (layers, widths, heads, conv_feature_layers) are required. `source` names the file in errors.
    """
    _check_supported(cfg, source)
    kwargs = {f.hf: _read_field(cfg, f.official, f.kind, f.default, source) for f in CONFIG_FIELDS}
    activation = _read_field(cfg, "activation_fn", str, "gelu", source)
    if activation not in ACTIVATIONS_TO_HF:
        raise UserError(
            f"{source} has activation_fn '{activation}'; supported: {', '.join(ACTIVATIONS_TO_HF)}."
        )
    mode = _read_field(cfg, "extractor_mode", str, "default", source)
    if mode not in EXTRACTOR_MODES_TO_HF:
        raise UserError(
            f"{source} has extractor_mode '{mode}'; supported: {', '.join(EXTRACTOR_MODES_TO_HF)}."
        )
    if "conv_feature_layers" not in cfg:
        raise UserError(
            f"{source} has no 'conv_feature_layers' field; pass a checkpoint of the authors' "
            "DistilXLSR model."
        )
    conv = parse_conv_layers(cfg["conv_feature_layers"])
    hidden, heads = kwargs["hidden_size"], kwargs["num_attention_heads"]
    if hidden % heads or hidden % kwargs["num_conv_pos_embedding_groups"]:
        raise UserError(
            f"{source} has encoder_embed_dim {hidden}, which its attention heads ({heads}) or "
            "conv_pos_groups do not divide; fix the checkpoint config."
        )
    return transformers.Wav2Vec2Config(
        **kwargs,
        hidden_act=ACTIVATIONS_TO_HF[activation],
        feat_extract_norm=EXTRACTOR_MODES_TO_HF[mode],
        feat_extract_activation="gelu",
        conv_dim=[c[0] for c in conv],
        conv_kernel=[c[1] for c in conv],
        conv_stride=[c[2] for c in conv],
        layer_norm_eps=_LAYER_NORM_EPS,
        mask_time_min_masks=_MASK_MIN_SPANS,
        architectures=["Wav2Vec2Model"],
    )


def hf_config_to_official(
    config: transformers.PretrainedConfig, normalize: bool | None = None
) -> dict[str, Any]:
    """The authors' model config (plain str/int/float/bool values) for a Wav2Vec2 `config`.

    `normalize` is the waveform normalisation of the model's feature extractor (default: on for
    layer-norm CNNs, as the XLS-R family). Raises UserError for what their model cannot express.
    """
    name = f"model config ({getattr(config, 'name_or_path', '') or config.model_type})"
    if config.model_type != "wav2vec2":
        raise UserError(
            f"the {name} is a '{config.model_type}' model; only wav2vec2 models can be written "
            "in the DistilXLSR authors' layout."
        )
    problems = []
    if getattr(config, "add_adapter", False):
        problems.append("add_adapter")
    if config.feat_extract_activation != "gelu":
        problems.append(f"feat_extract_activation={config.feat_extract_activation}")
    if config.hidden_act not in ACTIVATIONS_TO_OFFICIAL:
        problems.append(f"hidden_act={config.hidden_act}")
    if config.feat_extract_norm not in EXTRACTOR_MODES_TO_OFFICIAL:
        problems.append(f"feat_extract_norm={config.feat_extract_norm}")
    if abs(config.layer_norm_eps - _LAYER_NORM_EPS) > 1e-12:
        problems.append(f"layer_norm_eps={config.layer_norm_eps}")
    if problems:
        raise UserError(
            f"the {name} uses {', '.join(problems)}, which the DistilXLSR authors' model cannot "
            "represent; export it in Hugging Face format instead."
        )
    conv = list(zip(config.conv_dim, config.conv_kernel, config.conv_stride, strict=True))
    cfg: dict[str, Any] = {f.official: f.kind(getattr(config, f.hf)) for f in CONFIG_FIELDS}
    layer_norm_cnn = config.feat_extract_norm == "layer"
    cfg.update(
        activation_fn=ACTIVATIONS_TO_OFFICIAL[config.hidden_act],
        extractor_mode=EXTRACTOR_MODES_TO_OFFICIAL[config.feat_extract_norm],
        conv_feature_layers=format_conv_layers([(int(d), int(k), int(s)) for d, k, s in conv]),
        normalize=bool(layer_norm_cnn if normalize is None else normalize),
    )
    return cfg


# ---------------------------------------------------------------------------------------------
# Tensor names
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRule:
    """One family of tensor names: `{slot}` placeholders stand for the parts in `SLOTS`.

    `extractor` limits the rule to one CNN norm layout (transformers' `feat_extract_norm`).
    """

    official: str
    hf: str
    extractor: str | None = None


SLOTS = {"conv": r"\d+", "layer": r"\d+", "proj": r"q|k|v|out", "param": r"weight|bias"}

_POS_CONV = "encoder.pos_conv_embed.conv"
KEY_RULES: tuple[KeyRule, ...] = (
    KeyRule("feature_extractor.conv_layers.{conv}.0.{param}",
            "feature_extractor.conv_layers.{conv}.conv.{param}"),
    # extractor_mode=default: one GroupNorm, in the first block only.
    KeyRule("feature_extractor.conv_layers.0.2.{param}",
            "feature_extractor.conv_layers.0.layer_norm.{param}", extractor="group"),
    # extractor_mode=layer_norm: a LayerNorm (between two transposes) in every block.
    KeyRule("feature_extractor.conv_layers.{conv}.2.1.{param}",
            "feature_extractor.conv_layers.{conv}.layer_norm.{param}", extractor="layer"),
    KeyRule("layer_norm.{param}", "feature_projection.layer_norm.{param}"),
    KeyRule("post_extract_proj.{param}", "feature_projection.projection.{param}"),
    KeyRule("mask_emb", "masked_spec_embed"),
    KeyRule("encoder.pos_conv.0.bias", f"{_POS_CONV}.bias"),
    KeyRule("encoder.pos_conv.0.weight_g", f"{_POS_CONV}.parametrizations.weight.original0"),
    KeyRule("encoder.pos_conv.0.weight_v", f"{_POS_CONV}.parametrizations.weight.original1"),
    KeyRule("encoder.layer_norm.{param}", "encoder.layer_norm.{param}"),
    KeyRule("encoder.layers.{layer}.self_attn.{proj}_proj.{param}",
            "encoder.layers.{layer}.attention.{proj}_proj.{param}"),
    KeyRule("encoder.layers.{layer}.self_attn_layer_norm.{param}",
            "encoder.layers.{layer}.layer_norm.{param}"),
    KeyRule("encoder.layers.{layer}.fc1.{param}",
            "encoder.layers.{layer}.feed_forward.intermediate_dense.{param}"),
    KeyRule("encoder.layers.{layer}.fc2.{param}",
            "encoder.layers.{layer}.feed_forward.output_dense.{param}"),
    KeyRule("encoder.layers.{layer}.final_layer_norm.{param}",
            "encoder.layers.{layer}.final_layer_norm.{param}"),
)  # fmt: skip

_MASK_OFFICIAL, _MASK_HF = "mask_emb", "masked_spec_embed"
_PROJ_HF = "feature_projection.projection.{}"


def _template_regex(template: str) -> re.Pattern[str]:
    pieces = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>{SLOTS[piece]})"
        for i, piece in enumerate(pieces)
    )
    return re.compile(pattern)


_COMPILED = [(rule, _template_regex(rule.official), _template_regex(rule.hf)) for rule in KEY_RULES]


def official_key_to_hf(key: str, extractor: str) -> str | None:
    """The transformers name of fairseq tensor `key` (None: no rule explains it)."""
    for rule, official, _hf in _COMPILED:
        if rule.extractor not in (None, extractor):
            continue
        match = official.fullmatch(key)
        if match:
            return rule.hf.format(**match.groupdict())
    return None


def hf_key_to_official(key: str, extractor: str) -> str | None:
    """The fairseq name of transformers tensor `key` (None: no rule explains it)."""
    for rule, _official, hf in _COMPILED:
        if rule.extractor not in (None, extractor):
            continue
        match = hf.fullmatch(key)
        if match:
            return rule.official.format(**match.groupdict())
    return None


def _listing(keys: list[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def official_state_to_hf(
    state: Mapping[str, torch.Tensor],
    config: transformers.Wav2Vec2Config,
    expected: Mapping[str, torch.Tensor],
    source: str,
) -> dict[str, torch.Tensor]:
    """Rename the authors' state dict for a model with `config` whose own state dict is
    `expected`; unknown, missing, surplus or misshapen tensors are a UserError naming `source`."""
    extractor = config.feat_extract_norm
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        target = official_key_to_hf(key, extractor)
        if target is None:
            unknown.append(key)
        else:
            converted[target] = tensor
    if unknown:
        raise UserError(
            f"'{source}' holds tensors the DistilXLSR layout does not define "
            f"({_listing(unknown)}); it is not a plain DistilXLSR student checkpoint "
            f"(extractor_mode '{EXTRACTOR_MODES_TO_OFFICIAL[extractor]}')."
        )
    if _MASK_HF in converted and _MASK_HF not in expected:
        # The vector only serves masked training, which this config switches off.
        del converted[_MASK_HF]
        logger.warning(
            "%s: mask_emb is left out: the config has mask_prob=0 and mask_channel_prob=0, so "
            "transformers keeps no mask vector (neither model uses it).",
            source,
        )
    if _PROJ_HF.format("weight") not in converted and config.conv_dim[-1] == config.hidden_size:
        # The authors' model has no projection when the widths agree: the identity.
        converted[_PROJ_HF.format("weight")] = torch.eye(config.hidden_size)
        converted[_PROJ_HF.format("bias")] = torch.zeros(config.hidden_size)
    _check_complete(converted, expected, extractor, source)
    return converted


def _check_complete(
    converted: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    extractor: str,
    source: str,
) -> None:
    def official(keys: set[str]) -> list[str]:
        return [hf_key_to_official(k, extractor) or k for k in keys]

    missing = set(expected) - set(converted)
    if missing:
        raise UserError(
            f"'{source}' lacks tensors its config requires ({_listing(official(missing))}); the "
            "file is incomplete or its Config.model does not describe its Student weights."
        )
    surplus = set(converted) - set(expected)
    if surplus:
        raise UserError(
            f"'{source}' holds tensors its config has no place for ({_listing(official(surplus))}); "
            "its Config.model does not describe its Student weights (layer or conv counts)."
        )
    wrong = [
        f"{hf_key_to_official(k, extractor)} {tuple(converted[k].shape)} vs "
        f"{tuple(expected[k].shape)}"
        for k in expected
        if converted[k].shape != expected[k].shape
    ]
    if wrong:
        raise UserError(
            f"'{source}' has tensors whose shapes disagree with its config ({_listing(wrong, 4)}); "
            "its Config.model does not describe its Student weights."
        )


def hf_state_to_official(
    state: Mapping[str, torch.Tensor], config: transformers.Wav2Vec2Config, source: str
) -> dict[str, torch.Tensor]:
    """The authors' state dict (fresh contiguous tensors) for a Wav2Vec2Model's state dict."""
    extractor = config.feat_extract_norm
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        target = hf_key_to_official(key, extractor)
        if target is None:
            unknown.append(key)
        else:
            converted[target] = tensor.detach().clone().contiguous()
    if unknown:
        raise UserError(
            f"'{source}' has tensors the DistilXLSR layout has no place for "
            f"({_listing(unknown)}); export it in Hugging Face format instead."
        )
    if _MASK_OFFICIAL not in converted:
        # Masking is off in this config; the authors' model always holds the vector.
        converted[_MASK_OFFICIAL] = torch.zeros(config.hidden_size)
    if config.conv_dim[-1] == config.hidden_size:
        weight = converted.pop("post_extract_proj.weight")
        bias = converted.pop("post_extract_proj.bias")
        if not (torch.equal(weight, torch.eye(len(weight))) and not bias.any()):
            raise UserError(
                f"'{source}' has a feature projection that is not the identity, but the authors' "
                "model has none when the CNN width equals the hidden size; export it in Hugging "
                "Face format instead."
            )
    return converted


# ---------------------------------------------------------------------------------------------
# Whole models
# ---------------------------------------------------------------------------------------------


def import_official(ckpt_path: str | Path, out_dir: str | Path) -> Path:
    """Convert an authors' checkpoint into a Hugging Face model directory `out_dir`
    (config.json, model.safetensors, preprocessor_config.json); returns `out_dir`."""
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output '{out_dir}' is a file; pass a directory for the model.")
    checkpoint = safe_load_checkpoint(ckpt_path)
    cfg = checkpoint["Config"]["model"]
    config = official_config_to_hf(cfg, source=f"'{ckpt_path}' Config.model")
    normalize = _read_field(cfg, "normalize", bool, False, f"'{ckpt_path}' Config.model")
    model = transformers.Wav2Vec2Model(config)
    state = official_state_to_hf(checkpoint["Student"], config, model.state_dict(), str(ckpt_path))
    model.load_state_dict(state, strict=True)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=normalize,
        return_attention_mask=config.feat_extract_norm == "layer",
    ).save_pretrained(out_dir)
    return out_dir


def export_official(model_dir: str | Path, out_file: str | Path) -> Path:
    """Write a local Hugging Face Wav2Vec2 model directory as an authors'-layout checkpoint:
    `torch.save({"Config": {"model": cfg}, "Student": state_dict}, out_file)`, holding only
    tensors and plain data, so that `weights_only=True` reads it; returns `out_file`."""
    model_dir, out_file = Path(model_dir), Path(out_file)
    if not model_dir.is_dir():
        raise UserError(
            f"model directory '{model_dir}' does not exist; pass a local Hugging Face "
            "wav2vec2 model directory."
        )
    if out_file.is_dir():
        raise UserError(f"output '{out_file}' is a directory; pass a file name such as model.pt.")
    config = load_config(str(model_dir))
    if config.model_type != "wav2vec2":
        raise UserError(
            f"'{model_dir}' holds a '{config.model_type}' model; only wav2vec2 models can be "
            "written in the DistilXLSR authors' layout (use the Hugging Face format instead)."
        )
    normalize = feature_extractor(str(model_dir), config).do_normalize
    cfg = hf_config_to_official(config, normalize=bool(normalize))
    model = load_model(str(model_dir), dtype=torch.float32)
    state = hf_state_to_official(model.state_dict(), model.config, str(model_dir))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"Config": {"model": cfg}, "Student": state}, out_file)
    return out_file
