import numpy as np
import pytest
import torch

from distilxlsr.data.corpora import find_manifests, load_cuts
from distilxlsr.data.loader import (
    AudioBatches,
    BatchPlan,
    BatchRef,
    collate,
    cut_rng,
    duration_bins,
    load_mono,
)
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.errors import UserError


def _plan(cuts, **kw):
    args = dict(batch_seconds=6.0, max_seconds=2.0, min_seconds=0.5, num_buckets=3, seed=0)
    return BatchPlan(cuts, **(args | kw))


def _ids(plan, n):
    out = []
    for ref, _ in zip(plan, range(n), strict=False):
        out.append((ref.epoch, ref.index, tuple(c.id for c in ref.cuts)))
    return out


def test_plan_is_deterministic_and_resumable(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    first = _ids(_plan(cuts), 12)
    assert first == _ids(_plan(cuts), 12)
    assert len({e for e, _, _ in first}) > 1, "12 batches must cross an epoch boundary"
    # Starting at a recorded position continues exactly where an uninterrupted run would be.
    epoch, index, _ = first[5]
    plan = _plan(cuts)
    plan.set_position(epoch, index)
    assert _ids(plan, 7) == first[5:]
    # Epochs differ in order.
    by_epoch = {}
    for e, _, ids in first:
        by_epoch.setdefault(e, []).extend(ids)
    assert by_epoch[0] != by_epoch[1]


def test_ranks_split_the_data(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    seen = []
    for rank in (0, 1):
        plan = _plan(cuts, world_size=2, rank=rank)
        ids = [c for e, _, batch in _ids(plan, 20) if e == 0 for c in batch]
        seen.append(set(ids))
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 12


def test_crop_is_seeded_and_bounded(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    plan = _plan(cuts, max_seconds=1.0, batch_seconds=4.0)
    refs = [ref for ref, _ in zip(plan, range(6), strict=False)]
    assert all(c.duration <= 1.0 + 1e-9 for ref in refs for c in ref.cuts)
    again = [
        ref
        for ref, _ in zip(_plan(cuts, max_seconds=1.0, batch_seconds=4.0), range(6), strict=False)
    ]
    assert [[c.start for c in r.cuts] for r in refs] == [[c.start for c in r.cuts] for r in again]
    data = AudioBatches()[refs[0]]
    assert data["input_values"].shape[1] <= 16000


def test_transform_sees_each_cut_with_a_seeded_rng(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    ref = next(iter(_plan(cuts)))
    calls = []

    def transform(audio, cut, rng):
        calls.append((cut.id, rng.random()))
        return audio[::-1].copy()

    plain = AudioBatches(normalize=False)[ref]
    flipped = AudioBatches(normalize=False, transform=transform, transform_p=1.0, seed=3)[ref]
    n = int(plain["attention_mask"][0].sum())
    assert torch.equal(flipped["input_values"][0, :n], plain["input_values"][0, :n].flip(0))
    first = list(calls)
    calls.clear()
    AudioBatches(normalize=False, transform=transform, transform_p=1.0, seed=3)[ref]
    assert calls == first
    calls.clear()
    untouched = AudioBatches(normalize=False, transform=transform, transform_p=0.0)[ref]
    assert not calls and torch.equal(untouched["input_values"], plain["input_values"])


def test_collate_pads_masks_and_normalises():
    a, b = np.arange(4, dtype=np.float32), np.ones(2, dtype=np.float32) * 5
    batch = collate([a, b], normalize=True)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["num_samples"] == 6
    row = batch["input_values"][0]
    assert abs(row.mean().item()) < 1e-6 and abs(row.std(unbiased=False).item() - 1) < 1e-3
    assert batch["input_values"][1, 2:].tolist() == [0.0, 0.0]


def test_duration_bins():
    assert duration_bins([1.0] * 3, 5) == []
    bins = duration_bins(list(np.linspace(1, 10, 100)), 4)
    assert len(bins) == 3 and bins == sorted(bins)


def test_corpus_layout(tmp_path):
    make_toy_corpus(tmp_path, "en", "train", num_utterances=2)
    make_toy_corpus(tmp_path, "sw", "train", num_utterances=3, seed=1)
    assert len(find_manifests(tmp_path)) == 2
    assert find_manifests(tmp_path / "sw") == [tmp_path / "sw" / "cuts_train.jsonl.gz"]
    assert len(list(load_cuts(tmp_path))) == 5
    with pytest.raises(UserError, match="cuts_test"):
        find_manifests(tmp_path, "test")
    with pytest.raises(UserError, match="does not exist"):
        find_manifests(tmp_path / "xx")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a lhotse cut manifest"):
        find_manifests(tmp_path / "notes.txt")


def test_cut_rng_depends_on_every_part_of_its_key():
    def draw(*key):
        return cut_rng(*key).random(4).tolist()

    base = draw(0, 0, "utt1", "crop")
    assert draw(0, 0, "utt1", "crop") == base  # a pure function of its key
    for other in [(1, 0, "utt1", "crop"), (0, 1, "utt1", "crop"), (0, 0, "utt2", "crop")]:
        assert draw(*other) != base, other
    assert draw(0, 0, "utt1", "transform") != base


def _crop_starts(plan, epoch):
    """{cut id: (start, duration)} of every cut the sampler of `epoch` yields."""
    return {c.id: (c.start, c.duration) for batch in plan.epoch_sampler(epoch) for c in batch}


def test_each_cut_gets_its_own_crop_and_each_epoch_a_new_one(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    durations = {c.id: c.duration for c in cuts}
    plan = _plan(cuts, max_seconds=1.0, batch_seconds=4.0)
    first, second = _crop_starts(plan, 0), _crop_starts(plan, 1)
    assert first.keys() == second.keys() == durations.keys()
    long = [i for i, d in durations.items() if d > 1.0]
    assert len(long) >= 8
    for starts in (first, second):
        for i in long:
            start, duration = starts[i]
            assert duration == pytest.approx(1.0)
            assert 0.0 <= start <= durations[i] - 1.0 + 1e-9
    # Where in its free range each crop starts: one draw shared by all cuts would put them all
    # at the same fraction (up to the rounding of the start to a sample).
    fractions = sorted(first[i][0] / (durations[i] - 1.0) for i in long)
    assert fractions[-1] - fractions[0] > 0.3, fractions
    # Another epoch, another window, for every cropped cut.
    assert all(first[i][0] != second[i][0] for i in long)
    # Cuts that fit are not cropped.
    assert all(first[i] == (0.0, durations[i]) for i in durations if i not in long)


def test_each_cut_and_each_epoch_gets_its_own_transform_stream(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    ref = next(iter(_plan(cuts)))
    assert len(ref.cuts) >= 2
    draws = {}

    def transform(audio, cut, rng):
        draws[cut.id] = rng.random()
        return audio

    def run(epoch, seed=3):
        draws.clear()
        dataset = AudioBatches(normalize=False, transform=transform, transform_p=1.0, seed=seed)
        dataset[BatchRef(epoch, ref.index, ref.cuts)]
        return dict(draws)

    epoch0 = run(0)
    assert len(set(epoch0.values())) == len(ref.cuts)  # no two cuts share a stream
    epoch1 = run(1)
    assert all(epoch0[i] != epoch1[i] for i in epoch0)
    other_seed = run(0, seed=4)
    assert all(epoch0[i] != other_seed[i] for i in epoch0)
    assert run(0) == epoch0


def test_transform_probability_decides_per_cut(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    refs = [ref for ref, _ in zip(_plan(cuts), range(4), strict=False)]
    seen = []

    def transform(audio, cut, rng):
        seen.append(cut.id)
        return np.zeros_like(audio)

    dataset = AudioBatches(normalize=False, transform=transform, transform_p=0.5, seed=0)
    total = 0
    for ref in refs:
        batch = dataset[ref]
        total += len(ref.cuts)
        for row, cut in enumerate(ref.cuts):
            n = int(batch["attention_mask"][row].sum())
            zeroed = not batch["input_values"][row, :n].any()
            assert zeroed == (cut.id in seen)
            # The decision is the first draw of the cut's own transform stream.
            assert zeroed == (cut_rng(0, ref.epoch, cut.id, "transform").random() < 0.5)
    assert 0 < len(seen) < total


def test_duration_bins_hold_equal_total_duration():
    # Cumulative shares 0.1, 0.3, 0.6, 1.0: the half-way boundary is the 3 s cut.
    assert duration_bins([4.0, 1.0, 3.0, 2.0], 2) == [3.0]
    assert duration_bins([4.0, 1.0, 3.0, 2.0], 1) == []
    assert duration_bins([], 3) == [] and duration_bins([2.0], 3) == []
    # Boundaries at the second-shortest cut are kept; only the shortest is no boundary.
    assert duration_bins([1.0, 5.0, 5.5, 6.0], 3) == [5.0, 6.0]


def test_batch_seconds_must_hold_the_longest_crop(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    assert _plan(cuts, batch_seconds=2.0, max_seconds=2.0).batch_seconds == 2.0
    with pytest.raises(UserError) as err:
        _plan(cuts, batch_seconds=1.5, max_seconds=2.0)
    assert str(err.value) == (
        "train.batch_seconds (1.5) must be at least data.max_seconds (2), or the longest "
        "utterances fit no batch."
    )


def test_an_epoch_holds_every_usable_cut_once_in_duration_buckets(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    plan = _plan(cuts, max_seconds=10.0, batch_seconds=10.0, num_buckets=3)
    assert plan.duration_bins == duration_bins([c.duration for c in plan.cuts], 3)
    assert len(plan.duration_bins) == 2
    batches = list(plan.epoch_sampler(0))
    ids = [c.id for batch in batches for c in batch]
    assert sorted(ids) == sorted(c.id for c in plan.cuts)  # nothing dropped, nothing twice
    for batch in batches:  # lhotse puts a cut of duration d in bucket bisect_left(bins, d)
        assert len({int(np.searchsorted(plan.duration_bins, c.duration)) for c in batch}) == 1


def test_the_seed_decides_the_order(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    orders = [
        [
            c.id
            for b in _plan(cuts, max_seconds=10.0, batch_seconds=10.0, seed=s).epoch_sampler(0)
            for c in b
        ]
        for s in (0, 1, 2)
    ]
    assert orders[1] != orders[2] and orders[0] != orders[1]


@pytest.mark.filterwarnings("ignore:Your 'buffer_size' setting")
def test_a_corpus_of_short_cuts_gives_one_clear_error(toy_corpus):
    plan = _plan(load_cuts(toy_corpus / "en"), min_seconds=100.0)
    assert plan.duration_bins == [0.0]
    with pytest.raises(UserError) as err:
        next(iter(plan))
    assert str(err.value) == (
        "the training data yield no batch; check data.train and data.min_seconds."
    )


def test_batches_are_normalised_and_carry_their_position(toy_corpus):
    cuts = load_cuts(toy_corpus / "en")
    ref = next(iter(_plan(cuts)))
    batch = AudioBatches()[ref]
    assert (batch["epoch"], batch["index"]) == (ref.epoch, ref.index)
    for row, n in zip(batch["input_values"], batch["attention_mask"].sum(1), strict=True):
        real = row[: int(n)].double()
        assert abs(real.mean().item()) < 1e-5 and real.std(unbiased=False).item() == pytest.approx(
            1.0, abs=1e-3
        )
    fixed = AudioBatches()[BatchRef(ref.epoch, ref.index, ref.cuts, samples=8000)]
    assert fixed["input_values"].shape == (len(ref.cuts), 8000)
    assert bool(fixed["attention_mask"].all())


def test_the_transform_stream_defaults_to_seed_0(toy_corpus):
    ref = next(iter(_plan(load_cuts(toy_corpus / "en"))))
    draws = []

    def transform(audio, cut, rng):
        draws.append(rng.random())
        return audio

    AudioBatches(transform=transform)[ref]
    AudioBatches(transform=transform, seed=0)[ref]
    n = len(ref.cuts)
    assert len(draws) == 2 * n and draws[:n] == draws[n:]


@pytest.mark.parametrize(
    "error, shown",
    [
        (ValueError("\n  bad header\nmore"), "ValueError: bad header"),
        (OSError(), "OSError: no detail"),
    ],
)
def test_unreadable_audio_names_the_cut(toy_corpus, monkeypatch, error, shown):
    cut = next(iter(load_cuts(toy_corpus / "en")))

    def unreadable(*args):
        raise error

    monkeypatch.setattr("distilxlsr.data.loader.load_mono", unreadable)
    with pytest.raises(UserError) as err:
        AudioBatches().load(cut, 0)
    assert str(err.value) == (
        f"the audio of cut '{cut.id}' could not be read ({shown}); restore the file or run "
        "`distilxlsr prepare` again."
    )


def test_a_two_channel_recording_is_read_as_the_mean_of_its_channels(tmp_path):
    """A stereo file in a lhotse manifest (a MultiCut): training batches and evaluation read the
    mean of its two channels, at the file's rate or resampled."""
    import soundfile as sf
    import soxr
    from lhotse import Recording

    g = np.random.default_rng(0)
    left = np.sin(np.arange(8000) * 0.05).astype(np.float32) * 0.5
    right = 0.3 * g.standard_normal(8000).astype(np.float32)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    cut = Recording.from_file(tmp_path / "stereo.wav", recording_id="stereo").to_cut()
    assert cut.load_audio().shape == (2, 8000)
    mean = (left + right) / 2
    np.testing.assert_allclose(load_mono(cut), mean, rtol=0, atol=1e-7)
    assert load_mono(cut).dtype == np.float32
    batch = AudioBatches(normalize=False)[BatchRef(0, 0, [cut])]
    np.testing.assert_allclose(batch["input_values"][0].numpy(), mean, rtol=0, atol=1e-7)
    resampled = soxr.resample(mean, 16000, 8000)
    np.testing.assert_allclose(load_mono(cut, 8000), resampled, rtol=0, atol=1e-6)
