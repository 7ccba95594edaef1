"""The distillation loop: one loop for 1..N processes (world size 1 is just a case).

Reads top to bottom: set up the run directory, teacher, student, data, optimizer; resume from
the newest checkpoint if there is one; then per step: teacher targets (frozen, no grad), student
forward, loss, backward over `grad_accum` micro-batches, clip, NaN guard, optimizer step, and
every so often log and checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from distilxlsr.config import DistillConfig, check_resume_compatible, save_config
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import AudioBatches, BatchPlan, Transform, make_loader, scan_cuts
from distilxlsr.distill import checkpoint as ckpt
from distilxlsr.distill.losses import DistillLoss
from distilxlsr.errors import UserError
from distilxlsr.models.layers import LayerMap, LayerTap, parse_layer_map
from distilxlsr.models.student import build_student, write_student_info
from distilxlsr.models.teacher import count_parameters, feature_extractor, load_teacher

# Settings that may change when a run is resumed; any other difference is an error, because the
# resumed run would silently be a different experiment.
RESUMABLE_CHANGES = {
    "train.max_steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.max_bad_steps",
    "train.compile",
    "data.num_workers",
}


class TrainingDiverged(UserError):
    """Too many consecutive non-finite steps."""


def lr_lambda(train) -> callable:
    """Linear warm-up, then linear or cosine decay to `min_lr_ratio` (a factor on `lr`)."""
    warmup = train.warmup_steps or max(1, int(0.05 * train.max_steps))
    total = max(train.max_steps, warmup + 1)
    floor = train.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if train.decay == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        if train.decay == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return floor + (1 - floor) * (1 - progress)

    return factor


@dataclass
class RunState:
    step: int = 0
    bad_steps: int = 0
    consecutive_bad: int = 0
    audio_seconds: float = 0.0
    train_seconds: float = 0.0
    data_position: dict = field(default_factory=lambda: {"epoch": 0, "skip": 0})


def _validate(config: DistillConfig) -> None:
    t = config.train
    if not config.teacher:
        raise UserError("no teacher given; set teacher=DIR_OR_HUB_ID.")
    if t.max_steps < 1 or t.grad_accum < 1 or t.checkpoint_every < 1 or t.log_every < 1:
        raise UserError(
            "train.max_steps, train.grad_accum, train.checkpoint_every and train.log_every "
            "must be at least 1."
        )
    if t.lr <= 0 or t.batch_seconds <= 0:
        raise UserError("train.lr and train.batch_seconds must be positive.")
    if t.decay not in ("linear", "cosine", "constant"):
        raise UserError(f"train.decay '{t.decay}' must be linear, cosine or constant.")
    if t.mixed_precision not in ("auto", "bf16", "fp16", "no"):
        raise UserError(
            f"train.mixed_precision '{t.mixed_precision}' must be auto, bf16, fp16 or no."
        )
    if not 0.0 <= config.shuffle.p <= 1.0:
        raise UserError(f"shuffle.p={config.shuffle.p} must lie between 0 and 1.")


def resolve_transform(config: DistillConfig) -> Transform | None:
    """The per-utterance waveform transform (phoneme shuffling) for `shuffle.mode`."""
    from distilxlsr.data import shuffle  # noqa: PLC0415 (imported late: optional machinery)

    return shuffle.make_transform(config.shuffle)


class SharedCNN:
    """Runs the frozen CNN once per batch for teacher and student.

    The student's CNN is a frozen copy of the teacher's, so its output is the teacher's: the
    teacher's CNN output is captured and replayed in the student, which saves a whole CNN pass
    (about 5 of XLS-R's 35 forward GFLOP per audio-second). Without a captured output (outside
    a distillation step) the student's CNN runs as usual.
    """

    def __init__(self, teacher_cnn: nn.Module, student_cnn: nn.Module):
        self.captured: torch.Tensor | None = None
        self.replay: torch.Tensor | None = None
        self._student_forward = student_cnn.forward
        teacher_cnn.register_forward_hook(self._capture)
        student_cnn.forward = self._forward  # an instance attribute: state_dict keys unchanged

    def _capture(self, module, args, output):
        self.captured = output

    def _forward(self, input_values):
        if self.replay is None:
            return self._student_forward(input_values)
        out, self.replay = self.replay, None
        return out

    def arm(self) -> None:
        """After the teacher's pass: hand its CNN output to the student's next pass (a plain
        copy, since inference tensors cannot enter autograd)."""
        self.replay, self.captured = self.captured.clone(), None

    @staticmethod
    def applicable(teacher, student, freeze_cnn: bool) -> bool:
        if not freeze_cnn:
            return False
        t, s = teacher.feature_extractor.state_dict(), student.feature_extractor.state_dict()
        return t.keys() == s.keys() and all(torch.equal(t[k], s[k]) for k in t)


class Distiller:
    """Teacher targets, student predictions and the loss for one batch."""

    def __init__(self, teacher, student, layer_map: LayerMap, config: DistillConfig):
        mode = config.student.representation
        self.layer_map = layer_map
        self.shared_cnn = None
        if config.student.share_cnn and SharedCNN.applicable(
            teacher, student, config.student.freeze_cnn
        ):
            self.shared_cnn = SharedCNN(teacher.feature_extractor, student.feature_extractor)
        self.teacher_tap = LayerTap(teacher, mode)
        self.teacher_tap.drop_layers_after(max(layer_map.targets))  # layers above feed no target
        self.student_tap = LayerTap(student, mode)
        self.student_layers = list(range(1, layer_map.student_layers + 1))
        self.loss = DistillLoss(
            config.loss.kind,
            config.loss.cos_weight,
            config.loss.layer_weights,
            len(self.student_layers),
        )

    def targets(self, batch: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
        with torch.inference_mode():
            reps, mask = self.teacher_tap(
                batch["input_values"], batch["attention_mask"], self.layer_map.targets
            )
        if self.shared_cnn is not None:
            self.shared_cnn.arm()
        # Inference tensors cannot enter autograd: plain copies (a few MB) can.
        return [r.clone() for r in reps], mask.clone()

    def __call__(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        targets, mask = self.targets(batch)
        preds, _ = self.student_tap(
            batch["input_values"], batch["attention_mask"], self.student_layers
        )
        return self.loss(preds, [t.to(p.dtype) for t, p in zip(targets, preds, strict=True)], mask)


def prepare_for_distillation(student, freeze_cnn: bool) -> None:
    """Training mode with every layer every step and no input masking (the model's config is
    changed in memory only: checkpoints and exports carry the pristine one)."""
    student.config.layerdrop = 0.0
    student.config.apply_spec_augment = False
    if freeze_cnn:
        student.freeze_feature_encoder()
    for name, param in student.named_parameters():
        if "masked_spec_embed" in name:
            param.requires_grad_(False)  # unused without masking (and DDP rejects unused params)
    student.train()


def mixed_precision_mode(setting: str) -> str:
    if setting == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return setting


def distill(config: DistillConfig, transform: Transform | None = None) -> Path:
    """Run (or resume) a distillation; returns the run directory."""
    _validate(config)
    # cpu=True when there is no GPU: several CPU processes (torchrun) then join one gloo group.
    accelerator = Accelerator(
        mixed_precision=mixed_precision_mode(config.train.mixed_precision),
        cpu=not torch.cuda.is_available(),
    )
    main = accelerator.is_main_process
    run_dir = Path(config.out)
    say = (lambda msg: tqdm.write(msg)) if main else (lambda msg: None)

    # --- run directory: new, or resume ---
    saved_config = run_dir / "config.yaml"
    if saved_config.is_file():
        check_resume_compatible(
            yaml.safe_load(saved_config.read_text()), config, run_dir, RESUMABLE_CHANGES
        )
    if main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(run_dir)
        save_config(config, saved_config)
    accelerator.wait_for_everyone()
    resume_from = ckpt.latest_checkpoint(run_dir)

    # --- models ---
    teacher = load_teacher(config.teacher)
    layer_map = parse_layer_map(
        config.student.layers, teacher.config.num_hidden_layers, config.student.targets
    )
    student = build_student(teacher, layer_map, seed=config.student.seed)
    pristine_config = copy.deepcopy(student.config)  # what checkpoints and exports carry
    if resume_from is not None:
        ckpt.load_model_state(student, resume_from)
    prepare_for_distillation(student, config.student.freeze_cnn)
    extractor = feature_extractor(config.teacher, teacher.config)
    # Counted before the Distiller drops teacher layers above the last target.
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    if main:
        (run_dir / "student_init").mkdir(exist_ok=True)
        pristine_config.save_pretrained(run_dir / "student_init")
        extractor.save_pretrained(run_dir / "student_init")
        write_student_info(run_dir / "student_init", layer_map, config.teacher, t_params, s_params)
    distiller = Distiller(teacher, student, layer_map, config)
    teacher.to(accelerator.device)

    # --- data ---
    cuts = load_cuts(config.data.train, "train")
    if main:
        stats = scan_cuts(cuts, config.data.min_seconds)
        say(f"train data {config.data.train}: {stats.summary(config.data.min_seconds)}")
        if stats.cuts == 0:
            raise UserError(f"'{config.data.train}' holds no usable cut; check data.min_seconds.")
    if transform is None:
        transform = resolve_transform(config)
    plan = BatchPlan(
        cuts,
        batch_seconds=config.train.batch_seconds,
        max_seconds=config.data.max_seconds,
        min_seconds=config.data.min_seconds,
        num_buckets=config.data.num_buckets,
        seed=config.train.seed,
        sample_rate=config.data.sample_rate,
        world_size=accelerator.num_processes,
        rank=accelerator.process_index,
    )
    dataset = AudioBatches(
        sample_rate=config.data.sample_rate,
        normalize=bool(getattr(extractor, "do_normalize", True)),
        transform=transform,
        transform_p=config.shuffle.p,
        seed=config.train.seed,
    )

    # --- optimizer ---
    params = [p for p in student.parameters() if p.requires_grad]
    # Fused AdamW (GPU and CPU): one kernel for all parameters, and `found_inf` lets the NaN
    # guard skip a step without a host sync.
    optimizer = torch.optim.AdamW(
        params,
        lr=config.train.lr,
        betas=tuple(config.train.betas),
        eps=config.train.eps,
        weight_decay=config.train.weight_decay,
        fused=True,
    )
    inner_optimizer = optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.train))
    state = RunState()
    rank_state = None
    if resume_from is not None:
        training = torch.load(resume_from / "training_state.pt", weights_only=True)
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
        state = RunState(**ckpt.read_trainer_state(resume_from)["run_state"])
        rank_state = ckpt.load_rank_state(resume_from, accelerator.process_index)
        if rank_state is None:
            say("warning: resuming with another number of processes; the data order changes.")
            state.data_position = {"epoch": state.data_position["epoch"] + 1, "skip": 0}
        else:
            state.data_position = rank_state["data_position"]
        say(f"resuming {run_dir} from step {state.step} ({resume_from.name})")
    if config.train.compile:
        student = torch.compile(student)
    student, optimizer = accelerator.prepare(student, optimizer)
    distiller.student_tap.forward_module = student
    plan.set_position(**state.data_position)
    loader = make_loader(
        plan,
        dataset,
        num_workers=config.data.num_workers,
        pin_memory=accelerator.device.type == "cuda",
        seed=config.train.seed,
    )

    # --- the loop ---
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (slow import)

        writer = SummaryWriter(str(run_dir / "logs"))
        say(
            f"teacher {config.teacher}: {layer_map.teacher_layers} layers; student "
            f"{layer_map.spec}: {layer_map.student_layers} layers, {s_params:,} parameters "
            f"({s_params / t_params:.1%} of the teacher's {t_params:,}), "
            f"init {list(layer_map.init)}, targets {list(layer_map.targets)}"
        )
    stop_requested = {"flag": False}

    def request_stop(signum, frame):
        stop_requested["flag"] = True

    previous_handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    if rank_state is not None:
        ckpt.restore_rng(rank_state)
    else:
        torch.manual_seed(config.train.seed * 1000 + accelerator.process_index)
    metrics_file = run_dir / "metrics.jsonl"
    n_layers = layer_map.student_layers
    window_terms = torch.zeros(n_layers, device=accelerator.device)
    window_loss = torch.zeros((), device=accelerator.device)
    window_samples = 0
    window_micro = 0
    window_start = time.perf_counter()
    last_grad_norm = torch.tensor(float("nan"))
    bad_total = torch.tensor(state.bad_steps, device=accelerator.device)
    consecutive_bad = torch.tensor(state.consecutive_bad, device=accelerator.device)
    progress = tqdm(
        total=config.train.max_steps,
        initial=state.step,
        disable=not main,
        desc="distill",
        unit="step",
        dynamic_ncols=True,
    )
    batches = iter(loader)
    try:
        while state.step < config.train.max_steps:
            step_start = time.perf_counter()
            for micro in range(config.train.grad_accum):
                batch = next(batches)
                inputs = {
                    "input_values": batch["input_values"].to(accelerator.device, non_blocking=True),
                    "attention_mask": batch["attention_mask"].to(
                        accelerator.device, non_blocking=True
                    ),
                }
                last_micro = micro == config.train.grad_accum - 1
                # Gradients are all-reduced only on the last micro-batch of a step.
                sync = accelerator.no_sync(student) if not last_micro else contextlib.nullcontext()
                with sync, accelerator.autocast():
                    loss, terms = distiller(inputs)
                accelerator.backward(loss / config.train.grad_accum)
                window_loss += loss.detach()
                window_terms += terms
                window_micro += 1
                window_samples += batch["num_samples"]
                state.data_position = {"epoch": batch["epoch"], "skip": batch["index"] + 1}
            if config.train.grad_clip > 0:
                grad_norm = accelerator.clip_grad_norm_(params, config.train.grad_clip)
            else:
                grad_norm = torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in params if p.grad is not None])
                )
            # NaN guard without a host sync: fused AdamW skips the whole update on the device
            # when `found_inf` is set (the step counter too). After DDP's all-reduce the norm is
            # the same on every rank, so all ranks skip together. Counted on the device, checked
            # when metrics are reduced.
            bad = ~torch.isfinite(grad_norm)
            inner_optimizer.found_inf = bad.float()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bad_total += bad
            consecutive_bad = (consecutive_bad + 1) * bad
            last_grad_norm = grad_norm.detach()
            state.step += 1
            state.train_seconds += time.perf_counter() - step_start
            progress.update(1)
            at_log = (
                state.step % config.train.log_every == 0 or state.step == config.train.max_steps
            )
            if at_log:
                state.bad_steps, state.consecutive_bad = int(bad_total), int(consecutive_bad)
                if state.consecutive_bad >= config.train.max_bad_steps:
                    raise TrainingDiverged(
                        f"training stopped at step {state.step}: {state.consecutive_bad} "
                        "consecutive steps had a non-finite loss or gradient; lower train.lr or "
                        f"check the data (checkpoints in {run_dir / 'checkpoints'})."
                    )
                totals = torch.cat([window_loss[None], window_terms])
                totals = accelerator.reduce(totals, reduction="mean") / max(1, window_micro)
                samples = accelerator.reduce(
                    torch.tensor(float(window_samples), device=accelerator.device), reduction="sum"
                ).item()
                elapsed = time.perf_counter() - window_start
                state.audio_seconds += samples / config.data.sample_rate
                record = {
                    "step": state.step,
                    "loss": totals[0].item(),
                    "layers": {
                        f"s{i + 1}_t{t}": totals[i + 1].item()
                        for i, t in enumerate(layer_map.targets)
                    },
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(last_grad_norm),
                    "audio_s_per_s": samples / config.data.sample_rate / max(elapsed, 1e-9),
                    "audio_hours": state.audio_seconds / 3600,
                    "bad_steps": state.bad_steps,
                    "epoch": state.data_position["epoch"],
                }
                if main:
                    with open(metrics_file, "a") as f:
                        f.write(json.dumps(record) + "\n")
                    writer.add_scalar("loss/total", record["loss"], state.step)
                    for name, value in record["layers"].items():
                        writer.add_scalar(f"loss/{name}", value, state.step)
                    for key in ("lr", "grad_norm", "audio_s_per_s", "bad_steps"):
                        writer.add_scalar(f"train/{key}", record[key], state.step)
                    progress.set_postfix(
                        loss=f"{record['loss']:.4f}", audio_s_per_s=f"{record['audio_s_per_s']:.1f}"
                    )
                window_terms.zero_()
                window_loss.zero_()
                window_samples = window_micro = 0
                window_start = time.perf_counter()
            # A stop request (SIGINT/SIGTERM): one process checks every step; several agree
            # (a collective) at metric time only.
            check_stop = at_log or accelerator.num_processes == 1
            stop = check_stop and any_rank(accelerator, stop_requested["flag"])
            if (
                stop
                or state.step % config.train.checkpoint_every == 0
                or state.step == config.train.max_steps
            ):
                state.bad_steps, state.consecutive_bad = int(bad_total), int(consecutive_bad)
                _save(
                    accelerator,
                    student,
                    pristine_config,
                    optimizer,
                    scheduler,
                    state,
                    config,
                    run_dir,
                )
            if stop:
                say(f"interrupted at step {state.step}; run the same command again to resume.")
                break
    finally:
        progress.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        if writer is not None:
            writer.close()
    accelerator.wait_for_everyone()
    if main and state.step >= config.train.max_steps:
        say(
            f"done: {state.step} steps, {state.audio_seconds / 3600:.3f} h of audio, "
            f"{state.bad_steps} skipped steps; run directory {run_dir}"
        )
    accelerator.end_training()
    return run_dir


def any_rank(accelerator: Accelerator, flag: bool) -> bool:
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor(float(flag), device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def _save(accelerator, student, pristine_config, optimizer, scheduler, state, config, run_dir):
    tmp = ckpt.temporary_dir(run_dir, state.step)
    if accelerator.is_main_process:
        tmp.mkdir(parents=True, exist_ok=True)
        ckpt.save_model(accelerator.unwrap_model(student), pristine_config, tmp)
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            tmp / "training_state.pt",
        )
        save_config(config, tmp / "run_config.yaml")
    accelerator.wait_for_everyone()
    fingerprint = ckpt.parameter_fingerprint(accelerator.unwrap_model(student))
    ckpt.save_rank_state(tmp, accelerator.process_index, state.data_position, fingerprint)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        trainer_state = {"run_state": state.__dict__, "world_size": accelerator.num_processes}
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
        ckpt.commit(tmp, run_dir, state.step, config.train.keep_checkpoints)
    accelerator.wait_for_everyone()
