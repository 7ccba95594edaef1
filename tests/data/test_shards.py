"""Sharded corpora: `distilxlsr shard` writes lhotse Shar shards, the loader reads each cut's
audio from its shard by offset, and each process takes its own shards."""

import json

import numpy as np
import pytest
from lhotse import CutSet

from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import AudioBatches, BatchPlan, ShardBatchPlan, load_mono
from distilxlsr.data.shard_writer import write_shards
from distilxlsr.data.shards import SHARD_INDEX, shard_set_of, shards_of_rank
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.errors import UserError

PLAN = dict(batch_seconds=6.0, max_seconds=2.0, min_seconds=0.5, num_buckets=3, seed=0)


@pytest.fixture(scope="module")
def sharded(toy_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(toy_corpus / "en", out, shard_size=5, seed=3, say=lambda *_: None)
    return out


def test_shards_hold_every_cut_with_its_alignment_and_audio(toy_corpus, sharded):
    index = json.loads((sharded / SHARD_INDEX).read_text())
    assert [s["num_cuts"] for s in index["shards"]] == [5, 5, 2]
    original = {c.id: c for c in load_cuts(toy_corpus / "en")}
    shard_cuts = list(load_cuts(sharded))
    assert sorted(c.id for c in shard_cuts) == sorted(original)
    # Shuffled before sharding (seeded): not the corpus order.
    assert [c.id for c in shard_cuts] != list(original)
    for cut in shard_cuts:
        before = original[cut.id]
        assert cut.supervisions[0].alignment == before.supervisions[0].alignment
        assert np.array_equal(load_mono(cut), load_mono(before))  # FLAC: lossless
    # Standard lhotse Shar: lhotse's own reader reads the same audio.
    for cut in CutSet.from_shar(in_dir=sharded / "shar"):
        assert np.array_equal(cut.load_audio()[0], load_mono(original[cut.id]))


def test_a_cropped_cut_reads_the_same_window_from_its_shard(toy_corpus, sharded):
    from distilxlsr.data.loader import crop_window

    original = {c.id: c for c in load_cuts(toy_corpus / "en")}
    for cut in load_cuts(sharded):
        if cut.duration > 1.2:
            a = load_mono(crop_window(cut, 1.0, seed=0, epoch=4))
            b = load_mono(crop_window(original[cut.id], 1.0, seed=0, epoch=4))
            assert np.array_equal(a, b)


def test_each_process_reads_its_own_shards_and_all_are_read():
    for epoch in range(3):
        taken = [shards_of_rank(7, seed=1, epoch=epoch, world_size=3, rank=r) for r in range(3)]
        flat = [s for t in taken for s in t]
        assert sorted(flat) == list(range(7))
    assert shards_of_rank(7, 1, 0, 3, 0) != shards_of_rank(7, 1, 1, 3, 0)


def _ids(plan, n):
    return [
        (r.epoch, r.index, tuple(c.id for c in r.cuts))
        for r, _ in zip(plan, range(n), strict=False)
    ]


def test_shard_plan_is_deterministic_and_resumes_at_a_position(sharded):
    cuts = load_cuts(sharded)
    assert shard_set_of(cuts) is not None
    first = _ids(ShardBatchPlan(cuts, **PLAN), 12)
    assert first == _ids(ShardBatchPlan(load_cuts(sharded), **PLAN), 12)
    epoch, index, _ = first[5]
    plan = ShardBatchPlan(load_cuts(sharded), **PLAN)
    plan.set_position(epoch, index)
    assert _ids(plan, 7) == first[5:]


def test_ranks_take_disjoint_shards_covering_the_epoch(sharded):
    seen = []
    for rank in (0, 1):
        plan = ShardBatchPlan(load_cuts(sharded), **PLAN, world_size=2, rank=rank)
        seen.append({c for e, _, ids in _ids(plan, 12) if e == 0 for c in ids})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 12  # every toy cut is longer than min_seconds


def test_batches_from_shards_equal_batches_from_files(toy_corpus, sharded):
    """The same cuts batched: the same padded, normalised, phoneme-shuffled waveforms."""
    from distilxlsr.data.shuffle import make_transform
    from distilxlsr.distill.recipe import ShuffleConfig

    transform = make_transform(ShuffleConfig(mode="utterance"))
    dataset = AudioBatches(transform=transform, seed=5)
    plan = ShardBatchPlan(load_cuts(sharded), **PLAN)
    files = {c.id: c for c in load_cuts(toy_corpus / "en")}
    for ref, _ in zip(plan, range(4), strict=False):
        from_shards = dataset[ref]
        same_cuts = CutSet.from_cuts(
            [
                # the per-file cut, cropped as the plan cropped the shard's
                files[c.id].truncate(offset=c.start, duration=c.duration, preserve_id=True)
                if c.duration < files[c.id].duration
                else files[c.id]
                for c in ref.cuts
            ]
        )
        from_files = dataset[type(ref)(ref.epoch, ref.index, same_cuts)]
        assert from_shards["input_values"].equal(from_files["input_values"])
        assert from_shards["attention_mask"].equal(from_files["attention_mask"])


def test_fewer_shards_than_processes_is_one_clear_error(sharded):
    with pytest.raises(UserError, match="3 shard\\(s\\) for 4 processes"):
        ShardBatchPlan(load_cuts(sharded), **PLAN, world_size=4, rank=0)


def test_missing_or_foreign_shards_are_one_clear_error(sharded, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sharded, copy)
    (copy / "shar" / "recording.000001.tar").unlink()
    with pytest.raises(UserError, match="are gone"):
        load_cuts(copy)
    (copy / SHARD_INDEX).write_text("{not json")
    with pytest.raises(UserError, match="not a shard index"):
        load_cuts(copy)


def test_writing_refuses_a_finished_directory_and_resumes_an_unfinished_one(toy_corpus, tmp_path):
    out = tmp_path / "s"
    said = []
    write_shards(toy_corpus / "en", out, shard_size=4, say=said.append)
    with pytest.raises(UserError, match="already holds finished shards"):
        write_shards(toy_corpus / "en", out, shard_size=4)
    # Interrupted after shard 0: the index is not written; a second call writes the rest only.
    index = json.loads((out / SHARD_INDEX).read_text())
    (out / SHARD_INDEX).unlink()
    (out / "shards.partial.json").write_text(
        json.dumps({"seed": 0, "shard_size": 4, "cuts": 12, "done": {"0": index["shards"][0]}})
    )
    said = []
    write_shards(toy_corpus / "en", out, shard_size=4, say=said.append)
    assert "1 written before" in said[0] and len(said) == 3
    assert json.loads((out / SHARD_INDEX).read_text())["shards"] == index["shards"]


def test_plain_plan_is_unchanged_for_manifests(toy_corpus):
    assert shard_set_of(load_cuts(toy_corpus / "en")) is None
    BatchPlan(load_cuts(toy_corpus / "en"), **PLAN)


def test_two_languages_shard_together(tmp_path):
    root = tmp_path / "root"
    make_toy_corpus(root, "en", "train", num_utterances=4, seed=0)
    make_toy_corpus(root, "sw", "train", num_utterances=4, seed=1)
    (root / "en" / "phones.json").write_text('["a", "b"]')
    index = write_shards(root, tmp_path / "out", shard_size=3, say=lambda *_: None)
    assert set(index["languages"]) == {"en", "sw"}
    assert index["num_cuts"] == 8
    assert (tmp_path / "out" / "phones.en.json").is_file()


def test_each_tar_is_indexed_once_per_process_whatever_the_epochs(sharded, monkeypatch):
    from distilxlsr.data import shards

    calls = []
    real = shards.member_offsets
    monkeypatch.setattr(shards, "member_offsets", lambda path: calls.append(path) or real(path))
    plan = ShardBatchPlan(load_cuts(sharded), **PLAN)
    epochs = {e for e, _, _ in _ids(plan, 20)}
    assert len(epochs) >= 3
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 3  # 3 shards
