"""LibriSpeech with MFA TextGrids or a Kaldi CTM."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from distilxlsr.data.prepare.common import (
    AlignmentSource,
    PrepareOptions,
    Utterance,
    decode_line,
    make_job,
)
from distilxlsr.data.prepare.split import prepare_split
from distilxlsr.errors import UserError

_LIBRISPEECH_PART = re.compile(r"^(train|dev|test)-")


def _librispeech_split(part: str) -> str | None:
    match = _LIBRISPEECH_PART.match(part)
    return match.group(1) if match else None


def _librispeech_items(parts: list[Path], alignments: AlignmentSource) -> Iterator[Utterance]:
    for part in parts:
        for speaker_dir in sorted(d for d in part.iterdir() if d.is_dir()):
            for chapter_dir in sorted(d for d in speaker_dir.iterdir() if d.is_dir()):
                texts: dict[str, str | None] = {}
                conflicting: set[str] = set()
                trans_files = sorted(chapter_dir.glob("*.trans.txt"))
                for trans in trans_files:
                    for raw in trans.read_bytes().splitlines():
                        head, _, rest = raw.strip().partition(b" ")
                        if head:
                            utt_id = head.decode("utf-8", errors="replace")
                            text = decode_line(rest.strip())
                            if utt_id in texts and texts[utt_id] != text:
                                conflicting.add(utt_id)  # which one is right is unknowable
                            texts[utt_id] = text
                audio = {p.stem: p for p in chapter_dir.glob("*.flac")}
                trans_name = trans_files[0] if trans_files else chapter_dir / "*.trans.txt"
                for utt in sorted(set(texts) | set(audio)):
                    problem = None
                    if utt not in texts:
                        problem = ("missing_transcript", f"{utt} has no line in {trans_name}")
                    elif utt in conflicting:
                        problem = (
                            "conflicting_transcript",
                            f"{trans_name} has two different lines for {utt}",
                        )
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
    alignments = AlignmentSource(alignments_dir, ctm)
    by_split: dict[str, list[Path]] = {}
    for part in found:
        by_split.setdefault(_librispeech_split(part.name), []).append(part)  # type: ignore[arg-type]
    manifests = {}
    for split, split_parts in by_split.items():
        job = make_job(options, "en", out, split)
        source = f"'{root}' ({', '.join(p.name for p in split_parts)})"
        manifests[split] = prepare_split(
            lambda p=split_parts: _librispeech_items(p, alignments),
            out,
            split,
            job,
            options,
            source,
        )
    return manifests
