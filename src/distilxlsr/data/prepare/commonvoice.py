"""A Common Voice release, phonemized with eSpeak NG unless phone labels are given."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from distilxlsr.data.espeak import espeak_voice
from distilxlsr.data.prepare.common import (
    PrepareOptions,
    Utterance,
    decode_line,
    make_job,
    read_lines,
)
from distilxlsr.data.prepare.split import prepare_split
from distilxlsr.errors import UserError


def _read_phone_labels(path: Path) -> dict[str, list[str]]:
    """`clip<TAB>phones` per line (clip: the path column or its stem)."""
    labels = {}
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        line = decode_line(raw)
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
    lines = read_lines(tsv)
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
        text = decode_line(fields[i_text])
        problem = None
        if text is None:
            problem = ("bad_encoding", f"{tsv}: the sentence on line {number} is not valid UTF-8")
        speaker = (
            fields[i_speaker].decode("utf-8", errors="replace")
            if i_speaker is not None and i_speaker < len(fields)
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
        job = make_job(options, lang, out, split, voice=resolved)
        tsv = root / f"{split}.tsv"
        manifests[split] = prepare_split(
            lambda t=tsv: _commonvoice_items(t, clips, labels), out, split, job, options, f"'{tsv}'"
        )
    return manifests
