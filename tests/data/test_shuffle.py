import numpy as np
import pytest
from lhotse.utils import fastcopy

from distilxlsr.config import ShuffleConfig
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import AudioBatches, cut_rng, load_mono
from distilxlsr.data.shuffle import (
    Segment,
    assemble,
    cut_segments,
    energy_segments,
    make_transform,
    phoneme_shuffle,
    tile_segments,
)
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
