"""Checkpoint bookkeeping as plain file-system facts: which directories count as checkpoints,
what a killed run leaves behind and what is cleaned up, which K are kept, and the round trips."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from distilxlsr.errors import UserError
from distilxlsr.training import checkpoint as ckpt
from tests.conftest import tiny_model


def _complete(run, name: str, step: int | None = None):
    """A checkpoint directory that `list_checkpoints` counts (it has trainer_state.json)."""
    path = run / "checkpoints" / name
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"run_state": {"step": step}}))
    return path


def _names(paths) -> list[str]:
    return [p.name for p in paths]


def test_checkpoint_name_is_zero_padded_to_seven_digits():
    assert ckpt.checkpoint_name(42) == "step-0000042"
    assert ckpt.checkpoint_name(1234567) == "step-1234567"
    assert ckpt.temporary_dir("run", 42).as_posix() == "run/checkpoints/.tmp-step-0000042"


def test_only_complete_step_directories_are_listed_in_numeric_order(tmp_path):
    assert ckpt.list_checkpoints(tmp_path) == []  # no checkpoints/ at all
    assert ckpt.latest_checkpoint(tmp_path) is None
    root = tmp_path / "checkpoints"
    root.mkdir()
    assert ckpt.list_checkpoints(tmp_path) == []
    assert ckpt.latest_checkpoint(tmp_path) is None
    # Unpadded names too: the order is by step number, not by name (step-10 > step-9).
    for step in (10, 9, 100):
        _complete(tmp_path, f"step-{step}")
    (root / "step-0000200").mkdir()  # half written: no trainer_state.json yet
    _complete(tmp_path, ".tmp-step-0000300")  # complete but never committed
    _complete(tmp_path, "step-0000400-old")  # not a checkpoint name
    _complete(tmp_path, "best")
    (root / "step-0000500").write_text("a file, not a directory")
    (root / "step-0000600").mkdir()
    (root / "step-0000600" / "trainer_state.json").mkdir()  # not a file
    assert _names(ckpt.list_checkpoints(tmp_path)) == ["step-9", "step-10", "step-100"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-100"


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    ckpt.remove_stale_temporaries(tmp_path)  # no checkpoints/ yet: nothing to do, no error
    keep = _complete(tmp_path, "step-0000005")
    stale = ckpt.temporary_dir(tmp_path, 10)
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "model.safetensors").write_bytes(b"partial")
    other = tmp_path / "checkpoints" / ".tmp-anything"
    other.mkdir()
    hidden = tmp_path / "checkpoints" / ".keep-me"
    hidden.mkdir()
    ckpt.remove_stale_temporaries(tmp_path)
    assert not stale.exists() and not other.exists()
    assert keep.is_dir() and (keep / "trainer_state.json").is_file() and hidden.is_dir()


def _temporary(run, step: int, payload: str = "x"):
    tmp = ckpt.temporary_dir(run, step)
    tmp.mkdir(parents=True)
    (tmp / "payload.txt").write_text(payload)
    (tmp / "trainer_state.json").write_text(json.dumps({"run_state": {"step": step}}))
    return tmp


def test_commit_renames_the_temporary_and_keeps_the_newest_k(tmp_path):
    for step in (1, 2, 3):
        tmp = _temporary(tmp_path, step)
        # Before the rename the checkpoint does not exist, however complete its files are.
        assert ckpt.checkpoint_name(step) not in _names(ckpt.list_checkpoints(tmp_path))
        final = ckpt.commit(tmp, tmp_path, step, keep=2)
        assert final == tmp_path / "checkpoints" / ckpt.checkpoint_name(step)
        assert not tmp.exists() and (final / "payload.txt").read_text() == "x"
    assert _names(ckpt.list_checkpoints(tmp_path)) == ["step-0000002", "step-0000003"]
    # keep=3 with two present prunes nothing; the third commit then leaves exactly three.
    ckpt.commit(_temporary(tmp_path, 4), tmp_path, 4, keep=3)
    assert _names(ckpt.list_checkpoints(tmp_path)) == [
        "step-0000002",
        "step-0000003",
        "step-0000004",
    ]
    ckpt.commit(_temporary(tmp_path, 5), tmp_path, 5, keep=1)
    assert _names(ckpt.list_checkpoints(tmp_path)) == ["step-0000005"]
    # keep=0 still keeps the checkpoint just written.
    ckpt.commit(_temporary(tmp_path, 6), tmp_path, 6, keep=0)
    assert _names(ckpt.list_checkpoints(tmp_path)) == ["step-0000006"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000006"]


def test_commit_replaces_an_existing_checkpoint_of_the_same_step(tmp_path):
    ckpt.commit(_temporary(tmp_path, 7, "old"), tmp_path, 7, keep=5)
    (tmp_path / "checkpoints" / "step-0000007" / "stale.bin").write_bytes(b"1")
    final = ckpt.commit(_temporary(tmp_path, 7, "new"), tmp_path, 7, keep=5)
    assert (final / "payload.txt").read_text() == "new"
    assert not (final / "stale.bin").exists()


def test_model_round_trip_is_a_plain_hf_directory(tmp_path):
    model = tiny_model("wav2vec2", layers=2)
    config = model.config
    config.layerdrop = 0.05  # what the directory must carry is the config passed in
    ckpt.save_model(model, config, tmp_path)
    assert transformers.AutoConfig.from_pretrained(tmp_path).layerdrop == 0.05
    other = tiny_model("wav2vec2", layers=2, seed=1)
    assert not torch.equal(
        other.encoder.layers[0].attention.q_proj.weight,
        model.encoder.layers[0].attention.q_proj.weight,
    )
    ckpt.load_model_state(other, tmp_path)
    a, b = model.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    loaded = transformers.AutoModel.from_pretrained(tmp_path)
    assert all(torch.equal(a[k], loaded.state_dict()[k]) for k in a)


def test_model_state_must_match_the_model_exactly(tmp_path):
    model = tiny_model("wav2vec2", layers=2)
    ckpt.save_model(model, model.config, tmp_path)
    deeper = tiny_model("wav2vec2", layers=3)  # one layer the checkpoint does not have
    with pytest.raises(RuntimeError, match="Missing key"):
        ckpt.load_model_state(deeper, tmp_path)


class _Payload:
    """A pickled object that only unpickling with code execution could rebuild."""


def test_a_checkpoint_file_that_needs_code_to_load_is_refused(tmp_path):
    torch.save({"step": 1, "payload": _Payload()}, tmp_path / "training_state.pt")
    with pytest.raises(UserError) as err:
        ckpt.load_training_state(tmp_path)
    assert str(err.value) == (
        f"'{tmp_path / 'training_state.pt'}' holds objects that cannot be loaded without running "
        "code, which distilxlsr refuses; delete that checkpoint directory to resume from the one "
        "before."
    )
    torch.save({"step": 1, "weights": torch.ones(2)}, tmp_path / "training_state.pt")
    assert ckpt.load_training_state(tmp_path)["step"] == 1  # tensors and plain data load


def test_a_gpu_runs_rng_state_is_ignored_on_a_machine_without_one(tmp_path):
    """A checkpoint written on a GPU carries CUDA generator states; resumed on the CPU only the
    CPU generator is restored (no CUDA call is made without CUDA)."""
    torch.manual_seed(5)
    state = {"torch_rng": torch.get_rng_state(), "cuda_rng": [torch.zeros(16, dtype=torch.uint8)]}
    expected = torch.rand(3)
    ckpt.restore_rng(state)
    assert torch.equal(torch.rand(3), expected)


def test_parameter_fingerprint_is_sum_and_sum_of_squares_per_tensor():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
        model.bias.fill_(3.0)
    fingerprint = ckpt.parameter_fingerprint(model)
    assert fingerprint.dtype == torch.float64
    assert fingerprint.tolist() == [[-1.0, 5.0], [3.0, 9.0]]


def test_rank_state_round_trip_restores_the_rng(tmp_path):
    assert ckpt.load_rank_state(tmp_path, 0) is None
    torch.manual_seed(123)
    position = {"epoch": 2, "skip": 7}
    ckpt.save_rank_state(tmp_path, 1, position, torch.ones(3, 2, dtype=torch.float64))
    assert ckpt.load_rank_state(tmp_path, 0) is None  # another rank's file
    expected = torch.rand(4)
    state = ckpt.load_rank_state(tmp_path, 1)
    assert state["data_position"] == position
    assert torch.equal(state["parameter_fingerprint"], torch.ones(3, 2, dtype=torch.float64))
    torch.manual_seed(999)
    ckpt.restore_rng(state)
    assert torch.equal(torch.rand(4), expected)


def test_read_trainer_state(tmp_path):
    path = _complete(tmp_path, "step-0000003", step=3)
    assert ckpt.read_trainer_state(path) == {"run_state": {"step": 3}}


@pytest.mark.parametrize("name", ["step-", "step-x1", "xstep-1", "step-1 "])
def test_names_that_are_not_checkpoints(tmp_path, name):
    _complete(tmp_path, name)
    assert ckpt.list_checkpoints(tmp_path) == []
