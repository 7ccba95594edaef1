"""Any corpus aligned by the Montreal Forced Aligner (or by Kaldi, with a CTM)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from distilxlsr.data.prepare.common import (
    AUDIO_SUFFIXES,
    AlignmentSource,
    PrepareOptions,
    Utterance,
    decode_line,
    make_job,
)
from distilxlsr.data.prepare.split import prepare_split
from distilxlsr.errors import UserError


def _sidecar_text(audio: Path) -> tuple[str | None, tuple[str, str] | None]:
    for suffix in (".lab", ".txt"):
        candidate = audio.with_suffix(suffix)
        if candidate.is_file():
            text = decode_line(candidate.read_bytes())
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
    alignments = AlignmentSource(textgrid_dir, ctm)

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

    job = make_job(options, lang, out, split)
    return {split: prepare_split(items, out, split, job, options, f"'{audio_dir}'")}
