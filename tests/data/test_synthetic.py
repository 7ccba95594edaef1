"""The eSpeak NG synthetic corpus: alignments, determinism, speaker/text splits, cache, languages."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

import distilxlsr
from distilxlsr.data import synthetic
from distilxlsr.data.synthetic import (
    SILENCE,
    Segment,
    available_languages,
    move_stop_closures,
    segments_from_events,
    speakers,
    synthesize_corpus,
    texts,
    to_ipa,
)
from distilxlsr.errors import UserError

TINY = 0.05  # minutes per language: one or two utterances


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """en and sw, train and test, a few seconds each."""
    root = tmp_path_factory.mktemp("synth")
    for split in ("train", "test"):
        synthesize_corpus(root, ["en", "sw"], TINY, split, seed=0, jobs=2, progress=False)
    return root


@pytest.fixture(scope="module")
def all_languages(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_all")
    manifests = synthesize_corpus(
        root, available_languages(), TINY, "test", seed=1, jobs=2, progress=False
    )
    return root, manifests


def _cuts(path: Path) -> list:
    return list(CutSet.from_file(path))


def test_phone_segments_tile_the_audio(corpus):
    for lang in ("en", "sw"):
        cuts = _cuts(corpus / lang / "cuts_train.jsonl.gz")
        assert cuts
        assert sum(c.duration for c in cuts) >= TINY * 60
        for cut in cuts:
            audio, rate = sf.read(cut.recording.sources[0].source)
            assert rate == 16000 and len(audio) == cut.num_samples
            (sup,) = cut.supervisions
            assert sup.language == lang and sup.speaker and sup.text
            phones = sup.alignment["phone"]
            assert phones[0].start == 0.0
            for a, b in zip(phones, phones[1:], strict=False):
                assert abs(a.start + a.duration - b.start) < 1e-6, (a, b)
            assert all(p.duration > 0 and p.symbol for p in phones)
            assert abs(phones[-1].start + phones[-1].duration - len(audio) / rate) <= 0.010
            transcript = [p.symbol for p in phones if p.symbol != SILENCE]
            assert transcript and sup.custom["phones"] == transcript
            assert not any("ˈ" in p or "ˌ" in p for p in transcript)
            words = sup.alignment["word"]
            assert words and len(words) <= len(sup.text.split())
            for a, b in zip(words, words[1:], strict=False):
                assert a.start + a.duration <= b.start + 1e-6
            assert words[-1].start + words[-1].duration <= cut.duration + 1e-6
        inventory = json.loads((corpus / lang / "phones_train.json").read_text(encoding="utf-8"))
        assert set(inventory["phones"]) >= {
            p for c in cuts for p in c.supervisions[0].custom["phones"]
        }
    card = (corpus / "en" / "README.md").read_text(encoding="utf-8")
    assert "| train |" in card and "| test |" in card and "Lady Susan" in card
    assert "| sw | Swahili | unheard | train |" in (corpus / "SYNTHETIC.md").read_text(
        encoding="utf-8"
    )


def test_training_splits_keep_corpus_v2s_numbered_variants():
    """v3 changed only the held-out voices: train and pretrain deal the numbered variants as v2
    did (so v2's teachers and students heard exactly v3's training splits)."""
    assert synthetic.variant_split("sw", "m1") == "train"
    assert synthetic.variant_split("sw", "m3") == "pretrain"
    assert synthetic.variant_split("sw", "m6") is None  # v2's test variant, retired
    assert {s.variant for s in speakers("sw", "pretrain")} == {"m3", "m4", "m5", "f3", "f4"}
    assert {s.variant for s in speakers("sw", "train")} == {"m1", "m2", "f2"}


def test_held_out_splits_share_no_voice_variant_rate_or_word_with_training(corpus):
    """Corpus v3: no dev/test voice variant is used by a training split of any language, each
    language has at least 6 test and 3 dev voices, one rate is held out, and no dev or test word
    occurs in a train or pretrain text (numbers included)."""
    trained_anywhere = {
        s.variant
        for lang in available_languages()
        for split in ("train", "pretrain")
        for s in speakers(lang, split)
    }
    assert trained_anywhere <= set(synthetic.VARIANTS)
    assert synthetic.held_out_voices()["shared"] == 0
    for lang in available_languages():
        pool = {split: speakers(lang, split) for split in synthetic.SPLITS}
        assert all(pool.values())
        trained = {(s.voice, s.variant) for split in ("train", "pretrain") for s in pool[split]}
        for held_out, least in (("dev", 3), ("test", 6)):
            voices = {(s.voice, s.variant) for s in pool[held_out]}
            assert len(voices) >= least
            assert not voices & trained
            assert not {v for _, v in voices} & trained_anywhere
        assert not {(s.voice, s.variant) for s in pool["dev"]} & {
            (s.voice, s.variant) for s in pool["test"]
        }
        assert not {(s.voice, s.variant) for s in pool["train"]} & {
            (s.voice, s.variant) for s in pool["pretrain"]
        }
        rates = {split: {s.rate for s in pool[split]} for split in pool}
        assert rates["test"] - rates["train"] - rates["pretrain"] >= set(synthetic.HELD_OUT_RATES)
    assert len(texts._text_source("en")) >= 1000
    rng = np.random.default_rng(0)
    for lang in ("en", "sw", "ka"):
        seen = {split: [synthetic.make_text(lang, split, rng) for _ in range(60)] for split in pool}
        train_words = {
            w for split in ("train", "pretrain") for t in seen[split] for w in texts.tokens(t)
        }
        for held_out in ("dev", "test"):
            assert all(synthetic.text_split(lang, t) == held_out for t in seen[held_out])
            held_words = {w for t in seen[held_out] for w in texts.tokens(t)}
            own = {w for w in held_words if synthetic.word_split(lang, w) == held_out}
            assert own and not own & train_words
        assert all(synthetic.text_split(lang, t) == "train" for t in seen["train"])
    numbers = [synthetic.make_text("ka", "test", rng) for _ in range(300)]
    digits = {w for t in numbers for w in texts.tokens(t) if w.isdigit()}
    assert digits and all(synthetic.word_split("ka", d) == "test" for d in digits)
    for lang in ("en", "sw"):
        train, test = (
            _cuts(corpus / lang / f"cuts_{split}.jsonl.gz") for split in ("train", "test")
        )
        speakers_of = [{c.supervisions[0].speaker for c in cuts} for cuts in (train, test)]
        texts_of = [{c.supervisions[0].text for c in cuts} for cuts in (train, test)]
        assert not speakers_of[0] & speakers_of[1]
        assert not texts_of[0] & texts_of[1]
        assert {c.custom["tier"] for c in train + test} == {synthetic.tier_of(lang)}
    assert synthetic.tier_of("sw") == "unheard" and synthetic.tier_of("es") == "label"
    assert sorted(x for tier in synthetic.TIERS.values() for x in tier) == sorted(
        synthetic.EVAL_LANGUAGES
    )


def test_the_english_draw_follows_the_seed():
    draws = [
        [synthetic.utterance_spec("en", "train", seed, i)["text"] for i in range(20)]
        for seed in (0, 0, 1)
    ]
    assert draws[0] == draws[1] and draws[0] != draws[2]


_RUN = """
import sys
from pathlib import Path
from distilxlsr.data.synthetic import synthesize_corpus
synthesize_corpus(Path(sys.argv[1]), ["en", "ru"], 0.1, "train", seed=7, jobs=int(sys.argv[2]), progress=False)
"""


def _manifest_lines(path: Path, root: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.replace(str(root), "ROOT") for line in f]


def test_same_seed_gives_identical_bytes_in_separate_processes(tmp_path):
    roots = [tmp_path / "a", tmp_path / "b"]
    env = dict(os.environ, PYTHONPATH=str(Path(distilxlsr.__file__).resolve().parents[1]))
    runs = [
        subprocess.Popen([sys.executable, "-c", _RUN, str(root), jobs], env=env)
        for root, jobs in zip(roots, ("1", "2"), strict=True)
    ]
    assert [run.wait(timeout=120) for run in runs] == [0, 0]
    for lang in ("en", "ru"):
        flacs = [sorted((root / lang / "audio" / "train").glob("*.flac")) for root in roots]
        assert flacs[0] and [f.name for f in flacs[0]] == [f.name for f in flacs[1]]
        for a, b in zip(*flacs, strict=True):
            assert a.read_bytes() == b.read_bytes()
        for kind in ("cuts", "supervisions"):
            a, b = (_manifest_lines(root / lang / f"{kind}_train.jsonl.gz", root) for root in roots)
            assert a == b


def test_same_arguments_reuse_the_output_and_damage_is_repaired(tmp_path):
    args = dict(langs=["sw"], minutes=TINY, split="train", seed=3, jobs=1, progress=False)
    (manifest,) = synthesize_corpus(tmp_path, **args)
    flac = sorted((tmp_path / "sw" / "audio" / "train").glob("*.flac"))[0]
    original = flac.read_bytes()
    stamp = tmp_path / "sw" / "synth_train.json"
    mtimes = {p: p.stat().st_mtime_ns for p in (flac, manifest, stamp)}
    assert synthesize_corpus(tmp_path, **args) == [manifest]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # reused, not rewritten
    flac.write_bytes(original[: len(original) // 2])  # a partial file
    synthesize_corpus(tmp_path, **args)
    assert flac.read_bytes() == original
    flac.write_bytes(original[:-4] + b"\0\0\0\0")  # same size, other bytes
    synthesize_corpus(tmp_path, **args)
    assert flac.read_bytes() == original
    stamp.unlink()  # an interrupted run writes no stamp
    synthesize_corpus(tmp_path, **args)
    assert flac.read_bytes() == original and stamp.is_file()
    synthesize_corpus(tmp_path, **(args | {"seed": 4}))  # other arguments: written anew
    assert json.loads(stamp.read_text())["args"]["seed"] == 4


def test_every_language_speaks_a_sentence(all_languages):
    root, manifests = all_languages
    assert [m.parent.name for m in manifests] == available_languages()
    assert len(manifests) == 16
    for manifest in manifests:
        cuts = _cuts(manifest)
        assert cuts, manifest
        for cut in cuts:
            phones = cut.supervisions[0].custom["phones"]
            assert len(phones) >= 3, (manifest, cut.supervisions[0].text)
            # every name is IPA: no Kirshenbaum ASCII left (Kyrgyz dZ S N X, ...)
            assert not any(ch.isascii() and not ch.islower() for p in phones for ch in p), phones
    inventory = json.loads((root / "ky" / "phones_test.json").read_text(encoding="utf-8"))["phones"]
    assert inventory and not any(ch.isupper() for p in inventory for ch in p if ch.isascii())


def test_kirshenbaum_names_map_to_ipa():
    assert [to_ipa(n, "ky") for n in ("dZ", "S", "N", "X", "tS", "t[", "d[", "l-", "a:", "oe")] == [
        "dʒ",
        "ʃ",
        "ŋ",
        "χ",
        "tʃ",
        "t̪",
        "d̪",
        "ɫ",
        "aː",
        "œ",
    ]
    assert to_ipa('u"', "ru") == "ʉ"
    assert to_ipa("ə-", "fr") == "ə"
    # IPA names pass unchanged, less their stress marks
    assert [to_ipa(n) for n in ("ˈɔːɹ", "ˌaɪ", "ts", "tʃʲ", "ɛ̃", "")] == [
        "ɔːɹ",
        "aɪ",
        "ts",
        "tʃʲ",
        "ɛ̃",
        "",
    ]


def test_stop_closure_boundary_moves_back_over_exact_zeros():
    audio = np.ones(2000, dtype=np.int16)
    audio[700:1000] = 0  # the closure, written at the end of the vowel before the stop
    segments = [
        Segment(0, 100, SILENCE, silence=True),
        Segment(100, 1000, "a", word=0),
        Segment(1000, 1500, "t", word=0),
        Segment(1500, 2000, "s", word=0),
    ]
    moved = move_stop_closures(segments, audio)
    assert [(s.label, s.start, s.end) for s in moved] == [
        (SILENCE, 0, 100),
        ("a", 100, 700),
        ("t", 700, 1500),
        ("s", 1500, 2000),
    ]
    assert segments[2].start == 1000  # the input is left alone
    # the previous phone keeps at least min_keep samples
    audio[100:1000] = 0
    assert move_stop_closures(segments, audio, min_keep=220)[2].start == 320
    # only stops move; a stop after a pause keeps its start; a non-zero tail moves nothing
    silent_tail = np.ones(2000, dtype=np.int16)
    silent_tail[1300:1500] = 0
    same = [
        Segment(0, 1000, SILENCE, silence=True),
        Segment(1000, 1500, "k"),
        Segment(1500, 2000, "s"),
    ]
    assert [s.start for s in move_stop_closures(same, silent_tail)] == [0, 1000, 1500]
    assert [s.start for s in move_stop_closures(segments, np.ones(2000, np.int16))] == [
        0,
        100,
        1000,
        1500,
    ]


def test_segments_from_events_rules():
    text = "Twenty 42 dollars."
    events = [
        ("word", 1, 0, ""),
        ("phone", 1, 10, "t"),
        ("phone", 1, 40, "ˈw"),
        ("phone", 1, 50, "ɛ"),  # zero length: dropped
        ("phone", 1, 50, "n"),
        ("word", 8, 90, ""),  # "42" is read as two words ...
        ("phone", 8, 90, "f"),
        ("phone", 8, 120, "(en)"),  # a language-switch marker is not a phone
        ("word", 9, 130, ""),  # ... that stay one token
        ("phone", 9, 130, "k"),
        ("phone", 9, 150, "ʲ"),  # a bare modifier joins the phone before it
        ("phone", 9, 170, ""),  # a pause
        ("word", 11, 200, ""),
        ("phone", 11, 200, "d"),
        ("phone", 11, 260, ""),
    ]
    segments = segments_from_events(events, 300, text, "en")
    assert [(s.label, s.start, s.end) for s in segments] == [
        (SILENCE, 0, 10),
        ("t", 10, 40),
        ("w", 40, 50),
        ("n", 50, 90),
        ("f", 90, 130),
        ("kʲ", 130, 170),
        (SILENCE, 170, 200),
        ("d", 200, 260),
        (SILENCE, 260, 300),
    ]
    assert all(s.silence == (s.label == SILENCE) for s in segments)
    assert all(s.word is None for s in segments if s.silence)
    assert synthetic.word_spans(segments, text) == [
        ("Twenty", 10, 90),
        ("42", 90, 170),
        ("dollars", 200, 260),
    ]
    at_16k = synthetic.resample_segments(segments, 22050, 16000, 218)
    assert at_16k[0].start == 0 and at_16k[-1].end == 218
    assert all(a.end == b.start for a, b in zip(at_16k, at_16k[1:], strict=False))


def test_unknown_language_is_a_user_error(tmp_path):
    with pytest.raises(UserError) as error:
        synthesize_corpus(tmp_path, ["en", "xx"], TINY, "train", progress=False)
    message = str(error.value)
    assert "'xx'" in message and "en, el, eu" in message and "ka" in message
    assert "\n" not in message
    with pytest.raises(UserError):
        synthesize_corpus(tmp_path, ["en"], TINY, "valid", progress=False)
    with pytest.raises(UserError):
        synthesize_corpus(tmp_path, ["en"], 0, "train", progress=False)
    assert not (tmp_path / "en").exists()


def test_evidence_corpus_is_the_15_languages_three_splits_and_english(monkeypatch, tmp_path):
    from distilxlsr.data.synthetic import corpus

    calls = []
    monkeypatch.setattr(
        corpus, "synthesize_corpus", lambda out, langs, minutes, split, seed, jobs: calls.append(
            (out, tuple(langs), minutes, split, seed, jobs)
        ),
    )  # fmt: skip
    corpus.synthesize_evidence_corpus(tmp_path, jobs=3)
    fifteen = tuple(synthetic.EVAL_LANGUAGES)
    assert len(fifteen) == 15
    assert calls == [
        (tmp_path, fifteen, 5.0, "train", 0, 3),
        (tmp_path, fifteen, 2.5, "dev", 0, 3),
        (tmp_path, fifteen, 5.0, "test", 0, 3),
        (tmp_path, ("en",), 20.0, "train", 0, 3),
    ]
