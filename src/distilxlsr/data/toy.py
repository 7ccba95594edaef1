"""A tiny generated corpus with exact phone and word alignments, for tests and the quick demo.

Each "phone" is a short sound with its own spectrum (three harmonic partials, or shaped noise for
fricative-like symbols) under a smooth envelope; words are runs of phones; pauses are silence.
It is not speech, but it has the structure the pipeline needs: audio, supervisions, alignments,
phone transcripts and speakers, in the corpus-directory layout, written in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.supervision import AlignmentItem

from distilxlsr.conventions import SAMPLE_RATE

PHONES = [f"p{i}" for i in range(12)] + ["s", "f"]


def _phone_sound(symbol: str, n: int, sr: int, pitch: float, rng: np.random.Generator):
    t = np.arange(n) / sr
    if symbol in ("s", "f"):
        noise = rng.standard_normal(n)
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(n, 1 / sr)
        centre = 5000.0 if symbol == "s" else 2500.0
        spectrum *= np.exp(-(((freqs - centre) / 800.0) ** 2))
        wave = np.fft.irfft(spectrum, n) * 3.0
    else:
        index = int(symbol[1:])
        formants = (300 + 60 * index, 900 + 130 * index, 2200 + 90 * (index % 5))
        wave = sum(
            np.sin(2 * np.pi * (round(f / pitch) * pitch) * t) / (k + 1)
            for k, f in enumerate(formants)
        )
    envelope = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * sr) + 1e-3)
    return 0.2 * wave * envelope


def make_toy_corpus(
    out: str | Path,
    lang: str = "en",
    split: str = "train",
    num_utterances: int = 16,
    seconds: tuple[float, float] = (1.0, 3.0),
    num_speakers: int = 4,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    tier: str | None = None,
) -> Path:
    """Write ROOT/<lang>/cuts_<split>.jsonl.gz (+ recordings, supervisions, FLAC audio); with
    `tier`, every cut carries it in custom["tier"], as corpus v2's do."""
    rng = np.random.default_rng(seed)
    lang_dir = Path(out) / lang
    audio_dir = lang_dir / "audio" / split
    audio_dir.mkdir(parents=True, exist_ok=True)
    recordings, supervisions = [], []
    for u in range(num_utterances):
        speaker = f"{lang}-{split}-spk{u % num_speakers}"
        pitch = 100.0 + 25.0 * (u % num_speakers)
        target = rng.uniform(*seconds)
        pieces, phone_items, word_items, phones = [], [], [], []
        pos = int(0.1 * sample_rate)
        pieces.append(np.zeros(pos))
        while pos < target * sample_rate:
            word_start = pos
            word = []
            for _ in range(int(rng.integers(2, 5))):
                symbol = PHONES[int(rng.integers(len(PHONES)))]
                n = int(rng.uniform(0.05, 0.14) * sample_rate)
                pieces.append(_phone_sound(symbol, n, sample_rate, pitch, rng))
                phone_items.append(AlignmentItem(symbol, pos / sample_rate, n / sample_rate))
                phones.append(symbol)
                word.append(symbol)
                pos += n
            word_items.append(
                AlignmentItem(
                    "".join(word), word_start / sample_rate, (pos - word_start) / sample_rate
                )
            )
            gap = int(rng.uniform(0.03, 0.15) * sample_rate)
            pieces.append(np.zeros(gap))
            pos += gap
        audio = np.concatenate(pieces).astype(np.float32)
        audio += 0.002 * rng.standard_normal(len(audio)).astype(np.float32)
        rec_id = f"{lang}-{split}-{u:05d}"
        path = audio_dir / f"{rec_id}.flac"
        sf.write(path, audio, sample_rate)
        recordings.append(Recording.from_file(path, recording_id=rec_id))
        supervisions.append(
            SupervisionSegment(
                id=rec_id,
                recording_id=rec_id,
                start=0.0,
                duration=recordings[-1].duration,
                channel=0,
                text=" ".join(w.symbol for w in word_items),
                language=lang,
                speaker=speaker,
                alignment={"phone": phone_items, "word": word_items},
                custom={"phones": phones},
            )
        )
    recording_set = RecordingSet.from_recordings(recordings)
    supervision_set = SupervisionSet.from_segments(supervisions)
    recording_set.to_file(lang_dir / f"recordings_{split}.jsonl.gz")
    supervision_set.to_file(lang_dir / f"supervisions_{split}.jsonl.gz")
    cuts = CutSet.from_manifests(recordings=recording_set, supervisions=supervision_set)
    if tier is not None:
        cuts = CutSet.from_cuts(cut.with_custom("tier", tier) for cut in cuts)
    manifest = lang_dir / f"cuts_{split}.jsonl.gz"
    cuts.to_file(manifest)
    return manifest
