"""Evaluation statistics: bootstrap confidence intervals of phone error rates, paired
differences between models with Holm-corrected p-values, tier summaries and gain retained.

The bootstrap follows how the test data came about: hierarchical and paired
(`bootstrap_per`, scheme "hierarchical", the default). Each of B resamples

1. draws the recogniser seeds with replacement once, for every language and every model: a
   seed is one trained network (a student seed is one student, used on all 15 languages), so
   its luck is shared by every language and must not average out across them;
2. within each language, draws that language's test voices with replacement (as many as it
   has): a voice (`voice_of`: the speaker's voice and variant, "voice+variant") makes errors
   together, and corpus v2's three test voices per language differ far more than its
   utterances do;
3. within each drawn voice, draws as many of its utterances with replacement as it has.

A resample's PER of a language is its total edits over its total reference phones, seeds
averaged, as for the full test split; a macro PER is the mean of the languages' PERs. Every
model is scored on the same draw, so a difference between two models is measured on paired data
and the shared difficulty of the seeds, voices and utterances drawn cancels out. A language
whose utterances name no voice resamples its utterances as independent units (recorded as such
in `PerSamples.resampling`). Intervals are percentile intervals; the two-sided p-value of a
difference is twice the smaller share of resampled differences on either side of zero, floored
at 1/B. With few units at a level the intervals are somewhat narrow (a bootstrap of n units
reproduces (n − 1)/n of their variance): in the coverage simulation
(`experiments/bootstrap_coverage.py`) 95% intervals hold the truth 93.5–96.8% of the time at 8
seeds and 6 or 8 voices per language, 88.9–92.2% at corpus v2's 3 seeds and 3 voices.

The previous scheme ("utterance": seeds and utterances drawn anew within each language, voices
ignored) is kept only to show what it gave beside the hierarchical one (replication v2's report)
and in the coverage simulation, where its intervals hold the truth 38–75% of the time once voices
differ. docs/design.md ("Evaluation statistics") describes the use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
# Below this reference PER a relative gap divides by a number near zero: a difference of half a
# point would read as +50% against a 1% reference, and sampling noise dominates the ratio.
REL_GAP_MIN_REFERENCE = 0.10
HIERARCHICAL = "hierarchical"
UTTERANCE = "utterance"
SCHEMES = {
    HIERARCHICAL: ["seed", "voice", "utterance"],
    UTTERANCE: ["seed", "utterance"],
}
"""The units each scheme resamples, outermost first."""
_SYNTH_SPEAKER = re.compile(r"^(?P<voice>.+)-p\d+-r\d+$")


def voice_of(speaker: str | None) -> str | None:
    """The resampling unit of a speaker id: the synthetic corpus's speakers
    "voice+variant-pPITCH-rRATE" are one voice per "voice+variant" (pitch and rate are settings
    of that voice, and every language's test holds each voice at several of them); any other
    non-empty id is its own unit; no id (None, "") gives None."""
    if not speaker:
        return None
    match = _SYNTH_SPEAKER.match(speaker)
    return match["voice"] if match else speaker


@dataclass
class PerSamples:
    """Phone error rates of M models on L languages: as scored on the full test data (`point`,
    shape (M, L)) and on B paired resamples of it (`samples`, shape (M, L, B)); `scheme` names
    how they were drawn, `seeds` the recogniser seeds per model and `voices` the voices of each
    language (None where its utterances name none and were resampled as independent units)."""

    point: np.ndarray
    samples: np.ndarray
    scheme: str = HIERARCHICAL
    seeds: int = 1
    voices: list[int | None] = field(default_factory=list)

    @property
    def resamples(self) -> int:
        return self.samples.shape[-1]

    def macro(self, langs: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The unweighted mean over the languages with these indices: (M,) and (M, B)."""
        index = list(langs)
        return self.point[:, index].mean(axis=1), self.samples[:, index].mean(axis=1)

    def resampling(self, langs: Sequence[str], members: Sequence[str] | None = None) -> dict:
        """What the resamples drew, for results.json and reports: the units (outermost first),
        the seeds and how they were drawn, and per language its voices (null: utterances were
        the units); `members` restricts the languages listed to a tier's."""
        voices = dict(zip(langs, self.voices, strict=True)) if self.voices else {}
        if members is not None:
            voices = {lang: voices[lang] for lang in members if lang in voices}
        units = list(SCHEMES[self.scheme])
        if self.scheme == HIERARCHICAL and voices and all(v is None for v in voices.values()):
            units.remove("voice")  # no language names its voices
        if self.seeds < 2:
            units.remove("seed")  # one seed: nothing to draw
        entry = {
            "scheme": self.scheme,
            "units": units,
            "seeds": self.seeds,
            "seeds_drawn": "once per resample for every language"
            if self.scheme == HIERARCHICAL
            else "anew for each language",
        }
        if self.scheme == HIERARCHICAL:
            entry["voices"] = voices
        return entry


def describe_resampling(resampling: dict) -> str:
    """What a `PerSamples.resampling` record drew, in words for a report."""
    units = resampling.get("units", [])
    if resampling.get("scheme") == UTTERANCE:
        drawn = "seeds and test utterances" if "seed" in units else "test utterances"
        return f"{drawn}, drawn anew within each language"
    parts = []
    if "seed" in units:
        parts.append("seeds (drawn once for every language)")
    if "voice" in units:
        parts.append("test voices within each language")
        parts.append("utterances within each voice")
    else:
        parts.append("test utterances")
    text = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    unnamed = [lang for lang, v in resampling.get("voices", {}).items() if v is None]
    if "voice" in units and unnamed:
        text += f" (utterances as independent units in {', '.join(unnamed)}: no voices named)"
    return text


def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each of `n` items is drawn in each of `resamples` draws of n with replacement:
    an integer array (resamples, n) whose rows sum to n."""
    drawn = rng.integers(0, n, size=(resamples, n))
    offsets = (np.arange(resamples) * n)[:, None]
    return np.bincount((drawn + offsets).ravel(), minlength=resamples * n).reshape(resamples, n)


def voice_groups(voices: Sequence[str | None] | None, n: int) -> list[np.ndarray] | None:
    """The utterance indices of each voice, in order of first appearance; None when no
    utterance names a voice. Some utterances with a voice and some without is an error: the
    resampling unit would be ill-defined."""
    if voices is None:
        return None
    if len(voices) != n:
        raise ValueError(f"{len(voices)} voices given for {n} utterances")
    named = [v is not None and v != "" for v in voices]
    if not any(named):
        return None
    if not all(named):
        raise ValueError(f"{named.count(False)} of {n} utterances name no voice, the others do")
    groups: dict[str, list[int]] = {}
    for i, v in enumerate(voices):
        groups.setdefault(v, []).append(i)
    return [np.asarray(idx) for idx in groups.values()]


def hierarchical_counts(
    groups: list[np.ndarray] | None, n: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """How often each of `n` utterances is drawn in each resample, (resamples, n): the voices
    (`groups`, each a voice's utterance indices) drawn with replacement, as many as there are,
    then for each drawn voice as many of its utterances as it has, with replacement. A voice
    drawn c times contributes c draws of its k utterances, c·k draws in all (multinomial).
    Without groups, the utterances are drawn as independent units."""
    if groups is None:
        return resample_counts(n, resamples, rng)
    drawn = resample_counts(len(groups), resamples, rng)  # (B, V)
    counts = np.zeros((resamples, n), dtype=np.int64)
    for v, index in enumerate(groups):
        k = len(index)
        counts[:, index] = rng.multinomial(drawn[:, v] * k, np.full(k, 1.0 / k))
    return counts


def bootstrap_per(
    edits: Sequence[np.ndarray],
    phones: Sequence[np.ndarray],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    voices: Sequence[Sequence[str | None] | None] | None = None,
    scheme: str = HIERARCHICAL,
) -> PerSamples:
    """PER of every model and language on the test data and on `resamples` paired resamples.

    `edits[l]` has shape (M, n_l, S): the edit distance of model m's hypothesis for utterance i
    of language l under recogniser seed s; `phones[l]` (n_l,) the reference phone counts;
    `voices[l]` (n_l,) each utterance's voice (`voice_of`; None, or no `voices`: the language's
    utterances are independent units). Every language has the same S seeds: seed s is the same
    network on every language. The point PER averages the seeds' PERs (all seeds share the
    reference phones). `scheme` is "hierarchical" (module doc) or "utterance" (the previous
    scheme: seeds and utterances drawn anew within each language, voices ignored). The
    generator is seeded, so the same inputs give the same resamples and the same intervals.
    """
    if len(edits) != len(phones) or not edits:
        raise ValueError("edits and phones must list the same languages, at least one")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {scheme!r} is none of {', '.join(SCHEMES)}")
    if voices is not None and len(voices) != len(edits):
        raise ValueError("voices must list the same languages as edits")
    rng = np.random.default_rng(seed)
    models = edits[0].shape[0]
    seeds = edits[0].shape[2] if np.ndim(edits[0]) == 3 else 0
    point = np.empty((models, len(edits)))
    samples = np.empty((models, len(edits), resamples))
    shared_seeds = None
    if scheme == HIERARCHICAL:
        shared_seeds = _seed_weights(seeds, resamples, rng) if seeds >= 1 else None
    counted: list[int | None] = []
    for lang, (e, p) in enumerate(zip(edits, phones, strict=True)):
        e = np.asarray(e, dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        if e.ndim != 3 or e.shape[0] != models or e.shape[1] != len(p) or e.shape[2] < 1:
            raise ValueError(f"language {lang}: edits {e.shape} do not match {len(p)} utterances")
        if e.shape[2] != seeds:
            raise ValueError(
                f"language {lang} has {e.shape[2]} seeds, language 0 has {seeds}: a seed is "
                "one recogniser on every language, so every language needs the same seeds"
            )
        if np.any(p <= 0):
            raise ValueError(f"language {lang}: every utterance needs reference phones")
        n = e.shape[1]
        point[:, lang] = e.sum(axis=(1, 2)) / (seeds * p.sum())
        if scheme == HIERARCHICAL:
            groups = voice_groups(None if voices is None else voices[lang], n)
            counted.append(None if groups is None else len(groups))
            utterances = hierarchical_counts(groups, n, resamples, rng).astype(np.float64)
            seed_weights = shared_seeds
        else:
            counted.append(None)
            utterances = resample_counts(n, resamples, rng).astype(np.float64)  # (B, n)
            seed_weights = _seed_weights(seeds, resamples, rng)
        # Edits of each resample per model and seed: (B, n) @ (n, M*S) -> (B, M, S).
        per_seed = (utterances @ e.transpose(1, 0, 2).reshape(n, models * seeds)).reshape(
            resamples, models, seeds
        )
        total_edits = (per_seed * seed_weights[:, None, :]).sum(axis=2)  # (B, M)
        total_phones = (utterances @ p) * seeds  # seed weights sum to S
        samples[:, lang, :] = (total_edits / total_phones[:, None]).T
    return PerSamples(point, samples, scheme, seeds, counted if scheme == HIERARCHICAL else [])


def _seed_weights(seeds: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each seed is drawn per resample, (resamples, S); a single seed always."""
    if seeds > 1:
        return resample_counts(seeds, resamples, rng).astype(np.float64)
    return np.ones((resamples, 1))


def interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """The central percentile interval [lo, hi] holding `level` of the resampled values."""
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "no difference": twice the smaller share of resampled
    differences at or below zero and at or above zero, capped at 1 and floored at 1/B (B
    resamples cannot show a smaller probability)."""
    below = float(np.mean(differences <= 0))
    above = float(np.mean(differences >= 0))
    return float(min(1.0, max(2 * min(below, above), 1 / len(differences))))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down correction for a family of tests: the k-th smallest of m p-values is
    multiplied by m - k + 1 (k from 1), kept monotone in that order and capped at 1."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def holm_levels(p_values: Sequence[float], level: float = LEVEL) -> list[float]:
    """Step-down confidence levels that go with Holm's correction: the comparison with the k-th
    smallest of m p-values gets level 1 − (1 − level) / (m − k + 1), so the first is a Bonferroni
    interval and the last an unadjusted one. Such an interval excludes zero where that
    comparison's own step of Holm's procedure rejects; the adjusted p-value (`holm`) also asks
    that every earlier step rejected, so a verdict reads the adjusted p-value."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    levels = [level] * m
    for k, i in enumerate(order):
        levels[i] = 1 - (1 - level) / (m - k)
    return levels


def paired_comparisons(
    names: Sequence[str],
    langs: Sequence[str],
    tiers: dict[str, list[str]],
    per: PerSamples,
    pairs: Sequence[tuple[str, str]],
    level: float = LEVEL,
) -> list[dict]:
    """Each pair (a, b) on each tier's macro PER: diff = PER(a) − PER(b), its interval, p-value,
    and Holm's correction over the whole family (every pair on every tier) as `p_holm` with its
    step-down interval `ci_holm` (`holm_levels`)."""
    index = {lang: i for i, lang in enumerate(langs)}
    position = {name: m for m, name in enumerate(names)}
    rows, draws = [], []
    for a, b in pairs:
        for tier, members in tiers.items():
            point, samples = per.macro([index[x] for x in members])
            differences = samples[position[a]] - samples[position[b]]
            draws.append(differences)
            rows.append(
                {
                    "a": a,
                    "b": b,
                    "tier": tier,
                    "languages": len(members),
                    "diff": float(point[position[a]] - point[position[b]]),
                    "ci": interval(differences, level),
                    "p": p_value(differences),
                }
            )
    p_values = [r["p"] for r in rows]
    for row, draw, adjusted, wider in zip(
        rows, draws, holm(p_values), holm_levels(p_values, level), strict=True
    ):
        row["p_holm"] = adjusted
        row["ci_holm"] = interval(draw, wider)
        row["level_holm"] = wider
    return rows


def gain_retained(floor: float, model: float, reference: float) -> float | None:
    """The share of the reference's improvement over the floor that the model keeps:
    (floor − model) / (floor − reference); 1 = as good as the reference, 0 = no better than the
    floor. None when the floor is not worse than the reference (no gain to retain)."""
    gain = floor - reference
    if not gain > 0:
        return None
    return (floor - model) / gain


def gain_retained_interval(
    floor: np.ndarray, model: np.ndarray, reference: np.ndarray, level: float = LEVEL
) -> list[float] | None:
    """Percentile interval of the gain retained over paired resamples; None when the
    reference's gain over the floor is not clearly positive (its own interval reaches zero),
    since a ratio whose denominator may be zero has no bounded interval. The few resamples left
    with a zero gain count as +inf or -inf by the sign of the model's gain (none when that is
    zero too: 0/0 says nothing)."""
    gain = floor - reference
    if not interval(gain, level)[0] > 0:
        return None
    kept = floor - model
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = kept / gain
    ratio = ratio[~np.isnan(ratio)]
    return interval(ratio, level)


def relative_gap(model: float, reference: float) -> float | None:
    """model / reference − 1, or None when the reference PER is below REL_GAP_MIN_REFERENCE."""
    if reference < REL_GAP_MIN_REFERENCE:
        return None
    return model / reference - 1


def tier_summary(
    langs: Sequence[str], point: np.ndarray, samples: np.ndarray, level: float = LEVEL
) -> dict:
    """One model over one tier's languages: macro PER and its interval, the population standard
    deviation across the languages and the worst language. `point` (L,), `samples` (L, B)."""
    worst = int(np.argmax(point))
    return {
        "per": float(point.mean()),
        "per_ci": interval(samples.mean(axis=0), level),
        "std": float(point.std()),
        "worst": [langs[worst], float(point[worst])],
        "languages": len(langs),
    }


def statistics(
    names: Sequence[str],
    langs: Sequence[str],
    tiers: dict[str, list[str]],
    per: PerSamples,
    comparisons: Sequence[tuple[str, str]] | None = None,
    floor: str | None = None,
    level: float = LEVEL,
) -> dict:
    """Every statistic of an evaluation from its paired resamples.

    `names[0]` is the reference. `tiers` maps tier names to their languages; "all" (every
    language) is added. `comparisons` lists (a, b) pairs, default every model against the
    reference. `floor` names the model that gain retained is measured from (logmel), if any.
    Returns {"models": {name: {...}}, "comparisons": [...], "notes": [...]}.
    """
    index = {lang: i for i, lang in enumerate(langs)}
    groups = {**tiers, "all": list(langs)}
    notes: list[str] = []
    models: dict[str, dict] = {}
    macro = {tier: per.macro([index[x] for x in members]) for tier, members in groups.items()}
    position = {name: m for m, name in enumerate(names)}
    for m, name in enumerate(names):
        entry = {
            "per_ci_by_lang": {
                lang: interval(per.samples[m, i], level) for lang, i in index.items()
            },
            "tiers": {
                tier: tier_summary(
                    members,
                    per.point[m, [index[x] for x in members]],
                    per.samples[m, [index[x] for x in members]],
                    level,
                )
                for tier, members in groups.items()
            },
        }
        entry["per_ci"] = entry["tiers"]["all"]["per_ci"]
        models[name] = entry
    if floor is not None:
        f = position[floor]
        for tier, (point, samples) in macro.items():
            if gain_retained(point[f], point[0], point[0]) is None:
                notes.append(
                    f"gain retained on '{tier}' is null: {floor} ({100 * point[f]:.1f}%) is not "
                    f"worse than the reference {names[0]} ({100 * point[0]:.1f}%)."
                )
            elif gain_retained_interval(samples[f], samples[0], samples[0], level) is None:
                notes.append(
                    f"gain retained on '{tier}' has no interval: the reference's gain over "
                    f"{floor} is not clearly above zero."
                )
        for m, name in enumerate(names):
            if m == 0 or m == f:
                continue
            entry = models[name]
            entry["gain_retained_by_lang"] = {
                lang: gain_retained(per.point[f, i], per.point[m, i], per.point[0, i])
                for lang, i in index.items()
            }
            entry["gain_retained"] = {
                tier: gain_retained(point[f], point[m], point[0])
                for tier, (point, _) in macro.items()
            }
            entry["gain_retained_ci"] = {
                tier: gain_retained_interval(samples[f], samples[m], samples[0], level)
                for tier, (_, samples) in macro.items()
            }
    pairs = list(comparisons) if comparisons is not None else [(n, names[0]) for n in names[1:]]
    point, samples = macro["all"]
    rows = []
    for a, b in pairs:
        i, j = position[a], position[b]
        differences = samples[i] - samples[j]
        rows.append(
            {
                "a": a,
                "b": b,
                "diff": float(point[i] - point[j]),
                "ci": interval(differences, level),
                "p": p_value(differences),
            }
        )
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return {"models": models, "comparisons": rows, "notes": notes}
