"""Phone and word segments of a synthesised utterance, from eSpeak NG's events.

A phoneme event's `sample` field is the exact sample index (at the engine's 22,050 Hz) where the
phone starts (`audio_position` is only whole milliseconds); a phone ends where the next event
starts, the last one at the end of the audio. Events with an empty name are pauses (label
`sil`); zero-length events (about 0.6 %, e.g. post-vocalic /l/) and language-switch markers such
as "(en)" are dropped; stress marks are removed; the few ASCII (Kirshenbaum-style) names some
voices emit are mapped to IPA (`to_ipa`); a modifier-only event (the palatal on-glide "ʲ" of
ru/pl) joins the phone before it. eSpeak writes a stop's closure silence *before* the stop's
event, so the start of a stop or affricate is moved back over the run of exact-zero samples that
ends the previous phone (`move_stop_closures`). The phone segments tile the whole recording
(pauses as `sil`).

Word boundaries: eSpeak emits a word event (with the word's character position in the text)
before the phones of each word; every phone belongs to the last word event before it, events are
mapped to the whitespace-separated token of the text that contains their position (so "42",
spoken as two words, stays one word), and a word spans from its first to its last phone.

Segments are the toolkit's `Segment` (docs/design.md, "Conventions"): pauses are labelled `sil`
and marked `silence`, with no word.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from distilxlsr.conventions import SILENCE, Segment
from distilxlsr.data.synthetic.ipa import to_ipa

_LANGUAGE_SWITCH = re.compile(r"^\([a-z-]+\)$")

# Phones that start with a closure: plosives and affricates (with any diacritics after them).
_STOP_START = set("pbtdkgɡqɢcɟʔʈɖ")


def is_stop(label: str) -> bool:
    return bool(label) and label != SILENCE and label[0] in _STOP_START


def _segment(label: str, start: int, end: int, word: int | None = None) -> Segment:
    """A phone (or, labelled `sil`, a pause) of the engine's output."""
    return Segment(start, end, label, silence=label == SILENCE, word=word)


def segments_from_events(
    events: Sequence[tuple], num_samples: int, text: str, lang: str = ""
) -> list[Segment]:
    """Phone segments tiling [0, num_samples) from eSpeak events, in the engine's sample rate.

    `events` are (kind, text_position, sample, name) with kind "word" or "phone"; see the module
    docstring for the rules."""
    token_starts = [m.start() for m in re.finditer(r"\S+", text)]
    word: int | None = None
    marks: list[tuple[int, str, int | None]] = []
    for kind, position, sample, name in events:
        if kind == "word":
            word = max(0, bisect.bisect_right(token_starts, position - 1) - 1)
            continue
        if _LANGUAGE_SWITCH.match(name.strip()):
            continue
        label = to_ipa(name, lang) or SILENCE
        marks.append(
            (min(max(int(sample), 0), num_samples), label, None if label == SILENCE else word)
        )
    segments: list[Segment] = []
    if not marks or marks[0][0] > 0:
        segments.append(_segment(SILENCE, 0, marks[0][0] if marks else num_samples))
    for i, (start, label, w) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else num_samples
        segments.append(_segment(label, start, max(start, end), w))
    return _attach_modifiers(_tidy(segments))


def _is_modifier(label: str) -> bool:
    return all(unicodedata.category(ch) in ("Lm", "Mn") for ch in label)


def _attach_modifiers(segments: list[Segment]) -> list[Segment]:
    """A segment that is only a modifier (eSpeak's palatal on-glide "ʲ" in Russian and Polish)
    belongs to the phone before it: "k" + "ʲ" -> "kʲ" over both spans."""
    out: list[Segment] = []
    for s in segments:
        if out and not s.silence and not out[-1].silence and _is_modifier(s.label):
            out[-1] = replace(out[-1], label=out[-1].label + s.label, end=s.end)
        else:
            out.append(s)
    return out


def _tidy(segments: Iterable[Segment]) -> list[Segment]:
    """Drop empty segments and merge neighbouring silences."""
    out: list[Segment] = []
    for s in segments:
        if s.end <= s.start:
            continue
        if out and s.silence and out[-1].silence:
            out[-1] = replace(out[-1], end=s.end)
        else:
            out.append(s)
    return out


def move_stop_closures(
    segments: list[Segment], audio: np.ndarray, min_keep: int = 220
) -> list[Segment]:
    """Give each stop (or affricate) its closure: eSpeak emits the closure's silence before the
    stop's event, as exact-zero samples at the end of the previous phone. Move the boundary back
    over that run of zeros, leaving the previous phone at least `min_keep` samples (10 ms at
    22.05 kHz). A stop after a pause keeps its start (the closure is part of the pause)."""
    out = list(segments)
    for i in range(1, len(out)):
        prev, cur = out[i - 1], out[i]
        if not is_stop(cur.label) or prev.silence:
            continue
        span = audio[prev.start : cur.start]
        nonzero = np.flatnonzero(span)
        zeros = len(span) if len(nonzero) == 0 else len(span) - 1 - int(nonzero[-1])
        new_start = max(prev.start + min_keep, cur.start - zeros)
        if new_start < cur.start:
            out[i - 1], out[i] = replace(prev, end=new_start), replace(cur, start=new_start)
    return out


def resample_segments(
    segments: list[Segment], rate_in: int, rate_out: int, n_out: int
) -> list[Segment]:
    """The same segments on another sample grid, still tiling [0, n_out)."""
    out = [
        replace(
            s,
            start=min(n_out, round(s.start * rate_out / rate_in)),
            end=min(n_out, round(s.end * rate_out / rate_in)),
        )
        for s in segments
    ]
    if out:
        out[-1] = replace(out[-1], end=n_out)
    return _tidy(out)


def word_spans(segments: list[Segment], text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for each text token that has phones, from its first to its last phone."""
    tokens = text.split()
    spans: dict[int, list[int]] = {}
    for s in segments:
        if s.silence or s.word is None:
            continue
        span = spans.setdefault(s.word, [s.start, s.end])
        span[1] = s.end
    out = []
    for index, (start, end) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        token = tokens[index] if index < len(tokens) else ""
        word = re.sub(r"^\W+|\W+$", "", token) or token
        out.append((word, start, end))
    return out
