"""The one training loop (docs/design.md, "Training loop").

A `Task` turns a batch into a loss and metrics: the distiller, masked unit prediction, phone
CTC. `OptimizerStep` makes one optimizer step of a task over `grad_accum` micro-batches (also
what the benchmark times). `Trainer.fit` runs steps until the last one, with the schedule,
metrics, checkpoints, exact resume and stop handling, for 1..N processes.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from tqdm.auto import tqdm

from distilxlsr.config import flatten_keys, to_dict
from distilxlsr.data.loader import BatchPlan, ShardBatchPlan
from distilxlsr.data.shards import shard_set_of
from distilxlsr.data.static import StaticBatchPlan
from distilxlsr.errors import UserError
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.optim import (
    Schedule,
    gather_optimizer_state,
    local_optimizer,
    make_optimizer,
)
from distilxlsr.training.plots import plot_loss
from distilxlsr.training.processes import (  # noqa: F401 (the loop's names, kept importable)
    PlainProcess,
    check_engine,
    make_accelerator,
)
from distilxlsr.training.rundir import RunDir

LOSS_PLOT = "loss.png"


class Job:
    """What a training command's run holds before its stages: its config, command line, run
    directory and accelerator, and whether this process is the main one (which alone prints)."""

    def __init__(self, config, command_line: str | None):
        self.config = config
        self.command_line = command_line
        self.run = RunDir(config.out)
        self.accelerator = make_accelerator(config.train, self.run)
        self.main = self.accelerator.is_main_process
        self.rank = self.accelerator.process_index

    def say(self, message: str) -> None:
        if self.main:
            tqdm.write(message)

    def run_all(self):
        raise NotImplementedError

    def run_locked(self):
        """`run_all` under the run directory's lock (one live process per run directory)."""
        if self.main:
            self.run.acquire()
        try:
            return self.run_all()
        finally:
            if self.main:
                self.run.release()


def plan_batches(cuts, loader, optim, sample_rate: int, accelerator) -> BatchPlan:
    """This process's batches of a run: the loader section's crops and buckets (or static
    shapes), the optimizer section's batch size and seed, split over the processes."""
    if loader.static_shapes:
        if shard_set_of(cuts) is not None:
            raise UserError(
                "data.static_shapes=true does not read shards yet; train on the corpus's "
                "manifests (data.train=ROOT), or leave static_shapes false."
            )
        return StaticBatchPlan(
            cuts,
            batch_seconds=optim.batch_seconds,
            crop_lengths=loader.crop_lengths,
            max_seconds=loader.max_seconds,
            min_seconds=loader.min_seconds,
            seed=optim.seed,
            sample_rate=sample_rate,
            world_size=accelerator.num_processes,
            rank=accelerator.process_index,
        )
    plan = ShardBatchPlan if shard_set_of(cuts) is not None else BatchPlan
    return plan(
        cuts,
        batch_seconds=optim.batch_seconds,
        max_seconds=loader.max_seconds,
        min_seconds=loader.min_seconds,
        num_buckets=loader.num_buckets,
        seed=optim.seed,
        world_size=accelerator.num_processes,
        rank=accelerator.process_index,
    )


def tracker_config(config) -> dict:
    """The run's settings as trackers take them: flat keys, plain scalar values."""
    flat = flatten_keys(to_dict(config))
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in flat.items()}


class TrainingDiverged(UserError):
    """Too many consecutive non-finite steps."""


@dataclass
class RunState:
    """What a run has done so far; saved in every checkpoint's trainer_state.json."""

    step: int = 0
    """Global optimizer step (teacher pretraining's stage 2 continues stage 1's count)."""
    bad_steps: int = 0
    consecutive_bad: int = 0
    audio_seconds: float = 0.0
    """Audio trained on, over all processes (counted at every step, saved with checkpoints)."""
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    data_position: dict = field(default_factory=lambda: {"epoch": 0, "skip": 0})
    final: dict = field(default_factory=dict)
    """The last logged metrics of each task (by `Task.key`)."""

    @classmethod
    def from_dict(cls, values: dict) -> RunState:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


class Task:
    """One training objective. Subclasses set `module` (what is trained: wrapped for DDP, its
    trainable parameters optimized), `model` and `pristine_config` (the Hugging Face model a
    checkpoint holds, with the config it is saved with) and implement `__call__`."""

    key = "train"
    """Name of the task in metrics (`RunState.final`) and messages."""
    description = "train"
    """The progress bar's label."""
    lr_setting = "train.lr"
    """The config key of its learning rate (named when training diverges)."""
    progress_keys: tuple[str, ...] = ("loss",)
    module: nn.Module
    model: nn.Module
    pristine_config: Any

    def __call__(self, module: nn.Module, batch: dict, step: int):
        """(loss, metrics) for one micro-batch; `module` is `self.module` as wrapped for DDP;
        metrics are 0-dim tensors, averaged over micro-batches and processes when logged."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict] | None:
        """AdamW's parameter groups where some learn at their own rate (a group's "lr" is its
        peak, the schedule scales every group alike); None: one group of every trainable
        parameter of `module` at the schedule's rate."""
        return None

    def compile_extra(self, dynamic: bool | None = None) -> None:
        """With `compile_module`: compile what the task runs besides `module` (the distiller's
        frozen teacher); `dynamic` as torch.compile's."""

    def record(self, means: dict[str, float]) -> dict:
        """The task's part of a metrics record."""
        return dict(means)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Weights beside `model` that a checkpoint must keep (e.g. a pretraining head)."""
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `state_tensors` returned."""


@dataclass
class StepResult:
    grad_norm: torch.Tensor
    bad: torch.Tensor
    """1 on the device if the step was skipped (non-finite gradient), else 0."""
    metrics: dict[str, torch.Tensor]
    """Sums over the step's micro-batches."""
    micro_batches: int
    samples: int
    """Audio samples in the step's batches, this process."""
    position: dict | None
    """Data position after the step's last batch."""


class OptimizerStep:
    """One optimizer step of a task: `grad_accum` micro-batches of forward and backward
    (gradients all-reduced on the last only), clipping, a NaN guard without host sync (fused
    AdamW's `found_inf` skips the update on the device when the gradient norm is not finite;
    after DDP's all-reduce the norm is the same on every rank, so all ranks skip together),
    AdamW and the schedule."""

    def __init__(self, task: Task, schedule: Schedule, optim, accelerator, grad_accum: int = 1):
        self.task = task
        self.accelerator = accelerator
        self.grad_accum = grad_accum
        self.grad_clip = optim.grad_clip
        groups = task.parameter_groups()
        if groups is None:
            self.params = [p for p in task.module.parameters() if p.requires_grad]
        else:
            self.params = [p for group in groups for p in group["params"]]
        self.sharded = optim.optimizer_sharding != "none"
        if self.sharded:  # its state is made, loaded and kept beside its share of the weights
            task.module.to(accelerator.device)
        self.optimizer, self.scheduler = make_optimizer(groups or self.params, schedule, optim)
        self.own_optimizer = self.optimizer  # as made (`prepare` wraps self.optimizer)
        self.inner_optimizer = local_optimizer(self.optimizer)
        self.module = task.module

    def load_state(self, training_state: dict) -> None:
        self.optimizer.load_state_dict(training_state["optimizer"])
        self.scheduler.load_state_dict(training_state["scheduler"])

    def gather(self) -> None:
        """Every process, before the main one calls `state` (a sharded optimizer's state is
        gathered there)."""
        gather_optimizer_state(self.own_optimizer)

    def state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def prepare(self, compile_module: bool = False, dynamic: bool | None = None) -> None:
        """Wrap for the processes (DDP) after any resumed state has been loaded; `dynamic` is
        torch.compile's (False for static-shape batches: one static graph per shape, never a
        dynamic-shape one)."""
        module = self.task.module
        if compile_module:
            module = torch.compile(module, dynamic=dynamic)
            self.task.compile_extra(dynamic)
        # A sharded optimizer's state is already beside its parameters; accelerate would move
        # it through state_dict(), which a sharded optimizer gives only after a gather.
        placement = self.accelerator.device_placement
        self.module, self.optimizer = self.accelerator.prepare(
            module, self.optimizer, device_placement=[placement, placement and not self.sharded]
        )

    def __call__(self, next_batch: Callable[[], dict], step: int) -> StepResult:
        acc, device = self.accelerator, self.accelerator.device
        sums: dict[str, torch.Tensor] = {}
        samples = 0
        position = None
        for micro in range(self.grad_accum):
            batch = next_batch()
            inputs = {
                k: v.to(device, non_blocking=True)
                for k, v in batch.items()
                if isinstance(v, torch.Tensor)
            }
            last = micro == self.grad_accum - 1
            sync = contextlib.nullcontext() if last else acc.no_sync(self.module)
            with sync, acc.autocast():
                loss, metrics = self.task(self.module, inputs, step)
            acc.backward(loss / self.grad_accum)
            for key, value in metrics.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            samples += batch.get("num_samples", 0)
            if "epoch" in batch:
                position = {"epoch": batch["epoch"], "skip": batch["index"] + 1}
        if self.grad_clip > 0:
            grad_norm = acc.clip_grad_norm_(self.params, self.grad_clip)
        else:
            grad_norm = torch.linalg.vector_norm(
                torch.stack([p.grad.norm() for p in self.params if p.grad is not None])
            )
        bad = ~torch.isfinite(grad_norm)
        self.inner_optimizer.found_inf = bad.float()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepResult(grad_norm.detach(), bad, sums, self.grad_accum, samples, position)


def worker_message(err: Exception) -> str:
    """The message of an error re-raised from a DataLoader worker, without the traceback text
    the loader wraps around it."""
    text = str(err).strip()
    if "Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split("UserError: ", 1)[-1]


def any_rank(accelerator, flag: bool) -> bool:
    """True on every process if `flag` is true on any (a collective with several)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor(float(flag), device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


class _StopRequest:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and stops at the next check."""

    def __init__(self):
        self.flag = False
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self):
        def request(signum, frame):
            self.flag = True
            self.signum = signum

        self.previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class _Window:
    """Metrics between two log steps, kept on the device until they are logged."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.micro_batches = 0
        self.steps = 0
        self.samples = 0
        self.start = time.perf_counter()

    def add(self, result: StepResult) -> None:
        for key, value in result.metrics.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.micro_batches += result.micro_batches
        self.steps += 1
        self.samples += result.samples


class Trainer:
    """Runs tasks in one run directory: shared state, logging and checkpoints.

    `config` is the whole run config (saved into every checkpoint); `optim` its optimizer and
    bookkeeping section (grad_clip, betas, eps, weight_decay, log_every, checkpoint_every,
    keep_checkpoints, max_bad_steps, grad_accum)."""

    def __init__(self, accelerator, run: RunDir, config, optim, state: RunState, sample_rate):
        self.accelerator = accelerator
        self.run = run
        self.config = config
        self.optim = optim
        self.state = state
        self.sample_rate = sample_rate
        self.main = accelerator.is_main_process
        self.rank = accelerator.process_index
        self.started = time.perf_counter()
        self.wall_before = state.wall_seconds
        self.pending_samples = 0  # trained on since audio_seconds was last brought up to date
        self.tracking = False
        self.plot_failed = False
        self.stop_signal: int | None = None
        """The signal that stopped `fit` (SIGTERM on a process that was told by another)."""

    def say(self, message: str) -> None:
        if self.main:
            tqdm.write(message)

    def elapsed(self) -> float:
        """Seconds since this process's part of the run began."""
        return time.perf_counter() - self.started

    def fit(
        self,
        task: Task,
        schedule: Schedule,
        batches: Callable[[dict], Iterator[dict]],
        first_step: int = 0,
        resume: Path | None = None,
        rng_seed: int | None = None,
        extra_state: dict | None = None,
        compile_module: bool = False,
        compile_dynamic: bool | None = None,
    ) -> bool:
        """Train `task` from `state.step` up to `first_step + schedule.steps`; False if stopped
        by a signal. `batches(position)` gives the data from a position; `resume` is the
        checkpoint to continue from (its optimizer, schedule, task state and RNG); otherwise
        the global RNG is seeded with `rng_seed` (None: the caller has seeded it).
        `compile_dynamic`: torch.compile's `dynamic` (False with static-shape batches)."""
        acc, state = self.accelerator, self.state
        last = first_step + schedule.steps
        task.module.to(acc.device).train()
        stepper = OptimizerStep(task, schedule, self.optim, acc, self.optim.grad_accum)
        rank_state = None
        if resume is not None:
            task.load_state_tensors(ckpt.load_task_state(resume))
            stepper.load_state(ckpt.load_training_state(resume))
            rank_state = ckpt.load_rank_state(resume, self.rank)
            if rank_state is None:
                self.say("warning: resuming with another number of processes; data order changes.")
                state.data_position = {"epoch": state.data_position["epoch"] + 1, "skip": 0}
            else:
                state.data_position = rank_state["data_position"]
            self.say(f"resuming {self.run.path} from step {state.step} ({resume.name})")
        stepper.prepare(compile_module, compile_dynamic)
        stream = batches(state.data_position)
        if rank_state is not None:
            ckpt.restore_rng(rank_state)
        elif rng_seed is not None:
            torch.manual_seed(rng_seed)
        if not self.tracking:
            acc.init_trackers(self.run.path.name or "run", config=tracker_config(self.config))
            self.tracking = True
        bad_total = torch.tensor(state.bad_steps, device=acc.device)
        consecutive_bad = torch.tensor(state.consecutive_bad, device=acc.device)
        window = _Window()
        progress = tqdm(
            total=schedule.steps,
            initial=state.step - first_step,
            disable=not self.main,
            desc=task.description,
            unit="step",
            dynamic_ncols=True,
        )
        stopped = False
        with _StopRequest() as stop, progress:
            while state.step < last:
                step_start = time.perf_counter()
                try:
                    result = stepper(lambda: next(stream), state.step)
                except UserError as err:  # raised in a loader worker: its message, one line
                    raise UserError(worker_message(err)) from None
                bad_total += result.bad
                consecutive_bad = (consecutive_bad + 1) * result.bad
                if result.position is not None:
                    state.data_position = result.position
                state.step += 1
                state.train_seconds += time.perf_counter() - step_start
                self.pending_samples += result.samples
                window.add(result)
                progress.update(1)
                at_log = state.step % self.optim.log_every == 0 or state.step == last
                if at_log:
                    self._count_bad(bad_total, consecutive_bad, task)
                    self._log(task, window, stepper, result, progress)
                    window = _Window()
                # A stop request: one process checks every step; several agree (a collective)
                # at log time only.
                check_stop = at_log or acc.num_processes == 1
                stopped = check_stop and any_rank(acc, stop.flag)
                if stopped or state.step % self.optim.checkpoint_every == 0 or state.step == last:
                    state.bad_steps, state.consecutive_bad = int(bad_total), int(consecutive_bad)
                    self.save(task, stepper, extra_state or {})
                if stopped:
                    self.stop_signal = stop.signum or signal.SIGTERM
                    self.say(f"interrupted at step {state.step}; run the same command to resume.")
                    break
        return not stopped

    def close(self) -> None:
        """Draw the loss curve one last time (trackers end with `accelerator.end_training`)."""
        if self.main:
            self._plot()

    def _plot(self) -> None:
        """RUN/loss.png, best effort: a picture that cannot be drawn never ends a run."""
        try:
            plot_loss(self.run.metrics(), self.run.file(LOSS_PLOT))
        except Exception as err:  # matplotlib's own errors (fonts, cache, backend)
            if not self.plot_failed:
                self.say(f"warning: {LOSS_PLOT} not drawn ({type(err).__name__}: {err}).")
            self.plot_failed = True

    def _count_bad(self, bad_total, consecutive_bad, task: Task) -> None:
        state = self.state
        state.bad_steps, state.consecutive_bad = int(bad_total), int(consecutive_bad)
        if state.consecutive_bad >= self.optim.max_bad_steps:
            raise TrainingDiverged(
                f"training stopped at step {state.step}: {state.consecutive_bad} consecutive "
                f"steps had a non-finite loss or gradient; lower {task.lr_setting} or check the "
                f"data (checkpoints in {self.run.path / RunDir.CHECKPOINTS})."
            )

    def _flush_audio(self) -> float:
        """Bring `audio_seconds` up to date (all processes); returns the seconds added."""
        acc = self.accelerator
        samples = float(self.pending_samples)
        if acc.num_processes > 1:
            samples = acc.reduce(torch.tensor(samples, device=acc.device), reduction="sum").item()
        self.pending_samples = 0
        self.state.audio_seconds += samples / self.sample_rate
        return samples / self.sample_rate

    def _log(self, task: Task, window: _Window, stepper, result: StepResult, progress) -> None:
        acc, state = self.accelerator, self.state
        keys = list(window.sums)
        totals = torch.stack([window.sums[k] for k in keys])
        totals = acc.reduce(totals, reduction="mean") / max(1, window.micro_batches)
        window_samples = float(window.samples)
        if acc.num_processes > 1:
            window_samples = acc.reduce(
                torch.tensor(window_samples, device=acc.device), reduction="sum"
            ).item()
        self._flush_audio()
        elapsed = max(time.perf_counter() - window.start, 1e-9)
        seconds = window_samples / self.sample_rate
        means = {k: float(v) for k, v in zip(keys, totals.tolist(), strict=True)}
        record = {"step": state.step, **task.record(means)}
        record |= {
            "lr": stepper.scheduler.get_last_lr()[0],
            "grad_norm": float(result.grad_norm),
            "audio_s_per_s": seconds / elapsed,
            "seconds_per_step": elapsed / max(1, window.steps),
            "audio_hours": state.audio_seconds / 3600,
            "bad_steps": state.bad_steps,
            "epoch": state.data_position["epoch"],
        }
        state.final[task.key] = {"step": state.step, **means, "audio_s_per_s": seconds / elapsed}
        if not self.main:
            return
        self.run.append_metrics(record)
        scalars = {f"{task.key}/{key}": value for key, value in means.items()}
        scalars |= {f"train/{k}": record[k] for k in ("lr", "grad_norm", "audio_s_per_s")}
        acc.log(scalars | {"train/bad_steps": state.bad_steps}, step=state.step)
        shown = {k: f"{means[k]:.4f}" for k in task.progress_keys if k in means}
        progress.set_postfix(**shown, audio_s_per_s=f"{record['audio_s_per_s']:.1f}")

    def save(self, task: Task, stepper: OptimizerStep, extra_state: dict) -> Path | None:
        """A checkpoint of the current step: written by the main process into a temporary
        directory, each process adds its rank state, then one rename commits it. A full disk
        or a read-only directory ends the run with one line (the previous checkpoint stays)."""
        acc, state = self.accelerator, self.state
        self._flush_audio()
        state.wall_seconds = self.wall_before + self.elapsed()
        tmp = self.run.new_checkpoint(state.step)
        stepper.gather()
        with self._writing(tmp):
            if self.main:
                tmp.mkdir(parents=True, exist_ok=True)
                ckpt.save_model(task.model, task.pristine_config, tmp)
                ckpt.save_task_state(tmp, task.state_tensors())
                ckpt.save_training_state(tmp, stepper.state() | extra_state)
                ckpt.save_run_config(tmp, self.config)
            acc.wait_for_everyone()
            fingerprint = ckpt.parameter_fingerprint(task.module)
            ckpt.save_rank_state(tmp, self.rank, state.data_position, fingerprint)
            acc.wait_for_everyone()
            final = None
            if self.main:
                trainer_state = {"run_state": asdict(state), "world_size": acc.num_processes}
                ckpt.write_trainer_state(tmp, trainer_state)
                ckpt.write_manifest(tmp)
                final = self.run.commit(tmp, state.step, self.optim.keep_checkpoints)
        if self.main:
            self._plot()
        acc.wait_for_everyone()
        return final

    @contextlib.contextmanager
    def _writing(self, tmp: Path):
        try:
            yield
        except (OSError, SafetensorError) as err:  # safetensors wraps its I/O errors
            shutil.rmtree(tmp, ignore_errors=True)
            reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
            if getattr(err, "filename", None):
                reason += f": {err.filename}"
            raise UserError(
                f"could not write checkpoint {tmp.name.removeprefix('.tmp-')} in {tmp.parent} "
                f"({reason}); free disk space or fix permissions, then run the "
                "same command again: it resumes from the newest intact checkpoint."
            ) from None
