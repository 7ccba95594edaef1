"""Checkpoint bookkeeping as plain file-system facts: which directories count as checkpoints,
what a killed run leaves behind and what is cleaned up, which K are kept, and the round trips."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import transformers
from safetensors import safe_open

from distilxlsr.config import save_config, to_dict
from distilxlsr.distill.recipe import load_distill_config
from distilxlsr.errors import UserError
from distilxlsr.training import checkpoint as ckpt
from tests.helpers import tiny_model


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


def test_file_sha256_is_the_digest_of_the_whole_file(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"")
    assert ckpt.file_sha256(path) == hashlib.sha256(b"").hexdigest()
    data = bytes(range(256)) * 5
    path.write_bytes(data)
    assert ckpt.file_sha256(path) == hashlib.sha256(data).hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_manifest_lists_every_other_file_with_size_and_checksum(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "a.json").write_bytes(b"{}\n")
    (tmp_path / "sub").mkdir()  # not a file: not listed
    (tmp_path / "manifest.json").write_text("an older manifest")  # never lists itself
    ckpt.write_manifest(tmp_path)
    a_sha, b_sha = _sha(b"{}\n"), _sha(b"\x00\x01\x02")
    assert (tmp_path / "manifest.json").read_text() == (
        "{\n"
        ' "files": {\n'
        '  "a.json": {\n'
        '   "bytes": 3,\n'
        f'   "sha256": "{a_sha}"\n'
        "  },\n"
        '  "b.bin": {\n'
        '   "bytes": 3,\n'
        f'   "sha256": "{b_sha}"\n'
        "  }\n"
        " }\n"
        "}\n"
    )
    assert ckpt.check_checkpoint(tmp_path) is None


def test_a_checkpoint_without_manifest_names_the_files_a_resume_needs(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"w")
    (tmp_path / "trainer_state.json").write_text("{}")
    (tmp_path / "config.json").mkdir()  # a directory is not the file
    assert ckpt.check_checkpoint(tmp_path) == "config.json, training_state.pt missing"
    (tmp_path / "config.json").rmdir()
    (tmp_path / "config.json").write_text("{}")
    assert ckpt.check_checkpoint(tmp_path) == "training_state.pt missing"
    (tmp_path / "training_state.pt").write_bytes(b"s")
    assert ckpt.check_checkpoint(tmp_path) is None  # written before manifests: all there


def test_incomplete_checkpoints_are_step_directories_without_trainer_state(tmp_path):
    assert ckpt.incomplete_checkpoints(tmp_path) == []  # no checkpoints/ at all
    root = tmp_path / "checkpoints"
    _complete(tmp_path, "step-0000001")
    (root / "step-0000003").mkdir()
    (root / "step-0000002").mkdir()
    (root / "step-0000002" / "model.safetensors").write_bytes(b"half")
    (root / ".tmp-step-0000004").mkdir()  # a temporary never counts
    (root / "best").mkdir()
    (root / "notes.txt").write_text("a file")
    (root / "step-0000005").write_text("a file, not a directory")
    assert _names(ckpt.incomplete_checkpoints(tmp_path)) == ["step-0000002", "step-0000003"]
    assert ckpt.incomplete_checkpoints(tmp_path)[0] == root / "step-0000002"


def _intact(run, step: int):
    path = _complete(run, ckpt.checkpoint_name(step), step=step)
    (path / "model.safetensors").write_bytes(b"weights")
    ckpt.write_manifest(path)
    return path


def test_latest_intact_checkpoint_skips_damaged_ones_with_one_warning_each(tmp_path):
    warnings = []
    assert ckpt.latest_intact_checkpoint(tmp_path, warn=warnings.append) is None
    first = _intact(tmp_path, 1)
    second = _intact(tmp_path, 2)
    third = _intact(tmp_path, 3)
    assert ckpt.latest_intact_checkpoint(tmp_path, warn=warnings.append) == third
    assert warnings == []
    (third / "model.safetensors").write_bytes(b"weightz")  # same size, other bytes
    (second / "model.safetensors").unlink()
    assert ckpt.latest_intact_checkpoint(tmp_path, warn=warnings.append) == first
    assert warnings == [
        f"warning: skipping checkpoint {third} (model.safetensors does not match its checksum); "
        "trying the one before it.",
        f"warning: skipping checkpoint {second} (model.safetensors missing); "
        "trying the one before it.",
    ]
    (first / "manifest.json").write_text("{")
    warnings.clear()
    assert ckpt.latest_intact_checkpoint(tmp_path, warn=warnings.append) is None
    assert len(warnings) == 3
    assert warnings[-1] == (
        f"warning: skipping checkpoint {first} (manifest.json unreadable); "
        "trying the one before it."
    )


def test_pruning_leaves_a_linked_checkpoint_and_its_target_alone(tmp_path):
    """A checkpoint the user linked in from elsewhere is never followed when old checkpoints are
    pruned, and failing to remove it does not fail the commit of the new one."""
    archive = tmp_path / "archive" / "kept"
    archive.mkdir(parents=True)
    (archive / "trainer_state.json").write_text("{}")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step-0000001").symlink_to(archive)
    final = ckpt.commit(_temporary(run, 2), run, 2, keep=1)
    assert final == run / "checkpoints" / "step-0000002" and final.is_dir()
    assert (archive / "trainer_state.json").read_text() == "{}"
    assert (run / "checkpoints" / "step-0000001").is_symlink()


def test_stale_temporary_cleanup_never_follows_a_link_or_fails(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"keep")
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / ".tmp-step-0000001").symlink_to(outside)
    (root / ".tmp-step-0000002").mkdir()
    ckpt.remove_stale_temporaries(tmp_path / "run")
    assert (outside / "data.bin").read_bytes() == b"keep"
    assert not (root / ".tmp-step-0000002").exists()


def test_code_needing_files_are_refused_even_if_the_environment_allows_pickles(
    tmp_path, monkeypatch
):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only changes torch.load's default: distilxlsr asks for
    weights_only=True explicitly, so the refusal holds."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    torch.save({"payload": _Payload()}, tmp_path / "training_state.pt")
    with pytest.raises(UserError, match="cannot be loaded without running code"):
        ckpt.load_training_state(tmp_path)
    torch.save({"payload": _Payload()}, tmp_path / "rank-0.pt")
    with pytest.raises(UserError, match="rank-0.pt' holds objects"):
        ckpt.load_rank_state(tmp_path, 0)


def test_model_weights_carry_the_pytorch_format_metadata(tmp_path):
    """Hugging Face loaders read the safetensors header's format to know the tensor layout."""
    model = torch.nn.Linear(3, 2)
    config = transformers.PretrainedConfig()
    ckpt.save_model(model, config, tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert sorted(f.keys()) == ["bias", "weight"]
    assert (tmp_path / "config.json").is_file()


def test_training_state_round_trip(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "stage": 2}
    ckpt.save_training_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_state.pt"]
    loaded = ckpt.load_training_state(tmp_path)
    assert loaded["stage"] == 2
    assert loaded["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    exp_avg = state["optimizer"]["state"][0]["exp_avg"]
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], exp_avg)


def test_trainer_state_is_indented_json_with_a_final_newline(tmp_path):
    state = {"run_state": {"step": 3}, "seconds": 1.5}
    ckpt.write_trainer_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer_state.json"]
    assert (tmp_path / "trainer_state.json").read_text() == (
        '{\n  "run_state": {\n    "step": 3\n  },\n  "seconds": 1.5\n}\n'
    )
    assert ckpt.read_trainer_state(tmp_path) == state


def test_run_config_is_written_as_the_run_directorys_config_yaml(tmp_path):
    config = load_distill_config(None, ["teacher=t", "data.train=en", "train.lr=0.003"])
    ckpt.save_run_config(tmp_path, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_config.yaml"]
    save_config(config, tmp_path / "config.yaml")
    written = (tmp_path / "run_config.yaml").read_text()
    assert written == (tmp_path / "config.yaml").read_text()
    assert to_dict(load_distill_config(tmp_path / "run_config.yaml")) == to_dict(config)


def test_task_state_round_trip_and_absence(tmp_path):
    assert ckpt.load_task_state(tmp_path) == {}
    ckpt.save_task_state(tmp_path, {})  # nothing to keep: no file
    assert list(tmp_path.iterdir()) == []
    weight = torch.arange(6.0).reshape(2, 3).requires_grad_()
    ckpt.save_task_state(tmp_path, {"head.weight": weight.t(), "head.bias": torch.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task_state.safetensors"]
    loaded = ckpt.load_task_state(tmp_path)
    assert sorted(loaded) == ["head.bias", "head.weight"]
    assert torch.equal(loaded["head.weight"], weight.detach().t())
    assert torch.equal(loaded["head.bias"], torch.ones(2))
