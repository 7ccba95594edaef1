"""Variance components and detectable effects (evaluate/power.py) on data with known parts."""

import numpy as np
import pytest

from distilxlsr.evaluate.power import (
    Components,
    components,
    detectable,
    gain_gradient,
    one_way,
    rel_gap_gradient,
)


def test_one_way_recovers_known_components():
    # 400 groups of 25: between-group sd 2, within sd 1.
    rng = np.random.default_rng(0)
    groups = [np.arange(k * 25, (k + 1) * 25) for k in range(400)]
    values = np.repeat(rng.normal(0, 2, 400), 25) + rng.normal(0, 1, 400 * 25)
    between, within = one_way(values, groups)
    assert between == pytest.approx(4.0, rel=0.15) and within == pytest.approx(1.0, rel=0.05)
    # No group effect: the between component is floored at zero, not negative.
    flat = rng.normal(0, 1, 60)
    assert one_way(flat, [np.arange(0, 30), np.arange(30, 60)])[0] >= 0.0


def test_variance_scales_with_the_design():
    c = Components(seed=0.8, voice=[0.3, 0.6], utterance=[2.0, 4.0], utterances=[20, 40])
    # seed / S + (1 / L²) Σ (voice / V + utterance / (V m)), m = n / V by default.
    expected = 0.8 / 4 + ((0.3 / 2 + 2.0 / 20) + (0.6 / 2 + 4.0 / 40)) / 4
    assert c.variance(4, 2) == pytest.approx(expected)
    assert c.variance(4, 2, per_voice=5) == pytest.approx(
        0.8 / 4 + ((0.3 / 2 + 2.0 / 10) + (0.6 / 2 + 4.0 / 10)) / 4
    )
    shares = c.shares(4, 2)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["seed"] == pytest.approx(0.2 / expected)


def test_detectable_effect_and_gradients():
    assert detectable(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert detectable(0.5, alpha=0.025) == pytest.approx(0.5 * (2.241403 + 0.841621), abs=1e-5)
    # Gradients against finite differences.
    f, m, r, h = 0.6, 0.45, 0.4, 1e-6

    def gain(x):
        return (x[0] - x[1]) / (x[0] - x[2])

    point = np.array([f, m, r])
    numeric = [(gain(point + h * e) - gain(point - h * e)) / (2 * h) for e in np.eye(3)]
    assert gain_gradient(f, m, r) == pytest.approx(numeric, rel=1e-5)
    assert rel_gap_gradient(m, r) == pytest.approx([1 / r, -m / r**2])


def test_components_of_simulated_records():
    # Two models, 6 languages of 10 voices × 20 utterances, 4 seeds. The difference between the
    # models has a seed effect shared by every language (sd 0.02), a voice effect (sd 0.05) and
    # per-utterance noise; the estimated seed and voice components come out near the truth.
    rng = np.random.default_rng(1)
    langs, voices, per_voice, seeds = 6, 10, 20, 4
    n = voices * per_voice
    seed_effect = rng.normal(0, 0.02, seeds)
    edits, phones, names = [], [], []
    for _ in range(langs):
        p = np.full(n, 50)
        voice = np.repeat(rng.normal(0, 0.05, voices), per_voice)
        base = rng.binomial(50, 0.4, size=(n, seeds)).astype(float)
        other = base + 50 * (voice[:, None] + seed_effect[None, :]) + rng.normal(0, 1, (n, seeds))
        edits.append(np.stack([other, base]))
        phones.append(p)
        names.append([f"v{k}" for k in np.repeat(np.arange(voices), per_voice)])
    c = components(edits, phones, names, [1, -1])
    assert c.seed == pytest.approx(np.var(seed_effect, ddof=1), rel=0.1)
    assert np.mean(c.voice) == pytest.approx(0.05**2, rel=0.5)
    assert c.utterances == [n] * langs
    with pytest.raises(ValueError, match="at least two named voices"):
        components(edits[:1], phones[:1], [["v"] * n], [1, -1])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        components([e[..., :1] for e in edits[:1]], phones[:1], names[:1], [1, -1])
