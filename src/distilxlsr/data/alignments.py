"""Phone and word alignments and phone transcripts for `distilxlsr prepare`.

- Montreal Forced Aligner TextGrids (long or short text format, read with praatio): one file per
  utterance with a `phones` and a `words` interval tier (MFA's multi-speaker names such as
  "spk1 - phones" are accepted too).
- Kaldi CTM phone alignments, `utt channel start duration phone [confidence]` per line, indexed by
  byte ranges so that a corpus-sized file is never held in memory.
- Label rules: silence/noise labels (`sil sp spn ""` by default, case-insensitive), ARPAbet stress
  digits (`AH0` -> `AH`) and Kaldi word-position suffixes (`_B _I _E _S`).

Problems with one utterance raise `UtteranceProblem(reason, detail)`; `prepare` counts and reports
them as rejects instead of stopping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lhotse.supervision import AlignmentItem

from distilxlsr.conventions import SILENCE_LABELS

# (start s, end s, label)
Interval = tuple[float, float, str]

_POSITION = re.compile(r"_[BIES]$")
_STRESS = re.compile(r"(?<=[A-Za-z])[012]$")
_EPS = 1e-4  # seconds: CTM/TextGrid times are printed rounded; closer than this is "touching"


class UtteranceProblem(Exception):
    """One utterance cannot be used (audio, transcript or alignment); `reason` is a reject code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LabelRules:
    """How raw alignment labels become phone symbols."""

    silence_labels: frozenset[str] = frozenset(SILENCE_LABELS)
    strip_stress: bool = True
    strip_position: bool = True
    inventory: frozenset[str] | None = None
    """Allowed phone symbols after normalisation (None: anything goes); others are rejects."""
    _silence_lower: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(
            self, "_silence_lower", frozenset(s.lower() for s in self.silence_labels)
        )

    def normalize(self, label: str) -> str:
        label = label.strip()
        if self.strip_position:
            label = _POSITION.sub("", label)
        if self.strip_stress:
            label = _STRESS.sub("", label)
        return label

    def is_silence(self, normalized: str) -> bool:
        return normalized.lower() in self._silence_lower

    def check_known(self, symbols: Iterable[str], source: str) -> None:
        if self.inventory is None:
            return
        unknown = sorted({s for s in symbols if s not in self.inventory})
        if unknown:
            raise UtteranceProblem(
                "unknown_label",
                f"{', '.join(map(repr, unknown[:10]))} not in the phone set ({source})",
            )


# ---------------------------------------------------------------------------------------------
# TextGrid


def _find_tier(names: Iterable[str], kind: str) -> str | None:
    names = list(names)
    for name in names:
        if name.strip().lower() == kind:
            return name
    for name in names:
        if name.strip().lower().endswith(kind):
            return name
    return None


def read_textgrid(path: str | Path) -> tuple[list[Interval], list[Interval]]:
    """(phones, words) of an MFA TextGrid, non-empty intervals only, in time order; words is
    empty when the file has no words tier."""
    from praatio import textgrid
    from praatio.utilities.errors import TextgridStateError

    try:
        grid = textgrid.openTextgrid(
            str(path), includeEmptyIntervals=False, reportingMode="silence"
        )
    except TextgridStateError as err:
        if "overlap" in str(err).lower():
            raise UtteranceProblem("bad_segments", f"{path}: {err}".replace("\n", " ")) from None
        raise UtteranceProblem("unreadable_alignment", f"{path}: {err}") from None
    except Exception as err:  # praatio raises many kinds on malformed files
        detail = f"{path}: {type(err).__name__}: {err}".replace("\n", " ")
        raise UtteranceProblem("unreadable_alignment", detail) from None
    phones_name = _find_tier(grid.tierNames, "phones")
    if phones_name is None:
        raise UtteranceProblem(
            "unreadable_alignment", f"{path} has no 'phones' tier (tiers: {list(grid.tierNames)})"
        )
    words_name = _find_tier(grid.tierNames, "words")

    def intervals(name: str) -> list[Interval]:
        tier = grid.getTier(name)
        if not hasattr(tier, "entries") or tier.tierType != "IntervalTier":
            raise UtteranceProblem(
                "unreadable_alignment", f"{path}: tier '{name}' is not an interval tier"
            )
        return [(float(e.start), float(e.end), str(e.label)) for e in tier.entries]

    return intervals(phones_name), (intervals(words_name) if words_name else [])


def index_textgrids(directory: str | Path) -> dict[str, Path]:
    """utterance id (file stem) -> TextGrid path, searching the whole tree: MFA writes
    DIR/<speaker>/<utt>.TextGrid or mirrors the corpus tree; both are found."""
    found: dict[str, Path] = {}
    for path in sorted(Path(directory).rglob("*")):
        if path.suffix.lower() == ".textgrid" and path.is_file():
            found.setdefault(path.stem, path)
    return found


# ---------------------------------------------------------------------------------------------
# Kaldi CTM


def index_ctm(path: str | Path) -> dict[str, list[tuple[int, int]]]:
    """utterance id -> byte ranges [start, end) of its lines (one range when the file is grouped
    by utterance, as Kaldi writes it)."""
    index: dict[str, list[tuple[int, int]]] = {}
    offset = 0
    last_utt, last_range = None, None
    with open(path, "rb") as f:
        for line in f:
            end = offset + len(line)
            fields = line.split(maxsplit=1)
            if fields and not fields[0].startswith(b";;"):
                utt = fields[0].decode("utf-8", errors="replace")
                if utt == last_utt and last_range is not None:
                    last_range[1] = end
                else:
                    last_range = [offset, end]
                    index.setdefault(utt, []).append(last_range)  # type: ignore[arg-type]
                    last_utt = utt
            offset = end
    return {utt: [(a, b) for a, b in ranges] for utt, ranges in index.items()}


def read_ctm(path: str | Path, ranges: list[tuple[int, int]]) -> list[Interval]:
    """The phone intervals of one utterance, in file order (not sorted: order is checked)."""
    out: list[Interval] = []
    with open(path, "rb") as f:
        for start, end in ranges:
            f.seek(start)
            for number, raw in enumerate(f.read(end - start).splitlines()):
                fields = raw.split()
                if not fields:
                    continue
                try:
                    if len(fields) not in (5, 6):
                        raise ValueError(f"{len(fields)} fields")
                    begin, duration = float(fields[2]), float(fields[3])
                    label = fields[4].decode("utf-8")
                except (ValueError, UnicodeDecodeError) as err:
                    raise UtteranceProblem(
                        "unreadable_alignment",
                        f"{path}: malformed CTM line {raw[:80]!r} ({err}); expected "
                        "'utt channel start duration phone'",
                    ) from None
                if duration < 0 or begin < 0:
                    raise UtteranceProblem(
                        "bad_segments", f"{path}: negative time in line {number}"
                    )
                out.append((begin, begin + duration, label))
    return out


def words_from_positions(
    raw: list[Interval], words: list[str], rules: LabelRules
) -> list[Interval]:
    """Word intervals from Kaldi word-position suffixes (_B.._E, _S), named by the transcript's
    words when their number matches; [] otherwise."""
    spans: list[tuple[float, float]] = []
    start = None
    for begin, end, label in raw:
        suffix = label[-2:] if _POSITION.search(label) else ""
        if rules.is_silence(rules.normalize(label)):
            start = None
            continue
        if suffix in ("_S",):
            spans.append((begin, end))
            start = None
        elif suffix == "_B":
            start = begin
        elif suffix == "_E" and start is not None:
            spans.append((start, end))
            start = None
    if not spans or len(spans) != len(words):
        return []
    return [(a, b, w) for (a, b), w in zip(spans, words, strict=True)]


# ---------------------------------------------------------------------------------------------
# From intervals to lhotse alignment


@dataclass
class Alignment:
    phones: list[AlignmentItem]
    """Non-silence phones (silences are left as gaps, which count as silence)."""
    words: list[AlignmentItem]
    symbols: list[str]
    """The phone transcript: the phones' symbols in order."""
    clamped: bool = False
    """The alignment ran (within tolerance) past the audio and was cut at its end."""


def build_alignment(
    phones: list[Interval],
    words: list[Interval],
    rules: LabelRules,
    duration: float,
    tolerance: float = 0.05,
    source: str = "",
) -> Alignment:
    """Check and convert intervals: order and overlaps, labels, the end against the audio."""
    for name, items in (("phone", phones), ("word", words)):
        for (a0, a1, la), (b0, b1, lb) in zip(items, items[1:], strict=False):
            if b0 < a0 - _EPS:
                raise UtteranceProblem(
                    "bad_segments",
                    f"{source}: {name} '{lb}' at {b0:.3f} s comes after one at {a0:.3f} s",
                )
            if b0 < a1 - _EPS:
                raise UtteranceProblem(
                    "bad_segments",
                    f"{source}: {name}s '{la}' ({a0:.3f}-{a1:.3f} s) and '{lb}' ({b0:.3f}-{b1:.3f} s) overlap",
                )
        for a0, a1, label in items:
            if a1 < a0:
                raise UtteranceProblem(
                    "bad_segments", f"{source}: {name} '{label}' ends before it starts"
                )
    ends = [e for _, e, _ in phones] + [e for _, e, _ in words]
    end = max(ends, default=0.0)
    if end > duration + tolerance:
        raise UtteranceProblem(
            "alignment_past_end",
            f"{source}: alignment ends at {end:.3f} s, audio at {duration:.3f} s",
        )
    clamped = end > duration

    def items(intervals: list[Interval], normalize: bool) -> list[AlignmentItem]:
        out = []
        for a0, a1, label in intervals:
            symbol = rules.normalize(label) if normalize else label.strip()
            if rules.is_silence(rules.normalize(label)) or not symbol:
                continue
            a1 = min(a1, duration)
            if a1 - a0 <= 0:
                continue
            out.append(AlignmentItem(symbol, round(a0, 5), round(a1 - a0, 5)))
        return out

    phone_items = items(phones, True)
    word_items = items(words, False)
    symbols = [p.symbol for p in phone_items]
    rules.check_known(symbols, source)
    if not symbols:
        raise UtteranceProblem("empty_transcript", f"{source}: no phones besides silence")
    return Alignment(phone_items, word_items, symbols, clamped)


def labels_to_phones(labels: Iterable[str], rules: LabelRules) -> list[str]:
    """A phone transcript from unaligned labels: normalised, silences dropped."""
    out = []
    for label in labels:
        symbol = rules.normalize(label)
        if symbol and not rules.is_silence(symbol):
            out.append(symbol)
    return out
