"""How large an effect an evaluation can detect: the seed-, voice- and utterance-level variance
components of a statistic, estimated from stored per-utterance edit counts, and its standard
error and minimal detectable effect under another design (seeds, test voices, utterances per
voice). docs/design.md ("Evaluation statistics", Power) describes the use.

A statistic is a smooth function of models' macro PERs over a set of languages; near its value
it is the linear combination sum_k g_k X_k of the macro PERs X_k (`gradient`: a difference
(1, -1), a relative gap, a gain retained). For that linear combination:

- seed: the variance across seeds of the statistic computed with one seed at a time, on the
  whole test data (a seed is one network on every language; the test data are the same for
  every seed, so their spread is the seeds' own);
- voice and utterance, per language l: each utterance's contribution
  w_i = sum_k g_k (e_ki - R_kl p_i) / mean(p), edits e averaged over seeds, R_kl the language's
  PER (so the w_i sum to zero), split by a one-way random-effects analysis of variance over the
  language's voices (method of moments: sigma2_utt = within-voice mean square, sigma2_voice =
  (between - within) / n0, at least 0).

Under a design of S seeds, V voices per language and m utterances per voice:
Var = sigma2_seed / S + (1 / L^2) sum_l (sigma2_voice_l / V + sigma2_utt_l / (V m)). Components
estimated from three seeds and three voices per language are themselves uncertain (2 degrees of
freedom for the seeds); the numbers are a planning estimate, not a guarantee.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from distilxlsr.evaluate.stats import voice_groups


@dataclass
class Components:
    """Variance components of one linear statistic over L languages: `seed` (one seed's
    variance), and per language `voice` and `utterance` (in PER units squared, before the 1/L²
    of the macro mean); `utterances` the languages' test sizes."""

    seed: float
    voice: list[float]
    utterance: list[float]
    utterances: list[int]

    def variance(self, seeds: int, voices: int, per_voice: float | None = None) -> float:
        """The statistic's variance with `seeds` seeds, `voices` test voices per language and
        `per_voice` utterances each (default: each language's present test size spread over
        the voices)."""
        languages = len(self.voice)
        total = 0.0
        for voice, utterance, n in zip(self.voice, self.utterance, self.utterances, strict=True):
            m = per_voice if per_voice is not None else n / voices
            total += voice / voices + utterance / (voices * m)
        return self.seed / seeds + total / languages**2

    def shares(self, seeds: int, voices: int, per_voice: float | None = None) -> dict[str, float]:
        """How much of that variance each level contributes (fractions summing to 1)."""
        languages = len(self.voice)
        parts = {
            "seed": self.seed / seeds,
            "voice": sum(v / voices for v in self.voice) / languages**2,
            "utterance": sum(
                u / (voices * (per_voice if per_voice is not None else n / voices))
                for u, n in zip(self.utterance, self.utterances, strict=True)
            )
            / languages**2,
        }
        total = sum(parts.values())
        return {k: (v / total if total > 0 else 0.0) for k, v in parts.items()}


def components(
    edits: Sequence[np.ndarray],
    phones: Sequence[np.ndarray],
    voices: Sequence[Sequence[str]],
    gradient: Sequence[float],
) -> Components:
    """The variance components of sum_k gradient[k] · macro PER_k over the languages given.

    `edits[l]` (M, n_l, S), `phones[l]` (n_l,), `voices[l]` (n_l,) as for `bootstrap_per`;
    every language needs at least two voices and S at least two seeds."""
    g = np.asarray(gradient, dtype=np.float64)
    per_seed = []
    voice, utterance, sizes = [], [], []
    for e, p, v in zip(edits, phones, voices, strict=True):
        e = np.asarray(e, dtype=np.float64)
        p = np.asarray(p, dtype=np.float64)
        if e.shape[0] != len(g) or e.shape[2] < 2:
            raise ValueError(f"edits {e.shape}: need {len(g)} models and at least 2 seeds")
        groups = voice_groups(v, len(p))
        if groups is None or len(groups) < 2:
            raise ValueError("every language needs at least two named voices")
        per_seed.append(g @ (e.sum(axis=1) / p.sum()))  # (S,): the statistic's term per seed
        rates = e.sum(axis=(1, 2)) / (e.shape[2] * p.sum())  # (M,)
        mean_edits = e.mean(axis=2)  # (M, n)
        w = g @ (mean_edits - rates[:, None] * p[None, :]) / p.mean()  # (n,)
        b, u = one_way(w, groups)
        voice.append(b)
        utterance.append(u)
        sizes.append(len(p))
    by_seed = np.mean(per_seed, axis=0)  # (S,): the macro statistic per seed
    return Components(float(np.var(by_seed, ddof=1)), voice, utterance, sizes)


def one_way(values: np.ndarray, groups: list[np.ndarray]) -> tuple[float, float]:
    """(between-group, within-group) variance components of a one-way random-effects model by
    the method of moments (unbalanced groups; the between component floored at 0)."""
    n, k = len(values), len(groups)
    means = np.array([values[idx].mean() for idx in groups])
    sizes = np.array([len(idx) for idx in groups], dtype=np.float64)
    within = sum(float(((values[idx] - values[idx].mean()) ** 2).sum()) for idx in groups)
    ms_within = within / (n - k) if n > k else 0.0
    ms_between = float((sizes * (means - values.mean()) ** 2).sum()) / (k - 1)
    n0 = (n - float((sizes**2).sum()) / n) / (k - 1)
    return max(0.0, (ms_between - ms_within) / n0), ms_within


def detectable(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true effect a two-sided test at `alpha` detects with probability `power`,
    for an estimate with standard error `se` (normal approximation)."""
    z = NormalDist()
    return (z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * se


def gain_gradient(floor: float, model: float, reference: float) -> list[float]:
    """d gain retained / d (floor, model, reference) at these macro PERs."""
    gain = floor - reference
    return [(model - reference) / gain**2, -1 / gain, (floor - model) / gain**2]


def rel_gap_gradient(model: float, reference: float) -> list[float]:
    """d (model / reference − 1) / d (model, reference)."""
    return [1 / reference, -model / reference**2]
