"""Every model's runs summarised into `Results`: mean PER per language and over languages,
tiers, the floor, and the hierarchical bootstrap's intervals and comparisons
(evaluate/stats.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from distilxlsr.data.corpora import TIERS
from distilxlsr.errors import UserError
from distilxlsr.evaluate.features import ModelSpec
from distilxlsr.evaluate.recipe import EvaluationConfig
from distilxlsr.evaluate.records import LanguageRun, ModelResult, Results
from distilxlsr.evaluate.stats import (
    LEVEL,
    REL_GAP_MIN_REFERENCE,
    SEED,
    bootstrap_per,
    relative_gap,
    statistics,
    voice_of,
)


@dataclass
class ModelInfo:
    """What results.json says of a model besides its runs."""

    path: str
    params: int
    provenance: str | None


def group_tiers(tiers: dict[str, str | None]) -> dict[str, list[str]]:
    """{tier: its languages} from each language's tier (None: in no tier), the synthetic
    corpus's tiers first in their order, others by name. "all" names every language and cannot
    be a tier."""
    groups: dict[str, list[str]] = {}
    for lang, tier in tiers.items():
        if tier == "all":
            raise UserError(
                f"language '{lang}': tier 'all' (cut custom['tier']) is reserved for every "
                "language together; rename the tier."
            )
        if tier is not None:
            groups.setdefault(tier, []).append(lang)
    rank = {tier: k for k, tier in enumerate(TIERS)}
    order = sorted(groups, key=lambda t: (rank.get(t, len(rank)), t))
    return {tier: groups[tier] for tier in order}


def floor_model(specs: list[ModelSpec]) -> str | None:
    """The log-mel floor that gain retained is measured from: the first model of kind (or
    named) logmel, unless it is the reference itself."""
    floor = next((s.name for s in specs if s.kind == "logmel"), None)
    floor = floor or next((s.name for s in specs if s.name == "logmel"), None)
    return floor if floor is not None and floor != specs[0].name else None


def scored_voices(
    runs: dict[str, dict[str, LanguageRun]], names: list[str], langs: list[str]
) -> list[list[str | None] | None]:
    """Each language's test voices (`voice_of` each utterance's speaker), the resampling unit
    above the utterance; None for a language whose stored results name no speaker (results
    stored before speakers were kept, or a corpus without speakers): its utterances are then
    resampled as independent units, and results.json says so."""
    voices = []
    for lang in langs:
        named = [voice_of(u.speaker) for u in runs[names[0]][lang].utterances]
        voices.append(named if all(v is not None for v in named) else None)
    return voices


def model_result(
    name: str, info: ModelInfo, runs: dict[str, LanguageRun], langs: list[str], seeds: list[int]
) -> ModelResult:
    """A model's row before its statistics: mean PER per language and over languages."""
    per = {lang: float(np.mean(runs[lang].per)) for lang in langs}
    train_per = {lang: float(np.mean(runs[lang].train_per)) for lang in langs}
    by_seed = [np.mean([runs[lang].per[k] for lang in langs]) for k in range(len(seeds))]
    row = ModelResult(
        name=name,
        path=info.path,
        params=info.params,
        provenance=info.provenance,
        per=per,
        per_mean=float(np.mean(by_seed)),
        train_per=train_per,
        train_per_mean=float(np.mean(list(train_per.values()))),
        details=runs,
    )
    if len(seeds) > 1:
        row.per_std = {lang: float(np.std(runs[lang].per)) for lang in langs}
        row.per_mean_std = float(np.std(by_seed))
    return row


def summarise(
    config: EvaluationConfig,
    specs: list[ModelSpec],
    infos: dict[str, ModelInfo],
    runs: dict[str, dict[str, LanguageRun]],
    langs: list[str],
    tiers: dict[str, list[str]] | None = None,
    compare: list[tuple[str, str]] | None = None,
    similarity: dict | None = None,
) -> Results:
    """The results of every model (`runs`: model name -> language -> run) of the evaluation
    `config`."""
    seeds = list(config.seeds)
    names = [spec.name for spec in specs]
    models = [model_result(n, infos[n], runs[n], langs, seeds) for n in names]
    groups = tiers or {}
    edits = [
        np.array([[u.edits for u in runs[n][lang].utterances] for n in names]) for lang in langs
    ]
    phones = [np.array([u.phones for u in runs[names[0]][lang].utterances]) for lang in langs]
    per = bootstrap_per(
        edits, phones, resamples=config.bootstrap, voices=scored_voices(runs, names, langs)
    )
    stats = statistics(names, langs, groups, per, comparisons=compare, floor=floor_model(specs))
    notes = stats["notes"]
    reference = models[0].per_mean
    for row in models:
        row.statistics = stats["models"][row.name]
        row.abs_gap = row.per_mean - reference
        row.rel_gap = relative_gap(row.per_mean, reference)
    if len(models) > 1 and models[0].rel_gap is None:
        notes.append(
            f"rel_gap is null: the reference's mean PER ({100 * reference:.1f}%) is below "
            f"{100 * REL_GAP_MIN_REFERENCE:.0f}%, where a ratio to it is unstable; abs_gap "
            "gives the difference."
        )
    splits = {lang: runs[names[0]][lang].test_split for lang in langs}
    probing = config.mode == "probe"
    return Results(
        targets=config.targets,
        mode=config.mode,
        languages=langs,
        seeds=seeds,
        models=models,
        tiers=groups,
        comparisons=stats["comparisons"],
        bootstrap={
            "resamples": config.bootstrap,
            "level": LEVEL,
            "seed": SEED,
            "resampling": per.resampling(langs),
        },
        floor=floor_model(specs),
        notes=notes,
        split=config.split
        or (next(iter(splits.values())) if len(set(splits.values())) == 1 else None),
        test_splits=splits,
        config=asdict(
            config.probe
            if probing
            else config.superb
            if config.mode == "superb"
            else config.finetune
        ),
        floor_config=asdict(config.floor_probe)
        if probing and any(s.kind == "logmel" for s in specs)
        else None,
        similarity=similarity or None,
    )
