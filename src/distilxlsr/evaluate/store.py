"""`evaluate`'s results store: OUT/languages/<lang>.json, one record per (language, model) with
the fingerprint of what produced it (docs/design.md, "Evaluation", Resume)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from distilxlsr.evaluate.records import LanguageRun

if TYPE_CHECKING:
    from distilxlsr.evaluate.features import ModelSpec
    from distilxlsr.evaluate.task import LanguageTask


class LanguageStore:
    """OUT/languages/<lang>.json: each finished (language, model) result, so that an interrupted
    or repeated evaluation, or one with a model added or changed, redoes only what is missing.
    A stored model result is used only when its fingerprint matches: the model (name, kind, path
    and its weight files' sizes and modification times), its probe or fine-tuning settings, the
    mode, seeds, split, frame stride, the language's manifests (sizes and modification times)
    and the package version. The similarity table is kept with the fingerprints of all models."""

    def __init__(self, root: Path, task: LanguageTask):
        self.root = root
        self.task = task

    def _facts(self, lang_dir: Path) -> dict:
        """What every result of the language depends on, whatever the model."""
        from distilxlsr import __version__  # noqa: PLC0415

        t = self.task
        facts = {
            "version": __version__,
            "stride": t.stride,
            "mode": t.mode,
            "seeds": t.seeds,
            "split": t.split,
            "data": [str(lang_dir.resolve()), _file_stats(lang_dir, "cuts_*")],
        }
        if t.targets != "phones":  # phone results stored before targets existed stay valid
            facts["targets"] = t.targets
        return facts

    @staticmethod
    def _model(spec: ModelSpec) -> list:
        files = _file_stats(Path(spec.path), "*.safetensors") if spec.path else []
        return [spec.name, spec.kind, spec.path, files]

    def fingerprint(self, lang_dir: Path, spec: ModelSpec) -> str:
        facts = self._facts(lang_dir) | {
            "model": self._model(spec),
            "settings": self.task.settings(spec),
        }
        return _digest(facts)

    def _legacy_runs(self, stored: dict, lang_dir: Path) -> dict:
        """The runs of a file written before results were kept per model (one fingerprint over
        every model with one settings record): when that fingerprint still matches, the runs of
        the models whose settings are that record's (the floor's may differ now)."""
        t = self.task
        settings = asdict(t.probe) if t.mode == "probe" else asdict(t.finetune_config)
        facts = self._facts(lang_dir) | {
            "models": [self._model(spec) for spec in t.specs],
            "similarity": t.similarity,
            "settings": settings,
        }
        if stored.get("fingerprint") != _digest(facts):
            return {}
        runs = {
            spec.name: _read_run(stored["runs"][spec.name])
            for spec in t.specs
            if t.settings(spec) == settings and spec.name in stored.get("runs", {})
        }
        return {name: run for name, run in runs.items() if run is not None}

    def load(self, lang: str, lang_dir: Path) -> tuple[dict[str, LanguageRun], dict | None]:
        """({model name: run} of the stored results still valid, similarity table or None)."""
        try:
            stored = json.loads((self.root / f"{lang}.json").read_text())
        except (OSError, ValueError):
            return {}, None  # none yet, or unreadable: evaluated again
        models = stored.get("models") if isinstance(stored, dict) else None
        if not isinstance(models, dict):
            return (self._legacy_runs(stored, lang_dir) if isinstance(stored, dict) else {}), None
        prints = {s.name: self.fingerprint(lang_dir, s) for s in self.task.specs}
        runs = {
            name: _read_run(entry.get("run"))
            for name, entry in models.items()
            if name in prints and entry.get("fingerprint") == prints[name]
        }
        runs = {name: run for name, run in runs.items() if run is not None}
        table = stored.get("similarity")
        order = [[s.name, prints[s.name]] for s in self.task.specs]  # the first is the reference
        table_ok = table is not None and stored.get("similarity_models") == order
        return runs, table if table_ok else None

    def save(
        self, lang: str, lang_dir: Path, runs: dict[str, LanguageRun], table: dict | None
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        prints = {s.name: self.fingerprint(lang_dir, s) for s in self.task.specs}
        try:  # other models' results stay (an evaluation of a subset must not drop them)
            kept = json.loads((self.root / f"{lang}.json").read_text())["models"]
            kept = (
                {k: v for k, v in kept.items() if k not in prints} if isinstance(kept, dict) else {}
            )
        except (OSError, ValueError, KeyError, TypeError):
            kept = {}
        order = [[s.name, prints[s.name]] for s in self.task.specs]
        record = {
            "models": kept
            | {
                name: {"fingerprint": prints[name], "run": run.to_dict()}
                for name, run in runs.items()
                if name in prints
            },
            "similarity": table,
            "similarity_models": order if table is not None else None,
        }
        tmp = self.root / f".{lang}.json.tmp"
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(self.root / f"{lang}.json")


def _read_run(record) -> LanguageRun | None:
    """A stored run, or None for one that does not read (evaluated again)."""
    try:
        return LanguageRun.from_dict(record)
    except (KeyError, TypeError, AttributeError):
        return None


def _file_stats(path: Path, pattern: str) -> list:
    """[name, size, modification time] of the files of `path` matching `pattern`."""
    if not path.is_dir():
        return []
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(path.glob(pattern))]


def _digest(facts: dict) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
