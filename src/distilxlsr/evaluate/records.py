"""The records of an evaluation: one model's run on one language (`LanguageRun`, what
OUT/languages/<lang>.json keeps) and the results of every model (`Results`, what results.json
holds). results.json is written from `Results.to_dict()` and carries `schema_version`; a file
without it was written before the version was recorded and has the same keys (version 1)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from distilxlsr.errors import UserError

SCHEMA_VERSION = 1
"""The version of results.json's layout; raised when a key changes meaning or goes away."""


def metric_name(targets: str) -> str:
    """PER for phone targets, CER for characters."""
    return "CER" if targets == "chars" else "PER"


@dataclass
class UtteranceRecord:
    """One test utterance: its reference phone count and the edits of each seed's recogniser."""

    id: str
    speaker: str | None
    """The test voice (None in records stored before speakers were kept)."""
    phones: int
    edits: list[int] = field(default_factory=list)
    """Edit distance of each seed's hypothesis to the reference, in the order of the seeds."""

    def to_dict(self) -> dict:
        return {"id": self.id, "speaker": self.speaker, "phones": self.phones, "edits": self.edits}

    @classmethod
    def from_dict(cls, d: dict) -> UtteranceRecord:
        return cls(d["id"], d.get("speaker"), d["phones"], list(d["edits"]))


@dataclass
class LanguageRun:
    """One model on one language: per seed its test and train PER, time and per-utterance
    edits; `feature_seconds` and `layer_weights` with the probe only."""

    phones: int
    """Reference phones of the test split."""
    unseen_phones: int
    """Test phones that the train split never holds."""
    test_split: str
    train_seconds: float
    test_seconds: float
    skipped: int
    """Utterances the loader skipped (train and test together)."""
    utterances: list[UtteranceRecord]
    per: list[float] = field(default_factory=list)
    train_per: list[float] = field(default_factory=list)
    """PER on a fixed subset of the train split (the same for every model)."""
    seconds: list[float] = field(default_factory=list)
    """Training time of each seed's recogniser."""
    steps: int = 0
    feature_seconds: float | None = None
    """Feature extraction time (probe)."""
    layer_weights: list[list[float]] | None = None
    """The probe's softmax layer weights, per seed (probe)."""

    def to_dict(self) -> dict:
        d = {
            "phones": self.phones,
            "unseen_phones": self.unseen_phones,
            "test_split": self.test_split,
            "train_seconds": self.train_seconds,
            "test_seconds": self.test_seconds,
            "skipped": self.skipped,
            "per": self.per,
            "train_per": self.train_per,
            "utterances": [u.to_dict() for u in self.utterances],
            "seconds": self.seconds,
            "steps": self.steps,
        }
        if self.feature_seconds is not None:
            d["feature_seconds"] = self.feature_seconds
        if self.layer_weights is not None:
            d["layer_weights"] = self.layer_weights
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LanguageRun:
        return cls(
            phones=d["phones"],
            unseen_phones=d["unseen_phones"],
            test_split=d["test_split"],
            train_seconds=d["train_seconds"],
            test_seconds=d["test_seconds"],
            skipped=d["skipped"],
            utterances=[UtteranceRecord.from_dict(u) for u in d["utterances"]],
            per=list(d["per"]),
            train_per=list(d["train_per"]),
            seconds=list(d["seconds"]),
            steps=d["steps"],
            feature_seconds=d.get("feature_seconds"),
            layer_weights=d.get("layer_weights"),
        )


@dataclass
class ModelResult:
    """One model's row of results.json: its PER per language and over them, its runs, and the
    statistics of evaluate/stats.py (intervals, tiers, gain retained), which stay flat in the
    row as `statistics` returns them."""

    name: str
    path: str
    """The model as given (a path or hub id), or its kind (`logmel`)."""
    params: int
    provenance: str | None
    per: dict[str, float]
    per_mean: float
    train_per: dict[str, float]
    train_per_mean: float
    details: dict[str, LanguageRun]
    per_std: dict[str, float] | None = None
    """With several seeds: the spread over seeds, per language and of the mean."""
    per_mean_std: float | None = None
    statistics: dict[str, Any] = field(default_factory=dict)
    """`stats.statistics`' entry of this model (per_ci, tiers, gain_retained, ...)."""
    abs_gap: float | None = None
    rel_gap: float | None = None

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "path": self.path,
            "params": self.params,
            "provenance": self.provenance,
            "per": self.per,
            "per_mean": self.per_mean,
            "train_per": self.train_per,
            "train_per_mean": self.train_per_mean,
            "details": {lang: run.to_dict() for lang, run in self.details.items()},
        }
        if self.per_std is not None:
            d["per_std"] = self.per_std
            d["per_mean_std"] = self.per_mean_std
        d.update(self.statistics)
        d["abs_gap"] = self.abs_gap
        d["rel_gap"] = self.rel_gap
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelResult:
        own = {f.name for f in fields(cls)}
        return cls(
            name=d["name"],
            path=d["path"],
            params=d["params"],
            provenance=d.get("provenance"),
            per=d["per"],
            per_mean=d["per_mean"],
            train_per=d["train_per"],
            train_per_mean=d["train_per_mean"],
            details={lang: LanguageRun.from_dict(r) for lang, r in d["details"].items()},
            per_std=d.get("per_std"),
            per_mean_std=d.get("per_mean_std"),
            statistics={k: v for k, v in d.items() if k not in own},
            abs_gap=d.get("abs_gap"),
            rel_gap=d.get("rel_gap"),
        )


@dataclass
class Results:
    """An evaluation's results: results.json (`to_dict`), what `evaluate` returns."""

    mode: str
    languages: list[str]
    seeds: list[int]
    models: list[ModelResult]
    """The reference first."""
    tiers: dict[str, list[str]]
    comparisons: list[dict]
    bootstrap: dict
    """Resamples, level, seed and the units resampled (`resampling`)."""
    floor: str | None
    """The log-mel floor that gain retained is measured from."""
    notes: list[str]
    split: str | None
    """The split scored, when every language scored the same one."""
    test_splits: dict[str, str]
    config: dict
    """The networks' probe (probe mode) or the fine-tuning settings."""
    floor_config: dict | None = None
    """The floor's probe, when log-mel is among the models (probe mode)."""
    similarity: dict | None = None
    """Per-layer CKA of each student with the reference, per language (`similarity`)."""
    targets: str = "phones"
    """What the recognisers spelt: phones (every `per` field a PER) or chars (every `per` field
    a CER, the `phones` counts characters with the word delimiter)."""
    schema_version: int = SCHEMA_VERSION

    @property
    def metric(self) -> str:
        """The error rate's name: PER or CER."""
        return metric_name(self.targets)

    def to_dict(self) -> dict:
        d = {
            "schema_version": self.schema_version,
            "mode": self.mode,
            "languages": self.languages,
            "seeds": self.seeds,
            "models": [m.to_dict() for m in self.models],
            "tiers": self.tiers,
            "comparisons": self.comparisons,
            "bootstrap": self.bootstrap,
            "floor": self.floor,
            "notes": self.notes,
            "split": self.split,
            "test_splits": self.test_splits,
            "config": self.config,
        }
        if self.floor_config is not None:
            d["floor_config"] = self.floor_config
        if self.similarity:
            d["similarity"] = self.similarity
        if self.targets != "phones":
            d["targets"] = self.targets
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Results:
        """Read results.json (any version up to this one's)."""
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise UserError(
                f"results.json has schema_version {version!r}, newer than this distilxlsr reads "
                f"({SCHEMA_VERSION}); update distilxlsr."
            )
        return cls(
            mode=d["mode"],
            languages=d["languages"],
            seeds=d["seeds"],
            models=[ModelResult.from_dict(m) for m in d["models"]],
            tiers=d["tiers"],
            comparisons=d["comparisons"],
            bootstrap=d["bootstrap"],
            floor=d.get("floor"),
            notes=d["notes"],
            split=d.get("split"),
            test_splits=d["test_splits"],
            config=d["config"],
            floor_config=d.get("floor_config"),
            similarity=d.get("similarity"),
            targets=d.get("targets", "phones"),
            schema_version=SCHEMA_VERSION,
        )
