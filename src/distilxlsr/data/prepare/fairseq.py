"""fairseq manifests: `{split}.tsv` with `{split}.phn`, `{split}.wrd` and `dict.phn.txt`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from distilxlsr.data.prepare.common import (
    PrepareOptions,
    Utterance,
    decode_line,
    make_job,
    read_lines,
)
from distilxlsr.data.prepare.split import prepare_split
from distilxlsr.errors import UserError


def _read_label_dict(path: Path) -> frozenset[str]:
    symbols = set()
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        line = decode_line(raw)
        if line is None:
            raise UserError(
                f"{path}: line {number} is not valid UTF-8; save the dictionary as UTF-8."
            )
        fields = line.split()
        if fields:
            symbols.add(fields[0])
    return frozenset(symbols)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _fairseq_items(tsv: Path, phn: Path | None, wrd: Path | None) -> Iterator[Utterance]:
    lines = read_lines(tsv)
    audio_root = Path(next(lines).decode("utf-8", errors="replace").strip())
    if not audio_root.is_absolute():
        audio_root = tsv.parent / audio_root
    phn_lines = read_lines(phn) if phn else None
    wrd_lines = read_lines(wrd) if wrd else None
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
            decoded = decode_line(labels_raw)
            if decoded is None:
                problem = ("bad_encoding", f"{phn}: line {number - 1} is not valid UTF-8")
            else:
                labels = decoded.split()
        if words_raw is not None:
            text = decode_line(words_raw)
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
        first = next(read_lines(tsv), b"").decode("utf-8", errors="replace").strip()
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
        job = make_job(
            options,
            lang,
            out,
            split,
            label_dict=label_dict,
            label_dict_file=str(dict_path),
        )
        manifests[split] = prepare_split(
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
