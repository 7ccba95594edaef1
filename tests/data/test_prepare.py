"""`distilxlsr prepare` recipes on small corpora written here in the real formats: a LibriSpeech
tree (FLAC + trans.txt) with MFA TextGrids (long and short format, written with praatio) or a Kaldi
CTM, an MFA-aligned corpus with every kind of bad input, fairseq manifests and a Common Voice
release (mp3 where libsndfile can encode MPEG layer III, as libsndfile >= 1.1 does; WAV clips
otherwise, which exercises the same code except the mp3 decoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from praatio import textgrid

from distilxlsr.data.alignments import LabelRules, index_ctm, read_ctm, words_from_positions
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.prepare import (
    PrepareOptions,
    prepare_commonvoice,
    prepare_fairseq,
    prepare_librispeech,
    prepare_textgrid,
)
from distilxlsr.errors import UserError
from tests.helpers import make_fairseq, write_audio

QUIET = {"progress": False}
CLIP = ("mp3", {"format": "MP3"}) if "MP3" in sf.available_formats() else ("wav", {})


def write_textgrid(path: Path, phones, words, xmax: float, fmt: str = "long_textgrid") -> Path:
    """An MFA-style TextGrid: `words` and `phones` interval tiers."""
    grid = textgrid.Textgrid()
    grid.addTier(textgrid.IntervalTier("words", words, 0.0, xmax))
    grid.addTier(textgrid.IntervalTier("phones", phones, 0.0, xmax))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(str(path), format=fmt, includeBlankSpaces=True)
    return path


# "hello world" in ARPAbet with stress digits, as MFA's english_us_arpa model writes it.
HELLO_PHONES = [
    (0.0, 0.1, "sil"),
    (0.1, 0.2, "HH"),
    (0.2, 0.3, "AH0"),
    (0.3, 0.4, "L"),
    (0.4, 0.5, "OW1"),
    (0.5, 0.6, "sp"),
    (0.6, 0.7, "W"),
    (0.7, 0.8, "ER1"),
    (0.8, 0.9, "L"),
    (0.9, 1.0, "D"),
]
HELLO_WORDS = [(0.1, 0.5, "hello"), (0.6, 1.0, "world")]
HELLO = ["HH", "AH", "L", "OW", "W", "ER", "L", "D"]


def hello_grid(path: Path, xmax: float = 1.2, fmt: str = "long_textgrid", shift: float = 0.0):
    phones = [(a + shift, b + shift, x) for a, b, x in HELLO_PHONES]
    words = [(a + shift, b + shift, x) for a, b, x in HELLO_WORDS]
    return write_textgrid(path, phones, words, max(xmax, phones[-1][1]), fmt)


def rejected(out: Path, lang: str, split: str) -> dict[str, str]:
    lines = (out / lang / f"rejected_{split}.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all({"id", "path", "reason", "detail"} <= r.keys() for r in records)
    return {r["id"]: r["reason"] for r in records}


def supervisions(out: Path, lang: str, split: str) -> dict:
    return {c.id: c.supervisions[0] for c in load_cuts(out / lang, split)}


# ---------------------------------------------------------------------------------------------


def test_label_rules():
    rules = LabelRules()
    assert [rules.normalize(x) for x in ("AH0", "OW1_B", "K_E", "ɑː", "T_S", "ER2_I")] == [
        "AH",
        "OW",
        "K",
        "ɑː",
        "T",
        "ER",
    ]
    assert all(
        rules.is_silence(rules.normalize(x)) for x in ("sil", "SIL", "sp", "spn", "", "SIL_S")
    )
    assert not rules.is_silence("AH")
    keep = LabelRules(strip_stress=False, strip_position=False, silence_labels=frozenset({"<sil>"}))
    assert (
        keep.normalize("AH0_B") == "AH0_B"
        and keep.is_silence("<SIL>")
        and not keep.is_silence("sil")
    )


def make_librispeech(root: Path, alignments: Path | None) -> Path:
    """Two train parts, one dev part; TextGrids as DIR/<speaker>/<utt>.TextGrid for train-clean-100
    and mirroring the corpus tree for the others; one in the short format."""
    layout = {
        "train-clean-100": {("19", "198"): 3},
        "train-other-500": {("20", "300"): 2},
        "dev-clean": {("30", "400"): 2},
    }
    for part, chapters in layout.items():
        for (speaker, chapter), n in chapters.items():
            chapter_dir = root / part / speaker / chapter
            lines = []
            for i in range(n):
                utt = f"{speaker}-{chapter}-{i:04d}"
                write_audio(chapter_dir / f"{utt}.flac", 1.2)
                lines.append(f"{utt} HELLO WORLD")
                if alignments is None:
                    continue
                if part == "train-clean-100":
                    grid = alignments / speaker / f"{utt}.TextGrid"
                else:
                    grid = alignments / part / speaker / chapter / f"{utt}.TextGrid"
                hello_grid(grid, fmt="short_textgrid" if utt == "20-300-0001" else "long_textgrid")
            (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech_with_textgrids(tmp_path, capsys):
    root = make_librispeech(tmp_path / "LibriSpeech", tmp_path / "mfa")
    out = tmp_path / "out"
    manifests = prepare_librispeech(root, tmp_path / "mfa", out, options=PrepareOptions(**QUIET))
    assert manifests == {
        "train": out / "en" / "cuts_train.jsonl.gz",
        "dev": out / "en" / "cuts_dev.jsonl.gz",
    }
    for split in ("train", "dev"):
        for kind in ("cuts", "recordings", "supervisions"):
            assert (out / "en" / f"{kind}_{split}.jsonl.gz").is_file()
        assert rejected(out, "en", split) == {}
    train = list(load_cuts(out / "en", "train"))
    assert sorted(c.id for c in train) == [
        "19-198-0000",
        "19-198-0001",
        "19-198-0002",
        "20-300-0000",
        "20-300-0001",
    ]
    cut = train[0]
    sup = cut.supervisions[0]
    assert sup.language == "en" and sup.speaker == cut.id.split("-")[0]
    assert sup.text == "HELLO WORLD"
    assert sup.custom["phones"] == HELLO  # stress stripped, silences left out
    assert [a.symbol for a in sup.alignment["phone"]] == HELLO
    assert sup.alignment["phone"][0].start == pytest.approx(0.1)
    assert [(w.symbol, w.start, w.end) for w in sup.alignment["word"]] == [
        ("hello", 0.1, 0.5),
        ("world", 0.6, 1.0),
    ]
    assert cut.sampling_rate == 16000 and cut.load_audio().shape == (1, 19200)
    short = next(c for c in train if c.id == "20-300-0001")  # the short-format TextGrid
    assert short.supervisions[0].custom["phones"] == HELLO
    assert "en/train: prepared 5 utterances" in capsys.readouterr().out


def test_librispeech_rejects_and_parallel_jobs(tmp_path, capsys):
    root = make_librispeech(tmp_path / "LibriSpeech", tmp_path / "mfa")
    chapter = root / "train-clean-100" / "19" / "198"
    (tmp_path / "mfa" / "19" / "19-198-0002.TextGrid").unlink()  # missing alignment
    trans = chapter / "19-198.trans.txt"
    data = trans.read_bytes().replace(b"19-198-0001 HELLO WORLD", b"19-198-0001 HELL\xff WORLD")
    trans.write_bytes(data + b"19-198-0009 NO AUDIO FOR THIS LINE\n")  # audio missing
    write_audio(chapter / "19-198-0005.flac", 1.0)  # no transcript line
    opts = PrepareOptions(max_reject_share=0.9, jobs=2, progress=False)
    prepare_librispeech(
        root, tmp_path / "mfa", tmp_path / "out", parts=["train-clean-100"], options=opts
    )
    assert rejected(tmp_path / "out", "en", "train") == {
        "19-198-0001": "bad_encoding",
        "19-198-0002": "missing_alignment",
        "19-198-0005": "missing_transcript",
        "19-198-0009": "unreadable_audio",
    }
    summary = capsys.readouterr().out
    assert "prepared 1 utterance " in summary and "rejected 4:" in summary
    assert "1 missing alignment" in summary and "1 transcript not UTF-8" in summary
    assert list(supervisions(tmp_path / "out", "en", "train")) == ["19-198-0000"]


def test_librispeech_errors(tmp_path):
    root = make_librispeech(tmp_path / "LibriSpeech", None)
    with pytest.raises(UserError, match="alignments"):
        prepare_librispeech(root, None, tmp_path / "out")
    with pytest.raises(UserError, match="no .TextGrid"):
        (tmp_path / "empty").mkdir()
        prepare_librispeech(root, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(UserError, match="train-clean-360"):
        prepare_librispeech(root, tmp_path / "x", tmp_path / "out", parts=["train-clean-360"])
    with pytest.raises(UserError, match="no LibriSpeech parts"):
        prepare_librispeech(tmp_path / "empty", tmp_path / "empty", tmp_path / "out")


def test_abort_when_too_many_rejects(tmp_path):
    root = make_librispeech(tmp_path / "LibriSpeech", tmp_path / "mfa")
    (tmp_path / "mfa" / "19" / "19-198-0000.TextGrid").unlink()
    out = tmp_path / "out"
    # dev is fine; train has 1 reject in 5 (20% > 5%).
    with pytest.raises(UserError, match=r"1 of 5 utterances of en/train .* missing alignment"):
        prepare_librispeech(root, tmp_path / "mfa", out, options=PrepareOptions(**QUIET))
    assert not (out / "en" / "cuts_train.jsonl.gz").exists()
    assert not list((out / "en").glob(".*partial*"))
    assert rejected(out, "en", "train") == {"19-198-0000": "missing_alignment"}
    # A larger allowed share lets it through.
    opts = PrepareOptions(max_reject_share=0.25, **QUIET)
    assert "train" in prepare_librispeech(root, tmp_path / "mfa", out, options=opts)


def test_librispeech_with_ctm(tmp_path):
    root = make_librispeech(tmp_path / "LibriSpeech", None)
    lines = []
    for utt in (
        "19-198-0000",
        "19-198-0001",
        "20-300-0000",
        "20-300-0001",
        "30-400-0000",
        "30-400-0001",
    ):
        items = [
            ("SIL", 0.0, 0.1),
            ("HH_B", 0.1, 0.1),
            ("AH0_I", 0.2, 0.1),
            ("L_I", 0.3, 0.1),
            ("OW1_E", 0.4, 0.1),
            ("W_B", 0.6, 0.1),
            ("ER1_I", 0.7, 0.1),
            ("L_I", 0.8, 0.1),
            ("D_E", 0.9, 0.1),
        ]
        if utt == "19-198-0001":
            items[3], items[4] = items[4], items[3]  # unsorted
        if utt == "20-300-0000":
            items[2] = ("AH0_I", 0.2, 0.15)  # overlaps the next phone
        if utt == "20-300-0001":
            items[-1] = ("D_E", 0.9, 0.5)  # ends 0.2 s after the 1.2 s of audio
        lines += [f"{utt} 1 {start:.2f} {dur:.2f} {label}" for label, start, dur in items]
    ctm = tmp_path / "phones.ctm"
    ctm.write_text("\n".join(lines) + "\n")  # 19-198-0002 is not in it
    out = tmp_path / "out"
    opts = PrepareOptions(max_reject_share=0.9, **QUIET)
    prepare_librispeech(root, None, out, ctm=ctm, options=opts)
    assert rejected(out, "en", "train") == {
        "19-198-0001": "bad_segments",
        "19-198-0002": "missing_alignment",
        "20-300-0000": "bad_segments",
        "20-300-0001": "alignment_past_end",
    }
    sup = supervisions(out, "en", "train")["19-198-0000"]
    assert sup.custom["phones"] == HELLO
    assert [(w.symbol, round(w.start, 2), round(w.end, 2)) for w in sup.alignment["word"]] == [
        ("HELLO", 0.1, 0.5),
        ("WORLD", 0.6, 1.0),
    ]
    assert len(supervisions(out, "en", "dev")) == 2


def test_ctm_index_and_positions(tmp_path):
    ctm = tmp_path / "a.ctm"
    ctm.write_text("u1 1 0.0 0.1 K_B\nu2 1 0.0 0.2 A_S\nu1 1 0.1 0.1 AE1_E\n")
    index = index_ctm(ctm)
    assert len(index["u1"]) == 2 and len(index["u2"]) == 1
    phones = read_ctm(ctm, index["u1"])
    assert phones == [(0.0, 0.1, "K_B"), (0.1, pytest.approx(0.2), "AE1_E")]
    assert words_from_positions(phones, ["CAT"], LabelRules()) == [(0.0, pytest.approx(0.2), "CAT")]
    assert words_from_positions(phones, ["A", "CAT"], LabelRules()) == []


def test_textgrid_corpus_every_bad_input(tmp_path, capsys):
    audio, grids = tmp_path / "corpus", tmp_path / "aligned"
    spk = audio / "spk1"

    def utt(name: str, seconds: float = 1.2, grid: bool = True, **kwargs):
        path = write_audio(spk / f"{name}.wav", seconds, **kwargs)
        (spk / f"{name}.lab").write_text("hello world")
        if grid:
            hello_grid(grids / "spk1" / f"{name}.TextGrid")
        return path

    utt("good")
    utt("stereo44k", sr=44100, channels=2)  # converted to 16 kHz mono
    utt("clamped", seconds=0.98)  # alignment 20 ms past the end: cut there
    utt("pastend", seconds=0.8)  # alignment 200 ms past the end: reject
    (spk / "unreadable.wav").write_bytes(b"RIFF....this is not audio")
    hello_grid(grids / "spk1" / "unreadable.TextGrid")
    utt("empty", seconds=0.0)
    nan = utt("nan", subtype="FLOAT")
    data, sr = sf.read(nan, dtype="float32")
    data[100] = np.nan
    sf.write(nan, data, sr, subtype="FLOAT")
    utt("nogrid", grid=False)
    utt("toolong", seconds=4.0)
    utt("badutf8")
    (spk / "badutf8.lab").write_bytes(b"hello w\xf6rld")
    utt("unknown", grid=False)
    phones = [*HELLO_PHONES[:-1], (0.9, 1.0, "XX")]
    write_textgrid(grids / "spk1" / "unknown.TextGrid", phones, HELLO_WORDS, 1.2)
    utt("overlap", grid=False)
    text = (hello_grid(tmp_path / "tmp.TextGrid")).read_text()
    head, tail = text.split('name = "phones"')
    overlap = head + 'name = "phones"' + tail.replace("xmin = 0.2 ", "xmin = 0.15 ", 1)
    (grids / "spk1" / "overlap.TextGrid").write_text(overlap)
    utt("garbled", grid=False)
    (grids / "spk1" / "garbled.TextGrid").write_text("this is not a TextGrid")
    utt("silent_only", grid=False)
    write_textgrid(grids / "spk1" / "silent_only.TextGrid", [(0.0, 1.2, "sil")], [], 1.2)

    out = tmp_path / "out"
    opts = PrepareOptions(max_reject_share=0.9, max_seconds=3.0, phone_set=HELLO, **QUIET)
    manifests = prepare_textgrid(audio, grids, out, lang="xx", split="train", options=opts)
    assert manifests == {"train": out / "xx" / "cuts_train.jsonl.gz"}
    assert rejected(out, "xx", "train") == {
        "pastend": "alignment_past_end",
        "unreadable": "unreadable_audio",
        "empty": "empty_audio",
        "nan": "nonfinite_audio",
        "nogrid": "missing_alignment",
        "toolong": "too_long",
        "badutf8": "bad_encoding",
        "unknown": "unknown_label",
        "overlap": "bad_segments",
        "garbled": "unreadable_alignment",
        "silent_only": "empty_transcript",
    }
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("xx/train: prepared 3 utterances")
    assert "rejected 11:" in summary and "1 NaN/inf samples" in summary
    assert "1 alignment cut at the audio end" in summary and "1 file converted" in summary

    sups = supervisions(out, "xx", "train")
    assert set(sups) == {"good", "stereo44k", "clamped"}
    assert sups["good"].speaker == "spk1" and sups["good"].text == "hello world"
    assert sups["clamped"].alignment["phone"][-1].end == pytest.approx(0.98)
    cuts = {c.id: c for c in load_cuts(out / "xx", "train")}
    stereo = cuts["stereo44k"]
    assert stereo.sampling_rate == 16000 and stereo.num_channels == 1
    assert stereo.load_audio().shape == (1, 19200)
    assert Path(stereo.recording.sources[0].source).is_relative_to(out / "xx" / "audio" / "train")


def test_fairseq(tmp_path):
    directory = make_fairseq(tmp_path / "sw")
    out = tmp_path / "out"
    opts = PrepareOptions(max_reject_share=0.5, **QUIET)
    manifests = prepare_fairseq(directory, out, options=opts)
    assert set(manifests) == {"train", "valid"}
    assert rejected(out, "sw", "train") == {"c": "unknown_label"}  # q is not in dict.phn.txt
    sups = supervisions(out, "sw", "train")
    assert sups["a"].custom["phones"] == ["h", "a", "m", "b", "a"]
    assert sups["a"].text == "ha mba" and sups["a"].language == "sw" and sups["a"].speaker == "spkA"
    assert sups["a"].alignment is None
    assert supervisions(out, "sw", "valid")["d"].custom["phones"] == ["b", "a", "b", "a"]
    assert supervisions(out, "sw", "valid")["d"].text is None


def test_a_two_channel_recording_is_prepared_as_the_mean_of_its_channels(tmp_path):
    directory = make_fairseq(tmp_path / "sw")
    g = np.random.default_rng(1)
    left = (0.5 * np.sin(np.arange(12800) * 0.05)).astype(np.float32)
    right = (0.2 * g.standard_normal(12800)).astype(np.float32)
    stereo = np.stack([left, right], axis=1)
    sf.write(tmp_path / "wavs" / "spkA" / "a.wav", stereo, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    prepare_fairseq(directory, out, options=PrepareOptions(max_reject_share=0.5, **QUIET))
    cut = next(c for c in load_cuts(out / "sw", "train") if c.id == "a")
    assert cut.num_channels == 1
    # written as 16-bit FLAC: the mean to within half a quantisation step
    prepared = cut.load_audio()[0]
    np.testing.assert_allclose(prepared, (left + right) / 2, rtol=0, atol=0.5 / 32768 + 1e-7)


def test_fairseq_structural_errors(tmp_path):
    directory = make_fairseq(tmp_path / "sw")
    (directory / "train.phn").write_text("h a |\n")
    with pytest.raises(UserError, match="parallel"):
        prepare_fairseq(directory, tmp_path / "out", options=PrepareOptions(**QUIET))
    (directory / "train.tsv").write_text("/no/such/dir\nx.wav\t1\n")
    with pytest.raises(UserError, match="audio root"):
        prepare_fairseq(directory, tmp_path / "out", options=PrepareOptions(**QUIET))


def test_commonvoice_mp3_espeak(tmp_path):
    root = tmp_path / "cv" / "el"
    clips = root / "clips"
    header = (
        "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    )
    sentences = {"train": ["Καλημέρα κόσμε.", "Το σπίτι είναι μεγάλο."], "dev": ["Ευχαριστώ πολύ."]}
    for split, texts in sentences.items():
        rows = []
        for i, text in enumerate(texts):
            name = f"common_voice_el_{split}{i}.{CLIP[0]}"
            write_audio(clips / name, 1.0, sr=48000, **CLIP[1])
            rows.append(f"client{i}\t{name}\t{text}\t2\t0\t\t\t\tel\t\n")
        if split == "train":
            rows.append("client9\tcommon_voice_el_missing.mp3\tΛείπει.\t2\t0\t\t\t\tel\t\n")
        (root / f"{split}.tsv").write_text(header + "".join(rows), encoding="utf-8")
    out = tmp_path / "out"
    opts = PrepareOptions(max_reject_share=0.5, **QUIET)
    manifests = prepare_commonvoice(root, out, "el", options=opts)
    assert set(manifests) == {"train", "dev"}  # no test.tsv here
    assert rejected(out, "el", "train") == {"common_voice_el_missing": "unreadable_audio"}
    cuts = {c.id: c for c in load_cuts(out / "el", "train")}
    cut = cuts["common_voice_el_train0"]
    sup = cut.supervisions[0]
    assert sup.language == "el" and sup.speaker == "client0" and sup.text == "Καλημέρα κόσμε."
    phones = sup.custom["phones"]
    assert phones[:4] == ["k", "a", "l", "i"] and not any("ˈ" in p for p in phones)
    assert cut.sampling_rate == 16000 and cut.recording.sources[0].source.endswith(".flac")
    assert abs(cut.load_audio().shape[1] - 16000) < 800  # mp3 padding aside, 1 s at 16 kHz


def test_commonvoice_given_labels_and_unknown_voice(tmp_path):
    root = tmp_path / "cv" / "zz"
    write_audio(root / "clips" / f"x1.{CLIP[0]}", 0.6, sr=48000, **CLIP[1])
    (root / "train.tsv").write_text(f"client_id\tpath\tsentence\nc1\tx1.{CLIP[0]}\tblah\n")
    with pytest.raises(UserError, match="no voice"):
        prepare_commonvoice(root, tmp_path / "out", "zz", options=PrepareOptions(**QUIET))
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"x1.{CLIP[0]}\tb l a h\n")
    prepare_commonvoice(
        root, tmp_path / "out", "zz", phones=labels, options=PrepareOptions(**QUIET)
    )
    assert supervisions(tmp_path / "out", "zz", "train")["x1"].custom["phones"] == [
        "b",
        "l",
        "a",
        "h",
    ]


def test_ids_that_sanitise_alike_get_their_own_audio_files(tmp_path):
    audio, grids = tmp_path / "corpus", tmp_path / "aligned"
    for name, seconds in (("take  ;1", 1.2), ("take ##1", 1.5)):
        write_audio(audio / "spk1" / f"{name}.wav", seconds)
        (audio / "spk1" / f"{name}.lab").write_text("hello world")
        hello_grid(grids / "spk1" / f"{name}.TextGrid")
    out = tmp_path / "out"
    prepare_textgrid(audio, grids, out, lang="xx", split="train", options=PrepareOptions(**QUIET))
    cuts = {c.id: c for c in load_cuts(out / "xx", "train")}
    assert set(cuts) == {"take  ;1", "take ##1"}
    files = {c.recording.sources[0].source for c in cuts.values()}
    assert len(files) == 2
    for cut in cuts.values():  # each manifest still describes its own audio
        assert cut.load_audio().shape[1] == cut.recording.num_samples


def test_conflicting_transcript_lines_are_a_counted_reject(tmp_path, capsys):
    root = make_librispeech(tmp_path / "LibriSpeech", tmp_path / "mfa")
    trans = root / "train-clean-100" / "19" / "198" / "19-198.trans.txt"
    text = trans.read_text()
    trans.write_text(text + "19-198-0000 HELLO WORLD\n19-198-0001 WORLD HELLO\n")
    opts = PrepareOptions(max_reject_share=0.9, progress=False)
    prepare_librispeech(
        root, tmp_path / "mfa", tmp_path / "out", parts=["train-clean-100"], options=opts
    )
    # an identical repeat is harmless; two different lines for one id are not
    assert rejected(tmp_path / "out", "en", "train") == {"19-198-0001": "conflicting_transcript"}
    assert "1 two different transcripts" in capsys.readouterr().out


def test_a_wav_file_cut_short_is_a_counted_reject(tmp_path, capsys):
    audio, grids = tmp_path / "corpus", tmp_path / "aligned"
    for name in ("whole", "cut"):
        write_audio(audio / "spk1" / f"{name}.wav", 1.2)
        (audio / "spk1" / f"{name}.lab").write_text("hello world")
        hello_grid(grids / "spk1" / f"{name}.TextGrid")
    cut = audio / "spk1" / "cut.wav"
    cut.write_bytes(cut.read_bytes()[:-4000])  # a copy that stopped early
    out = tmp_path / "out"
    opts = PrepareOptions(max_reject_share=0.9, **QUIET)
    prepare_textgrid(audio, grids, out, lang="xx", split="train", options=opts)
    assert rejected(out, "xx", "train") == {"cut": "truncated_audio"}
    assert "1 audio cut short" in capsys.readouterr().out


def test_commonvoice_short_row_with_client_id_last(tmp_path):
    root = tmp_path / "cv" / "zz"
    for i in (1, 2):
        write_audio(root / "clips" / f"x{i}.{CLIP[0]}", 0.6, sr=48000, **CLIP[1])
    (root / "train.tsv").write_text(
        f"path\tsentence\tclient_id\nx1.{CLIP[0]}\tblah\tc1\nx2.{CLIP[0]}\tblah\n"
    )
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"x1.{CLIP[0]}\tb l a h\nx2.{CLIP[0]}\tb l a h\n")
    opts = PrepareOptions(**QUIET)
    prepare_commonvoice(root, tmp_path / "out", "zz", phones=labels, options=opts)
    sups = supervisions(tmp_path / "out", "zz", "train")
    assert sups["x1"].speaker == "c1" and sups["x2"].speaker == "unknown"


def test_synth_refuses_a_non_finite_length(capsys):
    from distilxlsr.cli import main

    with pytest.raises(SystemExit):
        main(["synth", "--langs", "en", "--minutes", "inf", "--out", "x"])
    assert "--minutes: inf must be a finite number above 0" in capsys.readouterr().err
