"""The one training loop: teacher pretraining has distillation's properties (exact resume after a
kill, identical ranks), gradient accumulation is one large batch, the bad-step counter counts
consecutive steps only, and the run directory's owner keeps a run's records consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from distilxlsr.cli import main
from distilxlsr.distill.recipe import TrainConfig
from distilxlsr.training.checkpoint import list_checkpoints, read_trainer_state
from distilxlsr.training.loop import RunState, Task, Trainer, TrainingDiverged, make_accelerator
from distilxlsr.training.optim import Schedule
from distilxlsr.training.rundir import RunDir
from tests.helpers import TINY_TEACHER, distill_args

PRETRAIN = "pretrain-tiny-teacher"
TINY_PRETRAINING = [
    *TINY_TEACHER,
    "loader.max_seconds=2.0",
    "train.batch_seconds=6.0",
    "train.log_every=3",
    "train.checkpoint_every=2",
    "stage1.steps=4",
    "stage2.steps=8",
]


@pytest.fixture(scope="module")
def corpus(two_language_corpus) -> Path:
    return two_language_corpus


def _pretrain(corpus: Path, out: Path, workers: int) -> list[str]:
    args = [f"data={corpus}", f"out={out}", *TINY_PRETRAINING, f"loader.num_workers={workers}"]
    return [sys.executable, "-m", "distilxlsr", "pretrain-teacher", "--config", PRETRAIN, *args]


def _weights(directory: Path) -> dict:
    return load_file(directory / "model.safetensors")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_pretraining_killed_in_stage_2_resumes_bit_identical(tmp_path, corpus):
    straight = tmp_path / "straight"
    subprocess.run(_pretrain(corpus, straight, 0), check=True, capture_output=True)
    resumed = tmp_path / "resumed"
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        _pretrain(corpus, resumed, 1), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 180
    while not (resumed / "checkpoints" / "step-0000006").is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert "step-0000012" not in [c.name for c in list_checkpoints(resumed)], "finished too soon"
    done = subprocess.run(_pretrain(corpus, resumed, 0), check=True, capture_output=True, text=True)
    assert "resuming" in done.stdout + done.stderr
    # The head (task state), optimizer, schedule, RNG and data position all came back.
    assert _same(_weights(straight / "model"), _weights(resumed / "model"))
    last = [list_checkpoints(run)[-1] for run in (straight, resumed)]
    assert _same(
        load_file(last[0] / "task_state.safetensors"), load_file(last[1] / "task_state.safetensors")
    )
    # Accounting survives the kill: the same audio seen, each logged step once.
    states = [read_trainer_state(c)["run_state"] for c in last]
    assert states[0]["audio_seconds"] == pytest.approx(states[1]["audio_seconds"], abs=1e-9)
    assert states[0]["audio_seconds"] > 0
    steps = [m["step"] for m in RunDir(resumed).metrics()]
    assert steps == sorted(set(steps)) == [3, 4, 6, 9, 12]


@pytest.mark.slow
def test_two_process_pretraining_keeps_ranks_identical(tmp_path, corpus):
    out = tmp_path / "ddp"
    args = [
        f"data={corpus}",
        f"out={out}",
        *TINY_PRETRAINING,
        "loader.num_workers=0",
        "stage1.steps=2",
        "stage2.steps=2",
        "train.checkpoint_every=4",
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(30500 + os.getpid() % 1000),
        "-m",
        "distilxlsr",
        "pretrain-teacher",
        "--config",
        PRETRAIN,
        *args,
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    last = out / "checkpoints" / "step-0000004"
    ranks = [torch.load(last / f"rank-{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(ranks[0]["parameter_fingerprint"], ranks[1]["parameter_fingerprint"])
    assert json.loads((last / "trainer_state.json").read_text())["world_size"] == 2
    assert (out / "model" / "model.safetensors").is_file()


def test_a_failed_start_does_not_block_the_corrected_command(tmp_path, teacher_dir, toy_corpus):
    out = tmp_path / "run"
    base = distill_args(teacher_dir, toy_corpus, out, "train.max_steps=2")
    mistakes = [
        "student.layers=jump:5",
        f"teacher={tmp_path / 'typo'}",
        "loss.kind=l2",
        "student.representation=bogus",
        "loss.layer_weights=[1,1,1]",
    ]
    for mistake in mistakes:
        assert main([*base, mistake]) == 2
        assert not (out / "config.yaml").exists()
    assert main(base) == 0
    invocations = RunDir(out).invocations()
    assert [i["start_step"] for i in invocations] == [0]


def test_metrics_past_the_resumed_step_are_dropped(tmp_path):
    run = RunDir(tmp_path)
    for step in (2, 4, 6):
        run.append_metrics({"step": step, "loss": float(step)})
    with open(run.metrics_file, "a") as f:
        f.write('{"step": 8, "lo')  # a kill in the middle of a write
    assert [m["step"] for m in run.metrics()] == [2, 4, 6]
    assert run.drop_metrics_after(4) == 1
    assert [m["step"] for m in run.metrics()] == [2, 4]
    assert run.metrics_file.read_text().endswith("\n")
    run.append_metrics({"step": 6, "loss": 0.5})
    assert [m["loss"] for m in run.metrics()] == [2.0, 4.0, 0.5]


def test_run_directory_recognises_runs_and_checkpoints(tmp_path):
    assert not RunDir.holds_run(tmp_path)
    step = tmp_path / "checkpoints" / "step-0000010"
    step.mkdir(parents=True)
    assert RunDir.holds_run(tmp_path)
    assert RunDir.of_checkpoint(step).path == tmp_path
    assert RunDir.of_checkpoint(tmp_path / "checkpoints" / ".tmp-step-0000010") is None
    assert RunDir.of_checkpoint(tmp_path) is None


@pytest.mark.parametrize("extend", ["replan", "hold"])
def test_raising_max_steps_says_what_happens_to_the_rate(
    tmp_path, teacher_dir, toy_corpus, capsys, extend
):
    out = tmp_path / "run"
    extra = ["train.log_every=1", "train.lr=0.001", "train.warmup_steps=1"]
    extra += ["train.min_lr_ratio=0.5", f"train.extend={extend}"]
    base = distill_args(teacher_dir, toy_corpus, out, *extra)
    assert main([*base, "train.max_steps=3"]) == 0
    capsys.readouterr()
    assert main([*base, "train.max_steps=6"]) == 0
    said = capsys.readouterr()
    assert "train.max_steps changed from 3 to 6 at step 3" in said.out + said.err
    rates = [m["lr"] for m in RunDir(out).metrics() if m["step"] > 3]
    assert len(rates) == 3
    if extend == "hold":
        assert rates == pytest.approx([0.0005] * 3)  # the decayed rate, kept
    else:
        assert rates[0] > 0.0005 and rates[-1] == pytest.approx(0.0005)  # laid over 6 steps


# --- the loop on a task small enough to check by hand ------------------------------------------


class _NoConfig:
    """The `pristine_config` of a model that is not a transformers model."""

    def save_pretrained(self, directory) -> None:
        (Path(directory) / "config.json").write_text("{}")


class _Regression(Task):
    """A linear map fitted to random targets: the loss is the mean squared error over the rows of
    a micro-batch. Its loss is NaN at the steps in `bad_steps`; it notes the trainer's count of
    consecutive bad steps as each step begins (the count after the step before)."""

    key = "fit"

    def __init__(self, bad_steps=()):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.module = nn.Linear(3, 2)
        self.model = self.module
        self.pristine_config = _NoConfig()
        self.bad_steps = set(bad_steps)
        self.trainer: Trainer | None = None
        self.consecutive_seen: list[int] = []

    def __call__(self, module, batch, step):
        self.consecutive_seen.append(self.trainer.state.consecutive_bad)
        loss = (module(batch["x"]) - batch["y"]).pow(2).mean()
        if step in self.bad_steps:
            loss = loss * float("nan")
        return loss, {"loss": loss.detach()}


def _rows(seed: int, n: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 3, generator=g), "y": torch.randn(n, 2, generator=g)}


def _fit(out: Path, task: _Regression, batches: list[dict], steps: int, **train):
    """`Trainer.fit` of `task` over `batches` (in order), logging every step; returns the trainer,
    the gradients each optimizer step was given, and the logged records."""
    optim = replace(TrainConfig(), trackers=[], log_every=1, checkpoint_every=1000, **train)
    run = RunDir(out)
    run.path.mkdir()
    trainer = Trainer(make_accelerator(optim, run), run, optim, optim, RunState(), 16000)
    task.trainer = trainer
    grads = []
    hook = register_optimizer_step_pre_hook(
        lambda *_: grads.append([p.grad.clone() for p in task.module.parameters()])
    )
    try:
        trainer.fit(task, Schedule(steps, lr=0.01, warmup_steps=1), lambda _: iter(batches))
    finally:
        hook.remove()
    return trainer, grads, run.metrics()


@pytest.mark.parametrize("grad_clip", [0.0, 10.0])
def test_accumulating_two_micro_batches_is_one_step_over_both(tmp_path, grad_clip):
    """train.grad_accum=2 over micro-batches A and B: the gradient, the logged gradient norm and
    the logged loss of one step over A and B together (each backward is of loss / 2)."""
    a, b = _rows(1, 4), _rows(2, 4)
    both = {k: torch.cat([a[k], b[k]]) for k in a}
    _, accumulated, two = _fit(
        tmp_path / "two", _Regression(), [a, b], 1, grad_accum=2, grad_clip=grad_clip
    )
    _, together, one = _fit(
        tmp_path / "one", _Regression(), [both], 1, grad_accum=1, grad_clip=grad_clip
    )
    assert len(accumulated) == len(together) == 1
    for got, want in zip(accumulated[0], together[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in together[0]])).item()
    assert 0 < norm < grad_clip or grad_clip == 0  # not clipped: the gradients are the raw ones
    assert two[0]["grad_norm"] == pytest.approx(norm, rel=1e-6)
    assert one[0]["grad_norm"] == pytest.approx(norm, rel=1e-6)
    assert two[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-6)


def test_the_consecutive_bad_step_count_starts_again_after_a_good_step(tmp_path):
    """train.max_bad_steps=2: bad and good steps in turn never stop the run (the count goes back
    to 0 after each good step); two bad steps in a row do, at the second."""
    batches = [_rows(seed, 4) for seed in range(6)]
    alternating = _Regression(bad_steps={0, 2, 4})
    trainer, _, records = _fit(tmp_path / "alternating", alternating, batches, 6, max_bad_steps=2)
    assert alternating.consecutive_seen == [0, 1, 0, 1, 0, 1]
    assert trainer.state.step == 6 and trainer.state.consecutive_bad == 0
    assert trainer.state.bad_steps == 3
    assert [r["bad_steps"] for r in records] == [1, 1, 2, 2, 3, 3]
    in_a_row = _Regression(bad_steps={0, 2, 3})
    with pytest.raises(TrainingDiverged, match="training stopped at step 4: 2 consecutive steps"):
        _fit(tmp_path / "in_a_row", in_a_row, batches, 6, max_bad_steps=2)
    assert in_a_row.consecutive_seen == [0, 1, 0, 1]


def test_fsdp_and_deepspeed_launches_are_refused_with_the_way_out():
    from accelerate.utils import DistributedType

    from distilxlsr.errors import UserError
    from distilxlsr.training.loop import check_engine

    for engine in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(UserError, match="optimizer_sharding=zero1"):
            check_engine(engine)
    for engine in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        check_engine(engine)
