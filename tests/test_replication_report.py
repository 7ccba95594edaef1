"""Replication v2's statistics and report (experiments/reproduce_mini.py) on hand-made records:
pairing by seed and utterance, the per-teacher analyses, the claims' verdicts and the report."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import script_module

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "reproduce_mini.py"

# Two languages per tier, listed out of tier order: the tiers come back in TIER_ORDER.
TIER_OF = {
    "eu": "unheard",
    "es": "label",
    "it": "heard",
    "ka": "unheard",
    "fr": "label",
    "pl": "heard",
}
LANGS = list(TIER_OF)
UNHEARD = ["eu", "ka"]
UTTERANCES = 20
VOICES = 4  # test voices per language, 5 utterances each
SEEDS = (0, 1, 2)
_rng = np.random.default_rng(0)
PHONES = {lang: _rng.integers(10, 30, size=UTTERANCES).tolist() for lang in LANGS}
VARIANTS = ("method", "no-shuffle", "segment-shuffle", "first4", "random4")

# Edit rates (edits per reference phone) of a run where every claim can be decided: log-mel is
# far worse than every teacher, T1's and T2's students are as good as their teachers, and T-EN's
# method student is much better than T-EN on every utterance.
LOGMEL = 0.7
CLEAR = {
    "logmel": LOGMEL,
    "T1": 0.2,
    **{f"T1-{v}": 0.2 for v in VARIANTS},
    "T2": 0.3,
    **{f"T2-{v}": 0.3 for v in VARIANTS},
    "T-EN": 0.5,
    "T-EN-method": 0.3,
    "T-EN-no-shuffle": 0.5,
}
FINETUNED = ("T1", "T1-method", "T1-no-shuffle")


@pytest.fixture(scope="module")
def mini():
    with script_module(SCRIPT) as module:
        yield module


def _ids_sha256(lang: str) -> str:
    ids = "\n".join(f"{lang}-{i:03d}" for i in range(UTTERANCES))
    return hashlib.sha256(ids.encode()).hexdigest()


def voices_of(lang: str) -> list[str]:
    """The test voice of each utterance of `lang` (VOICES voices, utterances dealt in turn)."""
    return [f"{lang}+v{i % VOICES}" for i in range(UTTERANCES)]


def fake_record(
    name: str,
    seed: int,
    rate: float | dict,
    langs=LANGS,
    mode: str = "probe",
    params=None,
    voices: bool = True,
) -> dict:
    """A record as the script's make_record writes it. Each utterance has floor(rate × phones)
    edits plus 0 or 1 drawn from a generator seeded by the model's name and the seed; `rate` is
    one number or one per tier. `voices`: whether the record names each utterance's voice (v2's
    records did not)."""
    rng = np.random.default_rng([seed, *name.encode()])
    languages = {}
    for lang in langs:
        tier = TIER_OF[lang]
        r = rate[tier] if isinstance(rate, dict) else rate
        phones = PHONES[lang]
        edits = [
            int(r * p) + int(j)
            for p, j in zip(phones, rng.integers(0, 2, len(phones)), strict=True)
        ]
        languages[lang] = {
            "tier": tier,
            "per": sum(edits) / sum(phones),
            "ids_sha256": _ids_sha256(lang),
            "phones": phones,
            "edits": edits,
            "seconds": 1.0,
        }
        if voices:
            languages[lang]["voices"] = voices_of(lang)
    teacher = (
        None if name == "logmel" else next(t for t in ("T-EN", "T1", "T2") if name.startswith(t))
    )
    if params is None:
        params = 0 if name == "logmel" else 9_000_000 if name == teacher else 4_500_000
    return {
        "name": name,
        "seed": seed,
        "mode": mode,
        "split": "test",
        "params": params,
        "per_mean": float(np.mean([v["per"] for v in languages.values()])),
        "config": {"steps": 40, "lr": 1e-4} if mode == "finetune" else {"steps": 3},
        "teacher": teacher,
        "variant": "logmel" if teacher is None else name[len(teacher) + 1 :] or "teacher",
        "languages": languages,
    }


def write_runs(results: Path, rates: dict, seeds=SEEDS, **kwargs) -> Path:
    """Records of every model in `rates` at every seed, as <name>-s<seed>.json."""
    results.mkdir(parents=True, exist_ok=True)
    for name, rate in rates.items():
        for seed in seeds:
            record = fake_record(name, seed, rate, **kwargs)
            (results / f"{name}-s{seed}.json").write_text(json.dumps(record) + "\n")
    return results


def hand_per(records: dict, name: str, lang: str, seeds) -> float:
    """PER of one model on one language: total edits / total phones, mean over seeds."""
    rates = [
        sum(records[(name, s)]["languages"][lang]["edits"])
        / sum(records[(name, s)]["languages"][lang]["phones"])
        for s in seeds
    ]
    return sum(rates) / len(rates)


def hand_macro(records: dict, name: str, langs, seeds) -> float:
    return sum(hand_per(records, name, lang, seeds) for lang in langs) / len(langs)


# ---------------------------------------------------------------------------------------------
# samples(): pairing by seed and utterance.


def test_samples_point_per_is_edits_over_phones_mean_over_seeds(mini, tmp_path):
    records = mini.load_records(write_runs(tmp_path / "runs", CLEAR))
    names = ["T1", "logmel", "T1-method"]
    langs, tiers, per = mini.samples(records, names, list(SEEDS))
    assert langs == LANGS
    assert tiers == {"label": ["es", "fr"], "heard": ["it", "pl"], "unheard": ["eu", "ka"]}
    assert list(tiers) == ["label", "heard", "unheard"]  # TIER_ORDER, not the records' order
    assert per.point.shape == (3, 6) and per.samples.shape == (3, 6, 1000)
    for m, name in enumerate(names):
        for i, lang in enumerate(LANGS):
            assert per.point[m, i] == pytest.approx(hand_per(records, name, lang, SEEDS))
    # By hand for one model and language: edits summed over 3 seeds / (3 × phones).
    ka = [records[("T1-method", s)]["languages"]["ka"]["edits"] for s in SEEDS]
    expected = sum(map(sum, ka)) / (3 * sum(PHONES["ka"]))
    assert per.point[2, LANGS.index("ka")] == pytest.approx(expected)
    # A subset of the seeds uses only those seeds.
    _, _, per01 = mini.samples(records, names, [0, 1])
    assert per01.point[0, 0] == pytest.approx(hand_per(records, "T1", "eu", [0, 1]))


def test_samples_refuses_records_of_other_utterances(mini, tmp_path):
    results = write_runs(tmp_path / "runs", {"T1": 0.2, "T1-method": 0.2}, seeds=(0, 1))
    path = results / "T1-method-s1.json"
    record = json.loads(path.read_text())
    record["languages"]["ka"]["ids_sha256"] = hashlib.sha256(b"other").hexdigest()
    path.write_text(json.dumps(record))
    records = mini.load_records(results)
    with pytest.raises(SystemExit, match=r"^T1-method seed 1 scored other ka test utterances "):
        mini.samples(records, ["T1", "T1-method"], [0, 1])
    # The other seed alone still pairs.
    mini.samples(records, ["T1", "T1-method"], [0])


def test_samples_refuses_records_of_other_languages(mini, tmp_path):
    results = write_runs(tmp_path / "runs", {"T1": 0.2}, seeds=(0,))
    write_runs(results, {"T1-method": 0.2}, seeds=(0,), langs=LANGS[:-1])
    records = mini.load_records(results)
    message = (
        f"T1-method seed 0 was scored on {LANGS[:-1]}, not on all of T1 seed 0's {LANGS}: "
        "the results cannot be paired"
    )
    with pytest.raises(SystemExit) as err:
        mini.samples(records, ["T1", "T1-method"], [0])
    assert str(err.value) == message
    # More languages, or the same in another order, pair on the first record's languages.
    langs, tiers, _ = mini.samples(records, ["T1-method", "T1"], [0])
    assert langs == LANGS[:-1]
    write_runs(results, {"T1-method": 0.2}, seeds=(0,), langs=LANGS[::-1])
    records = mini.load_records(results)
    langs, _, per = mini.samples(records, ["T1", "T1-method"], [0])
    assert langs == LANGS
    for i, lang in enumerate(LANGS):  # each language's own edits, whatever the record's order
        assert per.point[1, i] == pytest.approx(hand_per(records, "T1-method", lang, [0]))


# ---------------------------------------------------------------------------------------------
# analyse_teacher(): which seeds and students, and the headline numbers.


def test_analyse_teacher_uses_complete_seeds_and_lists_pending_students(mini, tmp_path):
    results = tmp_path / "runs"
    write_runs(results, {"T1": 0.2, "logmel": LOGMEL, "T1-segment-shuffle": 0.25}, seeds=SEEDS)
    write_runs(results, {"T1-method": 0.2, "T1-first4": 0.3}, seeds=(0, 1))  # no seed 2
    write_runs(results, {"T1-no-shuffle": 0.2}, seeds=(0,))  # only seed 0: pending
    # T1-random4: no record at all, pending too.
    records = mini.load_records(results)
    a = mini.analyse_teacher(records, "T1")
    assert a["teacher"] == "T1"
    assert a["seeds"] == [0, 1]  # seed 2 lacks the method's record
    assert a["models"] == ["T1", "logmel", "T1-method", "T1-segment-shuffle", "T1-first4"]
    assert a["pending"] == ["T1-no-shuffle", "T1-random4"]
    assert list(a["gain_retained"]) == ["T1-method", "T1-segment-shuffle", "T1-first4"]
    assert a["params"] == {
        "T1": 9_000_000,
        "logmel": 0,
        "T1-method": 4_500_000,
        "T1-segment-shuffle": 4_500_000,
        "T1-first4": 4_500_000,
    }
    # Seed 2 of T1, log-mel and segment-shuffle is left out of every number.
    for name in a["models"]:
        for lang in LANGS:
            assert a["per"][name]["by_lang"][lang] == pytest.approx(
                hand_per(records, name, lang, [0, 1])
            )
    assert a["test_size"]["eu"] == {"utterances": UTTERANCES, "phones": sum(PHONES["eu"])}
    # Comparisons: the method against the teacher, every other student against the method,
    # each on the three tiers and on all languages.
    pairs = {(r["a"], r["b"]) for r in a["comparisons"]}
    assert pairs == {
        ("T1-method", "T1"),
        ("T1-segment-shuffle", "T1-method"),
        ("T1-first4", "T1-method"),
    }
    assert len(a["comparisons"]) == 3 * 4


def test_analyse_teacher_is_none_without_a_complete_seed(mini, tmp_path):
    results = write_runs(tmp_path / "runs", {"T1": 0.2, "logmel": LOGMEL}, seeds=(0, 1))
    assert mini.analyse_teacher(mini.load_records(results), "T1") is None  # no method yet
    write_runs(results, {"T1-method": 0.2}, seeds=(2,))  # a seed the teacher lacks
    assert mini.analyse_teacher(mini.load_records(results), "T1") is None
    assert mini.analyse_teacher(mini.load_records(results), "T2") is None  # nothing of T2


def test_headline_gain_retained_and_relative_gap_by_hand(mini, tmp_path):
    rates = {
        "T1": {"label": 0.1, "heard": 0.2, "unheard": 0.3},
        "logmel": LOGMEL,
        "T1-method": {"label": 0.15, "heard": 0.3, "unheard": 0.5},
    }
    records = mini.load_records(write_runs(tmp_path / "runs", rates))
    a = mini.analyse_teacher(records, "T1")
    assert list(a["headline"]) == ["label", "heard", "unheard", "all"]
    for tier, langs in {**a["tiers"], "all": LANGS}.items():
        logmel, method, teacher = (
            hand_macro(records, n, langs, SEEDS) for n in ("logmel", "T1-method", "T1")
        )
        h = a["headline"][tier]
        assert h["gain_retained"] == pytest.approx((logmel - method) / (logmel - teacher))
        assert h["rel_gap"] == pytest.approx(method / teacher - 1)
        assert h["ci"][0] <= h["gain_retained"] <= h["ci"][1]
        assert h["rel_gap_ci"][0] <= h["rel_gap"] <= h["rel_gap_ci"][1]
        assert h["teacher_gain"] == pytest.approx(logmel - teacher)  # the ratio's denominator
        assert h["teacher_gain_ci"][0] <= h["teacher_gain"] <= h["teacher_gain_ci"][1]
        assert a["per"]["T1-method"]["tiers"][tier]["per"] == pytest.approx(method)
    # The rates were chosen so: about half the gain kept on the unheard tier.
    assert a["headline"]["unheard"]["gain_retained"] == pytest.approx(0.5, abs=0.1)


# ---------------------------------------------------------------------------------------------
# The verdicts.


@pytest.mark.parametrize(
    ("gain", "ci", "verdict"),
    [
        (0.90, [0.85, 0.95], "holds"),  # both bounds exactly at the targets
        (1.00, [0.97, 1.02], "holds"),
        (0.8999, [0.85, 0.95], "cannot tell at this size"),  # point just short
        (0.95, [0.8499, 1.0], "cannot tell at this size"),  # lower end just short
        (0.80, [0.70, 0.8999], "does not hold"),  # the whole interval below 90%
        (0.80, [0.70, 0.90], "cannot tell at this size"),  # reaches 90%
        (None, [0.9, 1.0], "cannot tell at this size"),
        (0.95, None, "cannot tell at this size"),  # no interval: log-mel not clearly worse
        (None, None, "cannot tell at this size"),
    ],
)
def test_keeps_verdict(mini, gain, ci, verdict):
    assert mini.keeps_verdict(gain, ci) == verdict


@pytest.mark.parametrize(
    ("p_holm", "diff", "verdict"),
    [
        (0.049, -0.01, "lower"),
        (0.049, 0.01, "higher"),
        (0.051, -0.01, "cannot tell"),
        (0.051, 0.01, "cannot tell"),
        (0.001, -0.2, "lower"),
        (1.0, 0.3, "cannot tell"),
    ],
)
def test_direction_verdict(mini, p_holm, diff, verdict):
    assert mini.direction_verdict({"p_holm": p_holm, "diff": diff}) == verdict


def test_direction_verdict_at_exactly_five_percent(mini):
    assert mini.direction_verdict({"p_holm": 5 * 0.01, "diff": -0.01}) == "cannot tell"


def _claims(mini, tmp_path, rates: dict) -> list[dict]:
    records = mini.load_records(write_runs(tmp_path / "runs", rates))
    analyses = {t: mini.analyse_teacher(records, t) for t in ("T1", "T2", "T-EN")}
    return mini.claims({t: a for t, a in analyses.items() if a is not None})


def test_claims_hold_with_t2_not_measured(mini, tmp_path):
    rates = {n: r for n, r in CLEAR.items() if not n.startswith("T2")}
    one, two, three = _claims(mini, tmp_path, rates)
    phones = sum(sum(PHONES[lang]) for lang in LANGS if TIER_OF[lang] == "unheard")
    basis = f"(3 seeds, 2 languages, {phones} test phones)"
    assert one["verdict"] == "holds"
    assert one["evidence"].startswith("T1: the method's student keeps ")
    assert f"on the unheard tier {basis}" in one["evidence"]
    assert two["verdict"] == "not measured yet"
    assert two["evidence"].endswith("; T2: not measured yet")
    assert three["verdict"] == "holds"
    assert three["evidence"].startswith("T-EN's method student − T-EN on the unheard tier: -")
    # T-EN-no-shuffle (0.5) is worse than the method (0.3): the shuffle's own effect is reported.
    assert f"{basis}; the shuffle's own effect there (no shuffle − method): +" in three["evidence"]
    assert three["evidence"].endswith(": shuffling lowers PER")


def test_claims_all_hold(mini, tmp_path):
    assert [c["verdict"] for c in _claims(mini, tmp_path, CLEAR)] == ["holds"] * 3


def test_claim_two_fails_when_t2s_student_is_no_better_than_logmel(mini, tmp_path):
    rates = CLEAR | {"T2-method": LOGMEL}
    verdicts = [c["verdict"] for c in _claims(mini, tmp_path, rates)]
    assert verdicts == ["holds", "does not hold", "holds"]


def test_claim_three_fails_when_t_ens_student_is_worse(mini, tmp_path):
    rates = CLEAR | {"T-EN-method": 0.65}  # more edits than T-EN (0.5) on every utterance
    one, _, three = _claims(mini, tmp_path, rates)
    assert one["verdict"] == "holds"
    assert three["verdict"] == "does not hold"
    assert three["evidence"].startswith("T-EN's method student − T-EN on the unheard tier: +")


def test_claims_with_nothing_measured(mini):
    claims = mini.claims({})
    assert [c["verdict"] for c in claims] == ["not measured yet"] * 3
    assert claims[2]["evidence"] == "T-EN: not measured yet"


# ---------------------------------------------------------------------------------------------
# Names.


@pytest.mark.parametrize(
    ("name", "teacher", "variant"),
    [
        ("T-EN-method", "T-EN", "method"),
        ("T1", "T1", "teacher"),
        ("T2-first4", "T2", "first4"),
        ("T1-no-shuffle", "T1", "no-shuffle"),
        ("logmel", None, "logmel"),
        ("T-EN", "T-EN", "teacher"),
    ],
)
def test_teacher_and_variant_of(mini, name, teacher, variant):
    assert mini.teacher_of(name) == teacher
    assert mini.variant_of(name) == variant


# ---------------------------------------------------------------------------------------------
# Fine-tuning and the report.


def test_finetune_summary_compares_each_student_with_t1_on_unheard(mini, tmp_path):
    rates = {"T1": 0.2, "T1-method": 0.25, "T1-no-shuffle": 0.4}
    finetune = write_runs(
        tmp_path / "finetune", rates, seeds=(0, 1), langs=UNHEARD, mode="finetune"
    )
    records = mini.load_records(finetune)
    probed = mini.load_records(write_runs(tmp_path / "runs", {"T1": 0.1, "T1-method": 0.15}))
    out = mini.finetune_summary(records, probed)
    assert list(out) == ["T1"]
    f = out["T1"]
    assert f["seeds"] == [0, 1] and f["languages"] == UNHEARD and f["steps"] == 40
    # Beside each: its frozen probe on the same languages and seeds; none without a record.
    assert f["probe_per"] == {
        "T1": pytest.approx(hand_macro(probed, "T1", UNHEARD, [0, 1])),
        "T1-method": pytest.approx(hand_macro(probed, "T1-method", UNHEARD, [0, 1])),
        "T1-no-shuffle": None,
    }
    per = {n: hand_macro(records, n, UNHEARD, [0, 1]) for n in FINETUNED}
    assert list(f["per"]) == list(FINETUNED)
    for name in FINETUNED:
        assert f["per"][name]["per"] == pytest.approx(per[name])
    rows = [(r["a"], r["b"], r["tier"], r["languages"]) for r in f["comparisons"]]
    assert rows == [("T1-method", "T1", "unheard", 2), ("T1-no-shuffle", "T1", "unheard", 2)]
    for row in f["comparisons"]:
        assert row["diff"] == pytest.approx(per[row["a"]] - per["T1"])
    # Without every fine-tuned model at a seed there is nothing to compare.
    (finetune / "T1-no-shuffle-s0.json").unlink()
    assert mini.finetune_summary(mini.load_records(finetune))["T1"]["seeds"] == [1]
    (finetune / "T1-no-shuffle-s1.json").unlink()
    assert mini.finetune_summary(mini.load_records(finetune)) == {}


HEARD = {
    "T1": "the pretrain split of 11 language(s): en, es, fr, ru, nl, tr, it, pl, sv, ky, el.",
    "T2": "the pretrain split of 6 language(s): en, es, fr, ru, nl, tr.",
    "T-EN": "the pretrain split of 1 language(s): en.",
}
LABELS = "none (self-supervised; pseudo-labels from its own clusters)."


def make_teachers(root: Path) -> dict[str, Path]:
    """Teacher directories with a model card and a config, as label_free_teachers.py makes."""
    teachers = {}
    for name, heard in HEARD.items():
        model = root / name / "model"
        model.mkdir(parents=True)
        card = f"# {name}\n\nA tiny teacher.\n\n**Heard:** {heard}\n**Labels seen:** {LABELS}\n"
        (model / "README.md").write_text(card)
        architecture = "HubertModel" if name == "T2" else "Wav2Vec2Model"
        (model / "config.json").write_text(json.dumps({"architectures": [architecture]}))
        teachers[name] = model
    return teachers


def make_gate() -> dict:
    """gate.json as label_free_teachers.py writes it (T2 failed its heard tier)."""
    gate = {}
    for name, (teacher, passed) in {"T1": (0.2, True), "T2": (0.65, False)}.items():
        means = {name: teacher, "logmel": 0.6, "untrained": 0.8}
        gate[name] = {
            "teacher": name,
            "model": f"runs/teachers/{name}/model",
            "split": "dev",
            "passed": passed,
            "tiers": {
                "heard": {"mean_dev_per": means, "passed": passed},
                "unheard": {"mean_dev_per": means | {name: 0.3}, "passed": True},
            },
            "per_language": {
                lang: {name: teacher, "logmel": 0.6, "untrained": 0.8} for lang in ("it", "eu")
            },
        }
    return gate


@pytest.fixture
def replication(tmp_path):
    """results/replication/{runs,gate.json} with every model at three seeds, and the teachers."""
    results = write_runs(tmp_path / "replication" / "runs", CLEAR)
    (results.parent / "gate.json").write_text(json.dumps(make_gate()))
    return results, tmp_path / "replication.md", make_teachers(tmp_path / "teachers")


def _table(lines: list[str], header: str) -> list[str]:
    """The rows of the table whose header line is `header`."""
    start = lines.index(header) + 2
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return lines[start:end]


def test_write_report(mini, replication):
    results, docs, teachers = replication
    out = mini.write_report(results, docs, teachers, "python experiments/reproduce_mini.py")
    lines = docs.read_text().splitlines()
    assert lines[:7] == [
        "# DistilXLSR in miniature, v2: label-free teachers",
        "",
        "**What each teacher heard and saw** (from its model card):",
        "",
        f"- **T1** (wav2vec2). Heard: {HEARD['T1']} Labels seen: {LABELS}",
        f"- **T2** (hubert). Heard: {HEARD['T2']} Labels seen: {LABELS}",
        f"- **T-EN** (wav2vec2). Heard: {HEARD['T-EN']} Labels seen: {LABELS}",
    ]
    assert "Command: `python experiments/reproduce_mini.py`." in docs.read_text()
    claims = _table(lines, "| claim | verdict | evidence |")
    assert len(claims) == 3
    assert [row.split(" | ")[1] for row in claims] == ["**holds**"] * 3
    assert claims[0].startswith("| The student keeps the teacher's cross-lingual ability (T1")

    saved = json.loads((results.parent / "summary.json").read_text())
    assert saved == json.loads(json.dumps(out))
    assert set(saved) == {
        "design",
        "teachers",
        "claims",
        "headline",
        "analyses",
        "finetune",
        "previous_bootstrap",
        "primary",
    }
    assert saved["teachers"] == [
        {"name": n, "family": "hubert" if n == "T2" else "wav2vec2", "heard": h, "labels": LABELS}
        for n, h in HEARD.items()
    ]
    assert [set(c) for c in saved["claims"]] == [{"claim", "verdict", "evidence"}] * 3
    assert list(saved["headline"]) == ["T1", "T2", "T-EN"]
    for teacher, tiers in saved["headline"].items():
        assert list(tiers) == ["label", "heard", "unheard", "all"], teacher
        for h in tiers.values():
            assert set(h) == {
                "gain_retained",
                "ci",
                "rel_gap",
                "rel_gap_ci",
                "teacher_gain",
                "teacher_gain_ci",
                "resampling",
            }
    assert saved["headline"]["T1"]["unheard"] == out["analyses"]["T1"]["headline"]["unheard"]
    assert saved["headline"]["T1"]["unheard"]["resampling"] == {
        "scheme": "hierarchical",
        "units": ["seed", "voice", "utterance"],
        "seeds": 3,
        "seeds_drawn": "once per resample for every language",
        "voices": {"eu": VOICES, "ka": VOICES},
    }
    assert saved["headline"]["T1"]["all"]["resampling"]["voices"] == dict.fromkeys(LANGS, VOICES)
    assert saved["previous_bootstrap"]["resampling"]["units"] == ["seed", "utterance"]
    assert [c["verdict"] for c in saved["previous_bootstrap"]["claims"]] == ["holds"] * 3
    h = saved["headline"]["T1"]["unheard"]
    header = (
        "| teacher | tier | seeds | teacher's gain over log-mel [95% CI] | gain retained "
        "[95% CI] | relative gap [95% CI] |"
    )
    headline = _table(lines, header)
    assert len(headline) == 3 * 4
    assert headline[2].startswith(
        f"| T1 | unheard | 3 | {100 * h['teacher_gain']:+.2f} [{100 * h['teacher_gain_ci'][0]:+.2f}, "
    )
    assert f"| {h['gain_retained']:.3f} [" in headline[2]

    # The previous bootstrap beside the hierarchical one: the same estimates, two intervals.
    rescored = _table(
        lines,
        "| teacher | tier | statistic | estimate | previous [95% CI] | hierarchical [95% CI] |",
    )
    old = saved["previous_bootstrap"]["headline"]["T1"]["unheard"]
    assert rescored[0] == (
        f"| T1 | unheard | teacher's gain over log-mel (points) | {100 * h['teacher_gain']:+.2f} | "
        f"[{100 * old['teacher_gain_ci'][0]:+.2f}, {100 * old['teacher_gain_ci'][1]:+.2f}] | "
        f"[{100 * h['teacher_gain_ci'][0]:+.2f}, {100 * h['teacher_gain_ci'][1]:+.2f}] |"
    )
    assert old["teacher_gain"] == h["teacher_gain"] and old["ci"] != h["ci"]
    # Per teacher: 3 statistics on 2 tiers, and 2 comparisons on 2 tiers.
    assert len(rescored) == 3 * (3 * 2 + 2 * 2)
    assert "| T1 | all | T1-no-shuffle − T1-method (points, Holm) | " in "\n".join(rescored)
    verdicts = _table(lines, "| claim | verdict, previous bootstrap | verdict, hierarchical |")
    assert [row.rsplit(" | ", 2)[1:] for row in verdicts] == [
        ["holds", "**holds** |"]
    ] * 3  # fmt: skip
    # The next replication's primary comparisons, with the effect each can detect.
    assert "## Primary comparisons of the next replication (named before its data)" in lines
    assert [c["name"] for c in saved["primary"]["comparisons"]] == ["a", "b"]
    power = saved["primary"]["power"]
    assert [(r["comparison"], r["teacher"], r["role"]) for r in power["rows"]][::5] == [
        ("a", "T1", "primary"),
        ("a", "T2", "claim 2, with T1's"),
    ]
    assert [d["seeds"] for d in power["designs"]] == [3, 8, 8]
    shuffle = next(r for r in power["rows"] if r["comparison"] == "b" and r["teacher"] == "T1")
    assert shuffle["role"] == "primary" and shuffle["tier"] == "all"
    for a, b in zip(shuffle["designs"], shuffle["designs"][1:], strict=False):
        assert b["se"] <= a["se"]  # more seeds, more voices: smaller errors

    gate = _table(lines, "| teacher | tier | teacher | log-mel | untrained | passed |")
    assert gate == [
        "| T1 | heard | 20.00 | 60.00 | 80.00 | yes |",
        "| T1 | unheard | 30.00 | 60.00 | 80.00 | yes |",
        "| T2 | heard | 65.00 | 60.00 | 80.00 | no |",
        "| T2 | unheard | 30.00 | 60.00 | 80.00 | yes |",
    ]
    assert _table(lines, "| language | T1 / log-mel / untrained | T2 / log-mel / untrained |") == [
        "| it | 20.00 / 60.00 / 80.00 | 65.00 / 60.00 / 80.00 |",
        "| eu | 20.00 / 60.00 / 80.00 | 65.00 / 60.00 / 80.00 |",
    ]
    start = lines.index("## Fine-tuning")
    assert lines[start : start + 4] == ["## Fine-tuning", "", "Not run yet.", ""]
    assert out["finetune"] == {}
    for teacher in ("T1", "T2", "T-EN"):
        assert f"## {teacher}" in lines
    ran = lines.index("## How it ran")
    assert lines[ran + 2 : ran + 2 + len(mini.RUN_NOTES)] == [f"- {n}" for n in mini.RUN_NOTES]


def test_write_report_with_finetuning(mini, replication):
    results, docs, teachers = replication
    rates = {"T1": 0.2, "T1-method": 0.25, "T1-no-shuffle": 0.4}
    finetune = write_runs(
        results.parent / "finetune", rates, seeds=(0,), langs=UNHEARD, mode="finetune"
    )
    records = mini.load_records(finetune)
    mini.write_report(results, docs, teachers, "cmd")
    lines = docs.read_text().splitlines()
    assert "Not run yet." not in lines
    title = lines.index("## Fine-tuning (`--mode finetune`) on the unheard tier")
    assert lines[title + 2] == (
        "T1 and its students, fine-tuned with phone CTC on each unheard language's `train` split "
        "(40 steps), scored on `test`; 1 seed, 2 languages. Beside it, the same model's frozen "
        "probe (same languages and seeds)."
    )
    rows = _table(
        lines,
        "| model | macro PER (%) [95% CI] | − teacher [Holm-adjusted CI] | p (Holm) | frozen probe "
        "PER (%) |",
    )
    assert [row.split(" | ")[0] for row in rows] == [f"| {n}" for n in FINETUNED]
    per = {n: hand_macro(records, n, UNHEARD, [0]) for n in FINETUNED}
    probed = mini.load_records(results)
    probe = {n: hand_macro(probed, n, UNHEARD, [0]) for n in FINETUNED}
    assert rows[0].startswith(f"| T1 | {100 * per['T1']:.2f} [")
    assert rows[0].endswith(f" |  |  | {100 * probe['T1']:.2f} |")
    for row, name in zip(rows[1:], FINETUNED[1:], strict=True):
        diff = 100 * (per[name] - per["T1"])
        assert row.startswith(f"| {name} | {100 * per[name]:.2f} [")
        assert f" | {diff:+.2f} [" in row and row.endswith(f" | {100 * probe[name]:.2f} |")
    # T1's fine-tuning (0.2 + noise) is no worse than its probe (0.2): no warning.
    assert not any(line.startswith("Fine-tuning is worse than the frozen probe") for line in lines)
    write_runs(results.parent / "finetune", {"T1": 0.3}, seeds=(0,), langs=UNHEARD, mode="finetune")
    mini.write_report(results, docs, teachers, "cmd")
    lines = docs.read_text().splitlines()
    warning = [x for x in lines if x.startswith("Fine-tuning is worse than the frozen probe")]
    assert warning == [
        "Fine-tuning is worse than the frozen probe for every model here: the recipe (40 steps at "
        "lr 0.0001, the paper's scaled down, not tuned at this size) leaves these models short of "
        "what a linear head on their frozen layers reaches, so these numbers compare how the "
        "models fine-tune under it, not what fine-tuning can reach."
    ]


def test_write_report_without_an_unheard_language(mini, tmp_path):
    results = write_runs(tmp_path / "replication" / "runs", CLEAR, langs=["es", "it"])
    out = mini.write_report(results, tmp_path / "replication.md", {}, "cmd")
    assert [c["verdict"] for c in out["claims"]] == ["not measured yet"] * 3
    text = (tmp_path / "replication.md").read_text()
    assert "- T1: no unheard language measured yet." in text
    assert "- T2: no unheard language measured yet." in text


def test_no_relative_gap_against_a_teacher_below_ten_percent(mini, tmp_path):
    # T1 at 5% PER everywhere: a ratio to it is unstable, so the headline gives none.
    rates = {"logmel": LOGMEL, "T1": 0.05, "T1-method": 0.06}
    results = write_runs(tmp_path / "replication" / "runs", rates)
    out = mini.write_report(results, tmp_path / "replication.md", {}, "cmd")
    for tier in ("label", "heard", "unheard", "all"):
        row = out["headline"]["T1"][tier]
        assert row["rel_gap"] is None and row["rel_gap_ci"] is None
        assert row["gain_retained"] is not None
    text = (tmp_path / "replication.md").read_text()
    assert "n/a (teacher PER below 10%) (**not measurable**" in text


def test_write_report_keeps_the_cards_facts_once_the_teachers_are_gone(mini, replication):
    results, docs, teachers = replication
    first = mini.write_report(results, docs, teachers, "cmd")
    saved = json.loads((results.parent / "teachers.json").read_text())
    assert saved["T2"] == {"heard": HEARD["T2"], "labels": LABELS, "family": "hubert"}
    for model in teachers.values():
        shutil.rmtree(model.parent)
    second = mini.write_report(results, docs, teachers, "cmd")
    assert second["teachers"] == first["teachers"]
    assert f"- **T2** (hubert). Heard: {HEARD['T2']} Labels seen: {LABELS}" in docs.read_text()


def test_targets_say_whether_the_shuffle_effect_s_interval_excludes_zero(mini, tmp_path):
    rates = dict(CLEAR)
    rates["T1-method"] = {"label": 0.2, "heard": 0.2, "unheard": 0.3}  # shuffling hurts unheard
    records = mini.load_records(write_runs(tmp_path / "runs", rates))
    analyses = {t: mini.analyse_teacher(records, t) for t in ("T1", "T2")}
    effect, teacher = {}, None
    for line in mini.targets({"analyses": analyses}):
        if line.startswith("- "):
            teacher = line[2:].split(",")[0]
        elif line.startswith("  - shuffle effect on "):
            effect[(teacher, line.split()[4])] = line
    assert sorted(effect) == sorted((t, tier) for t in ("T1", "T2") for tier in mini.TIER_ORDER)
    met = "(an interval that excludes zero: **met**)."
    missed = "(an interval that excludes zero: **missed**)."
    assert "(no shuffle − method): -" in effect[("T1", "unheard")]
    assert effect[("T1", "unheard")].endswith(met)
    assert effect[("T1", "label")].endswith(missed)
    assert all(effect[("T2", tier)].endswith(missed) for tier in mini.TIER_ORDER)


def test_progress_counts_what_the_files_say_and_estimates_from_the_median(mini, tmp_path):
    work, results = tmp_path / "work", tmp_path / "replication" / "runs"
    for name, seconds in (("T1-method", 100), ("T1-no-shuffle", 200), ("T2-method", 900)):
        made = work / "students" / f"{name}-s0"
        made.mkdir(parents=True)
        (made / "config.json").write_text("{}")
        (made / "distill_seconds.json").write_text(json.dumps({"seconds": seconds}))
    (work / "students" / "T1-first4-s0").mkdir()  # a stopped distillation: not made
    (work / "eval-s0" / "languages").mkdir(parents=True)
    for lang in ("el", "sw"):
        (work / "eval-s0" / "languages" / f"{lang}.json").write_text("{}")
    write_runs(results, {"T1": 0.2, "logmel": LOGMEL}, seeds=(0, 1))
    write_runs(results.parent / "finetune", {"T1-method": 0.2}, seeds=(0,))
    lines = mini.progress(work, results, ["T1", "T2"], [0, 1], [0])
    assert lines == [
        "seed 0: 3/10 students distilled; 2/15 languages of their evaluation stored; 2/13 records",
        "seed 1: 0/10 students distilled; 0/15 languages of their evaluation stored; 2/13 records",
        "fine-tuning, seed 0: 1/3 records",
        "distillation left: 17 students, about 0.9 h at the median of the 3 made so far "
        "(3.3 min; each seed's evaluation comes on top)",
    ]


# ---------------------------------------------------------------------------------------------
# Voices: from the records, or for records without them from test_voices.json.


def test_records_without_voices_take_them_from_the_voices_file(mini, tmp_path):
    results = write_runs(tmp_path / "replication" / "runs", {"T1": 0.2}, voices=False)
    records = mini.load_records(results)
    assert all(v.get("voices") is None for v in records[("T1", 0)]["languages"].values())
    _, _, per = mini.samples(records, ["T1"], list(SEEDS))
    assert per.voices == [None] * len(LANGS)  # utterances as independent units, and said so
    assert per.resampling(LANGS)["voices"] == dict.fromkeys(LANGS)
    stored = {
        lang: {"ids_sha256": _ids_sha256(lang), "voices": voices_of(lang)} for lang in LANGS[:2]
    }
    (results.parent / "test_voices.json").write_text(json.dumps({"languages": stored}))
    records = mini.load_records(results)
    assert records[("T1", 1)]["languages"]["eu"]["voices"] == voices_of("eu")
    assert records[("T1", 1)]["languages"]["ka"].get("voices") is None  # not in the file
    _, _, per = mini.samples(records, ["T1"], list(SEEDS))
    assert per.voices == [VOICES, VOICES] + [None] * (len(LANGS) - 2)


def test_samples_refuses_records_of_other_voices(mini, tmp_path):
    results = write_runs(tmp_path / "runs", {"T1": 0.2, "T1-method": 0.2}, seeds=(0,))
    path = results / "T1-method-s0.json"
    record = json.loads(path.read_text())
    record["languages"]["it"]["voices"] = ["other"] * UTTERANCES
    path.write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"^T1-method seed 0 names other it test voices "):
        mini.samples(mini.load_records(results), ["T1", "T1-method"], [0])


def test_power_estimates_need_voices_and_seeds(mini, tmp_path):
    rates = {n: CLEAR[n] for n in ("logmel", "T1", "T1-method", "T1-no-shuffle")}
    power = mini.power_estimates(mini.load_records(write_runs(tmp_path / "a", rates)))
    assert [(r["comparison"], r["statistic"]) for r in power["rows"]] == [
        ("a", "relative gap"),
        ("a", "teacher's gain over log-mel"),
        ("a", "gain retained"),
        (
            "a",
            "gain retained, were the teacher's gain 20 points and the student to keep 0.90 of it",
        ),
        ("b", "no shuffle − method"),
    ]
    assert power["notes"] == [
        "T2: fewer than 2 seeds with all of logmel, T2-method, T2, T2-no-shuffle"
    ]
    assert power["alpha"] == pytest.approx(0.025) and power["power"] == 0.8
    row = power["rows"][-1]
    assert row["seeds_for_bound"]["voices"] == 8 and row["seeds_for_bound"]["bound"] == 0.003
    unvoiced = write_runs(tmp_path / "b", rates, voices=False)
    power = mini.power_estimates(mini.load_records(unvoiced))
    assert power["rows"] == [] and power["notes"][0].startswith("T1: some language's records")


# ---------------------------------------------------------------------------------------------
# Replication v3's design: per-variant seeds, per-teacher languages, teachers probed once.


def test_v3_design_names_its_seeds_and_students(mini):
    v3 = mini.V3
    assert v3.seeds() == list(range(8))
    assert v3.students_at("T1", 2) == ["method", "no-shuffle", "first4"]
    assert v3.students_at("T1", 3) == ["method", "no-shuffle"]  # first:N has 3 seeds
    assert v3.students_at("T-EN", 7) == ["method", "no-shuffle"]
    assert v3.students_at("T-EN", 8) == []
    # v2's design is what v2 ran: every variant of STUDENTS at 3 seeds.
    assert mini.V2.seeds() == [0, 1, 2]
    assert mini.V2.students_at("T1", 2) == mini.STUDENTS["T1"]


def _plan(mini, teachers, design=None, langs=None):
    return mini.Plan(
        data=Path("d"),
        work=Path("w"),
        results=Path("r"),
        teachers={t: Path(t) for t in teachers},
        seeds=[0],
        langs=langs,
        design=design or mini.V3,
    )


def test_scored_langs_follow_the_teacher_and_log_mel_covers_them_all(mini):
    unheard = list(mini.TIERS["unheard"])
    plan = _plan(mini, ["T1", "T2", "T-EN"])
    assert mini.scored_langs(plan, "T1-method") is None  # all 15
    assert mini.scored_langs(plan, "T2") == sorted(unheard)
    assert mini.scored_langs(plan, "T-EN-no-shuffle") == sorted(unheard)
    assert mini.scored_langs(plan, "logmel") is None
    plan = _plan(mini, ["T2", "T-EN"])
    assert mini.scored_langs(plan, "logmel") == sorted(unheard)
    plan = _plan(mini, ["T2"], langs=["eu", "es"])  # a smoke run's languages cut them down
    assert mini.scored_langs(plan, "T2") == ["eu"]


def harness_results(name: str, seeds: list[int], edits: dict) -> dict:
    """What evaluate() returns for one model, in the fields make_record reads; `edits`: per
    language, per probe seed, the edits of each of its utterances."""
    details = {}
    for lang, by_seed in edits.items():
        n = len(by_seed[0])
        phones = PHONES[lang][:n]
        details[lang] = {
            "per": [sum(e) / sum(phones) for e in by_seed],
            "seconds": [10.0] * len(seeds),
            "feature_seconds": 2.0,
            "utterances": [
                {
                    "id": f"{lang}-{i:03d}",
                    "phones": phones[i],
                    "edits": [by_seed[k][i] for k in range(len(seeds))],
                    "speaker": f"{lang}+v{i % 2}-p0-r1",
                }
                for i in range(n)
            ],
        }
    return {
        "models": [{"name": name, "details": details, "params": 7}],
        "seeds": seeds,
        "tiers": {tier: [x for x in edits if TIER_OF[x] == tier] for tier in ("unheard",)},
        "languages": list(edits),
        "mode": "probe",
        "split": "test",
        "config": {"optimizer": "lbfgs"},
    }


def test_fixed_record_averages_the_probe_seeds_and_pairs_with_every_student_seed(mini, tmp_path):
    edits = {"eu": [[2, 4, 6], [4, 4, 8]], "ka": [[1, 1, 1], [3, 1, 1]]}
    results = harness_results("T1", [0, 1], edits)
    record = mini.fixed_record(results, "T1", [0, 1], {"teacher": "T1", "variant": "teacher"})
    assert record["seed"] is None and record["probe_seeds"] == [0, 1]
    eu = record["languages"]["eu"]
    assert eu["edits"] == [3.0, 4.0, 7.0]
    assert eu["per_by_probe_seed"] == pytest.approx(
        [12 / sum(PHONES["eu"][:3]), 16 / sum(PHONES["eu"][:3])]
    )
    assert eu["per"] == pytest.approx(14 / sum(PHONES["eu"][:3]))
    assert eu["voices"] == ["eu+v0", "eu+v1", "eu+v0"]
    assert eu["seconds"] == pytest.approx(24.0)  # both probes and the features, each time
    assert record["per_mean"] == pytest.approx(
        np.mean([eu["per"], record["languages"]["ka"]["per"]])
    )
    # Saved beside students of seeds 0 and 3, it is every seed's teacher record.
    results_dir = tmp_path / "runs"
    results_dir.mkdir()
    mini.fixed_path(results_dir, "T1").write_text(json.dumps(record))
    for seed in (0, 3):
        student = mini.make_record(
            harness_results("T1-method", [seed], {k: [v[0]] for k, v in edits.items()}),
            "T1-method",
            seed,
            {},
        )
        mini.record_path(results_dir, "T1-method", seed).write_text(json.dumps(student))
    records = mini.load_records(results_dir)
    assert sorted(records) == [("T1", 0), ("T1", 3), ("T1-method", 0), ("T1-method", 3)]
    assert records[("T1", 3)]["seed"] == 3
    assert records[("T1", 3)]["languages"]["ka"]["edits"] == [2.0, 1.0, 1.0]
    langs, _, per = mini.samples(records, ["T1", "T1-method"], [0, 3])
    ka_phones = sum(PHONES["ka"][:3])
    assert per.point[0, langs.index("ka")] == pytest.approx(4 / ka_phones)
    assert per.point[1, langs.index("ka")] == pytest.approx(3 / ka_phones)


def test_progress_of_a_v3_run(mini, tmp_path):
    work, results = tmp_path / "work", tmp_path / "replication-v3" / "runs"
    made = work / "students" / "T1-method-s3"
    made.mkdir(parents=True)
    (made / "config.json").write_text("{}")
    (made / "distill_seconds.json").write_text(json.dumps({"seconds": 360}))
    results.mkdir(parents=True)
    mini.fixed_path(results, "logmel").write_text("{}")
    mini.record_path(results, "T1-method", 3).write_text("{}")
    (results.parent / "finetune").mkdir()
    (results.parent / "finetune" / "T1-method-s0-eu.json").write_text("{}")
    festival = mini.festival_dir(results)
    festival.mkdir(parents=True)
    mini.fixed_path(festival, "T1").write_text("{}")
    mini.record_path(festival, "T1-no-shuffle", 1).write_text("{}")
    lines = mini.progress(work, results, ["T1"], [2, 3], [0], mini.V3)
    assert lines == [
        "teachers and log-mel: 1/2 records",
        "seed 2: 0/3 students distilled; 0/15 languages of their evaluation stored; 0/3 records",
        "seed 3: 1/2 students distilled; 0/15 languages of their evaluation stored; 1/2 records",
        "fine-tuning, seed 0: 1/10 (model, language) records",
        "Festival check: 1/2 teacher and log-mel records, 1/6 student records",
        "distillation left: 4 students, about 0.4 h at the median of the 1 made so far "
        "(6.0 min; each seed's evaluation comes on top)",
    ]


def fixed(name: str, rate: float) -> dict:
    """A v3 teacher's or log-mel's record: averaged over probe seeds 0-2, paired with every seed."""
    return fake_record(name, 0, rate) | {"seed": None, "probe_seeds": [0, 1, 2]}


def downstream_record(name: str, seed: int, lang: str, rate: float) -> dict:
    """A v3 fine-tuning record as experiments/downstream_asr.py `one` writes it."""
    rng = np.random.default_rng([seed, *name.encode(), *lang.encode()])
    lengths = [3 * p for p in PHONES[lang]]
    test = {
        "ids": [f"{lang}-{i:03d}" for i in range(UTTERANCES)],
        "voices": voices_of(lang),
        "cer_length": lengths,
        "wer_length": [max(1, n // 5) for n in lengths],
    }
    for how, r in (("greedy", rate * 1.1), ("lm", rate)):
        test[f"cer_{how}_edits"] = [int(r * n) + int(rng.integers(0, 2)) for n in lengths]
        test[f"wer_{how}_edits"] = [n // 5 for n in lengths]
    return {"model": name, "lang": lang, "seed": seed, "recipe": "C", "test": test}


def test_write_report_v3(mini, tmp_path):
    results = tmp_path / "replication-v3" / "runs"
    results.mkdir(parents=True)
    for name in ("T1", "logmel"):
        mini.fixed_path(results, name).write_text(json.dumps(fixed(name, CLEAR[name])))
    write_runs(results, {n: CLEAR[n] for n in ("T1-method", "T1-no-shuffle")}, seeds=(0, 1, 2))
    write_runs(results, {"T1-first4": 0.3}, seeds=(0, 1))  # fewer seeds: compared on its own
    finetune = results.parent / "finetune"
    finetune.mkdir()
    for name, rate in (("T1", 0.40), ("T1-method", 0.42)):
        for seed in (0, 1):
            for lang in UNHEARD:
                record = downstream_record(name, seed, lang, rate)
                (finetune / f"{name}-s{seed}-{lang}.json").write_text(json.dumps(record))
    gate = {
        "T1": {
            "path": "runs/teachers_v3/cont/model",
            "macro_per": {"teacher": 0.45, "logmel": 0.48},
            "gain": 0.03,
            "gain_ci": [-0.02, 0.08],
            "languages_beaten": ["eu", "sw"],
            "passed": False,
        }
    }
    (results.parent / "gate.json").write_text(json.dumps(gate))
    docs = tmp_path / "replication.md"
    teachers = make_teachers(tmp_path / "teachers")
    out = mini.write_report(results, docs, {"T1": teachers["T1"]}, "cmd", mini.V3)
    text = docs.read_text()
    lines = text.splitlines()
    assert lines[0] == "# DistilXLSR in miniature, v3: label-free teachers"
    assert out["design"] == "v3" and json.loads((results.parent / "summary.json").read_text())
    # Claim 1 reads primary comparison (a) at 97.5%: log-mel 0.7, T1 and its students 0.2.
    a = out["primary"]["results"]["a"]
    assert a["gain_retained"] == pytest.approx(1.0, abs=0.05) and a["verdict"] == "holds"
    assert out["claims"][0]["verdict"] == "holds"
    assert [c["primary_comparison"][:3] for c in out["claims"]] == ["(a)", "(a)", "non"]
    assert "(97.5% intervals, primary comparison (a))" in out["claims"][0]["evidence"]
    b = out["primary"]["results"]["b"]
    assert b["languages"] == LANGS and b["largest_effect_allowed"] == max(map(abs, b["ci"]))
    assert "- **(b) T1: no shuffle − method, macro PER over 6 languages**" in text
    # first:N, with 2 seeds of the 3, is not in the main analysis but compared on its seeds.
    analysis = out["analyses"]["T1"]
    assert analysis["seeds"] == [0, 1, 2] and analysis["pending"] == ["T1-first4"]
    assert analysis["fewer_seeds"]["seeds"] == [0, 1]
    assert {r["a"] for r in analysis["fewer_seeds"]["comparisons"]} == {"T1-first4"}
    assert "Arms with fewer seeds, against the method on their 2 seeds (0, 1)" in text
    # The fine-tuned recognisers: CER with the LM, the student 5% behind by construction.
    d = out["downstream"]["T1"]
    assert d["seeds"] == [0, 1] and d["languages"] == UNHEARD
    assert d["lm"]["rel_gap"] == pytest.approx(0.05, abs=0.03)
    lo, hi = d["lm"]["rel_gap_ci"]
    assert lo <= d["lm"]["rel_gap"] <= hi
    row = _table(
        lines,
        "| teacher | seeds | teacher CER greedy / LM | student CER greedy / LM "
        "| relative gap with the LM [95% CI] | target |",
    )
    assert row[0].startswith("| T1 | 2 |") and row[0].endswith("| **met** |")
    # The v3 gate, and v2's verdicts beside (from results/replication/summary.json).
    row = "| T1 | T1 (`runs/teachers_v3/cont/model`) | 45.00 | 48.00 | +3.0 [-2.0, +8.0] | eu, sw | no |"
    assert row in lines
    assert "## v2 beside v3" in lines
    shuffle = next(x for x in lines if x.startswith("  - shuffle effect on all"))
    assert "(target: the interval excludes zero or lies within ±0.30 points: **" in shuffle


def test_v3_targets_name_claim_three_s_interval_width(mini, tmp_path):
    results = tmp_path / "replication-v3" / "runs"
    results.mkdir(parents=True)
    for name, rate in (("T-EN", 0.5), ("logmel", LOGMEL)):
        record = fixed(name, rate)
        record["languages"] = {x: record["languages"][x] for x in UNHEARD}
        mini.fixed_path(results, name).write_text(json.dumps(record))
    rates = {"T-EN-method": 0.3, "T-EN-no-shuffle": 0.5}
    write_runs(results, rates, seeds=(0, 1, 2), langs=UNHEARD)
    out = mini.write_report(results, tmp_path / "r.md", {}, "cmd", mini.V3)
    line = next(x for x in mini.targets(out) if x.startswith("- T-EN, claim 3"))
    row = mini.find_comparison(out["analyses"]["T-EN"], "T-EN-method", "T-EN", "unheard")
    half = (row["ci_holm"][1] - row["ci_holm"][0]) / 2
    assert f"±{100 * half:.2f} points (target: narrower than ±1 point: **" in line
    assert line.endswith("**met**).") == (half < 0.01)


def test_downstream_summary_waits_for_every_language_of_a_seed(mini):
    records = {("T1", 0, lang): downstream_record("T1", 0, lang, 0.4) for lang in UNHEARD} | {
        ("T1-method", 0, "eu"): downstream_record("T1-method", 0, "eu", 0.4)
    }
    out = mini.downstream_summary(records, mini.V3)
    assert out["T1"] == {"pending": ["T1 s0 eu", "T1 s0 ka", "T1-method s0 eu"]}


def test_a_run_stops_when_its_teacher_has_changed(mini, tmp_path):
    results = tmp_path / "replication-v3" / "runs"
    first, second = tmp_path / "a", tmp_path / "b"
    for model, content in ((first, b"one"), (second, b"two")):
        model.mkdir()
        (model / "model.safetensors").write_bytes(content)
    mini.check_teachers_unchanged(results, {"T1": first})
    mini.check_teachers_unchanged(results, {"T1": first, "T-EN": second})  # same T1: goes on
    with pytest.raises(SystemExit, match=r"^T1 is not the teacher this run's records"):
        mini.check_teachers_unchanged(results, {"T1": second})
    used = json.loads((results.parent / "teachers_used.json").read_text())
    assert used["T1"]["path"] == str(first.resolve()) and set(used) == {"T1", "T-EN"}


def test_log_mel_is_scored_again_when_a_teacher_needs_more_languages(mini, tmp_path, monkeypatch):
    calls = []

    def fake_evaluate(models, data, out, langs=None, seeds=(), **_):
        calls.append(langs)
        edits = {x: [[1] * 3 for _ in seeds] for x in langs}
        return harness_results("logmel", list(seeds), edits)

    monkeypatch.setattr(mini, "evaluate", fake_evaluate)
    for teachers, langs in ((["T-EN"], ["eu", "ka"]), (["T1", "T-EN"], ["eu", "ka", "es"])):
        plan = _plan(mini, teachers, langs=langs)
        plan.results = tmp_path / "runs"
        mini.evaluate_fixed(plan, ["logmel"], {})
    mini.evaluate_fixed(plan, ["logmel"], {})  # all there: not scored again
    assert calls == [["eu", "ka"], ["eu", "ka", "es"]]
    record = json.loads(mini.fixed_path(tmp_path / "runs", "logmel").read_text())
    assert list(record["languages"]) == ["eu", "ka", "es"]


def test_festival_check_sits_beside_corpus_v3_in_the_report(mini, tmp_path):
    results = tmp_path / "replication-v3" / "runs"
    results.mkdir(parents=True)
    for name in ("T1", "logmel"):
        mini.fixed_path(results, name).write_text(json.dumps(fixed(name, CLEAR[name])))
    write_runs(results, {n: CLEAR[n] for n in ("T1-method", "T1-no-shuffle")})
    docs = tmp_path / "replication.md"
    out = mini.write_report(results, docs, {}, "cmd", mini.V3)
    assert out["festival"] == {} and "## Checked on a second synthesiser (Festival)" in (
        docs.read_text()
    )
    assert "Not run yet." in docs.read_text()
    # Festival's records (their own directory): the teacher's gain 30 points there, 50 on
    # corpus v3; the method keeps 0.8 of it there, no shuffle 6 points worse than the method.
    festival = mini.festival_dir(results)
    festival.mkdir(parents=True)
    rates = {"T1": 0.3, "logmel": 0.6}
    for name, rate in rates.items():
        mini.fixed_path(festival, name).write_text(json.dumps(fixed(name, rate)))
    write_runs(festival, {"T1-method": 0.36, "T1-no-shuffle": 0.42})
    out = mini.write_report(results, docs, {}, "cmd", mini.V3)
    check = out["festival"]["T1"]
    assert set(check) == {"festival", "espeak"}
    f, e = check["festival"], check["espeak"]
    assert f["seeds"] == [0, 1, 2] and f["languages"] == LANGS
    assert f["teacher_gain"] == pytest.approx(0.30, abs=0.02)
    assert e["teacher_gain"] == pytest.approx(0.50, abs=0.02)
    assert f["gain_retained"] == pytest.approx(0.80, abs=0.05)
    assert f["no_shuffle_minus_method"] == pytest.approx(0.06, abs=0.02)
    lo, hi = f["no_shuffle_minus_method_ci"]
    assert lo <= f["no_shuffle_minus_method"] <= hi
    assert f["resampling"]["units"][0] == "seed"
    lines = docs.read_text().splitlines()
    row = next(x for x in lines if x.startswith("| T1 | festival |"))
    assert row.startswith(f"| T1 | festival | {', '.join(LANGS)} | 3 | +")
    assert any(x.startswith("| T1 | espeak |") for x in lines)
    assert "one recorded speaker" in docs.read_text()
