"""Phoneme shuffling: a waveform whose phone segments appear in a random order (docs/design.md,
"Phoneme shuffling").

The core is a pure function, `phoneme_shuffle(audio, segments, rng, mode)`, on a waveform and
segments that tile it. Pieces are re-assembled with short cross-fades in which each piece brings
its own few milliseconds of original context, so the output has exactly the input's length, no
click at a join, and an unchanged order reproduces the input exactly.

Modes: `utterance` (permute all non-silence phones; silences keep their slots in the sequence),
`word` (permute phones inside each word), `segment` (no alignment needed: random 40-120 ms
chunks cut at low-energy points, permuted), `none`.
"""

from __future__ import annotations

import numpy as np
from lhotse.cut import Cut

from distilxlsr.conventions import SAMPLE_RATE, SILENCE_LABELS, Segment
from distilxlsr.errors import UserError

MODES = ("none", "utterance", "word", "segment")
ALIGNED_MODES = ("utterance", "word")
"""The modes that cut at the data's phone alignments (`segment` needs none)."""
DEFAULT_SILENCES = frozenset(SILENCE_LABELS)
MIN_GAP_S = 0.005


def tile_segments(
    phones: list[tuple[float, float, str]],
    num_samples: int,
    sample_rate: int,
    silence_labels: frozenset[str] = DEFAULT_SILENCES,
    words: list[tuple[float, float]] | None = None,
) -> list[Segment]:
    """Segments covering [0, num_samples) from (start s, end s, label) phones; gaps become
    silence (gaps under `MIN_GAP_S` join the phone before them); overlaps are clipped to the
    previous phone's end; empty phones are dropped."""
    out: list[Segment] = []
    pos = 0
    min_gap = round(MIN_GAP_S * sample_rate)
    word_bounds = [(round(a * sample_rate), round(b * sample_rate)) for a, b in (words or [])]
    for start_s, end_s, label in sorted(phones):
        start = min(max(pos, round(start_s * sample_rate)), num_samples)
        end = min(round(end_s * sample_rate), num_samples)
        if end <= start:
            continue
        if start - pos >= min_gap or (start > pos and not out):
            out.append(Segment(pos, start, "", silence=True))
        elif start > pos:
            last = out[-1]  # a rounding sliver: the previous piece absorbs it
            out[-1] = Segment(last.start, start, last.label, last.silence, last.word)
        is_silence = label in silence_labels
        word = None
        if not is_silence:
            middle = (start + end) // 2
            word = next((i for i, (a, b) in enumerate(word_bounds) if a <= middle < b), None)
        out.append(Segment(start, end, label, silence=is_silence, word=word))
        pos = end
    if pos < num_samples:
        if num_samples - pos >= min_gap or not out:
            out.append(Segment(pos, num_samples, "", silence=True))
        else:
            last = out[-1]
            out[-1] = Segment(last.start, num_samples, last.label, last.silence, last.word)
    return out


def _permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation that differs from the identity whenever n >= 2."""
    order = rng.permutation(n)
    if n >= 2 and np.all(order == np.arange(n)):
        order = np.roll(order, int(rng.integers(1, n)))
    return order


def shuffled_order(segments: list[Segment], mode: str, rng: np.random.Generator) -> list[int]:
    """The new order of `segments` (indices) for `mode`."""
    order = list(range(len(segments)))
    if mode == "utterance":
        groups = [[i for i, s in enumerate(segments) if not s.silence]]
    elif mode == "word":
        by_word: dict[int, list[int]] = {}
        for i, s in enumerate(segments):
            if not s.silence and s.word is not None:
                by_word.setdefault(s.word, []).append(i)
        groups = list(by_word.values())
    elif mode == "segment":
        groups = [list(range(len(segments)))]
    elif mode == "none":
        return order
    else:
        raise UserError(f"shuffle.mode '{mode}' must be one of {', '.join(MODES)}.")
    for slots in groups:
        # Word mode permutes within a word: its phones are contiguous slots, so the word's
        # place and its neighbours stay put.
        for slot, source in zip(
            slots, [slots[j] for j in _permutation(len(slots), rng)], strict=True
        ):
            order[slot] = source
    return order


def energy_segments(
    audio: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    min_ms: float = 40.0,
    max_ms: float = 120.0,
    search_ms: float = 15.0,
    frame_ms: float = 2.5,
) -> list[Segment]:
    """Alignment-free segments: random 40-120 ms chunks, each cut at the lowest-energy frame
    within +-15 ms of its drawn length."""
    n = len(audio)
    hop = max(1, int(frame_ms * sample_rate / 1000))
    frames = n // hop
    if frames == 0:
        return [Segment(0, n)]
    energy = np.square(audio[: frames * hop].astype(np.float64)).reshape(frames, hop).sum(axis=1)
    cuts = [0]
    while True:
        length = rng.uniform(min_ms, max_ms) * sample_rate / 1000
        target = cuts[-1] + length
        if target >= n - min_ms * sample_rate / 1000:
            break
        lo = max(int((target - search_ms * sample_rate / 1000) / hop), cuts[-1] // hop + 1)
        hi = min(int((target + search_ms * sample_rate / 1000) / hop) + 1, frames)
        if hi <= lo:
            break
        cuts.append((lo + int(np.argmin(energy[lo:hi]))) * hop)
    cuts.append(n)
    return [Segment(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def assemble(audio: np.ndarray, segments: list[Segment], order: list[int], fade: int) -> np.ndarray:
    """Concatenate `segments` in `order` with cross-fades of `fade` samples: each piece carries
    fade/2 samples of its original context on each side, so the length is exactly preserved."""
    n = len(audio)
    half = fade // 2
    # Mirrored context beyond the ends: a piece from the utterance's edge then fades out
    # smoothly where another piece follows it (zeros would put a step inside the fade).
    pad_mode = "reflect" if n > half else "constant"
    padded = np.pad(audio, half, mode=pad_mode)
    out = np.zeros(n + 2 * half, dtype=np.float64)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(2 * half) + 0.5) / (2 * half)) if half else None
    pos = 0
    for index in order:
        seg = segments[index]
        length = seg.end - seg.start
        piece = padded[seg.start : seg.end + 2 * half].astype(np.float64)  # with context
        if half:
            # Amplitude-complementary raised-cosine ramps: overlapping ramps sum to exactly 1.
            piece[: 2 * half] *= ramp
            piece[-2 * half :] *= ramp[::-1]
        out[pos : pos + length + 2 * half] += piece
        pos += length
    result = out[half : half + n]
    if half:
        # The outer edges have no neighbour to fade against: restore full gain there.
        result[:half] /= ramp[half:]
        result[-half:] /= ramp[half:][::-1]
    return result.astype(audio.dtype)


def phoneme_shuffle(
    audio: np.ndarray,
    segments: list[Segment],
    rng: np.random.Generator,
    mode: str = "utterance",
    sample_rate: int = SAMPLE_RATE,
    fade_ms: float = 4.0,
) -> np.ndarray:
    """`audio` with its segments re-ordered by `mode` (`segment` mode ignores `segments`)."""
    if mode == "none":
        return audio
    if mode == "segment":
        segments = energy_segments(audio, sample_rate, rng)
    fade = 2 * int(fade_ms * sample_rate / 2000)
    shortest = min((s.end - s.start for s in segments), default=0)
    fade = min(fade, 2 * (shortest // 2))  # a cross-fade never exceeds a piece
    return assemble(audio, segments, shuffled_order(segments, mode, rng), fade)


def cut_segments(
    cut: Cut, num_samples: int, sample_rate: int, silence_labels: frozenset[str] = DEFAULT_SILENCES
) -> list[Segment] | None:
    """The cut's phone segments in samples relative to the cut (None without phone alignment).
    lhotse alignment times are relative to the recording; the cut may start later (a crop)."""
    phones, words = [], []
    found = False
    for sup in cut.supervisions:
        alignment = sup.alignment or {}
        if "phone" not in alignment:
            continue
        found = True
        phones += [(a.start - cut.start, a.end - cut.start, a.symbol) for a in alignment["phone"]]
        words += [(a.start - cut.start, a.end - cut.start) for a in alignment.get("word", [])]
    if not found:
        return None
    return tile_segments(phones, num_samples, sample_rate, silence_labels, words or None)


class ShuffleTransform:
    """The training loader's transform: shuffle one utterance (picklable for loader workers)."""

    def __init__(self, mode: str, sample_rate: int = SAMPLE_RATE, silence_labels=DEFAULT_SILENCES):
        if mode not in MODES:
            raise UserError(f"shuffle.mode '{mode}' must be one of {', '.join(MODES)}.")
        self.mode = mode
        self.sample_rate = sample_rate
        self.silence_labels = frozenset(silence_labels)

    def __call__(self, audio: np.ndarray, cut: Cut, rng: np.random.Generator) -> np.ndarray:
        if self.mode == "segment":
            return phoneme_shuffle(audio, [], rng, "segment", self.sample_rate)
        segments = cut_segments(cut, len(audio), self.sample_rate, self.silence_labels)
        if segments is None:
            raise UserError(
                f"cut '{cut.id}' has no phone alignment, which shuffle.mode={self.mode} needs; "
                "prepare the corpus with alignments or use shuffle.mode=segment."
            )
        return phoneme_shuffle(audio, segments, rng, self.mode, self.sample_rate)


def make_transform(config, *, sample_rate: int = SAMPLE_RATE) -> ShuffleTransform | None:
    """The transform for a `ShuffleConfig`, working on audio at `sample_rate` (the loader's,
    `data.sample_rate`: alignment times become sample indices at this rate). None for mode
    `none`; ShuffleTransform validates the mode."""
    if config.mode == "none":
        return None
    return ShuffleTransform(
        config.mode, sample_rate=sample_rate, silence_labels=frozenset(config.silence_labels)
    )


def write_shuffled(
    cuts_path: str,
    mode: str,
    out: str,
    seed: int = 0,
    limit: int = 20,
    sample_rate: int = SAMPLE_RATE,
    silence_labels=DEFAULT_SILENCES,
) -> list[str]:
    """Write the first `limit` cuts as `<id>.orig.wav` and shuffled `<id>.<mode>.wav` to listen to."""
    from pathlib import Path  # noqa: PLC0415

    import soundfile as sf  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    from distilxlsr.data.corpora import load_cuts  # noqa: PLC0415
    from distilxlsr.data.loader import cut_rng, load_mono  # noqa: PLC0415

    transform = ShuffleTransform(mode, sample_rate, silence_labels)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    cuts = load_cuts(cuts_path, "train")
    for cut, _ in tqdm(zip(cuts, range(limit), strict=False), total=limit, desc="shuffle"):
        audio = load_mono(cut, sample_rate)
        shuffled = transform(audio, cut, cut_rng(seed, 0, cut.id, "transform"))
        name = cut.id.replace("/", "_")
        sf.write(out_dir / f"{name}.orig.wav", audio, sample_rate)
        sf.write(out_dir / f"{name}.{mode}.wav", shuffled, sample_rate)
        written.append(str(out_dir / f"{name}.{mode}.wav"))
    return written
