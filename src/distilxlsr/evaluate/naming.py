"""The models of an evaluation named: `--model [NAME=]MODEL` arguments resolved and labelled, the
pairs to compare checked against the names, and what each model heard (its provenance)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from distilxlsr.errors import UserError
from distilxlsr.evaluate.features import ModelSpec, resolve_model
from distilxlsr.export import model_provenance
from distilxlsr.provenance import describe

LABEL = re.compile(r"[A-Za-z0-9_.:+-]+")


def split_label(arg: str) -> tuple[str | None, str]:
    """`NAME=PATH` -> (NAME, PATH): a `--model` argument's label, when the text before its first
    '=' is a label (letters, digits, `_.:+-`) and a model follows. An existing path that holds
    '=' (a run called `lr=1e-4`) stays a path."""
    label, sep, rest = arg.partition("=")
    if sep and rest and LABEL.fullmatch(label) and not Path(arg).exists():
        return label, rest
    return None, arg


def resolve_models(args: list[str]) -> list[ModelSpec]:
    """Every `--model` argument resolved and named: its label if it has one, else its model's
    name (distinct_names keeps colliding names apart)."""
    labels, specs, plain = [], [], []
    for arg in args:
        label, model = split_label(arg)
        labels.append(label)
        specs.append(resolve_model(model))
        plain.append(model)
    given = [x for x in labels if x is not None]
    twice = next((x for x in given if given.count(x) > 1), None)
    if twice is not None:
        raise UserError(f"--model label '{twice}' is given twice; give each model its own label.")
    return distinct_names(specs, plain, labels)


def distinct_names(
    specs: list[ModelSpec], args: list[str], labels: list[str | None] | None = None
) -> list[ModelSpec]:
    """A labelled model is named by its label. Unlabelled models whose names collide (two runs
    both called `student`, or a run called like another model's label) are named by the path
    given; the same name twice after that (the same model twice) is an error."""
    labels = labels or [None] * len(specs)
    counts: dict[str, int] = {}
    for spec, label in zip(specs, labels, strict=True):
        name = label or spec.name
        counts[name] = counts.get(name, 0) + 1
    named = [
        replace(spec, name=label)
        if label
        else replace(spec, name=arg)
        if counts[spec.name] > 1
        else spec
        for spec, arg, label in zip(specs, args, labels, strict=True)
    ]
    seen: set[str] = set()
    for spec in named:
        if spec.name in seen:
            raise UserError(
                f"--model '{spec.name}' is given twice; give each model once "
                "(or a label each: --model NAME=PATH)."
            )
        seen.add(spec.name)
    return named


def provenance_line(spec: ModelSpec) -> str | None:
    """What a model heard and which phone labels trained it, its sources' and teacher's included
    (`export.model_provenance`; "not recorded" without a record); None for log-mel, which
    learns nothing. A damaged record is an error naming the file."""
    if spec.kind == "logmel":
        return None
    if spec.kind == "untrained":
        return "nothing: random weights of its architecture"
    return describe(model_provenance(spec.path))


def parse_comparisons(
    compare: list[str] | list[tuple[str, str]] | None, names: list[str]
) -> list[tuple[str, str]] | None:
    """The model pairs to compare, checked against the models' names. An "A:B" string is split
    at the one ':' that leaves a model name on both sides (names may hold ':' themselves, as
    `untrained:teacher` does). None: the default, every model against the reference."""
    if compare is None:
        return None
    known = set(names)
    pairs = []
    for item in compare:
        if isinstance(item, str):
            cuts = [
                (item[:i], item[i + 1 :])
                for i, c in enumerate(item)
                if c == ":" and item[:i] in known and item[i + 1 :] in known
            ]
            if len(cuts) != 1:
                raise UserError(
                    f"--compare '{item}' must be A:B with A and B two of the models: "
                    f"{', '.join(names)}."
                )
            a, b = cuts[0]
        else:
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise UserError(f"compare item {item!r} must be 'A:B' or a pair (A, B).")
            a, b = item
            for name in (a, b):
                if name not in known:
                    raise UserError(
                        f"--compare names '{name}', which is none of the models: "
                        f"{', '.join(names)}."
                    )
        if a == b:
            raise UserError(f"--compare '{a}:{b}' compares a model with itself.")
        pairs.append((a, b))
    if not pairs:
        raise UserError("--compare lists no pair; give A:B[,C:D] or leave it out.")
    return pairs
