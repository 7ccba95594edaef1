"""Shared by the `prepare` recipes: options, reject codes, the unit of work, alignment sources,
and small readers of raw lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from distilxlsr.conventions import SAMPLE_RATE, SILENCE_LABELS
from distilxlsr.data.alignments import (
    LabelRules,
    index_ctm,
    index_textgrids,
)
from distilxlsr.errors import UserError

# Reject codes and how the summary names them.
REASONS = {
    "unreadable_audio": "unreadable audio",
    "empty_audio": "empty audio",
    "truncated_audio": "audio cut short",
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
    "conflicting_transcript": "two different transcripts",
    "internal_error": "unexpected errors",
}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")


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
    silence_labels: tuple[str, ...] = SILENCE_LABELS
    """Alignment labels that count as silence (case-insensitive), left out of the phones."""
    strip_stress: bool = True
    """ARPAbet stress digits: `AH0` -> `AH`."""
    strip_position: bool = True
    """Kaldi word-position suffixes: `AH_B` -> `AH` (`_B _I _E _S`)."""
    phone_set: Iterable[str] | None = None
    """Allowed phone symbols after normalisation; other labels reject the utterance (None: any)."""
    alignment_tolerance: float = 0.05
    """Seconds an alignment may run past the audio's end (it is cut there); more is a reject."""
    sample_rate: int = SAMPLE_RATE
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
class Job:
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


def make_job(options: PrepareOptions, language: str, out: Path, split: str, **extra) -> Job:
    return Job(
        language=language,
        rules=options.rules(),
        max_seconds=options.max_seconds,
        tolerance=options.alignment_tolerance,
        sample_rate=options.sample_rate,
        audio_out=str((out / language / "audio" / split).resolve()),
        **extra,
    )


def decode_line(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for raw in f:
            yield raw.rstrip(b"\r\n")


class AlignmentSource:
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
