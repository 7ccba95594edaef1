"""Static-shape batches (`data.static_shapes`): K fixed shapes, full rows, counted skips and
drops, and the loader's contract (a pure function of seed, epoch and batch index; resume
without audio; ranks disjoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilxlsr.bench.common import duration_only_cuts
from distilxlsr.config import default_crop_lengths
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import AudioBatches, BatchPlan, collate, load_mono
from distilxlsr.data.static import StaticBatchPlan
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.distill.recipe import load_distill_config
from distilxlsr.errors import UserError
from distilxlsr.pretraining.recipe import load_pretrain_config

SR = 16000


def _durations(n=300, seed=0):
    """Durations from 0.2 to 7 s: some below min_seconds (0.5), some below the shortest crop."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0.2, 7.0, size=n), 3)


def _plan(cuts, **kw):
    args = dict(batch_seconds=12.0, crop_lengths=[1.0, 2.0, 4.0], max_seconds=6.0)
    return StaticBatchPlan(cuts, **(args | dict(min_seconds=0.5, seed=0) | kw))


def _refs(plan, n):
    return [ref for ref, _ in zip(plan, range(n), strict=False)]


def _key(ref):
    """Everything about a batch the loader decides: position, cuts, their windows, the shape."""
    windows = tuple((c.id, round(c.start, 6), round(c.duration, 6)) for c in ref.cuts)
    return ref.epoch, ref.index, ref.samples, windows


@pytest.fixture(scope="module")
def cuts():
    # Recordings that exist only as durations (/dev/null): a plan that read audio would fail.
    return duration_only_cuts(_durations())


@pytest.fixture(scope="module")
def audio_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    make_toy_corpus(root, "en", "train", num_utterances=24, seconds=(0.7, 3.4), seed=2)
    return root / "en"


def test_every_batch_has_one_of_the_k_shapes_with_full_rows(audio_corpus):
    cuts = load_cuts(audio_corpus)
    durations = {c.id: c.duration for c in cuts}

    def make():  # over the lazily read manifest
        return StaticBatchPlan(
            cuts, batch_seconds=6.0, crop_lengths=[2.0, 1.0, 3.0], max_seconds=3.0,
            min_seconds=0.5, seed=0,
        )  # fmt: skip

    plan = make()
    assert plan.lengths == [1.0, 2.0, 3.0] and plan.per_batch == [6, 3, 2]
    shapes = {(6, SR), (3, 2 * SR), (2, 3 * SR)}
    dataset = AudioBatches(normalize=True)
    seen = set()
    refs = _refs(plan, 3 * plan.stats.batches_per_rank)
    assert len({r.epoch for r in refs}) == 3
    assert [_key(r) for r in refs] == [_key(r) for r in _refs(make(), len(refs))]
    for ref in refs:
        batch = dataset[ref]
        shape = tuple(batch["input_values"].shape)
        assert shape in shapes and ref.samples == shape[1]
        seen.add(shape)
        assert batch["attention_mask"].dtype == torch.bool and bool(batch["attention_mask"].all())
        assert batch["num_samples"] == shape[0] * shape[1]
        for row, cut in enumerate(ref.cuts):
            # Each cut has the longest crop length it fills, and its window lies inside it.
            length = max(x for x in plan.lengths if x <= durations[cut.id] + 1e-6)
            assert cut.duration == pytest.approx(length) and shape[1] == round(length * SR)
            assert 0.0 <= cut.start <= durations[cut.id] - length + 1e-6
            assert len(load_mono(cut)) == shape[1]  # exact: nothing zero-filled here
            assert abs(float(batch["input_values"][row].mean())) < 1e-4  # normalised per row
    assert seen == shapes


def test_the_plan_is_deterministic_and_resumes_at_any_batch(cuts):
    n = _plan(cuts).stats.batches_per_rank + 12
    first = [_key(r) for r in _refs(_plan(cuts), n)]
    assert first == [_key(r) for r in _refs(_plan(cuts), n)]
    assert len({e for e, *_ in first}) == 2, "the batches must cross an epoch boundary"
    for at in (0, 7, n - 15, n - 5):  # within the first epoch and the second
        plan = _plan(cuts)
        epoch, index, *_ = first[at]
        plan.set_position(epoch, index)
        assert [_key(r) for r in _refs(plan, n - at)] == first[at:]
    # Another epoch: another order and other windows; another seed: another run.
    by_epoch: dict = {}
    for e, _, _, windows in first:
        by_epoch.setdefault(e, []).extend(windows)
    order = {e: [i for i, _, _ in w] for e, w in by_epoch.items()}
    assert len(order[1]) > 20 and order[1] != order[0][: len(order[1])]
    starts = {e: {i: s for i, s, _ in w} for e, w in by_epoch.items()}
    common = starts[0].keys() & starts[1].keys()
    assert sum(starts[0][i] != starts[1][i] for i in common) > len(common) // 2
    assert [_key(r) for r in _refs(_plan(cuts, seed=1), 10)] != first[:10]


@pytest.mark.filterwarnings("ignore:You are using DynamicBucketingSampler")
def test_crops_draw_the_dynamic_loaders_window(cuts):
    """A cut longer than max_seconds gets the same window as the dynamic loader gives it."""
    dynamic = BatchPlan(
        cuts, batch_seconds=12.0, max_seconds=4.0, min_seconds=0.5, num_buckets=3, seed=0
    )
    starts = {c.id: c.start for batch in dynamic.epoch_sampler(1) for c in batch if c.start > 0}
    static = _plan(cuts, max_seconds=4.0)
    got = {
        c.id: c.start
        for ref in _refs(static, 2 * static.stats.batches_per_rank)
        if ref.epoch == 1 and ref.samples == 4 * SR
        for c in ref.cuts
        if c.id in starts
    }
    assert len(got) >= 10
    assert all(got[i] == starts[i] for i in got)


def test_counts_of_skipped_and_dropped_cuts(cuts):
    durations = _durations()
    plan = _plan(cuts)
    stats = plan.stats
    usable = durations[durations >= 0.5]
    lengths = np.array([1.0, 2.0, 4.0])
    index = np.searchsorted(lengths, usable + 1e-6, side="right") - 1
    assert stats.skipped_short == int((index < 0).sum()) > 0
    assert stats.skipped_short_seconds == pytest.approx(float(usable[index < 0].sum()))
    assert stats.cuts == [int((index == k).sum()) for k in range(3)]
    assert stats.per_batch == [12, 6, 3]
    assert stats.partial_cuts == sum(c % n for c, n in zip(stats.cuts, [12, 6, 3], strict=True))
    assert stats.seconds_before == pytest.approx(float(np.minimum(usable, 6.0).sum()))
    assert stats.seconds_kept == pytest.approx(float(lengths[index[index >= 0]].sum()))
    # One epoch: exactly the counted batches, every kept cut once but the partial batches'.
    for epoch in (0, 1):
        batches = list(plan.epoch_batches(epoch))
        assert len(batches) == stats.batches_per_rank == stats.batches
        ids = [c.id for batch, _ in batches for c in batch]
        assert len(ids) == len(set(ids)) == sum(stats.cuts) - stats.partial_cuts
    text = stats.summary()
    assert f"{stats.skipped_short} cuts" in text and f"{stats.partial_cuts} cuts" in text
    assert "12 x 1 s, 6 x 2 s, 3 x 4 s" in text and f"{stats.kept:.1%}" in text


def test_ranks_get_disjoint_equal_shares_of_the_global_sequence(cuts):
    stats = _plan(cuts).stats
    whole = [[c.id for c in batch] for batch, _ in _plan(cuts).epoch_batches(0)]
    rounds = len(whole) // 2
    shares = []
    for rank in (0, 1):
        plan = _plan(cuts, world_size=2, rank=rank)
        assert plan.stats.batches_per_rank == rounds == stats.batches // 2
        assert plan.stats.rank_dropped_batches == stats.batches % 2
        mine = [[c.id for c in batch] for batch, _ in plan.epoch_batches(0)]
        assert mine == whole[rank : 2 * rounds : 2]
        shares.append({i for batch in mine for i in batch})
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    # Resuming one rank mid-epoch continues its own sequence.
    plan = _plan(cuts, world_size=2, rank=1)
    plan.set_position(0, 3)
    assert [[c.id for c in r.cuts] for r in _refs(plan, 2)] == whole[7:10:2]


def test_default_lengths_follow_max_seconds(cuts):
    assert default_crop_lengths(15.0) == [3.0, 6.0, 9.0, 12.0, 15.0]
    assert default_crop_lengths(2.0, min_seconds=0.5) == [0.8, 1.2, 1.6, 2.0]
    assert default_crop_lengths(0.6, min_seconds=0.5) == [0.6]
    plan = _plan(cuts, crop_lengths=[], max_seconds=5.0)
    assert plan.lengths == [1.0, 2.0, 3.0, 4.0, 5.0] and plan.per_batch == [12, 6, 4, 3, 2]


def test_collate_to_a_fixed_length_cuts_or_fills_and_keeps_the_mask_full():
    long, short = np.arange(10, dtype=np.float32), np.ones(6, dtype=np.float32)
    batch = collate([long, short], normalize=False, length=8)
    assert batch["input_values"].shape == (2, 8) and bool(batch["attention_mask"].all())
    assert batch["input_values"][0].tolist() == list(range(8))
    assert batch["input_values"][1].tolist() == [1.0] * 6 + [0.0, 0.0]
    assert batch["num_samples"] == 16


def test_too_few_cuts_for_a_whole_batch_is_one_clear_error():
    few = duration_only_cuts(np.array([1.5, 2.5, 3.0]))
    with pytest.raises(UserError, match="no whole batch.*train.batch_seconds"):
        _plan(few)


STATIC = "data.static_shapes=true"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.crop_lengths=[1,2]"], r"data.crop_lengths is set but data.static_shapes is false"),
        ([STATIC, "data.crop_lengths=[2,20]"], r"20 s is longer than data.max_seconds \(15\)"),
        ([STATIC, "data.crop_lengths=[0.2,2]"], r"0.2 s is shorter than data.min_seconds \(0.5\)"),
        ([STATIC, "data.crop_lengths=[2,4,2]"], r"names a length twice"),
        ([STATIC, "data.crop_lengths=[1,2,3,4,5,6,7,8,9]"], r"at most 8"),
        ([STATIC, "data.crop_lengths=[4,12]", "train.batch_seconds=10"], r"\(10\) must be at"),
        ([STATIC, "data.crop_lengths=[-1,2]"], r"data.crop_lengths=-1.0 must be positive"),
        ([STATIC, "data.crop_lengths=[1,x]"], r"data.crop_lengths: expected a number"),
        (["data.static_shapes=maybe"], r"data.static_shapes: expected true or false"),
    ],
)
def test_static_settings_are_checked_with_one_line(overrides, message):
    with pytest.raises(UserError, match=message):
        load_distill_config(None, ["teacher=x", "data.train=x", *overrides]).validate()


def test_valid_static_settings_pass_and_pretraining_checks_its_loader():
    load_distill_config(None, ["teacher=x", "data.static_shapes=true"]).validate()
    load_distill_config(
        None, ["teacher=x", "data.static_shapes=true", "data.crop_lengths=4,8"]
    ).validate()
    config = load_pretrain_config(None, ["data=x", "loader.static_shapes=true"])
    config.validate()
    config = load_pretrain_config(
        None, ["data=x", "loader.static_shapes=true", "loader.crop_lengths=[2,8]"]
    )
    with pytest.raises(UserError, match=r"loader.crop_lengths: 8 s is longer than loader.max"):
        config.validate()


def test_the_start_up_summary_states_each_count():
    from distilxlsr.data.static import StaticStats

    stats = StaticStats(
        lengths=[1.0, 2.0],
        per_batch=[4, 2],
        cuts=[9, 3],
        skipped_short=2,
        skipped_short_seconds=129600.0,
        seconds_before=100.0,
        seconds_kept=80.0,
        world_size=2,
    )
    # 9 // 4 + 3 // 2 = 3 batches, 1 per rank and 1 left over; 9 % 4 + 3 % 2 = 2 partial cuts
    assert stats.summary() == (
        "static shapes 4 x 1 s, 2 x 2 s; the crops keep 80.0% of the audio; 2 cuts (36.00 h) "
        "shorter than 1 s skipped; 1 batches per epoch and process, each epoch dropping 2 cuts "
        "of partial batches and 1 batches left over by the ranks"
    )
    one = StaticStats([1.0], [4], [8], 0, 0.0, 8.0, 8.0)
    assert one.summary() == (
        "static shapes 4 x 1 s; the crops keep 100.0% of the audio; 2 batches per epoch and "
        "process, each epoch dropping 0 cuts of partial batches"
    )


def test_a_cut_fills_a_length_within_half_a_sample():
    plan = _plan(duration_only_cuts(_durations()))
    # Float sums make a 2 s cut 1.99999998 s; a whole sample short does not fill it.
    assert plan.length_index(2.0 - 0.25 / SR) == 1
    assert plan.length_index(2.0) == 1
    assert plan.length_index(2.0 - 1.0 / SR) == 0
    assert plan.length_index(1.0 - 1.0 / SR) == -1


def test_a_cut_exactly_the_shortest_length_is_used():
    plan = _plan(duration_only_cuts([1.0] * 12 + [0.9]), batch_seconds=4.0)
    assert len(plan.cuts) == 12 and plan.stats.cuts == [12, 0, 0]


def test_data_that_fill_no_batch_are_one_error():
    with pytest.raises(UserError) as err:
        _plan(duration_only_cuts([1.5, 2.5]), batch_seconds=12.0)
    assert str(err.value) == (
        "static shapes: the training data fill no whole batch per process (shapes "
        "12 x 1 s, 6 x 2 s, 3 x 4 s; 2 cuts, 1 process(es)); "
        "lower train.batch_seconds or add shorter data.crop_lengths."
    )
