"""One utterance, from listed files to a cut or a reject (runs in worker processes).

The audio is decoded once and checked (unreadable, empty, non-finite, too long); files at another
rate or with several channels are down-mixed and resampled with soxr to FLAC; the phone
transcript comes from the alignment, given labels or eSpeak NG phonemization.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource

from distilxlsr.data.alignments import (
    UtteranceProblem,
    build_alignment,
    labels_to_phones,
    read_ctm,
    read_textgrid,
    words_from_positions,
)
from distilxlsr.data.espeak import phonemize
from distilxlsr.data.prepare.common import (
    Job,
    Utterance,
)


@dataclass
class Result:
    id: str
    path: str
    cut: dict | None = None
    """The cut, serialised in the worker (to_dict is the costly part of writing)."""
    seconds: float = 0.0
    reason: str = ""
    detail: str = ""
    notes: list[str] = field(default_factory=list)


def declared_wav_frames(path: str, info) -> int | None:
    """The frame count a PCM WAV file's header declares for its data chunk (libsndfile reads a
    cut-short file silently at its shortened length); None for other files."""
    if info.format != "WAV" or not info.subtype.startswith("PCM"):
        return None
    width = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "PCM_U8": 1, "PCM_S8": 1}.get(info.subtype)
    if width is None:
        return None
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF":
            return None
        f.read(8)  # size, "WAVE"
        while True:
            head = f.read(8)
            if len(head) < 8:
                return None
            size = int.from_bytes(head[4:], "little")
            if head[:4] == b"data":
                if size in (0, 0xFFFFFFFF):  # streamed files leave it unset
                    return None
                return size // (width * info.channels)
            f.seek(size + (size & 1), 1)


def _read_audio(path: str, max_seconds: float) -> tuple[np.ndarray, int]:
    if not os.path.isfile(path):
        raise UtteranceProblem("unreadable_audio", f"{path}: no such file")
    try:
        info = sf.info(path)
    except Exception as err:
        raise UtteranceProblem("unreadable_audio", f"{path}: {err}") from None
    if info.samplerate > 0 and info.frames / info.samplerate > max_seconds + 1.0:
        raise UtteranceProblem(
            "too_long", f"{path}: {info.frames / info.samplerate:.2f} s > {max_seconds:g} s"
        )
    try:
        audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as err:
        raise UtteranceProblem("unreadable_audio", f"{path}: {err}") from None
    if audio.shape[0] == 0:
        raise UtteranceProblem("empty_audio", f"{path}: no samples")
    declared = declared_wav_frames(path, info)
    if declared is not None and audio.shape[0] < declared:
        raise UtteranceProblem(
            "truncated_audio",
            f"{path}: its header declares {declared} samples, the file holds {audio.shape[0]}",
        )
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        raise UtteranceProblem("nonfinite_audio", f"{path}: {bad} NaN/inf samples")
    if audio.shape[0] / sample_rate > max_seconds:
        raise UtteranceProblem(
            "too_long", f"{path}: {audio.shape[0] / sample_rate:.2f} s > {max_seconds:g} s"
        )
    return audio, sample_rate


def _converted(item: Utterance, audio: np.ndarray, sample_rate: int, job: Job) -> tuple[str, int]:
    """Down-mix and resample to the target rate; write FLAC; (path, num_samples)."""
    import soxr

    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if sample_rate != job.sample_rate:
        mono = soxr.resample(mono, sample_rate, job.sample_rate, quality="HQ")
    mono = np.clip(mono, -1.0, 1.0)
    shard = Path(job.audio_out) / f"{zlib.crc32(item.id.encode()) % 256:02x}"
    shard.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.+-]", "_", item.id)
    if safe != item.id:  # two ids may map to one name: a hash of the id keeps them apart
        safe += "-" + hashlib.sha1(item.id.encode()).hexdigest()[:10]
    path = shard / f"{safe}.flac"
    sf.write(path, mono, job.sample_rate, format="FLAC", subtype="PCM_16")
    return str(path), len(mono)


def _phones_and_alignment(item: Utterance, duration: float, job: Job, notes: list[str]):
    """(phones, alignment dict or None, text) of one utterance."""
    rules = job.rules
    if item.textgrid is not None or item.ctm is not None:
        if item.textgrid is not None:
            phones, words = read_textgrid(item.textgrid)
            source = item.textgrid
        else:
            ctm_path, ranges = item.ctm  # type: ignore[misc]
            phones = read_ctm(ctm_path, ranges)
            words = words_from_positions(phones, (item.text or "").split(), rules)
            source = f"{ctm_path} ({item.id})"
        alignment = build_alignment(phones, words, rules, duration, job.tolerance, source)
        if alignment.clamped:
            notes.append("clamped")
        text = item.text
        if text is None and alignment.words:
            text = " ".join(w.symbol for w in alignment.words)
        result = {"phone": alignment.phones}
        if alignment.words:
            result["word"] = alignment.words
        return alignment.symbols, result, text
    if item.labels is not None:
        if job.label_dict is not None:
            unknown = sorted({x for x in item.labels if x != "|" and x not in job.label_dict})
            if unknown:
                raise UtteranceProblem(
                    "unknown_label",
                    f"{', '.join(map(repr, unknown[:10]))} not in {job.label_dict_file}",
                )
        symbols = labels_to_phones((x for x in item.labels if x != "|"), rules)
        rules.check_known(symbols, item.id)
    elif job.voice is not None:
        symbols = [p for word in phonemize(item.text or "", job.voice) for p in word]
        rules.check_known(symbols, item.id)
    else:
        return None, None, item.text
    if not symbols:
        raise UtteranceProblem("empty_transcript", f"{item.id}: no phones")
    return symbols, None, item.text


def process(item: Utterance, job: Job) -> Result:
    notes: list[str] = []
    try:
        if item.problem is not None:
            raise UtteranceProblem(*item.problem)
        audio, sample_rate = _read_audio(item.audio, job.max_seconds)
        if item.need_alignment and item.textgrid is None and item.ctm is None:
            raise UtteranceProblem("missing_alignment", f"no alignment found for {item.id}")
        num_samples = audio.shape[0]
        duration = num_samples / sample_rate
        phones, alignment, text = _phones_and_alignment(item, duration, job, notes)
        path = os.path.abspath(item.audio)
        if sample_rate != job.sample_rate or audio.shape[1] > 1:
            path, num_samples = _converted(item, audio, sample_rate, job)
            sample_rate = job.sample_rate
            notes.append("converted")
        recording = Recording(
            id=item.id,
            sources=[AudioSource(type="file", channels=[0], source=path)],
            sampling_rate=sample_rate,
            num_samples=num_samples,
            duration=num_samples / sample_rate,
        )
        supervision = SupervisionSegment(
            id=item.id,
            recording_id=item.id,
            start=0.0,
            duration=recording.duration,
            channel=0,
            text=text,
            language=job.language,
            speaker=item.speaker,
            alignment=alignment,
            custom={"phones": phones} if phones is not None else None,
        )
        cut = MonoCut(
            id=item.id,
            start=0.0,
            duration=recording.duration,
            channel=0,
            supervisions=[supervision],
            recording=recording,
        )
        return Result(item.id, item.audio, cut=cut.to_dict(), seconds=cut.duration, notes=notes)
    except UtteranceProblem as problem:
        return Result(item.id, item.audio, reason=problem.reason, detail=problem.detail)
    except Exception as err:  # one odd file must not end a long run: counted and listed
        detail = f"{type(err).__name__}: {err}".replace("\n", " ")
        return Result(item.id, item.audio, reason="internal_error", detail=detail)


def _process_chunk(items: list[Utterance], job: Job) -> list[Result]:
    return [process(item, job) for item in items]


def process_stream(items: Iterable[Utterance], job: Job, jobs: int) -> Iterator[Result]:
    """Results in input order; with jobs > 1 from a process pool, at most a bounded window of
    work in flight (the input is never read ahead in full)."""
    if jobs <= 1:
        for item in items:
            yield process(item, job)
        return
    chunk_size = 8
    # spawn: the parent may have torch/OpenMP threads running, which fork does not survive.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        pending: deque = deque()
        chunk: list[Utterance] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == chunk_size:
                pending.append(pool.submit(_process_chunk, chunk, job))
                chunk = []
                if len(pending) >= 4 * jobs:
                    yield from pending.popleft().result()
        if chunk:
            pending.append(pool.submit(_process_chunk, chunk, job))
        while pending:
            yield from pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
