from itertools import permutations

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource
from lhotse.supervision import AlignmentItem
from lhotse.utils import fastcopy

from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import AudioBatches, cut_rng, load_mono
from distilxlsr.data.shuffle import (
    Segment,
    ShuffleTransform,
    assemble,
    cut_segments,
    energy_segments,
    make_transform,
    phoneme_shuffle,
    shuffled_order,
    tile_segments,
    write_shuffled,
)
from distilxlsr.distill.recipe import ShuffleConfig
from distilxlsr.errors import UserError

SR = 16000
FRAME = 160  # 10 ms


def sine_utterance():
    """Two words of three and four 'phones' (sines of distinct frequencies and durations),
    separated and surrounded by silence. Returns audio, segments, and the expected runs."""
    words = [
        [(300, 0.09), (700, 0.12), (1100, 0.07)],
        [(1500, 0.11), (1900, 0.08), (2300, 0.13), (2700, 0.10)],
    ]
    pieces, phones, word_spans, pos = [], [], [], 0.0
    pieces.append(np.zeros(int(0.1 * SR)))
    pos = 0.1
    for word in words:
        start = pos
        for freq, dur in word:
            n = int(round(dur * SR))
            t = np.arange(n) / SR
            pieces.append(0.5 * np.sin(2 * np.pi * freq * t))
            phones.append((pos, pos + n / SR, f"f{freq}"))
            pos += n / SR
        word_spans.append((start, pos))
        pieces.append(np.zeros(int(0.1 * SR)))
        pos += 0.1
    audio = np.concatenate(pieces).astype(np.float32)
    segments = tile_segments(phones, len(audio), SR, words=word_spans)
    return audio, segments, words


def runs(audio):
    """(dominant frequency or 0 for silence, number of 10 ms frames) for each run of frames."""
    frames = len(audio) // FRAME
    labels = []
    for i in range(frames):
        frame = audio[i * FRAME : (i + 1) * FRAME].astype(np.float64)
        if np.sqrt(np.mean(frame**2)) < 0.05:
            labels.append(0)
        else:
            labels.append(int(np.argmax(np.abs(np.fft.rfft(frame)))) * SR // FRAME)
    out = []
    for label in labels:
        if out and out[-1][0] == label:
            out[-1][1] += 1
        else:
            out.append([label, 1])
    return [(f, n) for f, n in out if n >= 3]  # joins blur a frame or two


def phones_of(run_list):
    return [f for f, _ in run_list if f]


def test_tiling_covers_the_audio_and_marks_gaps_as_silence():
    audio, segments, _ = sine_utterance()
    assert segments[0].start == 0 and segments[-1].end == len(audio)
    assert all(a.end == b.start for a, b in zip(segments, segments[1:], strict=False))
    assert [s.silence for s in segments] == [
        True,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
        True,
    ]
    assert [s.word for s in segments if not s.silence] == [0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("mode", ["utterance", "word", "segment"])
def test_duration_kept_and_order_changed(mode):
    audio, segments, _ = sine_utterance()
    out = phoneme_shuffle(audio, segments, np.random.default_rng(0), mode)
    assert len(out) == len(audio) and out.dtype == audio.dtype
    assert not np.allclose(out, audio)


@pytest.mark.parametrize("seed", range(5))
def test_utterance_mode_keeps_the_multiset_and_the_silence_slots(seed):
    audio, segments, words = sine_utterance()
    before = runs(audio)
    after = runs(phoneme_shuffle(audio, segments, np.random.default_rng(seed), "utterance"))
    assert sorted(phones_of(after)) == sorted(phones_of(before))
    assert phones_of(after) != phones_of(before)
    # Every phone keeps its length (within a frame at each join).
    lengths = {f: n for f, n in before if f}
    assert all(abs(n - lengths[f]) <= 2 for f, n in after if f)
    # Silences stay in their slots: the silence runs sit at the same places in the sequence.
    assert [f == 0 for f, _ in after] == [f == 0 for f, _ in before]
    assert [n for f, n in after if f == 0] == [n for f, n in before if f == 0]


@pytest.mark.parametrize("seed", range(5))
def test_word_mode_keeps_phones_inside_their_words(seed):
    audio, segments, words = sine_utterance()
    after = runs(phoneme_shuffle(audio, segments, np.random.default_rng(seed), "word"))
    groups, current = [], []
    for f, _ in after:
        if f == 0:
            if current:
                groups.append(current)
            current = []
        else:
            current.append(f)
    assert [sorted(g) for g in groups] == [sorted(f for f, _ in w) for w in words]
    assert groups != [[f for f, _ in w] for w in words]


def test_deterministic_per_seed_and_different_across_epochs():
    audio, segments, _ = sine_utterance()
    a = phoneme_shuffle(audio, segments, cut_rng(0, 0, "utt1", "transform"), "utterance")
    b = phoneme_shuffle(audio, segments, cut_rng(0, 0, "utt1", "transform"), "utterance")
    c = phoneme_shuffle(audio, segments, cut_rng(0, 1, "utt1", "transform"), "utterance")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_identity_order_reproduces_the_input_exactly():
    audio, segments, _ = sine_utterance()
    out = assemble(audio, segments, list(range(len(segments))), fade=64)
    np.testing.assert_allclose(out, audio, atol=1e-6)


def test_joins_are_cross_faded_without_clicks():
    # One word of phase-continuous low tones: the input itself has no discontinuity.
    freqs, durations = [200, 300, 400, 500, 600], [0.0913, 0.1071, 0.0737, 0.1189, 0.1023]
    f = np.concatenate(
        [np.full(int(d * SR), fr, dtype=np.float64) for fr, d in zip(freqs, durations, strict=True)]
    )
    audio = (0.5 * np.sin(np.cumsum(2 * np.pi * f / SR))).astype(np.float32)
    bounds = np.cumsum([0] + [int(d * SR) for d in durations]) / SR
    phones = [(a, b, str(fr)) for a, b, fr in zip(bounds[:-1], bounds[1:], freqs, strict=True)]
    segments = tile_segments(phones, len(audio), SR)
    step_in = np.abs(np.diff(audio)).max()
    hard, smooth = [], []
    for seed in range(10):
        out = phoneme_shuffle(audio, segments, np.random.default_rng(seed), "utterance", fade_ms=0)
        hard.append(np.abs(np.diff(out)).max())
        out = phoneme_shuffle(audio, segments, np.random.default_rng(seed), "utterance")
        smooth.append(np.abs(np.diff(out)).max())
    assert max(hard) > 2 * step_in  # butt joins click...
    assert max(smooth) < 1.3 * step_in  # ...cross-fades do not


def test_segment_mode_cuts_40_to_120_ms_at_quiet_points():
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    audio = (np.sin(2 * np.pi * 200 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 7 * t))).astype(
        np.float32
    )
    segments = energy_segments(audio, SR, rng)
    lengths = [(s.end - s.start) / SR for s in segments]
    assert all(0.025 <= x <= 0.135 for x in lengths[:-1])
    assert sum(s.end - s.start for s in segments) == len(audio)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 7 * t)
    inner = [s.start for s in segments[1:]]
    assert np.mean(envelope[inner]) < np.mean(envelope)  # cuts prefer the quiet parts


def test_transform_on_toy_cuts(toy_corpus):
    cut = next(iter(load_cuts(toy_corpus / "en")))
    audio = cut.load_audio()[0]
    transform = make_transform(ShuffleConfig(mode="utterance"))
    out = transform(audio, cut, np.random.default_rng(0))
    assert len(out) == len(audio) and not np.allclose(out, audio)
    # A crop (a cut starting later in its recording) keeps alignments in step with the audio.
    cropped = cut.truncate(offset=0.5, duration=1.0)
    crop_audio = cropped.load_audio()[0]
    out = transform(crop_audio, cropped, np.random.default_rng(0))
    assert len(out) == len(crop_audio)
    assert make_transform(ShuffleConfig(mode="none")) is None


def test_utterance_mode_needs_alignments(toy_corpus):
    cut = next(iter(load_cuts(toy_corpus / "en")))
    bare = cut.map_supervisions(lambda s: fastcopy(s, alignment=None))
    transform = make_transform(ShuffleConfig(mode="utterance"))
    with pytest.raises(UserError, match="no phone alignment"):
        transform(cut.load_audio()[0], bare, np.random.default_rng(0))
    segment_mode = make_transform(ShuffleConfig(mode="segment"))
    assert len(segment_mode(cut.load_audio()[0], bare, np.random.default_rng(0))) == cut.num_samples


def test_bad_mode():
    with pytest.raises(UserError, match="shuffle.mode"):
        make_transform(ShuffleConfig(mode="sentence"))


def test_segment_dataclass_defaults():
    assert Segment(0, 5).word is None


def _pauses_stay_silent(audio: np.ndarray, cut, rate: int, margin: float = 0.01) -> int:
    """Asserts that every pause between two phones (less `margin` s at each end) is silent in
    `audio` at `rate`; returns how many pauses were checked."""
    phones = cut.supervisions[0].alignment["phone"]
    checked = 0
    for a, b in zip(phones, phones[1:], strict=False):
        start, end = a.end + margin, b.start - margin
        if end - start < 0.02:
            continue
        quiet = np.abs(audio[round(start * rate) : round(end * rate)]).max()
        assert quiet < 0.02, (a, b, quiet)
        checked += 1
    return checked


def test_transform_works_at_the_loaders_sample_rate(toy_corpus):
    """Audio loaded at 8 kHz (data.sample_rate) from 16 kHz recordings: alignment times become
    samples at 8 kHz, so word mode keeps every pause in place (they were converted at 16 kHz)."""
    rate = 8000
    cut = next(iter(load_cuts(toy_corpus / "en")))
    transform = make_transform(ShuffleConfig(mode="word"), sample_rate=rate)
    batches = AudioBatches(sample_rate=rate, normalize=False, transform=transform, seed=0)
    original = load_mono(cut, rate)
    shuffled = batches.load(cut, epoch=0)
    assert len(shuffled) == len(original) and not np.allclose(shuffled, original)
    assert _pauses_stay_silent(original, cut, rate) >= 2
    assert _pauses_stay_silent(shuffled, cut, rate) >= 2


def test_loader_refuses_a_transform_made_for_another_rate():
    transform = make_transform(ShuffleConfig(mode="utterance"))  # 16 kHz
    with pytest.raises(ValueError, match="8000 Hz"):
        AudioBatches(sample_rate=8000, transform=transform)
    assert make_transform(ShuffleConfig(mode="none"), sample_rate=8000) is None


def test_cropped_cut_segments_follow_the_cut_not_the_recording(toy_corpus):
    cut = next(c for c in load_cuts(toy_corpus / "en") if c.duration > 1.8)
    phones = cut.supervisions[0].alignment["phone"]
    offset, duration = 0.5, 1.0
    cropped = cut.truncate(offset=offset, duration=duration)
    n = cropped.num_samples
    segments = cut_segments(cropped, n, SR)
    assert segments[0].start == 0 and segments[-1].end == n
    # Every phone that lies wholly inside the crop is a segment of its own, at its place in
    # the crop (its recording time minus the crop's start) and with its label.
    inside = [a for a in phones if offset <= a.start and a.end <= offset + duration]
    assert len(inside) >= 3
    found = {(s.start, s.end): s.label for s in segments if not s.silence}
    for a in inside:
        span = (round((a.start - offset) * SR), round((a.end - offset) * SR))
        assert found.get(span) == a.symbol, (a, sorted(found.items())[:4])
    # And the audio under each such segment is that phone's audio.
    full, crop = cut.load_audio()[0], cropped.load_audio()[0]
    shift = round(offset * SR)
    for (a, b), _ in found.items():
        if b - a > 100:
            np.testing.assert_allclose(crop[a:b], full[a + shift : b + shift], atol=1e-6)


def test_shuffling_a_crop_moves_whole_phones(toy_corpus):
    """Shuffled with its alignment, a crop keeps every phone intact: the audio of each phone
    inside the crop (by the recording's alignment) turns up unchanged, but for the few fade
    samples at its ends, somewhere in the output; most of them elsewhere than before."""
    cut = next(c for c in load_cuts(toy_corpus / "en") if c.duration > 1.8)
    offset = 0.5
    cropped = cut.truncate(offset=offset, duration=1.0)
    audio = cropped.load_audio()[0]
    out = make_transform(ShuffleConfig(mode="utterance"))(audio, cropped, np.random.default_rng(1))
    inside = [
        (round((a.start - offset) * SR), round((a.end - offset) * SR))
        for a in cut.supervisions[0].alignment["phone"]
        if offset < a.start and a.end < offset + 1.0
    ]
    assert len(inside) >= 3
    moved = 0
    for start, end in inside:
        inner = audio[start + 40 : end - 40]  # clear of the 4 ms cross-fades
        candidates = np.flatnonzero(out == inner[0])
        places = [i for i in candidates if np.array_equal(out[i : i + len(inner)], inner)]
        assert places, (start, end)
        moved += places[0] != start + 40
    assert moved >= 2


# --- Tiling an alignment (docs/design.md, Phoneme shuffling: Segments) ----------------------
# At 1 kHz one sample is one millisecond, and MIN_GAP_S (5 ms) is 5 samples.


def test_tiling_gaps_slivers_overlaps_and_pieces_outside_the_audio():
    phones = [
        (0.002, 0.020, "a"),  # a 2 ms lead-in: no piece before it to absorb it, so silence
        (0.022, 0.040, "b"),  # a 2 ms gap after `a`: `a` absorbs it
        (0.045, 0.060, "c"),  # a gap of exactly 5 ms: silence
        (0.060, 0.070, "sil"),  # a silence label
        (0.068, 0.080, "d"),  # overlaps `sil`: clipped to its end
        (0.085, 0.085, "e"),  # empty: dropped
        (0.090, 0.095, "f"),  # outside every word
        (0.120, 0.130, "g"),  # beyond the audio: dropped
    ]
    words = [(0.002, 0.040), (0.045, 0.080)]
    assert tile_segments(phones, 100, 1000, words=words) == [
        Segment(0, 2, "", silence=True),
        Segment(2, 22, "a", word=0),
        Segment(22, 40, "b", word=0),
        Segment(40, 45, "", silence=True),
        Segment(45, 60, "c", word=1),
        Segment(60, 70, "sil", silence=True),  # silences belong to no word
        Segment(70, 80, "d", word=1),
        Segment(80, 90, "", silence=True),
        Segment(90, 95, "f"),
        Segment(95, 100, "", silence=True),  # a trailing gap of exactly 5 ms: silence
    ]


def test_tiling_slivers_join_the_piece_before_them_keeping_its_label_and_word():
    phones = [(0.000, 0.030, "a"), (0.033, 0.060, "b"), (0.060, 0.090, "c")]
    words = [(0.000, 0.060), (0.060, 0.093)]
    # 3 ms between `a` and `b`, and 3 ms after `c` at the end of the audio.
    assert tile_segments(phones, 93, 1000, words=words) == [
        Segment(0, 33, "a", word=0),
        Segment(33, 60, "b", word=0),
        Segment(60, 93, "c", word=1),
    ]
    # A silence absorbs a sliver as a silence.
    assert tile_segments([(0.0, 0.05, "a"), (0.05, 0.08, "sp")], 82, 1000) == [
        Segment(0, 50, "a"),
        Segment(50, 82, "sp", silence=True),
    ]


def test_a_phone_belongs_to_the_word_holding_its_midpoint():
    words = [(0.020, 0.050), (0.050, 0.090)]
    phones = [(0.0, 0.02, "a"), (0.02, 0.04, "b"), (0.04, 0.06, "c"), (0.06, 0.09, "d")]
    segments = tile_segments(phones, 90, 1000, words=words)
    # `a` lies before the first word; `c`'s midpoint (50 ms) is where word 0 ends and word 1
    # starts: a word holds [start, end), so `c` is word 1's alone.
    assert [(s.label, s.word) for s in segments] == [("a", None), ("b", 0), ("c", 1), ("d", 1)]


def test_tiling_no_audio_gives_no_segments():
    assert tile_segments([(0.0, 0.01, "a")], 0, SR) == []
    assert tile_segments([], 0, SR) == []


# --- Orders (Modes) -------------------------------------------------------------------------


def _sil(a, b):
    return Segment(a, b, "", silence=True)


@pytest.mark.parametrize("seed", range(20))
def test_two_phones_always_swap_and_silences_keep_their_slots(seed):
    """A permutation of two or more pieces is never the identity: two phones always swap."""
    segments = [_sil(0, 10), Segment(10, 20, "a"), _sil(20, 30), Segment(30, 40, "b"), _sil(40, 50)]
    rng = np.random.default_rng(seed)
    assert shuffled_order(segments, "utterance", rng) == [0, 3, 2, 1, 4]


def test_every_order_but_the_identity_occurs():
    segments = [Segment(0, 10, "a"), Segment(10, 20, "b"), Segment(20, 30, "c")]
    orders = {
        tuple(shuffled_order(segments, "utterance", np.random.default_rng(seed)))
        for seed in range(100)
    }
    assert orders == set(permutations(range(3))) - {(0, 1, 2)}


@pytest.mark.parametrize("seed", range(20))
def test_word_mode_permutes_inside_words_and_leaves_the_rest(seed):
    segments = [
        _sil(0, 10),
        Segment(10, 20, "a", word=0),
        Segment(20, 30, "b", word=0),
        Segment(30, 40, "x"),  # phones outside every word stay put
        Segment(40, 50, "y"),
        Segment(50, 60, "c", word=1),
        Segment(60, 70, "d", word=1),
        _sil(70, 80),
        Segment(80, 90, "e", word=2),  # a word of one phone has nothing to swap with
    ]
    rng = np.random.default_rng(seed)
    assert shuffled_order(segments, "word", rng) == [0, 2, 1, 3, 4, 6, 5, 7, 8]


def test_none_mode_keeps_the_order_and_segment_mode_moves_silences_too():
    segments = [_sil(0, 10), Segment(10, 20, "a"), _sil(20, 30)]
    assert shuffled_order(segments, "none", np.random.default_rng(0)) == [0, 1, 2]
    orders = {
        tuple(shuffled_order(segments, "segment", np.random.default_rng(s))) for s in range(30)
    }
    assert orders == set(permutations(range(3))) - {(0, 1, 2)}


BAD_MODE = "shuffle.mode 'sentence' must be one of none, utterance, word, segment."


def test_a_bad_mode_is_named_with_the_modes_to_choose_from():
    segments = [Segment(0, 10, "a"), Segment(10, 20, "b")]
    audio = np.ones(20, dtype=np.float32)
    calls = [
        lambda: shuffled_order(segments, "sentence", np.random.default_rng(0)),
        lambda: phoneme_shuffle(audio, segments, np.random.default_rng(0), "sentence"),
        lambda: ShuffleTransform("sentence"),
        lambda: make_transform(ShuffleConfig(mode="sentence")),
    ]
    for call in calls:
        with pytest.raises(UserError) as err:
            call()
        assert str(err.value) == BAD_MODE


# --- Joins: cross-fades (Joins) -------------------------------------------------------------


def fade_in(fade):
    """The raised-cosine fade-in of `fade` samples; the fade-out is its complement."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)


def joined(first, n_first, second, n_second, fade):
    """Two constant pieces, `first` then `second`, cross-faded over `fade` samples centred on
    the join."""
    out = np.concatenate([np.full(n_first, first), np.full(n_second, second)])
    up = fade_in(fade)
    start = n_first - fade // 2
    out[start : start + fade] = first * (1 - up) + second * up
    return out


def two_phones(first, n_first, second, n_second):
    audio = np.concatenate([np.full(n_first, first), np.full(n_second, second)])
    segments = [Segment(0, n_first, "a"), Segment(n_first, n_first + n_second, "b")]
    return audio.astype(np.float32), segments


@pytest.mark.parametrize("seed", range(3))
def test_a_swap_is_a_4_ms_raised_cosine_cross_fade_with_full_gain_at_the_edges(seed):
    audio, segments = two_phones(1.0, 800, 3.0, 1200)
    out = phoneme_shuffle(audio, segments, np.random.default_rng(seed), "utterance")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, joined(3.0, 1200, 1.0, 800, fade=64), atol=1e-6)


def test_the_cross_fade_is_shortened_to_the_shortest_piece():
    audio, segments = two_phones(3.0, 100, 1.0, 12)
    out = phoneme_shuffle(audio, segments, np.random.default_rng(0), "utterance")
    np.testing.assert_allclose(out, joined(1.0, 12, 3.0, 100, fade=12), atol=1e-6)


def test_phoneme_shuffle_defaults_to_utterance_mode():
    audio, segments, _ = sine_utterance()
    default = phoneme_shuffle(audio, segments, np.random.default_rng(4))
    utterance = phoneme_shuffle(audio, segments, np.random.default_rng(4), "utterance")
    assert np.array_equal(default, utterance)


def test_identity_order_keeps_loud_edges_exactly():
    """No neighbour to fade against at the outer edges: an unchanged order reproduces audio that
    is loud right up to its first and last sample."""
    t = np.arange(4000) / SR
    audio = (0.8 * np.cos(2 * np.pi * 220 * t) + 0.1).astype(np.float32)
    segments = [Segment(0, 1000), Segment(1000, 2600), Segment(2600, 4000)]
    out = assemble(audio, segments, [0, 1, 2], fade=64)
    np.testing.assert_allclose(out, audio, atol=1e-6)


@pytest.mark.parametrize("mode", ["utterance", "word", "segment"])
def test_no_audio_in_no_audio_out(mode):
    empty = np.zeros(0, dtype=np.float32)
    out = phoneme_shuffle(empty, tile_segments([], 0, SR), np.random.default_rng(0), mode)
    assert len(out) == 0 and out.dtype == np.float32


# --- Segment mode (Modes: segment) ----------------------------------------------------------


class Lengths:
    """Stands in for the generator in `energy_segments`: its draws are the given chunk lengths
    (ms), in order; it records the range each draw was asked for."""

    def __init__(self, *lengths_ms):
        self.lengths = list(lengths_ms)
        self.ranges = []

    def uniform(self, low, high):
        self.ranges.append((low, high))
        return self.lengths.pop(0)


def test_each_cut_is_the_quietest_frame_within_15_ms_of_its_drawn_length():
    """A loud 400 Hz tone (one period per 2.5 ms frame) with quiet frames. Frame k is
    [40k, 40k + 40); a target at frame t reaches frames t-6 .. t+6 (+-15 ms)."""
    hop = 40
    t = np.arange(150 * hop)
    audio = 0.5 * np.sin(2 * np.pi * 400 * (t + 7) / SR)
    quiet = {
        25: 0.0,  # just before the first window: not reachable
        26: 0.2,  # the first window's first frame (target 80 ms = frame 32)
        72: 0.2,  # the second window's last frame (target 1040 + 1600 = frame 66)
        73: 0.0,  # just after it
        83: 0.4,  # two quiet frames in the third window (target 2880 + 640 = frame 88):
        88: 0.3,  # the quieter one wins
    }
    for frame, gain in quiet.items():
        audio[frame * hop : (frame + 1) * hop] *= gain
    rng = Lengths(80.0, 100.0, 40.0, 120.0)
    segments = energy_segments(audio.astype(np.float32), SR, rng)
    # The fourth draw's target (3520 + 1920) leaves under 40 ms: no cut, the rest is one chunk.
    assert segments == [
        Segment(0, 1040),
        Segment(1040, 2880),
        Segment(2880, 3520),
        Segment(3520, 6000),
    ]
    assert rng.ranges == [(40.0, 120.0)] * 4 and not rng.lengths  # 40-120 ms chunks


def test_cuts_move_forward_even_when_the_quietest_frame_is_behind():
    """Chunks drawn shorter than the search reach: in a sound that grows louder, the quietest
    frame within reach lies before the previous cut, so each cut is the next frame, and the
    last frame ends the audio."""
    audio = np.linspace(0.01, 1.0, 400).astype(np.float32)
    segments = energy_segments(audio, SR, Lengths(*[1.0] * 10), min_ms=1.0, max_ms=1.25)
    assert segments == [Segment(a, a + 40) for a in range(0, 400, 40)]


def test_frames_are_frame_ms_long():
    """At 1 kHz with 1 ms frames a cut can fall on any sample: here the one quiet sample."""
    audio = np.ones(150, dtype=np.float32)
    audio[37] = 0.0
    segments = energy_segments(audio, 1000, Lengths(40.0, 120.0), frame_ms=1.0)
    assert segments == [Segment(0, 37), Segment(37, 150)]


def test_audio_shorter_than_a_frame_is_one_segment():
    audio = np.linspace(-1, 1, 30).astype(np.float32)
    assert energy_segments(audio, SR, np.random.default_rng(0)) == [Segment(0, 30)]
    out = phoneme_shuffle(audio, [], np.random.default_rng(0), "segment")
    assert np.array_equal(out, audio)


def test_segment_mode_ignores_the_segments_it_is_given():
    audio, segments, _ = sine_utterance()
    without = phoneme_shuffle(audio, [], np.random.default_rng(2), "segment")
    given = phoneme_shuffle(audio, segments, np.random.default_rng(2), "segment")
    assert np.array_equal(without, given)
    assert not np.allclose(without, audio) and np.abs(without).max() > 0.4


def test_every_chunk_is_at_least_40_minus_15_ms():
    """Whatever the draws, no chunk (the last included) is shorter than 40 ms less the 15 ms
    search reach and a frame."""
    t = np.arange(3 * SR) / SR
    audio = (np.sin(2 * np.pi * 150 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 5 * t))).astype(
        np.float32
    )
    for seed in range(10):
        segments = energy_segments(audio, SR, np.random.default_rng(seed))
        lengths = [(s.end - s.start) / SR for s in segments]
        assert min(lengths) >= 0.0225 and max(lengths[:-1]) <= 0.135 and lengths[-1] <= 0.16


# --- Cuts and the transform (Segments; the loader's transform) ------------------------------


def aligned(phones, words=None, sup_id="s"):
    """A supervision aligned with `phones` ((symbol, start s, end s)) and, if given, `words`."""
    alignment = {"phone": [AlignmentItem(p, a, round(b - a, 6)) for p, a, b in phones]}
    if words is not None:
        alignment["word"] = [AlignmentItem(w, a, round(b - a, 6)) for w, a, b in words]
    return SupervisionSegment(sup_id, "rec", 0.0, 1.0, alignment=alignment)


def make_cut(supervisions, duration=1.0, cut_id="utt7"):
    """A cut of a recording that is never read (cut_segments and the transform take the audio
    from their caller)."""
    source = AudioSource(type="file", channels=[0], source="never-read.wav")
    recording = Recording("rec", [source], SR, int(duration * SR), duration)
    return MonoCut(cut_id, 0.0, duration, 0, supervisions=supervisions, recording=recording)


def test_cut_segments_gather_every_supervisions_phones_and_words():
    cut = make_cut(
        [
            SupervisionSegment("noise", "rec", 0.0, 1.0, alignment={"word": []}),  # no phones
            aligned([("x", 0.0, 0.05), ("y", 0.05, 0.10)], [("xy", 0.0, 0.10)], "s1"),
            aligned([("z", 0.15, 0.25)], [("z", 0.15, 0.25)], "s2"),
            aligned([("w", 0.25, 0.28)], sup_id="s3"),  # phones without words
        ]
    )
    assert cut_segments(cut, 300, 1000) == [
        Segment(0, 50, "x", word=0),
        Segment(50, 100, "y", word=0),
        Segment(100, 150, "", silence=True),
        Segment(150, 250, "z", word=1),
        Segment(250, 280, "w"),
        Segment(280, 300, "", silence=True),
    ]


def test_cut_segments_of_a_crop_keep_each_phones_word():
    phones = [("p0", 0.10, 0.30), ("p1", 0.55, 0.65), ("p2", 0.65, 0.75), ("p3", 0.80, 0.95)]
    words = [("w0", 0.10, 0.30), ("w1", 0.55, 0.75), ("w2", 0.80, 0.95)]
    crop = make_cut([aligned(phones, words)]).truncate(offset=0.5, duration=0.5)
    assert cut_segments(crop, 500, 1000) == [
        Segment(0, 50, "", silence=True),
        Segment(50, 150, "p1", word=1),
        Segment(150, 250, "p2", word=1),
        Segment(250, 300, "", silence=True),
        Segment(300, 450, "p3", word=2),
        Segment(450, 500, "", silence=True),
    ]


def test_a_cut_without_phone_alignment_is_named_with_the_way_out():
    bare = make_cut([SupervisionSegment("s", "rec", 0.0, 1.0)])
    with pytest.raises(UserError) as err:
        ShuffleTransform("word")(np.zeros(SR, dtype=np.float32), bare, np.random.default_rng(0))
    assert str(err.value) == (
        "cut 'utt7' has no phone alignment, which shuffle.mode=word needs; prepare the corpus "
        "with alignments or use shuffle.mode=segment."
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda: ShuffleTransform("utterance", silence_labels=["pau"]),
        lambda: make_transform(ShuffleConfig(mode="utterance", silence_labels=["pau"])),
    ],
    ids=["ShuffleTransform", "make_transform"],
)
def test_the_configured_silence_labels_keep_their_slots(build):
    transform = build()
    cut = make_cut([aligned([("a", 0.0, 0.1), ("pau", 0.1, 0.2), ("b", 0.2, 0.3)])], 0.3)
    audio = np.repeat(np.array([1.0, 2.0, 3.0], dtype=np.float32), 1600)
    for seed in range(10):
        out = transform(audio, cut, np.random.default_rng(seed))
        # Clear of the 2 ms (32-sample) fades: `b` first, the pause where it was, `a` last.
        assert np.all(out[: 1600 - 32] == 3.0)
        assert np.all(out[1600 + 32 : 3200 - 32] == 2.0)
        assert np.all(out[3200 + 32 :] == 1.0)


def test_the_transform_shuffles_at_its_own_sample_rate():
    """At 8 kHz the phones are found at 8 kHz, and the cross-fade is 4 ms = 32 samples."""
    rate = 8000
    cut = make_cut([aligned([("a", 0.0, 0.1), ("b", 0.1, 0.25)])], 0.25)
    audio = np.repeat(np.array([1.0, 3.0], dtype=np.float32), [800, 1200])
    out = ShuffleTransform("utterance", sample_rate=rate)(audio, cut, np.random.default_rng(0))
    np.testing.assert_allclose(out, joined(3.0, 1200, 1.0, 800, fade=32), atol=1e-6)
    # Segment mode cuts its 40-120 ms chunks at the transform's rate too.
    speech, _, _ = sine_utterance()
    segment = ShuffleTransform("segment", sample_rate=rate)
    out = segment(speech, cut, np.random.default_rng(3))
    at_rate = phoneme_shuffle(speech, [], np.random.default_rng(3), "segment", sample_rate=rate)
    at_16k = phoneme_shuffle(speech, [], np.random.default_rng(3), "segment")
    assert np.array_equal(out, at_rate) and not np.array_equal(out, at_16k)


# --- Listening to the shuffles (`distilxlsr shuffle`) ---------------------------------------


def test_write_shuffled_writes_each_original_next_to_its_shuffle(toy_corpus, tmp_path):
    cuts = list(load_cuts(toy_corpus / "en"))[:2]
    out = tmp_path / "listen" / "utterance"  # its parent does not exist yet
    written = write_shuffled(str(toy_corpus / "en"), "utterance", str(out), limit=2)
    assert written == [str(out / f"{c.id}.utterance.wav") for c in cuts]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{c.id}.{kind}.wav" for c in cuts for kind in ("orig", "utterance")
    )
    for cut in cuts:
        original = load_mono(cut)
        orig, rate = sf.read(out / f"{cut.id}.orig.wav", dtype="float32")
        shuffled, shuffled_rate = sf.read(out / f"{cut.id}.utterance.wav", dtype="float32")
        assert rate == shuffled_rate == SR
        np.testing.assert_allclose(orig, original, atol=1 / 2**15)  # 16-bit WAV
        assert len(shuffled) == len(original) and not np.allclose(shuffled, original, atol=0.01)
    # Writing again (seed 0, the default) into the same folder gives the same files; another
    # seed gives other shuffles.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    write_shuffled(str(toy_corpus / "en"), "utterance", str(out), seed=0, limit=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    other = tmp_path / "seed1"
    write_shuffled(str(toy_corpus / "en"), "utterance", str(other), seed=1, limit=2)
    for cut in cuts:
        name = f"{cut.id}.utterance.wav"
        assert (other / name).read_bytes() != before[name]


def test_write_shuffled_takes_the_first_20_cuts_and_names_files_from_ids_with_slashes(
    toy_corpus, tmp_path
):
    cut = min(load_cuts(toy_corpus / "en"), key=lambda c: c.duration)
    corpus = tmp_path / "corpus" / "en"
    corpus.mkdir(parents=True)
    ids = [f"spk{k}/{cut.id}" for k in range(21)]
    CutSet.from_cuts([fastcopy(cut, id=i) for i in ids]).to_file(corpus / "cuts_train.jsonl.gz")
    out = tmp_path / "out"
    written = write_shuffled(str(corpus), "segment", str(out))
    assert written == [str(out / f"{i.replace('/', '_')}.segment.wav") for i in ids[:20]]
    assert (out / f"spk0_{cut.id}.orig.wav").is_file()


def test_write_shuffled_at_another_rate_with_other_silence_labels(toy_corpus, tmp_path):
    """Audio is loaded and written at `sample_rate`; with every phone of the cut a silence
    label, nothing moves."""
    cut = next(iter(load_cuts(toy_corpus / "en")))
    symbols = {a.symbol for a in cut.supervisions[0].alignment["phone"]}
    out = tmp_path / "out"
    write_shuffled(
        str(toy_corpus / "en"),
        "utterance",
        str(out),
        limit=1,
        sample_rate=8000,
        silence_labels=symbols,
    )
    orig, rate = sf.read(out / f"{cut.id}.orig.wav", dtype="float32")
    shuffled, _ = sf.read(out / f"{cut.id}.utterance.wav", dtype="float32")
    assert rate == 8000
    np.testing.assert_allclose(orig, load_mono(cut, 8000), atol=1 / 2**15)
    np.testing.assert_allclose(shuffled, orig, atol=1 / 2**15)
