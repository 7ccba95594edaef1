"""The Festival check corpus (data/synthetic/festival.py): segment parsing and timing, the batch
script, the pseudo-voices, and (where Festival and its voices are installed) a tiny corpus read
back by the toolkit's loader."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from distilxlsr.conventions import SAMPLE_RATE, SILENCE
from distilxlsr.data.synthetic import festival as fest
from distilxlsr.errors import UserError

SEGS = "#\n0.2000 100 pau\n0.3000 100 o1\n0.4500 100 k\n0.5000 100 #\n0.5200 100 pau\n"


def test_parse_segs_maps_pauses_to_silence_and_drops_stress():
    assert fest.parse_segs(SEGS) == [
        (0.2, SILENCE),
        (0.3, "o"),
        (0.45, "k"),
        (0.5, SILENCE),
        (0.52, SILENCE),
    ]
    with pytest.raises(ValueError, match="not a Festival segment line"):
        fest.parse_segs("#\n0.1 pau\n")


def test_phone_spans_tile_the_resampled_audio():
    segments = fest.parse_segs(SEGS)
    factor = 1.25  # played faster: every boundary at t / 1.25
    n = round(0.52 * SAMPLE_RATE / factor) + 3  # the resampler's length may differ slightly
    spans = fest.phone_spans(segments, factor, n)
    assert spans[0] == (SILENCE, 0, round(0.2 * SAMPLE_RATE / factor))
    assert spans[1] == ("o", round(0.2 * SAMPLE_RATE / factor), round(0.3 * SAMPLE_RATE / factor))
    assert spans[-1] == (SILENCE, round(0.45 * SAMPLE_RATE / factor), n)  # two pauses merged
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:], strict=False))
    # a segment past the audio's end is clipped; an empty one is dropped
    assert fest.phone_spans([(0.1, "a"), (0.1, "b"), (9.0, "c")], 1.0, 2000) == [
        ("a", 0, 1600),
        ("c", 1600, 2000),
    ]


def test_pseudo_voices_of_training_and_held_out_splits_are_disjoint():
    for lang in fest.festival_languages():
        train = {s.id for s in fest.festival_speakers(lang, "train")}
        for split in ("dev", "test"):
            held = {s.id for s in fest.festival_speakers(lang, split)}
            assert held and not train & held
    ru = fest.festival_speakers("ru", "test")
    assert {s.rate for s in ru} == {100}  # the clunits voice ignores the duration stretch
    assert len({s.rate for s in fest.festival_speakers("en", "test")}) == 2


def test_specs_are_a_pure_function_of_their_arguments():
    a = fest.festival_spec("it", "test", 0, 5)
    assert a == fest.festival_spec("it", "test", 0, 5)
    assert a["id"] == "festival-it-test-000005"
    assert a != fest.festival_spec("it", "test", 1, 5)
    assert a["speaker"] in fest.festival_speakers("it", "test")


def test_chunk_script_escapes_text_and_uses_each_voices_encoding(tmp_path):
    it = dict(fest.festival_spec("it", "test", 0, 0), text='dice "sì" \\ perché')
    ru = fest.festival_spec("ru", "test", 0, 1)
    greek = dict(fest.festival_spec("it", "test", 0, 2), text="λόγος")  # not Latin-1: left out
    script = fest.chunk_script([it, ru, greek], tmp_path)
    lines = script.split(b"\n")
    assert len([line for line in lines if line]) == 2
    assert 'Text "dice \\"sì\\" \\\\ perché"'.encode("latin-1") in lines[0]
    assert ru["text"].encode("utf-8") in lines[1]
    assert b"(unwind-protect" in lines[0] and b"FAILED" in lines[0]
    assert f"voice_{it['speaker'].voice}".encode() in lines[0]


def test_missing_festival_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(fest.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt install festival"):
        fest.check_festival(["en"])
    with pytest.raises(UserError, match="no Festival voice for xx"):
        fest.synthesize_festival_corpus("unused", ["xx"], 0.1, "test")


def _has_voices() -> bool:
    if shutil.which("festival") is None:
        return False
    voices = {fest.FESTIVAL_VOICES["en"]["test"], fest.FESTIVAL_VOICES["ru"]["test"]}
    script = " ".join(f"(voice_{v})" for v in voices)
    run = subprocess.run(["festival", "-b", script], capture_output=True, text=True)
    return run.returncode == 0 and "unbound" not in run.stdout + run.stderr


needs_festival = pytest.mark.skipif(
    not _has_voices(),
    reason="Festival with festvox-kdlpc16k and festvox-ru is not installed",
)


@needs_festival
def test_a_failed_utterance_is_skipped_and_counted(tmp_path):
    good = fest.festival_spec("en", "test", 0, 0)
    bad = dict(fest.festival_spec("en", "test", 0, 1))
    bad["speaker"] = fest.Speaker("no_such_voice", "f100", 100, 100)  # an error: caught
    crash = dict(fest.festival_spec("en", "test", 0, 2), text=".")  # Festival 2.5 segfaults
    after = fest.festival_spec("en", "test", 0, 3)  # ... and a fresh process goes on
    chunk = fest.render_festival_chunk([good, bad, crash, after], str(tmp_path))
    assert [u["id"] for u in chunk["utterances"]] == [good["id"], after["id"]]
    assert chunk["failed"] == [bad["id"], crash["id"]]
    assert chunk["engine"].startswith("festival ")


@needs_festival
def test_phone_times_follow_the_audio_through_the_pseudo_voices_resampling(tmp_path):
    """Festival's last phone ends shortly before the audio does (its trailing pause), whichever
    way the audio was resampled: a factor applied the wrong way would move every boundary by
    about 25% at 0.88 and 1.12."""
    for index, factor in enumerate((88, 112)):
        spec = dict(fest.festival_spec("en", "test", 0, index))
        spec["speaker"] = fest.Speaker("ked_diphone", f"f{factor}", factor, 100)
        (utt,) = fest.render_festival_chunk([spec], str(tmp_path))["utterances"]
        last_boundary = utt["phones"][-1][1]  # where the final pause starts
        assert 0.85 < last_boundary / utt["num_samples"] < 1.0


@needs_festival
def test_a_tiny_festival_corpus_reads_back_with_tiled_alignments(tmp_path):
    from distilxlsr.data.corpora import load_cuts

    out = tmp_path / "festival"
    (manifest,) = fest.synthesize_festival_corpus(out, ["ru"], 0.15, "test", progress=False)
    cuts = list(load_cuts(out / "ru", "test"))
    assert sum(c.duration for c in cuts) >= 0.15 * 60
    for cut in cuts:
        sup = cut.supervisions[0]
        phones = sup.alignment["phone"]
        assert phones[0].start == 0.0
        assert abs(phones[-1].end - cut.duration) < 1e-4
        assert sup.custom["phones"] == [p.symbol for p in phones if p.symbol != SILENCE]
        assert sup.speaker in {s.id for s in fest.festival_speakers("ru", "test")}
        assert cut.custom["tier"] == "label"
    stamp = (out / "ru" / "synth_test.json").stat().st_mtime_ns
    fest.synthesize_festival_corpus(out, ["ru"], 0.15, "test", progress=False)  # reused
    assert (out / "ru" / "synth_test.json").stat().st_mtime_ns == stamp


def test_festival_check_reads_gains_and_pairs_from_the_harness_results():
    from pathlib import Path

    from tests.helpers import script_module

    results = {
        "languages": ["it", "ru"],
        "models": [
            {"name": "T1", "per_mean": 0.30, "per": {"it": 0.25, "ru": 0.35}},
            {"name": "S", "per_mean": 0.32, "per": {"it": 0.27, "ru": 0.37}},
            {"name": "logmel", "per_mean": 0.40, "per": {"it": 0.30, "ru": 0.50}},
        ],
        "comparisons": [
            {"a": "logmel", "b": "T1", "diff": 0.10, "ci": [0.05, 0.15]},
            {"a": "logmel", "b": "S", "diff": 0.08, "ci": [0.03, 0.13]},
            {"a": "T1", "b": "S", "diff": -0.02, "ci": [-0.04, 0.00]},
        ],
    }
    script = Path(__file__).resolve().parents[2] / "experiments/festival_check.py"
    with script_module(script) as check:
        g = check.gains(results, ["T1", "S"])
        assert g["T1"]["gain"] == 0.10 and g["T1"]["gain_ci"] == [0.05, 0.15]
        assert g["S"]["per_language"] == pytest.approx({"it": 0.03, "ru": 0.13})
        pairs = check.pair_effects(results, [("T1", "S")])
        assert pairs == {"T1:S": {"diff": -0.02, "ci": [-0.04, 0.00]}}
        summary = {
            "command": "python experiments/festival_check.py T1=x S=y --pairs T1:S",
            "seeds": [0, 1, 2],
            "festival_test_voices": {"it": "lp_diphone", "ru": "msu_ru_nsh_clunits"},
            "corpora": {"festival": {"languages": ["it", "ru"], "gains": g, "pairs": pairs}},
        }
        text = check.summary_markdown(summary)
    assert "| T1 | festival | it, ru | 30.0 | +10.0 [+5.0, +15.0] | it +5.0, ru +15.0 |" in text
    assert "| pair (A:B) | corpus | macro PER of A minus B [95% CI] |" in text
    assert "| T1:S | festival | -2.0 [-4.0, +0.0] |" in text
    assert "one recorded speaker per language" in text


class _FakePool:
    """A pool whose chunks are made up: CHUNKS[i] is ({index in the chunk: seconds} of the
    utterances made, [indices in the chunk that failed])."""

    def __init__(self, chunks, audio_dir):
        self.chunks, self.calls, self.audio_dir = chunks, 0, audio_dir

    def submit(self, task):
        from concurrent.futures import Future

        specs, _ = task
        made, failed = self.chunks[min(self.calls, len(self.chunks) - 1)]
        self.calls += 1
        utterances = []
        for i, seconds in made.items():
            path = self.audio_dir / f"{specs[i]['id']}.flac"
            path.write_bytes(b"")
            utterances.append(
                {"id": specs[i]["id"], "path": str(path), "num_samples": seconds * 16000}
            )
        done = Future()
        done.set_result(
            {"engine": "fake", "utterances": utterances, "failed": [specs[i]["id"] for i in failed]}
        )
        return done


def test_an_engine_that_speaks_nothing_stops_the_split_with_one_error(tmp_path):
    from distilxlsr.data.synthetic.corpus import synthesize_split

    pool = _FakePool([({}, [0, 1])], tmp_path)
    with pytest.raises(UserError, match="no utterance of en/test in 3 chunks in a row"):
        synthesize_split(pool, "en", "test", 1.0, 0, 1, tmp_path, False, fest.festival_spec)


def test_only_failures_before_the_split_s_last_utterance_are_counted(tmp_path):
    from distilxlsr.data.synthetic.corpus import synthesize_split

    # Utterances 0 and 2 (10 s each) reach the 0.3 min target; 1 failed before them (a skip),
    # 5 failed after them, and the next chunk's failure lies past the target: neither counts.
    chunks = [({0: 10, 2: 10, 3: 10}, [1, 5]), ({0: 10}, [1])]
    result = synthesize_split(
        _FakePool(chunks, tmp_path), "en", "test", 0.3, 0, 1, tmp_path, False, fest.festival_spec
    )
    assert [u["id"] for u in result["utterances"]] == [
        "festival-en-test-000000",
        "festival-en-test-000002",
    ]
    assert result["failed"] == ["festival-en-test-000001"]
