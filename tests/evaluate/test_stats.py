"""Bootstrap statistics on small hand-made edit counts (evaluate/stats.py)."""

import numpy as np
import pytest

from distilxlsr.evaluate.stats import (
    HIERARCHICAL,
    UTTERANCE,
    PerSamples,
    bootstrap_per,
    describe_resampling,
    gain_retained,
    gain_retained_interval,
    hierarchical_counts,
    holm,
    holm_levels,
    interval,
    p_value,
    paired_comparisons,
    relative_gap,
    resample_counts,
    statistics,
    voice_groups,
    voice_of,
)


def _edits(*models):
    """(M, n, S) edit counts from one list of per-utterance counts (one seed) per model."""
    return np.array([[[e] for e in model] for model in models])


def test_point_per_is_total_edits_over_total_phones_mean_over_seeds():
    phones = [np.array([4, 6])]
    # Model 0: seed 0 makes 1 + 2 edits, seed 1 makes 0 + 5: PERs 0.3 and 0.5, mean 0.4.
    edits = [np.array([[[1, 0], [2, 5]]])]
    per = bootstrap_per(edits, phones, resamples=200)
    assert per.point[0, 0] == pytest.approx(0.4)
    assert per.samples.shape == (1, 1, 200)


def test_resample_counts_draw_n_with_replacement():
    counts = resample_counts(7, 500, np.random.default_rng(3))
    assert counts.shape == (500, 7) and (counts.sum(axis=1) == 7).all()
    assert (counts == 0).any() and (counts > 1).any()  # with replacement, not a permutation
    assert abs(counts.mean() - 1.0) < 0.05  # every item equally likely


def test_interval_holds_the_true_rate_and_is_reproducible():
    # 200 utterances of 10 phones, each phone wrong with probability 0.2: the true PER is 0.2.
    # Over 100 such test sets a 95% interval must hold it about 95 times (not 60, not always
    # because it is wide).
    rng = np.random.default_rng(0)
    held, widths = 0, []
    for _ in range(100):
        per = bootstrap_per([rng.binomial(10, 0.2, size=(1, 200, 1))], [np.full(200, 10)])
        lo, hi = interval(per.samples[0, 0])
        held += lo < 0.2 < hi
        widths.append(hi - lo)
        assert lo <= per.point[0, 0] <= hi
    assert 88 <= held <= 100 and max(widths) < 0.07, (held, max(widths))
    edits = [rng.binomial(10, 0.2, size=(1, 200, 1))]
    per = bootstrap_per(edits, [np.full(200, 10)])
    again = bootstrap_per(edits, [np.full(200, 10)])
    assert np.array_equal(per.samples, again.samples)  # a fixed seed: the same intervals
    other = bootstrap_per(edits, [np.full(200, 10)], seed=1)
    assert not np.array_equal(per.samples, other.samples)


def test_a_language_without_errors_has_the_interval_zero():
    per = bootstrap_per([_edits([0, 0, 0])], [np.array([3, 4, 5])], resamples=100)
    assert interval(per.samples[0, 0]) == [0.0, 0.0]


def test_resamples_are_paired_across_models():
    # Model 1 makes exactly twice model 0's edits on every utterance, so on every resample its
    # PER is exactly twice as high: only paired resamples (the same utterances for both) do that.
    rng = np.random.default_rng(1)
    a = rng.integers(0, 5, size=30)
    per = bootstrap_per([_edits(a, 2 * a)], [np.full(30, 10)], resamples=300)
    assert np.allclose(per.samples[1, 0], 2 * per.samples[0, 0])
    assert per.samples[0, 0].std() > 0


def test_seeds_are_resampled_too():
    # One utterance (always drawn); two seeds with 0 and 4 edits: resampled PERs 0, 0.5 or 1.
    per = bootstrap_per([np.array([[[0, 4]]])], [np.array([4])], resamples=400)
    assert per.point[0, 0] == 0.5
    assert set(np.round(per.samples[0, 0], 6)) == {0.0, 0.5, 1.0}


def test_p_value_is_two_sided_and_floored():
    assert p_value(np.zeros(100)) == 1.0
    assert p_value(np.linspace(1, 2, 100)) == pytest.approx(0.01)  # all above zero: 1/B
    assert p_value(np.array([-1.0] * 10 + [1.0] * 90)) == pytest.approx(0.2)
    assert p_value(np.array([-1.0] * 90 + [1.0] * 10)) == pytest.approx(0.2)


def test_holm_on_known_p_values():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == [0.02]


def test_holm_levels_step_down_from_bonferroni():
    # Sorted 0.01 (k=1), 0.03 (k=2), 0.04 (k=3) of m=3: levels 1 - 0.05/3, 1 - 0.05/2, 0.95.
    levels = holm_levels([0.01, 0.04, 0.03])
    assert levels == pytest.approx([1 - 0.05 / 3, 0.95, 1 - 0.05 / 2])
    assert holm_levels([0.2], level=0.9) == pytest.approx([0.9])


def test_paired_comparisons_per_tier_with_holm_over_the_family():
    # Three languages, two tiers; model a is 1 edit worse than b on every utterance of x and y
    # (tier one) and equal on z (tier two); c equals b everywhere.
    rng = np.random.default_rng(0)
    phones, edits = [], []
    for lang in range(3):
        p = rng.integers(5, 10, size=30)
        b = rng.integers(0, 3, size=30)
        a = b + (1 if lang < 2 else 0)
        phones.append(p)
        edits.append(_edits(a, b, b))
    per = bootstrap_per(edits, phones, resamples=400)
    tiers = {"one": ["x", "y"], "two": ["z"]}
    rows = paired_comparisons(
        ["a", "b", "c"], ["x", "y", "z"], tiers, per, [("a", "b"), ("c", "b")]
    )
    assert [(r["a"], r["b"], r["tier"], r["languages"]) for r in rows] == [
        ("a", "b", "one", 2), ("a", "b", "two", 1), ("c", "b", "one", 2), ("c", "b", "two", 1)
    ]  # fmt: skip
    one = rows[0]
    expected = np.mean([30 / phones[0].sum(), 30 / phones[1].sum()])
    assert one["diff"] == pytest.approx(expected)
    assert one["ci"][0] > 0 and one["ci_holm"][0] < one["ci"][0] < one["ci"][1] < one["ci_holm"][1]
    assert one["p"] == pytest.approx(1 / 400) and one["p_holm"] == pytest.approx(4 / 400)
    assert one["level_holm"] == pytest.approx(1 - 0.05 / 4)  # the smallest p of four: Bonferroni
    for row in rows[1:]:  # no difference at all: p 1, and the interval is the point zero
        assert row["diff"] == 0 and row["p"] == 1.0 and row["p_holm"] == 1.0
        assert row["ci"] == [0.0, 0.0] and row["ci_holm"] == [0.0, 0.0]
    assert [r["p_holm"] for r in rows] == pytest.approx(holm([r["p"] for r in rows]))


def test_gain_retained():
    assert gain_retained(0.5, 0.2, 0.2) == 1.0  # as good as the reference
    assert gain_retained(0.5, 0.5, 0.2) == 0.0  # no better than the floor
    assert gain_retained(0.5, 0.35, 0.2) == pytest.approx(0.5)
    assert gain_retained(0.2, 0.3, 0.2) is None  # the floor is not worse than the reference
    assert gain_retained(0.1, 0.3, 0.2) is None


def test_gain_retained_interval():
    rng = np.random.default_rng(4)
    floor = 0.5 + 0.01 * rng.standard_normal(500)
    reference = 0.2 + 0.01 * rng.standard_normal(500)
    assert gain_retained_interval(floor, reference, reference) == pytest.approx([1.0, 1.0])
    assert gain_retained_interval(floor, floor, reference) == pytest.approx([0.0, 0.0])
    # A floor no better than the reference on many resamples: no bounded interval.
    close = reference + 0.005 + 0.01 * rng.standard_normal(500)
    assert gain_retained_interval(close, floor, reference) is None
    assert gain_retained_interval(reference + 0.005, floor, reference) is not None


def test_relative_gap_only_against_a_reference_of_ten_percent_or_more():
    assert relative_gap(0.15, 0.10) == pytest.approx(0.5)
    assert relative_gap(0.02, 0.01) is None
    assert relative_gap(0.0999, 0.0999) is None


def _two_language_stats(comparisons=None):
    phones = [np.full(40, 10), np.full(40, 10)]
    rng = np.random.default_rng(5)
    base = [rng.binomial(10, 0.1, size=40), rng.binomial(10, 0.3, size=40)]
    edits = [
        np.stack([b, b, np.minimum(10, b + 4), np.minimum(10, b + 2)])[..., None] for b in base
    ]
    per = bootstrap_per(edits, phones, resamples=500)
    names = ["ref", "same", "logmel", "half"]
    return per, statistics(
        names, ["x", "y"], {"heard": ["x"], "unheard": ["y"]}, per, comparisons, floor="logmel"
    )


def test_statistics_of_models():
    per, stats = _two_language_stats()
    ref, same, half = stats["models"]["ref"], stats["models"]["same"], stats["models"]["half"]
    # Identical models: difference exactly 0 with interval [0, 0], p 1.
    first = stats["comparisons"][0]
    assert (first["a"], first["b"]) == ("same", "ref")
    assert first["diff"] == 0.0 and first["ci"] == [0.0, 0.0] and first["p"] == 1.0
    assert [(c["a"], c["b"]) for c in stats["comparisons"]] == [
        ("same", "ref"),
        ("logmel", "ref"),
        ("half", "ref"),
    ]
    logmel_row = stats["comparisons"][1]
    assert logmel_row["diff"] > 0.3 and logmel_row["ci"][0] > 0
    assert logmel_row["p"] == pytest.approx(1 / 500) and logmel_row["p_holm"] == pytest.approx(
        3 / 500
    )
    # Tiers and "all": macro PER, std across languages, worst language.
    assert set(ref["tiers"]) == {"heard", "unheard", "all"}
    assert ref["tiers"]["heard"]["per"] == pytest.approx(per.point[0, 0])
    assert ref["tiers"]["all"]["per"] == pytest.approx(per.point[0].mean())
    assert ref["tiers"]["all"]["std"] == pytest.approx(abs(per.point[0, 0] - per.point[0, 1]) / 2)
    assert ref["tiers"]["all"]["worst"] == ["y", pytest.approx(per.point[0, 1])]
    assert ref["tiers"]["all"]["languages"] == 2 and ref["per_ci"] == ref["tiers"]["all"]["per_ci"]
    lo, hi = ref["per_ci_by_lang"]["x"]
    assert lo <= per.point[0, 0] <= hi
    # Gain retained: only for models other than the reference and the floor.
    assert "gain_retained" not in ref and "gain_retained" not in stats["models"]["logmel"]
    assert same["gain_retained"] == {"heard": 1.0, "unheard": 1.0, "all": 1.0}
    assert same["gain_retained_ci"]["all"] == pytest.approx([1.0, 1.0])
    assert same["gain_retained_by_lang"] == {"x": 1.0, "y": 1.0}
    assert 0.3 < half["gain_retained"]["all"] < 0.7
    lo, hi = half["gain_retained_ci"]["all"]
    assert lo < half["gain_retained"]["all"] < hi
    assert stats["notes"] == []


def test_statistics_with_listed_comparisons_and_a_floor_not_worse():
    _, stats = _two_language_stats([("half", "logmel"), ("same", "ref")])
    assert [(c["a"], c["b"]) for c in stats["comparisons"]] == [("half", "logmel"), ("same", "ref")]
    ps = [c["p"] for c in stats["comparisons"]]
    assert [c["p_holm"] for c in stats["comparisons"]] == pytest.approx(holm(ps))
    # The reference as its own floor's equal: gain retained is null, with a note.
    point = np.array([[0.2], [0.3], [0.2]])
    per = PerSamples(point, np.repeat(point[..., None], 100, axis=2))
    stats = statistics(["ref", "m", "logmel"], ["x"], {}, per, floor="logmel")
    assert stats["models"]["m"]["gain_retained"] == {"all": None}
    assert stats["models"]["m"]["gain_retained_ci"] == {"all": None}
    assert stats["models"]["m"]["gain_retained_by_lang"] == {"x": None}
    assert any("not worse than the reference" in note for note in stats["notes"])


# ---------------------------------------------------------------------------------------------
# The hierarchical bootstrap: seeds once for every language, voices, utterances within voices.


def test_voice_of_a_speaker():
    assert voice_of("eu+m7-p38-r170") == "eu+m7"  # the synthetic corpus: voice+variant
    assert voice_of("en-gb-scotland+f2-p50-r130") == "en-gb-scotland+f2"
    assert voice_of("eu+Annie-p25-r170") == "eu+Annie"  # corpus v3's named variants
    assert voice_of("spk12") == "spk12"  # any other speaker is its own unit
    assert voice_of("") is None and voice_of(None) is None


def test_voice_groups():
    groups = voice_groups(["b", "a", "b", "c", "a"], 5)
    assert [g.tolist() for g in groups] == [[0, 2], [1, 4], [3]]  # first appearance order
    assert voice_groups(None, 3) is None and voice_groups([None, ""], 2) is None
    with pytest.raises(ValueError, match="1 of 3 utterances name no voice"):
        voice_groups(["a", None, "b"], 3)
    with pytest.raises(ValueError, match="2 voices given for 3 utterances"):
        voice_groups(["a", "b"], 3)


def test_hierarchical_counts_draw_voices_then_their_utterances():
    groups = [np.array([0, 1, 2]), np.array([3]), np.array([4, 5])]
    counts = hierarchical_counts(groups, 6, 2000, np.random.default_rng(0))
    assert counts.shape == (2000, 6)
    # A voice drawn c times brings c × its size of draws: per voice a multiple of its size, and
    # three voices drawn in all.
    per_voice = np.stack([counts[:, g].sum(axis=1) for g in groups], axis=1)
    sizes = np.array([3, 1, 2])
    assert (per_voice % sizes == 0).all() and ((per_voice // sizes).sum(axis=1) == 3).all()
    assert (per_voice == 0).any(axis=1).mean() > 0.5  # a voice is often not drawn at all
    # Within a drawn voice its utterances are drawn with replacement: not always once each.
    first = counts[per_voice[:, 0] == 3][:, :3]
    assert (first != 1).any() and (first.sum(axis=1) == 3).all()
    assert abs(counts.mean() - 1.0) < 0.05  # every utterance equally likely
    plain = hierarchical_counts(None, 6, 10, np.random.default_rng(0))
    assert np.array_equal(plain, resample_counts(6, 10, np.random.default_rng(0)))


def test_voices_are_resampled_as_units():
    # Two voices of 10 utterances: one makes no errors, the other all. Drawing voices, a
    # resample holds each voice 0, 1 or 2 times: PER 0, 0.5 or 1, nothing in between.
    edits = _edits([0] * 10 + [5] * 10)
    phones = [np.full(20, 5)]
    voices = [["a"] * 10 + ["b"] * 10]
    per = bootstrap_per([edits], phones, resamples=400, voices=voices)
    assert set(np.round(per.samples[0, 0], 6)) == {0.0, 0.5, 1.0}
    # Utterances as the units (the previous scheme, or no voices named): many values between.
    for per in (
        bootstrap_per([edits], phones, resamples=400, voices=voices, scheme=UTTERANCE),
        bootstrap_per([edits], phones, resamples=400),
    ):
        assert len(set(np.round(per.samples[0, 0], 6))) > 5
        assert interval(per.samples[0, 0]) != [0.0, 1.0]


def test_seeds_are_drawn_once_for_every_language():
    # Two languages of one utterance each, each with the same two seeds: seed 0 makes no error,
    # seed 1 all. A seed is one network on both languages, so in every resample both languages
    # draw the same seeds and have the same PER; drawn anew per language they differ.
    edits = np.array([[[0, 4]]])  # (M=1, n=1, S=2)
    phones = [np.array([4]), np.array([4])]
    per = bootstrap_per([edits, edits], phones, resamples=300)
    assert np.array_equal(per.samples[0, 0], per.samples[0, 1])
    old = bootstrap_per([edits, edits], phones, resamples=300, scheme=UTTERANCE)
    assert not np.array_equal(old.samples[0, 0], old.samples[0, 1])
    # The macro PER's spread: the shared seeds do not average out across languages.
    assert per.macro([0, 1])[1].std() > 1.2 * old.macro([0, 1])[1].std()
    with pytest.raises(ValueError, match="every language needs the same seeds"):
        bootstrap_per([edits, np.array([[[0, 1, 2]]])], phones)
    with pytest.raises(ValueError, match="scheme 'voices'"):
        bootstrap_per([edits], phones[:1], scheme="voices")


def test_the_resampling_is_recorded():
    edits = [np.ones((2, 4, 3)), np.ones((2, 2, 3))]
    phones = [np.full(4, 5), np.full(2, 5)]
    per = bootstrap_per(edits, phones, resamples=100, voices=[["a", "a", "b", "c"], None])
    record = per.resampling(["x", "y"])
    assert record == {
        "scheme": HIERARCHICAL,
        "units": ["seed", "voice", "utterance"],
        "seeds": 3,
        "seeds_drawn": "once per resample for every language",
        "voices": {"x": 3, "y": None},
    }
    assert per.resampling(["x", "y"], ["y"])["voices"] == {"y": None}
    assert describe_resampling(record) == (
        "seeds (drawn once for every language), test voices within each language and "
        "utterances within each voice (utterances as independent units in y: no voices named)"
    )
    one_seed = bootstrap_per([e[..., :1] for e in edits], phones, resamples=100)
    assert one_seed.resampling(["x", "y"])["units"] == ["utterance"]
    assert describe_resampling(one_seed.resampling(["x", "y"])) == "test utterances"
    old = bootstrap_per(edits, phones, resamples=100, scheme=UTTERANCE).resampling(["x", "y"])
    assert old["units"] == ["seed", "utterance"] and "voices" not in old
    assert describe_resampling(old) == "seeds and test utterances, drawn anew within each language"


def _simulated_coverage(scheme: str, replications: int = 150) -> float:
    """Share of 95% intervals of one model's macro PER over 3 languages that hold its true
    value, when voices (8 per language, 8 utterances each) and seeds (8, one network on every
    language) differ far more than utterances do. Rates are log-normal around 0.3 with mean
    exactly 0.3, edits Poisson: the true macro PER is 0.3."""
    rng = np.random.default_rng(7)
    languages, voices, per_voice, seeds = 3, 8, 8, 8
    n = voices * per_voice
    sd_voice, sd_seed, sd_utt = 0.4, 0.15, 0.05
    held = 0
    for r in range(replications):
        seed_effect = rng.normal(0, sd_seed, size=seeds)  # shared by every language
        edits, phones, names = [], [], []
        for _ in range(languages):
            voice = np.repeat(rng.normal(0, sd_voice, size=voices), per_voice)
            log_rate = voice[:, None] + seed_effect[None, :] + rng.normal(0, sd_utt, (n, 1))
            rate = 0.3 * np.exp(log_rate - (sd_voice**2 + sd_seed**2 + sd_utt**2) / 2)
            p = rng.integers(20, 40, size=n)
            edits.append(rng.poisson(rate * p[:, None])[None].astype(float))
            phones.append(p)
            names.append(np.repeat(np.arange(voices), per_voice).astype(str).tolist())
        per = bootstrap_per(edits, phones, resamples=300, seed=r, voices=names, scheme=scheme)
        lo, hi = interval(per.macro(range(languages))[1][0])
        held += lo <= 0.3 <= hi
    return held / replications


def test_hierarchical_intervals_cover_where_utterance_intervals_do_not():
    # Voice and seed effects much larger than utterance noise: intervals that treat utterances
    # as independent are far too narrow; the hierarchical ones hold the truth about 95% of the
    # time (150 replications: ± 2 points of sampling error; 8 voices and 8 seeds, the next
    # replication's design, where the bootstrap's own small-sample shortfall is small).
    hierarchical = _simulated_coverage(HIERARCHICAL)
    utterance = _simulated_coverage(UTTERANCE)
    assert 0.88 <= hierarchical <= 0.99, hierarchical
    assert utterance <= 0.70, utterance
