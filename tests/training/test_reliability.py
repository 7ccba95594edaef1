"""A damaged checkpoint never blocks a run, and one run directory has one live process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from distilxlsr.cli import main
from distilxlsr.errors import UserError
from distilxlsr.training.checkpoint import check_checkpoint, list_checkpoints, write_manifest
from distilxlsr.training.rundir import RunDir
from tests.helpers import distill_args


def _args(teacher_dir, toy_corpus, out, steps=4):
    extra = ["train.log_every=2", "train.checkpoint_every=2", f"train.max_steps={steps}"]
    return distill_args(teacher_dir, toy_corpus, out, *extra)


def _damage(path, kind: str) -> None:
    if kind == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif kind == "garbage":
        path.write_text("{not json")
    elif kind == "delete":
        path.unlink()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, teacher_dir, toy_corpus):
    out = tmp_path_factory.mktemp("reliable") / "run"
    assert main(_args(teacher_dir, toy_corpus, out)) == 0
    return out


@pytest.mark.parametrize(
    "name, kind",
    [
        ("model.safetensors", "truncate"),
        ("model.safetensors", "delete"),
        ("model.safetensors", "flip"),
        ("trainer_state.json", "garbage"),
        ("training_state.pt", "truncate"),
        ("rank-0.pt", "flip"),
        ("manifest.json", "garbage"),
        ("config.json", "delete"),
    ],
)
def test_every_kind_of_damage_is_detected(finished_run, tmp_path, name, kind):
    copy = tmp_path / "step"
    shutil.copytree(list_checkpoints(finished_run)[-1], copy)
    assert check_checkpoint(copy) is None
    _damage(copy / name, kind)
    problem = check_checkpoint(copy)
    assert problem is not None and name.split(".")[0] in problem


def test_a_damaged_newest_checkpoint_falls_back_and_resumes_exactly(
    finished_run, tmp_path, teacher_dir, toy_corpus, capsys
):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    newest = list_checkpoints(run)[-1]
    straight = load_file(newest / "model.safetensors")
    _damage(newest / "training_state.pt", "flip")
    capsys.readouterr()
    # export of the damaged checkpoint itself is refused; of the run, the intact one is taken
    assert main(["export", str(newest), "--out", str(tmp_path / "bad")]) == 2
    assert "damaged" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(tmp_path / "older")]) == 0
    assert "skipping checkpoint" in capsys.readouterr().err
    # the run resumes from the step before and ends bit-identical to the uninterrupted one
    assert main(_args(teacher_dir, toy_corpus, run)) == 0
    assert "step-0000004" in capsys.readouterr().err
    resumed = load_file(list_checkpoints(run)[-1] / "model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert check_checkpoint(list_checkpoints(run)[-1]) is None
    steps = [m["step"] for m in RunDir(run).metrics()]
    assert steps == [2, 4]


def test_checkpoints_from_before_manifests_are_accepted_if_complete(finished_run, tmp_path):
    copy = tmp_path / "step"
    shutil.copytree(list_checkpoints(finished_run)[-1], copy)
    (copy / "manifest.json").unlink()
    assert check_checkpoint(copy) is None
    (copy / "training_state.pt").unlink()
    assert "training_state.pt missing" in check_checkpoint(copy)
    write_manifest(copy)
    assert check_checkpoint(copy) is None


def test_a_live_process_holds_the_run_directory(tmp_path):
    run = RunDir(tmp_path / "run")
    live = {"pid": os.getppid(), "host": socket.gethostname(), "since": 0}
    run.path.mkdir()
    (run.path / "lock").write_text(json.dumps(live))
    with pytest.raises(UserError, match=f"in use by process {os.getppid()}"):
        run.acquire()
    # a lock left by a process that is gone is taken over, with a message
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run.path / "lock").write_text(json.dumps(live | {"pid": gone.pid}))
    said = []
    run.acquire(say=said.append)
    assert said and "no longer running" in said[0]
    assert json.loads((run.path / "lock").read_text())["pid"] == os.getpid()
    run.release()
    assert not (run.path / "lock").exists()


def test_a_full_disk_while_checkpointing_is_one_line(tmp_path, teacher_dir, toy_corpus):
    """Files may not grow past 40 kB in this child process (as on a full disk): the student's
    weights cannot be written."""
    probe = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))\n"
        "from distilxlsr.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "run"
    args = _args(teacher_dir, toy_corpus, out, steps=2)
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "could not write checkpoint step-0000002" in done.stderr
    assert "Traceback" not in done.stderr
    assert list((out / "checkpoints").iterdir()) == []  # no half-written checkpoint left


def test_damaged_teacher_and_config_files_are_one_line(tmp_path, teacher_dir, toy_corpus, capsys):
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "config.json").write_text("[1, 2]")
    truncated = tmp_path / "truncated"
    shutil.copytree(teacher_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("# réglages\ntrain:\n  lr: 0.001\n".encode("latin-1"))
    cases = [
        (["teacher=" + str(listed)], "holds a list, not a model config"),
        (["teacher=" + str(truncated)], "could not load weights from"),
    ]
    for extra, message in cases:
        assert main([*_args(teacher_dir, toy_corpus, tmp_path / "r"), *extra]) == 2
        assert message in capsys.readouterr().err
    args = _args(teacher_dir, toy_corpus, tmp_path / "r")
    args[args.index("tiny-cpu")] = str(latin)
    assert main(args) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_hostile_or_damaged_run_files_are_one_line(
    finished_run, tmp_path, teacher_dir, toy_corpus, capsys
):
    import pickle

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    newest = list_checkpoints(run)[-1]
    (newest / "training_state.pt").write_bytes(pickle.dumps({"optimizer": Payload()}))
    write_manifest(newest)  # re-signed: the checksum cannot catch it
    capsys.readouterr()
    assert main(_args(teacher_dir, toy_corpus, run, steps=6)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "cannot be loaded without running code" in err[-1] and not (tmp_path / "ran").exists()
    assert "Traceback" not in "\n".join(err)
    # a YAML tag in the run's own config.yaml
    (run / "config.yaml").write_text("teacher: !!python/object/apply:os.system ['true']\n")
    assert main(_args(teacher_dir, toy_corpus, run)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "config.yaml' cannot be read" in err[-1] and "Traceback" not in "\n".join(err)
    # ... and in a --config file: one line
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: !!python/object/apply:os.system ['true']\n")
    args = _args(teacher_dir, toy_corpus, tmp_path / "other")
    args[args.index("tiny-cpu")] = str(bad)
    assert main(args) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_checkpoint_without_trainer_state_is_named_when_skipped(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    newest = list_checkpoints(run)[-1]
    (newest / "trainer_state.json").unlink()
    capsys.readouterr()
    assert RunDir(run).latest_checkpoint().name == "step-0000002"
    assert f"skipping checkpoint {newest} (trainer_state.json missing)" in capsys.readouterr().err


def test_audio_damaged_after_prepare_is_one_line_from_a_loader_worker(
    tmp_path, teacher_dir, capsys
):
    from distilxlsr.data.toy import make_toy_corpus

    corpus = tmp_path / "corpus"
    make_toy_corpus(corpus, "en", "train", num_utterances=6, seed=0)
    for audio in sorted((corpus / "en" / "audio").rglob("*.flac")):
        audio.write_bytes(os.urandom(2000))  # still there, no longer audio
    args = _args(teacher_dir, corpus, tmp_path / "run", steps=2) + ["data.num_workers=1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "could not be read" in err[-1] and "restore the file" in err[-1]
    assert "Traceback" not in "\n".join(err)
