"""Finding cut manifests in the corpus-directory layout (docs/design.md, "Corpus directory").

ROOT/<lang>/cuts_<split>.jsonl.gz, several languages side by side. A path may be a manifest file
(taken as is), ROOT/<lang> (one language) or ROOT (that split of every language under it).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from lhotse import CutSet

from distilxlsr.data.shards import is_shard_dir, sharded_cuts
from distilxlsr.errors import UserError

MANIFEST_SUFFIXES = (".jsonl.gz", ".jsonl")


def cuts_file(lang_dir: Path, split: str) -> Path | None:
    for suffix in MANIFEST_SUFFIXES:
        candidate = lang_dir / f"cuts_{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def find_manifests(path: str | Path, split: str = "train") -> list[Path]:
    """The cut manifests that `path` stands for (see the module docstring)."""
    path = Path(path)
    if not str(path) or str(path) == ".":
        raise UserError("no training data given; set data.train=PATH (a manifest or directory).")
    if path.is_file():
        if not path.name.endswith(MANIFEST_SUFFIXES):
            raise UserError(
                f"'{path}' is not a lhotse cut manifest (.jsonl.gz or .jsonl); pass a manifest "
                "or a directory written by `distilxlsr synth` / `distilxlsr prepare`."
            )
        return [path]
    if not path.is_dir():
        raise UserError(f"data path '{path}' does not exist; pass a cut manifest or a directory.")
    own = cuts_file(path, split)
    if own is not None:
        return [own]
    found = [f for d in sorted(path.iterdir()) if d.is_dir() and (f := cuts_file(d, split))]
    if not found:
        raise UserError(
            f"'{path}' holds no cuts_{split}.jsonl.gz, neither directly nor in a language "
            "subdirectory; write one with `distilxlsr synth` or `distilxlsr prepare`."
        )
    return found


def check_manifest(path: Path) -> None:
    """Read a manifest's first cut, so that a file that is not one fails here in one line
    rather than later inside the loader."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path) as f:
            first = f.readline()
        if not first.strip():
            return  # an empty manifest: counted as holding no cut where it is scanned
        cut = CutSet.from_dicts([json.loads(first)])[0]
        cut.sampling_rate, cut.duration  # noqa: B018 (fields the loader needs)
    except (OSError, EOFError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"'{path}' is not a readable lhotse cut manifest ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'no detail'}); write it again with "
            "`distilxlsr prepare` / `distilxlsr synth`."
        ) from None


def load_cuts(path: str | Path, split: str = "train") -> CutSet:
    """A lazily read CutSet for `path`; several languages are interleaved at random with a fixed
    seed, so every iteration yields the same order. A directory written by `distilxlsr shard`
    gives its cuts (the split it was written from), carrying its `ShardSet`."""
    if is_shard_dir(path):
        return sharded_cuts(path)
    files = find_manifests(path, split)
    for f in files:
        check_manifest(f)
    return load_manifests(files)


TIERS = ("label", "heard", "unheard", "english")
"""Corpus v2's language tiers (custom["tier"] of every cut written by `distilxlsr synth`):
`label` languages' phone labels may train a teacher; `heard` audio may be heard, unlabelled, by
a teacher; `unheard` audio is heard by no teacher or student before evaluation; `english` is
the distillation language."""


def read_tier(path: str | Path, split: str) -> str | None:
    """A language's tier: custom["tier"] of the first cut of the split that has one; None when
    no cut has one (corpora not written by `distilxlsr synth`)."""
    for cut in load_cuts(path, split):
        tier = (cut.custom or {}).get("tier")
        if tier is not None:
            return str(tier)
    return None


def select_languages(
    path: str | Path, split: str, wanted: list[str] | tuple[str, ...] = ()
) -> list[tuple[Path, str, str | None]]:
    """(manifest, language, tier) of each language of `path` with `split`, keeping those whose
    language code or tier is in `wanted` (every one when `wanted` is empty). An entry of
    `wanted` that names no language and no tier present is an error."""
    found = []
    for manifest in find_manifests(path, split):
        check_manifest(manifest)
        found.append((manifest, manifest.parent.name, read_tier(manifest, split)))
    if not wanted:
        return found
    present = {lang for _, lang, _ in found} | {tier for *_, tier in found if tier}
    unknown = [w for w in wanted if w not in present]
    if unknown:
        raise UserError(
            f"languages entry '{unknown[0]}' names no language or tier of '{path}' ({split} "
            f"split); present: {', '.join(sorted(present))}."
        )
    return [item for item in found if item[1] in wanted or item[2] in wanted]


def load_manifests(files: list[Path]) -> CutSet:
    """One lazily read CutSet of `files`, interleaved at random with a fixed seed."""
    sets = [CutSet.from_jsonl_lazy(f) for f in files]
    return sets[0] if len(sets) == 1 else CutSet.mux(*sets, seed=0)
