"""`distilxlsr prepare`: lhotse manifests in the corpus-directory layout from corpora on disk.

Recipes (lhotse style: `prepare_x(source, output_dir, ...) -> {split: cuts manifest}`):

- `prepare_librispeech(root, alignments_dir, out)`: LibriSpeech (`ROOT/<part>/<speaker>/<chapter>/
  *.flac` + `<speaker>-<chapter>.trans.txt`) with MFA TextGrids (or `ctm=FILE`, a Kaldi CTM).
  Parts map to splits of language `en`: `train-*` -> train, `dev-*` -> dev, `test-*` -> test;
  several parts of one split go into one manifest.
- `prepare_textgrid(audio_dir, textgrid_dir, out, lang=...)`: any corpus aligned by MFA (audio
  files, optional `.lab`/`.txt` transcripts beside them, one TextGrid per file) or by Kaldi (`ctm=`).
- `prepare_fairseq(directory, out, lang=None)`: fairseq manifests `{split}.tsv` + `{split}.phn`
  (+ `{split}.wrd`, `dict.phn.txt`).
- `prepare_commonvoice(root, out, lang)`: a Common Voice release; phone transcripts by eSpeak NG
  unless phone labels are given.

Output: `OUT/<lang>/{cuts,recordings,supervisions}_<split>.jsonl.gz`, streamed (nothing is held in
memory, so 1,000+ hours stay cheap), and `OUT/<lang>/rejected_<split>.jsonl`. Supervisions carry
`language`, `speaker`, `text`, `custom["phones"]` and, from TextGrids/CTM, `alignment["phone"]`
(silences are left as gaps) and `alignment["word"]`.

Audio policy: every file is decoded once (progress bar; `jobs` worker processes) to find
unreadable, empty or non-finite audio. 16 kHz mono files are referenced where they are; others
(e.g. Common Voice's 48 kHz mp3) are down-mixed and resampled with soxr to 16 kHz FLAC under
`OUT/<lang>/audio/<split>/` (lhotse's load-time resampling needs scipy or torchaudio, which the
toolkit does not require).

Bad input is never dropped silently: each utterance that cannot be used is a counted reject with
its reason (see `REASONS`) in the rejected file and the one-line summary; trivial problems are
repaired and counted (an alignment ending at most `alignment_tolerance` past the audio is cut at
the audio's end). When more than `max_reject_share` of a split is rejected the split is aborted
with a UserError (its partial manifests are removed; the rejected file stays for inspection).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource
from lhotse.serialization import SequentialJsonlWriter

from distilxlsr.data.alignments import (
    DEFAULT_SILENCE_LABELS,
    LabelRules,
    UtteranceProblem,
    build_alignment,
    index_ctm,
    index_textgrids,
    labels_to_phones,
    read_ctm,
    read_textgrid,
    words_from_positions,
)
from distilxlsr.data.espeak import espeak_voice, phonemize
from distilxlsr.errors import UserError

# Reject codes and how the summary names them.
REASONS = {
    "unreadable_audio": "unreadable audio",
    "empty_audio": "empty audio",
    "nonfinite_audio": "NaN/inf samples",
    "too_long": "too long",
    "missing_alignment": "missing alignment",
    "unreadable_alignment": "unreadable alignment",
    "alignment_past_end": "alignment past the audio end",
    "bad_segments": "overlapping or unsorted segments",
    "unknown_label": "unknown labels",
    "bad_encoding": "transcript not UTF-8",
    "missing_transcript": "missing transcript",
    "empty_transcript": "no phones",
    "duplicate_id": "duplicate id",
    "internal_error": "unexpected errors",
}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")
_LIBRISPEECH_PART = re.compile(r"^(train|dev|test)-")


@dataclass
class PrepareOptions:
    """Options shared by all `prepare_*` recipes."""

    max_seconds: float = 36.0
    """Longer utterances are rejected. LibriSpeech's segmenter cut at 35 s and its longest
    utterances are a little over 35 s, so 36 s keeps all of them; training crops to
    data.max_seconds anyway. Anything much longer is usually a mis-segmented file."""
    max_reject_share: float = 0.05
    """Abort a split (UserError) when more than this share of its utterances is rejected."""
    jobs: int = 1
    """Worker processes that decode and check audio (and read alignments, phonemize)."""
    silence_labels: tuple[str, ...] = DEFAULT_SILENCE_LABELS
    """Alignment labels that count as silence (case-insensitive), left out of the phones."""
    strip_stress: bool = True
    """ARPAbet stress digits: `AH0` -> `AH`."""
    strip_position: bool = True
    """Kaldi word-position suffixes: `AH_B` -> `AH` (`_B _I _E _S`)."""
    phone_set: Iterable[str] | None = None
    """Allowed phone symbols after normalisation; other labels reject the utterance (None: any)."""
    alignment_tolerance: float = 0.05
    """Seconds an alignment may run past the audio's end (it is cut there); more is a reject."""
    sample_rate: int = 16000
    """Audio at another rate or with several channels is converted to this rate, mono."""
    progress: bool = True

    def rules(self) -> LabelRules:
        return LabelRules(
            silence_labels=frozenset(self.silence_labels),
            strip_stress=self.strip_stress,
            strip_position=self.strip_position,
            inventory=frozenset(self.phone_set) if self.phone_set is not None else None,
        )


@dataclass
class Utterance:
    """One unit of work, small and picklable; the worker turns it into a cut or a reject."""

    id: str
    audio: str
    speaker: str
    text: str | None = None
    problem: tuple[str, str] | None = None
    """A reject already known when listing (bad transcript encoding, missing transcript)."""
    textgrid: str | None = None
    ctm: tuple[str, list[tuple[int, int]]] | None = None
    labels: list[str] | None = None
    """Given (unaligned) phone labels, e.g. a fairseq .phn line."""
    need_alignment: bool = False


@dataclass(frozen=True)
class _Job:
    """What every utterance of a split shares."""

    language: str
    rules: LabelRules
    max_seconds: float
    tolerance: float
    sample_rate: int
    audio_out: str
    label_dict: frozenset[str] | None = None
    """Allowed raw given labels (fairseq dict.phn.txt)."""
    label_dict_file: str = ""
    voice: str | None = None
    """eSpeak NG voice to phonemize texts with when an utterance has no labels or alignment."""


@dataclass
class _Result:
    id: str
    path: str
    cut: dict | None = None
    """The cut, serialised in the worker (to_dict is the costly part of writing)."""
    seconds: float = 0.0
    reason: str = ""
    detail: str = ""
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# One utterance (runs in worker processes)


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
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:
        raise UtteranceProblem("nonfinite_audio", f"{path}: {bad} NaN/inf samples")
    if audio.shape[0] / sample_rate > max_seconds:
        raise UtteranceProblem(
            "too_long", f"{path}: {audio.shape[0] / sample_rate:.2f} s > {max_seconds:g} s"
        )
    return audio, sample_rate


def _converted(item: Utterance, audio: np.ndarray, sample_rate: int, job: _Job) -> tuple[str, int]:
    """Down-mix and resample to the target rate; write FLAC; (path, num_samples)."""
    import soxr

    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if sample_rate != job.sample_rate:
        mono = soxr.resample(mono, sample_rate, job.sample_rate, quality="HQ")
    mono = np.clip(mono, -1.0, 1.0)
    shard = Path(job.audio_out) / f"{zlib.crc32(item.id.encode()) % 256:02x}"
    shard.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^\w.+-]", "_", item.id)
    path = shard / f"{safe}.flac"
    sf.write(path, mono, job.sample_rate, format="FLAC", subtype="PCM_16")
    return str(path), len(mono)


def _phones_and_alignment(item: Utterance, duration: float, job: _Job, notes: list[str]):
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


def _process(item: Utterance, job: _Job) -> _Result:
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
        return _Result(item.id, item.audio, cut=cut.to_dict(), seconds=cut.duration, notes=notes)
    except UtteranceProblem as problem:
        return _Result(item.id, item.audio, reason=problem.reason, detail=problem.detail)
    except Exception as err:  # one odd file must not end a long run: counted and listed
        detail = f"{type(err).__name__}: {err}".replace("\n", " ")
        return _Result(item.id, item.audio, reason="internal_error", detail=detail)


def _process_chunk(items: list[Utterance], job: _Job) -> list[_Result]:
    return [_process(item, job) for item in items]


def _results(items: Iterable[Utterance], job: _Job, jobs: int) -> Iterator[_Result]:
    """Results in input order; with jobs > 1 from a process pool, at most a bounded window of
    work in flight (the input is never read ahead in full)."""
    if jobs <= 1:
        for item in items:
            yield _process(item, job)
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


# ---------------------------------------------------------------------------------------------
# One split


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _describe(counts: Counter) -> str:
    return ", ".join(f"{n} {REASONS.get(reason, reason)}" for reason, n in counts.most_common())


def _prepare_split(
    items: Callable[[], Iterable[Utterance]],
    out: Path,
    split: str,
    job: _Job,
    options: PrepareOptions,
    source: str,
) -> Path:
    """Process one split's utterances and write its manifests; returns the cuts manifest."""
    total = sum(1 for _ in items())
    if total == 0:
        raise UserError(f"{source} holds no utterances for split '{split}'; check the path.")
    lang_dir = out / job.language
    lang_dir.mkdir(parents=True, exist_ok=True)
    finals = {
        kind: lang_dir / f"{kind}_{split}.jsonl.gz"
        for kind in ("recordings", "supervisions", "cuts")
    }
    partials = {kind: lang_dir / f".{kind}_{split}.partial.jsonl.gz" for kind in finals}
    rejected_path = lang_dir / f"rejected_{split}.jsonl"
    limit = options.max_reject_share * total
    rejects: Counter = Counter()
    notes: Counter = Counter()
    accepted, seconds = 0, 0.0
    seen: set[str] = set()

    from tqdm import tqdm

    def unique(stream: Iterable[Utterance]) -> Iterator[Utterance]:
        for item in stream:
            if item.id in seen and item.problem is None:
                item.problem = (
                    "duplicate_id",
                    f"utterance id '{item.id}' appears twice ({item.audio})",
                )
            seen.add(item.id)
            yield item

    completed = False
    try:
        with ExitStack() as stack:
            writers = {
                kind: stack.enter_context(SequentialJsonlWriter(path))  # opened (and created) now
                for kind, path in partials.items()
            }
            rejected_file = stack.enter_context(open(rejected_path, "w", encoding="utf-8"))
            results = stack.enter_context(closing(_results(unique(items()), job, options.jobs)))
            bar = stack.enter_context(
                tqdm(
                    total=total,
                    unit="utt",
                    desc=f"prepare {job.language}/{split}",
                    disable=not options.progress,
                )
            )
            for result in results:
                bar.update(1)
                if result.cut is None:
                    rejects[result.reason] += 1
                    bar.set_postfix(rejected=sum(rejects.values()), refresh=False)
                    record = {
                        "id": result.id,
                        "path": result.path,
                        "reason": result.reason,
                        "detail": result.detail,
                    }
                    rejected_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                    if sum(rejects.values()) > limit:
                        break
                    continue
                cut = result.cut  # a dict that embeds the recording and supervision dicts
                writers["recordings"].write(cut["recording"])
                writers["supervisions"].write(cut["supervisions"][0])
                writers["cuts"].write(cut)
                accepted += 1
                seconds += result.seconds
                notes.update(result.notes)
            else:
                completed = True
    finally:
        if not completed:  # aborted, failed or interrupted: no partial manifests left behind
            for path in partials.values():
                path.unlink(missing_ok=True)
    rejected = sum(rejects.values())
    if not completed:
        raise UserError(
            f"{'at least ' if accepted + rejected < total else ''}{rejected} of {total} utterances "
            f"of {job.language}/{split} from {source} were rejected ({_describe(rejects)}), more "
            f"than the allowed {options.max_reject_share:.0%}; see {rejected_path}, fix the corpus "
            "or raise max_reject_share."
        )
    for kind, path in partials.items():
        path.replace(finals[kind])
    summary = f"{job.language}/{split}: prepared {_plural(accepted, 'utterance')} ({seconds / 3600:.2f} h)"
    summary += f"; rejected {rejected}" + (f": {_describe(rejects)}" if rejected else "")
    repaired = []
    if notes["clamped"]:
        repaired.append(f"{_plural(notes['clamped'], 'alignment')} cut at the audio end")
    if notes["converted"]:
        repaired.append(
            f"{_plural(notes['converted'], 'file')} converted to {job.sample_rate} Hz mono FLAC"
        )
    if repaired:
        summary += "; " + ", ".join(repaired)
    if rejected:
        summary += f" (listed in {rejected_path})"
    print(summary)
    return finals["cuts"]


def _job(options: PrepareOptions, language: str, out: Path, split: str, **extra) -> _Job:
    return _Job(
        language=language,
        rules=options.rules(),
        max_seconds=options.max_seconds,
        tolerance=options.alignment_tolerance,
        sample_rate=options.sample_rate,
        audio_out=str((out / language / "audio" / split).resolve()),
        **extra,
    )


def _decode_line(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---------------------------------------------------------------------------------------------
# Alignment sources


class _Alignments:
    """Finds an utterance's alignment: MFA TextGrids by utterance id, or a Kaldi CTM."""

    def __init__(self, textgrid_dir: str | Path | None, ctm: str | Path | None):
        if (textgrid_dir is None) == (ctm is None):
            raise UserError(
                "give the alignments either as a directory of MFA TextGrids (--alignments DIR) "
                "or as a Kaldi CTM file (--ctm FILE), exactly one of them."
            )
        self.textgrids: dict[str, Path] = {}
        self.ctm_path = None
        self.ctm: dict[str, list[tuple[int, int]]] = {}
        if textgrid_dir is not None:
            if not Path(textgrid_dir).is_dir():
                raise UserError(
                    f"alignment directory '{textgrid_dir}' does not exist; pass MFA's output directory."
                )
            self.textgrids = index_textgrids(textgrid_dir)
            if not self.textgrids:
                raise UserError(
                    f"'{textgrid_dir}' holds no .TextGrid files; pass the directory MFA wrote its alignments to."
                )
        else:
            if not Path(ctm).is_file():  # type: ignore[arg-type]
                raise UserError(f"CTM file '{ctm}' does not exist; pass a Kaldi phone CTM.")
            self.ctm_path = str(Path(ctm).resolve())  # type: ignore[arg-type]
            self.ctm = index_ctm(ctm)  # type: ignore[arg-type]
            if not self.ctm:
                raise UserError(f"'{ctm}' holds no CTM lines ('utt channel start duration phone').")

    def fields(self, utt: str) -> dict:
        if self.ctm_path is not None:
            ranges = self.ctm.get(utt)
            return {"ctm": (self.ctm_path, ranges) if ranges else None, "need_alignment": True}
        path = self.textgrids.get(utt)
        return {"textgrid": str(path) if path else None, "need_alignment": True}


# ---------------------------------------------------------------------------------------------
# LibriSpeech


def _librispeech_split(part: str) -> str | None:
    match = _LIBRISPEECH_PART.match(part)
    return match.group(1) if match else None


def _librispeech_items(parts: list[Path], alignments: _Alignments) -> Iterator[Utterance]:
    for part in parts:
        for speaker_dir in sorted(d for d in part.iterdir() if d.is_dir()):
            for chapter_dir in sorted(d for d in speaker_dir.iterdir() if d.is_dir()):
                texts: dict[str, str | None] = {}
                trans_files = sorted(chapter_dir.glob("*.trans.txt"))
                for trans in trans_files:
                    for raw in trans.read_bytes().splitlines():
                        head, _, rest = raw.strip().partition(b" ")
                        if head:
                            texts[head.decode("utf-8", errors="replace")] = _decode_line(
                                rest.strip()
                            )
                audio = {p.stem: p for p in chapter_dir.glob("*.flac")}
                trans_name = trans_files[0] if trans_files else chapter_dir / "*.trans.txt"
                for utt in sorted(set(texts) | set(audio)):
                    problem = None
                    if utt not in texts:
                        problem = ("missing_transcript", f"{utt} has no line in {trans_name}")
                    elif texts[utt] is None:
                        problem = (
                            "bad_encoding",
                            f"{trans_name}: the transcript of {utt} is not valid UTF-8",
                        )
                    yield Utterance(
                        id=utt,
                        audio=str(audio.get(utt, chapter_dir / f"{utt}.flac")),
                        speaker=speaker_dir.name,
                        text=texts.get(utt),
                        problem=problem,
                        **alignments.fields(utt),
                    )


def prepare_librispeech(
    root: str | Path,
    alignments_dir: str | Path | None,
    output_dir: str | Path,
    *,
    ctm: str | Path | None = None,
    parts: Iterable[str] | None = None,
    options: PrepareOptions | None = None,
) -> dict[str, Path]:
    """LibriSpeech with MFA TextGrids (`alignments_dir`) or a Kaldi CTM (`ctm`) -> manifests of
    language `en`, one per split (train/dev/test); `parts` limits the parts (e.g.
    ["train-clean-100", "dev-clean"]). `root` is the LibriSpeech directory or one part of it."""
    options = options or PrepareOptions()
    root, out = Path(root), Path(output_dir)
    if not root.is_dir():
        raise UserError(
            f"LibriSpeech directory '{root}' does not exist; pass the directory holding train-clean-100 etc."
        )
    if _librispeech_split(root.name):
        found = [root]
    else:
        found = sorted(d for d in root.iterdir() if d.is_dir() and _librispeech_split(d.name))
    if parts is not None:
        wanted = list(parts)
        missing = sorted(set(wanted) - {d.name for d in found})
        if missing:
            raise UserError(
                f"LibriSpeech part(s) {', '.join(missing)} not found in '{root}' (present: "
                f"{', '.join(d.name for d in found) or 'none'}); fix the part names."
            )
        found = [d for d in found if d.name in wanted]
    if not found:
        raise UserError(
            f"'{root}' holds no LibriSpeech parts (train-*, dev-*, test-* directories); pass the "
            "LibriSpeech directory."
        )
    alignments = _Alignments(alignments_dir, ctm)
    by_split: dict[str, list[Path]] = {}
    for part in found:
        by_split.setdefault(_librispeech_split(part.name), []).append(part)  # type: ignore[arg-type]
    manifests = {}
    for split, split_parts in by_split.items():
        job = _job(options, "en", out, split)
        source = f"'{root}' ({', '.join(p.name for p in split_parts)})"
        manifests[split] = _prepare_split(
            lambda p=split_parts: _librispeech_items(p, alignments),
            out,
            split,
            job,
            options,
            source,
        )
    return manifests


# ---------------------------------------------------------------------------------------------
# Any MFA-aligned corpus


def _sidecar_text(audio: Path) -> tuple[str | None, tuple[str, str] | None]:
    for suffix in (".lab", ".txt"):
        candidate = audio.with_suffix(suffix)
        if candidate.is_file():
            text = _decode_line(candidate.read_bytes())
            if text is None:
                return None, ("bad_encoding", f"{candidate} is not valid UTF-8")
            return " ".join(text.split()), None
    return None, None


def _audio_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )


def prepare_textgrid(
    audio_dir: str | Path,
    textgrid_dir: str | Path | None,
    output_dir: str | Path,
    *,
    lang: str,
    split: str = "train",
    ctm: str | Path | None = None,
    options: PrepareOptions | None = None,
) -> dict[str, Path]:
    """A corpus aligned by MFA: audio files under `audio_dir` (any depth; the speaker is the
    file's directory, as MFA assumes; the text is a `.lab`/`.txt` beside the audio, else the
    words tier) and one TextGrid per file under `textgrid_dir`, found by file stem. A Kaldi CTM
    (`ctm=FILE`, utterance id = file stem) may replace the TextGrids."""
    options = options or PrepareOptions()
    audio_dir, out = Path(audio_dir), Path(output_dir)
    if not audio_dir.is_dir():
        raise UserError(
            f"audio directory '{audio_dir}' does not exist; pass the corpus MFA aligned."
        )
    alignments = _Alignments(textgrid_dir, ctm)

    def items() -> Iterator[Utterance]:
        for path in _audio_files(audio_dir):
            text, problem = _sidecar_text(path)
            speaker = path.parent.name if path.parent != audio_dir else audio_dir.name
            yield Utterance(
                id=path.stem,
                audio=str(path),
                speaker=speaker,
                text=text,
                problem=problem,
                **alignments.fields(path.stem),
            )

    job = _job(options, lang, out, split)
    return {split: _prepare_split(items, out, split, job, options, f"'{audio_dir}'")}


# ---------------------------------------------------------------------------------------------
# fairseq manifests


def _read_label_dict(path: Path) -> frozenset[str]:
    symbols = set()
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        line = _decode_line(raw)
        if line is None:
            raise UserError(
                f"{path}: line {number} is not valid UTF-8; save the dictionary as UTF-8."
            )
        fields = line.split()
        if fields:
            symbols.add(fields[0])
    return frozenset(symbols)


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for raw in f:
            yield raw.rstrip(b"\r\n")


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _fairseq_items(tsv: Path, phn: Path | None, wrd: Path | None) -> Iterator[Utterance]:
    lines = _lines(tsv)
    audio_root = Path(next(lines).decode("utf-8", errors="replace").strip())
    if not audio_root.is_absolute():
        audio_root = tsv.parent / audio_root
    phn_lines = _lines(phn) if phn else None
    wrd_lines = _lines(wrd) if wrd else None
    for number, raw in enumerate(lines, start=2):
        labels_raw = next(phn_lines) if phn_lines is not None else None
        words_raw = next(wrd_lines) if wrd_lines is not None else None
        if not raw.strip():
            continue
        rel = raw.split(b"\t")[0].decode("utf-8", errors="replace")
        path = audio_root / rel
        problem = None
        labels = text = None
        if labels_raw is not None:
            decoded = _decode_line(labels_raw)
            if decoded is None:
                problem = ("bad_encoding", f"{phn}: line {number - 1} is not valid UTF-8")
            else:
                labels = decoded.split()
        if words_raw is not None:
            text = _decode_line(words_raw)
            if text is None and problem is None:
                problem = ("bad_encoding", f"{wrd}: line {number - 1} is not valid UTF-8")
            text = " ".join(text.split()) if text is not None else None
        speaker = Path(rel).parent.as_posix()
        yield Utterance(
            id=Path(rel).stem,
            audio=str(path),
            speaker=speaker if speaker != "." else "unknown",
            text=text,
            problem=problem,
            labels=labels,
        )


def prepare_fairseq(
    directory: str | Path,
    output_dir: str | Path,
    *,
    lang: str | None = None,
    options: PrepareOptions | None = None,
) -> dict[str, Path]:
    """fairseq manifests: `{split}.tsv` (first line the audio root, then `path<TAB>num_samples`)
    with a parallel `{split}.phn` (phones; `|` marks word ends and is dropped) and optional
    `{split}.wrd` (the text); `dict.phn.txt` lists the allowed phones. Every `*.tsv` is a split
    (train, valid, test, ...). The language defaults to the directory's name. fairseq manifests
    carry no speaker: the audio file's directory stands in for it."""
    options = options or PrepareOptions()
    directory, out = Path(directory), Path(output_dir)
    if not directory.is_dir():
        raise UserError(
            f"fairseq manifest directory '{directory}' does not exist; pass the directory with train.tsv."
        )
    lang = lang or directory.resolve().name
    tsvs = sorted(directory.glob("*.tsv"))
    if not tsvs:
        raise UserError(
            f"'{directory}' holds no {{split}}.tsv manifest; pass a fairseq manifest directory."
        )
    dict_path = directory / "dict.phn.txt"
    label_dict = _read_label_dict(dict_path) if dict_path.is_file() else None
    manifests = {}
    for tsv in tsvs:
        split = tsv.stem
        first = next(_lines(tsv), b"").decode("utf-8", errors="replace").strip()
        audio_root = Path(first) if Path(first).is_absolute() else directory / first
        if not first or not audio_root.is_dir():
            raise UserError(
                f"{tsv}: line 1 must name the audio root directory, but '{first}' is not a "
                "directory; write the directory holding the audio there."
            )
        phn, wrd = directory / f"{split}.phn", directory / f"{split}.wrd"
        n = _count_lines(tsv) - 1
        for labels in (phn, wrd):
            if labels.is_file() and _count_lines(labels) != n:
                raise UserError(
                    f"{labels} has {_count_lines(labels)} lines but {tsv} lists {n} files; "
                    "they must be parallel, one line per file."
                )
        if not phn.is_file():
            print(f"{lang}/{split}: no {phn.name}; the utterances get no phone transcript")
        job = _job(
            options,
            lang,
            out,
            split,
            label_dict=label_dict,
            label_dict_file=str(dict_path),
        )
        manifests[split] = _prepare_split(
            lambda t=tsv, p=phn, w=wrd: _fairseq_items(
                t, p if p.is_file() else None, w if w.is_file() else None
            ),
            out,
            split,
            job,
            options,
            f"'{tsv}'",
        )
    return manifests


# ---------------------------------------------------------------------------------------------
# Common Voice


def _read_phone_labels(path: Path) -> dict[str, list[str]]:
    """`clip<TAB>phones` per line (clip: the path column or its stem)."""
    labels = {}
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        line = _decode_line(raw)
        if line is None:
            raise UserError(
                f"{path}: line {number} is not valid UTF-8; save the phone labels as UTF-8."
            )
        clip, _, phones = line.partition("\t")
        if clip.strip():
            labels[Path(clip.strip()).stem] = phones.split()
    return labels


def _commonvoice_items(
    tsv: Path, clips: Path, labels: dict[str, list[str]] | None
) -> Iterator[Utterance]:
    lines = _lines(tsv)
    header = next(lines).decode("utf-8", errors="replace").split("\t")
    try:
        i_path, i_text = header.index("path"), header.index("sentence")
    except ValueError:
        raise UserError(
            f"{tsv} has no 'path' and 'sentence' columns (header: {header}); pass a Common Voice release."
        ) from None
    i_speaker = header.index("client_id") if "client_id" in header else None
    for number, raw in enumerate(lines, start=2):
        if not raw.strip():
            continue
        fields = raw.split(b"\t")
        if len(fields) <= max(i_path, i_text):
            rel = fields[0].decode("utf-8", errors="replace")
            yield Utterance(
                id=f"{tsv.stem}-line{number}",
                audio=str(clips / rel),
                speaker="unknown",
                problem=("missing_transcript", f"{tsv}: line {number} has {len(fields)} columns"),
            )
            continue
        rel = fields[i_path].decode("utf-8", errors="replace")
        text = _decode_line(fields[i_text])
        problem = None
        if text is None:
            problem = ("bad_encoding", f"{tsv}: the sentence on line {number} is not valid UTF-8")
        speaker = (
            fields[i_speaker].decode("utf-8", errors="replace")
            if i_speaker is not None
            else "unknown"
        )
        stem = Path(rel).stem
        given = None
        if labels is not None:
            given = labels.get(stem)
            if given is None and problem is None:
                problem = ("missing_transcript", f"{stem} has no phone labels")
        yield Utterance(
            id=stem,
            audio=str(clips / rel),
            speaker=speaker or "unknown",
            text=text,
            problem=problem,
            labels=given,
        )


def prepare_commonvoice(
    root: str | Path,
    output_dir: str | Path,
    lang: str,
    *,
    splits: Iterable[str] = ("train", "dev", "test"),
    phones: str | Path | None = None,
    voice: str | None = None,
    options: PrepareOptions | None = None,
) -> dict[str, Path]:
    """A Common Voice release (`clips/*.mp3`, `train.tsv`, `dev.tsv`, `test.tsv`). Phone
    transcripts: from `phones` (a file of `clip<TAB>space-separated phones` lines) when given,
    else by eSpeak NG (IPA) phonemization of the sentence with voice `voice` (default: `lang`).
    The speaker is the client_id. The mp3s are decoded and written as 16 kHz FLAC."""
    options = options or PrepareOptions()
    root, out = Path(root), Path(output_dir)
    clips = root / "clips"
    if not clips.is_dir():
        raise UserError(
            f"'{root}' has no clips/ directory; pass the Common Voice language directory (e.g. cv-corpus-*/el)."
        )
    present = [s for s in splits if (root / f"{s}.tsv").is_file()]
    if not present:
        raise UserError(
            f"'{root}' holds none of {', '.join(f'{s}.tsv' for s in splits)}; pass a Common Voice release."
        )
    labels = _read_phone_labels(Path(phones)) if phones is not None else None
    resolved = None
    if labels is None:
        resolved = espeak_voice(voice or lang)
        if resolved is None:
            raise UserError(
                f"eSpeak NG has no voice for '{voice or lang}'; pass an eSpeak voice name "
                "(`espeak-ng --voices`) or phone labels."
            )
    manifests = {}
    for split in present:
        job = _job(options, lang, out, split, voice=resolved)
        tsv = root / f"{split}.tsv"
        manifests[split] = _prepare_split(
            lambda t=tsv: _commonvoice_items(t, clips, labels), out, split, job, options, f"'{tsv}'"
        )
    return manifests
