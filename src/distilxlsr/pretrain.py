"""`distilxlsr pretrain-teacher`: make the small multilingual teacher the toolkit ships.

The model is XLS-R's architecture scaled down: a Hugging Face `Wav2Vec2Model` with a pre-LN
transformer (`do_stable_layer_norm`), a layer-norm CNN with bias and XLS-R's kernels and strides
(400-sample receptive field, 320-sample = 20 ms hop), fewer channels, layers and dimensions.
It is trained on the train split of every language of a corpus directory in two stages:

1. self-supervised, as HuBERT's first iteration: k-means units fitted on log-mel frames of a
   sample of the training audio (at the model's hop, so unit i belongs to model frame i), then
   masked prediction: spans of CNN features are replaced by the mask embedding and a linear head
   on the last layer predicts the units of the masked frames (cross-entropy);
2. optional (`stage2.steps > 0`): multilingual phone CTC through a temporary linear head on the
   last layer, one phone vocabulary for all languages (the union of their `custom["phones"]`),
   the small analogue of XLSR-53 fine-tuned on multilingual eSpeak phonemes.

The product is OUT/model: the base `Wav2Vec2Model` (heads dropped) with a preprocessor config and
a model card (README.md) saying how it was made. OUT also holds config.yaml, units.safetensors,
phones.json, invocations.jsonl, metrics.jsonl and checkpoints/ (each an HF model directory plus
head, optimizer and RNG state); running the same command again resumes from the newest one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
import transformers
import yaml
from accelerate import Accelerator
from lhotse import CutSet
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from distilxlsr.config import check_resume_compatible, load_config, save_config, to_dict
from distilxlsr.data.corpora import find_manifests, load_cuts
from distilxlsr.data.loader import BatchPlan, make_loader, scan_cuts
from distilxlsr.distill import checkpoint as ckpt
from distilxlsr.distill.train import (
    TrainingDiverged,
    any_rank,
    lr_lambda,
    mixed_precision_mode,
)
from distilxlsr.errors import UserError
from distilxlsr.models.presets import xlsr_config
from distilxlsr.models.teacher import count_parameters, load_model
from distilxlsr.pretrain_units import (
    HOP,
    SAMPLE_RATE,
    PretrainBatches,
    UnitLabeler,
    fit_units,
    phone_vocabulary,
)

CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
MAX_MODEL_MB = 25.0


# --------------------------------------------------------------------------- configuration


@dataclass
class TeacherShape:
    """The model: XLS-R's architecture with fewer channels, layers and dimensions."""

    hidden: int = 256
    """Transformer width (also the feature projection's output)."""
    layers: int = 8
    """Transformer layers."""
    heads: int = 4
    """Attention heads (must divide `hidden`)."""
    ffn: int = 768
    """Feed-forward inner size (256/768/8 layers keep model.safetensors under 25 MB)."""
    conv_channels: int = 128
    """Channels of each of the 7 CNN layers (XLS-R: 512)."""
    pos_conv_kernel: int = 128
    """Frames spanned by the convolutional positional embedding (XLS-R: 128 = 2.56 s)."""
    pos_conv_groups: int = 16
    """Groups of the positional convolution (must divide `hidden`)."""
    dropout: float = 0.1
    """Dropout of the transformer (hidden states, attention) and the feature projection."""


@dataclass
class UnitsConfig:
    """Stage-1 targets: k-means on log-mel frames (80 bands, 25 ms windows, 20 ms hop)."""

    clusters: int = 100
    """Number of units (HuBERT's first iteration: 100)."""
    sample_seconds: float = 1800.0
    """Seconds of training audio (utterances drawn at random, seeded) the k-means is fitted on."""
    iterations: int = 40
    """Lloyd iterations after k-means++ initialisation."""


@dataclass
class Stage1Config:
    """Self-supervised masked unit prediction (HuBERT iteration 1)."""

    steps: int = 2000
    """Optimizer steps of stage 1."""
    lr: float = 5e-4
    """Peak AdamW learning rate."""
    warmup_steps: int = 0
    """Linear warm-up steps; 0 means 5% of `steps`."""
    mask_prob: float = 0.65
    """Span-start probability per frame (wav2vec 2.0 / HuBERT semantics: about half the frames
    end up masked with spans of 10)."""
    mask_length: int = 10
    """Frames per masked span."""
    unmasked_weight: float = 0.0
    """Weight of the cross-entropy on unmasked frames (HuBERT: 0, masked frames only)."""


@dataclass
class Stage2Config:
    """Optional multilingual phone CTC fine-tuning; the CTC head is dropped afterwards."""

    steps: int = 0
    """Optimizer steps of stage 2 (0 = stage 1 only)."""
    lr: float = 3e-4
    """Peak AdamW learning rate."""
    warmup_steps: int = 0
    """Linear warm-up steps; 0 means 5% of `steps`."""
    mask_prob: float = 0.05
    """SpecAugment-style time masking (same span semantics as stage 1; 0 = none)."""
    mask_length: int = 10
    """Frames per masked span."""
    freeze_cnn: bool = True
    """Keep the CNN feature encoder frozen (as XLSR-53's phone fine-tuning does)."""


@dataclass
class LoaderConfig:
    """How training batches are cut from the corpus (lhotse dynamic bucketing)."""

    max_seconds: float = 6.0
    """Utterances longer than this are randomly cropped to it (seeded per cut and epoch)."""
    min_seconds: float = 0.5
    """Utterances shorter than this are skipped."""
    num_buckets: int = 10
    """Duration buckets of the sampler."""
    num_workers: int = 1
    """Data-loader worker processes (0 = load in the training process)."""


@dataclass
class OptimConfig:
    """Optimization and bookkeeping shared by both stages."""

    batch_seconds: float = 60.0
    """Audio seconds per batch per process (after cropping)."""
    seed: int = 0
    """Seed of the initialisation, k-means, sampler, crops, masks and dropout."""
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    decay: str = "linear"
    """Decay after warm-up within each stage: `linear`, `cosine` or `constant`."""
    min_lr_ratio: float = 0.0
    """Each stage's learning rate decays to `lr * min_lr_ratio`."""
    grad_clip: float = 10.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    mixed_precision: str = "auto"
    """`auto` (bf16 on GPU, fp32 on CPU), `bf16`, `fp16` or `no`."""
    checkpoint_every: int = 250
    """Write a checkpoint every N steps (and at the end of each stage)."""
    keep_checkpoints: int = 2
    """Keep only the newest K checkpoints."""
    log_every: int = 25
    """Log metrics (metrics.jsonl, progress bar) every N steps."""
    max_bad_steps: int = 20
    """Abort after this many consecutive steps with a non-finite gradient."""


@dataclass
class PretrainConfig:
    data: str = ""
    """Training data: a corpus directory ROOT (the train split of every language under it),
    ROOT/<lang> or a cut manifest."""
    out: str = "runs/teacher"
    """Run directory; the model is written to OUT/model. The same `out` again resumes."""
    init_from: str = ""
    """An HF Wav2Vec2Model directory whose weights start a new run instead of a random init
    (e.g. the shipped teacher, to train it further: stage1.steps=0, more stage2.steps). Its
    shape must match `model`."""
    model: TeacherShape = field(default_factory=TeacherShape)
    units: UnitsConfig = field(default_factory=UnitsConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    train: OptimConfig = field(default_factory=OptimConfig)


# Settings a resumed run may change; any other difference would silently make another model.
RESUMABLE_CHANGES = {
    "stage1.steps",
    "stage2.steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.max_bad_steps",
    "loader.num_workers",
}


def load_pretrain_config(path: str | Path | None, overrides: list[str] = ()) -> PretrainConfig:
    """Defaults, then the YAML file's differences, then `key=value` overrides."""
    return load_config(path, overrides, PretrainConfig)


def frames_of(num_samples: int) -> int:
    """Model frames of a waveform of `num_samples` samples (the CNN's output length)."""
    return max(0, (num_samples - 400) // HOP + 1)


def _validate(config: PretrainConfig) -> None:
    m, t, ld = config.model, config.train, config.loader
    if not config.data:
        raise UserError("no training data given; set data=DIR (a corpus directory or manifest).")
    if m.hidden % m.heads or m.hidden % m.pos_conv_groups:
        raise UserError(
            f"model.hidden={m.hidden} must be divisible by model.heads={m.heads} and "
            f"model.pos_conv_groups={m.pos_conv_groups}."
        )
    if config.stage1.steps < 0 or config.stage2.steps < 0:
        raise UserError("stage1.steps and stage2.steps must not be negative.")
    if config.stage1.steps + config.stage2.steps < 1:
        raise UserError("nothing to train: set stage1.steps and/or stage2.steps above 0.")
    if t.checkpoint_every < 1 or t.log_every < 1 or t.keep_checkpoints < 1:
        raise UserError(
            "train.checkpoint_every, train.log_every and train.keep_checkpoints must be at least 1."
        )
    if config.stage1.lr <= 0 or config.stage2.lr <= 0 or t.batch_seconds <= 0:
        raise UserError("stage1.lr, stage2.lr and train.batch_seconds must be positive.")
    if t.batch_seconds < ld.max_seconds:
        raise UserError(
            f"train.batch_seconds ({t.batch_seconds:g}) must be at least loader.max_seconds "
            f"({ld.max_seconds:g}), or the longest utterances fit no batch."
        )
    if t.decay not in ("linear", "cosine", "constant"):
        raise UserError(f"train.decay '{t.decay}' must be linear, cosine or constant.")
    if t.mixed_precision not in ("auto", "bf16", "fp16", "no"):
        raise UserError(
            f"train.mixed_precision '{t.mixed_precision}' must be auto, bf16, fp16 or no."
        )
    if config.units.clusters < 2 or config.units.sample_seconds <= 0:
        raise UserError("units.clusters must be at least 2 and units.sample_seconds positive.")
    shortest = frames_of(int(ld.min_seconds * SAMPLE_RATE))
    for name, stage in (("stage1", config.stage1), ("stage2", config.stage2)):
        if not 0.0 <= stage.mask_prob <= 1.0 or stage.mask_length < 1:
            raise UserError(
                f"{name}.mask_prob must lie between 0 and 1 and {name}.mask_length be at least 1."
            )
        if stage.steps and stage.mask_prob > 0 and stage.mask_length > shortest:
            raise UserError(
                f"{name}.mask_length={stage.mask_length} frames is longer than the shortest "
                f"utterance allowed (loader.min_seconds={ld.min_seconds:g} s = {shortest} frames); "
                "raise loader.min_seconds or lower the mask length."
            )


# --------------------------------------------------------------------------- the model


def teacher_config(shape: TeacherShape) -> transformers.Wav2Vec2Config:
    """An XLS-R-shaped config (pre-LN, layer-norm CNN with bias, 20 ms frames), scaled down."""
    config = xlsr_config(shape.hidden, shape.layers, shape.ffn, shape.heads)
    config.update(
        {
            "conv_dim": [shape.conv_channels] * len(CONV_KERNEL),
            "conv_kernel": list(CONV_KERNEL),
            "conv_stride": list(CONV_STRIDE),
            "num_conv_pos_embeddings": shape.pos_conv_kernel,
            "num_conv_pos_embedding_groups": shape.pos_conv_groups,
            "hidden_dropout": shape.dropout,
            "attention_dropout": shape.dropout,
            "activation_dropout": 0.0,
            "feat_proj_dropout": shape.dropout,
            "final_dropout": shape.dropout,
            "layerdrop": 0.0,
        }
    )
    return config


def build_encoder(shape: TeacherShape, seed: int = 0) -> transformers.Wav2Vec2Model:
    """A freshly initialised teacher (seeded)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transformers.Wav2Vec2Model(teacher_config(shape))


def frame_lengths(
    encoder: transformers.Wav2Vec2Model, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Real (not padding) frames per utterance."""
    return encoder._get_feat_extract_output_lengths(attention_mask.sum(-1)).long()


def span_mask(
    lengths: torch.Tensor, frames: int, prob: float, length: int, seed: list[int]
) -> torch.Tensor:
    """Masked frames (B, frames), spans of `length` as wav2vec 2.0 / HuBERT draw them (HF's
    `_compute_mask_indices`, at least one span per utterance), never on padding; seeded."""
    real = torch.arange(frames)[None, :] < lengths.cpu()[:, None]
    if prob <= 0 or length > frames:
        return torch.zeros_like(real)
    saved = np.random.get_state()  # HF draws from numpy's global RNG: seed it for this call only
    try:
        np.random.seed([int(s) for s in seed])
        mask = _compute_mask_indices(
            (len(lengths), frames), prob, length, attention_mask=real.long(), min_masks=1
        )
    finally:
        np.random.set_state(saved)
    return torch.from_numpy(mask) & real


class UnitPrediction(nn.Module):
    """Stage 1: predict the k-means unit of every masked frame from the last layer."""

    def __init__(self, encoder: transformers.Wav2Vec2Model, num_units: int, unmasked_weight=0.0):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_units)
        self.unmasked_weight = unmasked_weight

    def forward(self, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        hidden = self.encoder(
            batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask
        ).last_hidden_state
        units = batch["units"]
        frames = hidden.shape[1]  # the units have the same count (± 1 at most): trim or pad
        units = F.pad(units[:, :frames], (0, max(0, frames - units.shape[1])), value=-100)
        valid = units >= 0
        masked = mask & valid
        logits = self.head(hidden[masked]).float()  # only the frames that are scored
        loss = F.cross_entropy(logits, units[masked])
        accuracy = (logits.argmax(-1) == units[masked]).float().mean()
        if self.unmasked_weight > 0:
            unmasked = ~mask & valid
            if unmasked.any():
                rest = F.cross_entropy(self.head(hidden[unmasked]).float(), units[unmasked])
                loss = loss + self.unmasked_weight * rest
        return loss, {"loss": loss.detach(), "accuracy": accuracy.detach()}


class PhoneCTC(nn.Module):
    """Stage 2: multilingual phone CTC through a temporary linear head on the last layer."""

    def __init__(self, encoder: transformers.Wav2Vec2Model, vocab_size: int):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(encoder.config.final_dropout)
        self.head = nn.Linear(encoder.config.hidden_size, vocab_size)

    def forward(self, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        hidden = self.encoder(
            batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask
        ).last_hidden_state
        log_probs = self.head(self.dropout(hidden)).float().log_softmax(-1)
        lengths = frame_lengths(self.encoder, batch["attention_mask"])
        keep = batch["label_lengths"] > 0  # crops without a phone inside carry no CTC target
        if not bool(keep.any()):
            loss = log_probs.sum() * 0.0
        else:
            loss = F.ctc_loss(
                log_probs[keep].transpose(0, 1),
                batch["labels"],
                lengths[keep],
                batch["label_lengths"][keep],
                blank=0,
                reduction="mean",
                zero_infinity=True,
            )
        return loss, {"loss": loss.detach()}


# --------------------------------------------------------------------------- the loop


@dataclass
class PretrainState:
    step: int = 0
    """Global optimizer step (stage 2 continues stage 1's count)."""
    bad_steps: int = 0
    consecutive_bad: int = 0
    audio_seconds: float = 0.0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    data_position: dict = field(default_factory=lambda: {"epoch": 0, "skip": 0})
    final: dict = field(default_factory=dict)
    """The last logged metrics of each stage."""


@dataclass
class _Resume:
    directory: Path
    stage: int
    rank_state: dict | None


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def _default_command_line() -> str | None:
    name = Path(sys.argv[0]).name if sys.argv else ""
    if name in ("distilxlsr", "__main__.py"):
        return shlex.join(["distilxlsr", *sys.argv[1:]])
    return None


def describe_machine(accelerator: Accelerator) -> str:
    """The hardware a run used, in words."""
    if accelerator.device.type == "cuda":
        return f"{accelerator.num_processes} x {torch.cuda.get_device_name(accelerator.device)}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{accelerator.num_processes} process(es) on CPU: {model}, {cores} cores, "
        f"{torch.get_num_threads()} torch threads"
    )


class _Pretrainer:
    """One run: shared state and the two stages' loop."""

    def __init__(self, config: PretrainConfig, command_line: str | None):
        self.config = config
        self.started = time.perf_counter()
        self.accelerator = Accelerator(
            mixed_precision=mixed_precision_mode(config.train.mixed_precision),
            cpu=not torch.cuda.is_available(),
        )
        self.main = self.accelerator.is_main_process
        self.rank = self.accelerator.process_index
        self.run_dir = Path(config.out)
        self.say = (lambda msg: tqdm.write(msg)) if self.main else (lambda msg: None)
        self.command_line = command_line
        self.state = PretrainState()
        self.resume: _Resume | None = None

    # --- set-up ---

    def initialise_from(self, encoder: transformers.Wav2Vec2Model, source: str) -> None:
        start = load_model(source)
        theirs, ours = start.state_dict(), encoder.state_dict()
        mismatched = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape]
        if mismatched or theirs.keys() != ours.keys():
            raise UserError(
                f"init_from '{source}' does not have the shape of model.* (first difference: "
                f"{(mismatched or sorted(set(theirs) ^ set(ours)))[0]}); set model.* to match it."
            )
        encoder.load_state_dict(theirs)
        self.say(f"initialised from {source}")

    def open_run_dir(self) -> None:
        config, run_dir = self.config, self.run_dir
        saved = run_dir / "config.yaml"
        saved_values = yaml.safe_load(saved.read_text()) if saved.is_file() else None
        if saved_values is not None:
            check_resume_compatible(saved_values, config, run_dir, RESUMABLE_CHANGES)
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is not None:
            training = torch.load(latest / "training_state.pt", weights_only=True)
            self.state = PretrainState(**ckpt.read_trainer_state(latest)["run_state"])
            self.resume = _Resume(
                latest, training["stage"], ckpt.load_rank_state(latest, self.rank)
            )
            saved_steps = (saved_values or to_dict(config))["stage1"]["steps"]
            if self.resume.stage == 2 and config.stage1.steps != saved_steps:
                raise UserError(
                    f"run directory '{run_dir}' is in stage 2 (step {self.state.step}), which began "
                    f"after stage1.steps={saved_steps}; keep that value to resume, or use a new "
                    "out=DIR."
                )
            if self.resume.stage == 1 and config.stage1.steps < self.state.step:
                raise UserError(
                    f"run directory '{run_dir}' already trained {self.state.step} steps of stage 1; "
                    f"stage1.steps={config.stage1.steps} is fewer: raise it, or use a new out=DIR."
                )
        if self.main:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(run_dir)
            save_config(config, saved)
            invocation = {
                "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "command": self.command_line,
                "start_step": self.state.step,
            }
            with open(run_dir / "invocations.jsonl", "a") as f:
                f.write(json.dumps(invocation) + "\n")
        self.accelerator.wait_for_everyone()

    def shared_file(self, path: Path, make, read):
        """Made once by the main process (and kept for resumes), read by every process."""
        if self.main and not path.is_file():
            make(path)
        self.accelerator.wait_for_everyone()
        return read(path)

    def units(self, cuts: CutSet) -> torch.Tensor:
        def make(path: Path) -> None:
            u = self.config.units
            centroids, info = fit_units(
                cuts,
                u.clusters,
                u.sample_seconds,
                u.iterations,
                self.config.train.seed,
                self.config.loader.min_seconds,
                self.stats.hours * 3600,
                self.say,
            )
            metadata = {"info": json.dumps(info)}
            _atomic_write(path, lambda p: save_file({"centroids": centroids}, p, metadata))

        return self.shared_file(
            self.run_dir / "units.safetensors", make, lambda p: load_file(p)["centroids"]
        )

    def phones(self, cuts: CutSet) -> list[str]:
        def make(path: Path) -> None:
            vocab = phone_vocabulary(cuts)
            if len(vocab) < 2:
                raise UserError(
                    f"'{self.config.data}' has no phone transcripts (supervision "
                    'custom["phones"]), which stage 2 needs; set stage2.steps=0 or use a corpus '
                    "written by `distilxlsr synth` / `distilxlsr prepare`."
                )
            _atomic_write(path, lambda p: p.write_text(json.dumps(vocab, ensure_ascii=False)))
            self.say(f"phone vocabulary: {len(vocab) - 1} phones + blank")

        return self.shared_file(
            self.run_dir / "phones.json", make, lambda p: json.loads(p.read_text())
        )

    # --- one stage ---

    def run_stage(self, number: int, task: nn.Module, dataset: PretrainBatches) -> bool:
        """Train stage `number` up to its last step; False if interrupted."""
        config, accelerator, state = self.config, self.accelerator, self.state
        stage = config.stage1 if number == 1 else config.stage2
        first = 0 if number == 1 else config.stage1.steps
        last = first + stage.steps
        device = accelerator.device
        resume = self.resume if self.resume and self.resume.stage == number else None
        if resume is not None:
            task.head.load_state_dict(load_file(resume.directory / "head.safetensors"))
        task.to(device).train()
        params = [p for p in task.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=stage.lr,
            betas=tuple(config.train.betas),
            eps=config.train.eps,
            weight_decay=config.train.weight_decay,
            fused=device.type == "cuda",
        )
        schedule = SimpleNamespace(
            warmup_steps=stage.warmup_steps,
            max_steps=stage.steps,
            min_lr_ratio=config.train.min_lr_ratio,
            decay=config.train.decay,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(schedule))
        if resume is not None:
            training = torch.load(resume.directory / "training_state.pt", weights_only=True)
            optimizer.load_state_dict(training["optimizer"])
            scheduler.load_state_dict(training["scheduler"])
            if resume.rank_state is not None:
                ckpt.restore_rng(resume.rank_state)
                state.data_position = resume.rank_state["data_position"]
            self.say(f"resuming {self.run_dir} at step {state.step} (stage {number})")
        wrapped, optimizer = accelerator.prepare(task, optimizer)
        self.plan.set_position(**state.data_position)
        loader = make_loader(
            self.plan,
            dataset,
            num_workers=config.loader.num_workers,
            pin_memory=device.type == "cuda",
            seed=config.train.seed + number,
        )
        stop = {"flag": False}

        def request_stop(signum, frame):
            stop["flag"] = True

        handlers = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        window: dict[str, torch.Tensor] = {}
        window_steps, window_samples, window_start = 0, 0, time.perf_counter()
        grad_norm = torch.tensor(float("nan"))
        name = "masked unit prediction" if number == 1 else "phone CTC"
        progress = tqdm(
            total=stage.steps,
            initial=state.step - first,
            disable=not self.main,
            desc=f"stage {number} ({name})",
            unit="step",
            dynamic_ncols=True,
        )
        batches = iter(loader)
        interrupted = False
        try:
            while state.step < last:
                step_start = time.perf_counter()
                batch = next(batches)
                inputs = {
                    k: v.to(device, non_blocking=True)
                    for k, v in batch.items()
                    if isinstance(v, torch.Tensor)
                }
                lengths = frame_lengths(task.encoder, batch["attention_mask"])
                frames = frames_of(batch["input_values"].shape[1])
                seed = [config.train.seed, number, state.step, self.rank]
                mask = span_mask(lengths, frames, stage.mask_prob, stage.mask_length, seed)
                with accelerator.autocast():
                    loss, stats = wrapped(inputs, mask.to(device))
                accelerator.backward(loss)
                if config.train.grad_clip > 0:
                    grad_norm = accelerator.clip_grad_norm_(params, config.train.grad_clip)
                else:
                    grads = [p.grad.norm() for p in params if p.grad is not None]
                    grad_norm = torch.linalg.vector_norm(torch.stack(grads))
                if bool(torch.isfinite(grad_norm).item()):
                    optimizer.step()
                    scheduler.step()
                    state.consecutive_bad = 0
                else:
                    state.bad_steps += 1
                    state.consecutive_bad += 1
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.data_position = {"epoch": batch["epoch"], "skip": batch["index"] + 1}
                state.train_seconds += time.perf_counter() - step_start
                for key, value in stats.items():
                    window[key] = window.get(key, 0.0) + value
                window_steps += 1
                window_samples += batch["num_samples"]
                progress.update(1)
                if state.consecutive_bad >= config.train.max_bad_steps:
                    raise TrainingDiverged(
                        f"training stopped at step {state.step}: {state.consecutive_bad} "
                        "consecutive steps had a non-finite gradient; lower the stage's lr "
                        f"(checkpoints in {self.run_dir / 'checkpoints'})."
                    )
                if state.step % config.train.log_every == 0 or state.step == last:
                    record = self.log(number, window, window_steps, window_samples, window_start)
                    record |= {"lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm)}
                    if self.main:
                        with open(self.run_dir / "metrics.jsonl", "a") as f:
                            f.write(json.dumps(record) + "\n")
                        shown = {k: f"{record[k]:.3f}" for k in ("loss", "accuracy") if k in record}
                        progress.set_postfix(
                            **shown, audio_s_per_s=f"{record['audio_s_per_s']:.1f}"
                        )
                    window, window_steps, window_samples = {}, 0, 0
                    window_start = time.perf_counter()
                interrupted = any_rank(accelerator, stop["flag"])
                if (
                    state.step % config.train.checkpoint_every == 0
                    or state.step == last
                    or interrupted
                ):
                    self.save(number, task, optimizer, scheduler)
                if interrupted:
                    self.say(f"interrupted at step {state.step}; run the same command to resume.")
                    break
        finally:
            progress.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return not interrupted

    def log(self, stage: int, window: dict, steps: int, samples: int, start: float) -> dict:
        accelerator = self.accelerator
        keys = sorted(window)
        values = torch.stack([torch.as_tensor(window[k], device=accelerator.device) for k in keys])
        values = accelerator.reduce(values, reduction="mean") / max(1, steps)
        total = accelerator.reduce(
            torch.tensor(float(samples), device=accelerator.device), reduction="sum"
        ).item()
        seconds = total / SAMPLE_RATE
        self.state.audio_seconds += seconds
        record = {"step": self.state.step, "stage": stage}
        record |= {k: float(v) for k, v in zip(keys, values.tolist(), strict=True)}
        elapsed = max(time.perf_counter() - start, 1e-9)
        record |= {
            "audio_s_per_s": seconds / elapsed,
            "seconds_per_step": elapsed / max(1, steps),
            "audio_hours": self.state.audio_seconds / 3600,
            "bad_steps": self.state.bad_steps,
            "epoch": self.state.data_position["epoch"],
        }
        self.state.final[f"stage{stage}"] = {
            k: record[k] for k in ("step", *keys, "audio_s_per_s") if k in record
        }
        return record

    def save(self, stage: int, task: nn.Module, optimizer, scheduler) -> None:
        accelerator, state, run_dir = self.accelerator, self.state, self.run_dir
        state.wall_seconds = self.wall_before + time.perf_counter() - self.started
        tmp = ckpt.temporary_dir(run_dir, state.step)
        if self.main:
            tmp.mkdir(parents=True, exist_ok=True)
            ckpt.save_model(task.encoder, self.pristine, tmp)
            head = {k: v.detach().contiguous().cpu() for k, v in task.head.state_dict().items()}
            save_file(head, tmp / "head.safetensors")
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "stage": stage,
                },
                tmp / "training_state.pt",
            )
            save_config(self.config, tmp / "run_config.yaml")
        accelerator.wait_for_everyone()
        ckpt.save_rank_state(tmp, self.rank, state.data_position)
        accelerator.wait_for_everyone()
        if self.main:
            trainer_state = {"run_state": asdict(state), "world_size": accelerator.num_processes}
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
            ckpt.commit(tmp, run_dir, state.step, self.config.train.keep_checkpoints)
        accelerator.wait_for_everyone()

    # --- the whole run ---

    def run(self) -> Path:
        config, accelerator = self.config, self.accelerator
        cuts = load_cuts(config.data, "train")  # a missing or empty data path fails here
        self.stats = stats = scan_cuts(cuts, config.loader.min_seconds)
        if stats.cuts == 0:
            raise UserError(
                f"'{config.data}' holds no utterance of at least loader.min_seconds="
                f"{config.loader.min_seconds:g} s; check data= and loader.min_seconds."
            )
        languages = sorted({p.parent.name for p in find_manifests(config.data, "train")})
        self.data_info = {
            "path": config.data,
            "languages": languages,
            "summary": stats.summary(config.loader.min_seconds),
        }
        self.open_run_dir()
        self.wall_before = self.state.wall_seconds
        self.say(f"train data {config.data} ({', '.join(languages)}): {self.data_info['summary']}")

        encoder = build_encoder(config.model, config.train.seed)
        self.pristine = copy.deepcopy(encoder.config)  # what checkpoints and the export carry
        # Masks are always passed explicitly; the model must not draw its own on top.
        encoder.config.mask_time_prob = 0.0
        encoder.config.mask_feature_prob = 0.0
        if self.resume is not None:
            ckpt.load_model_state(encoder, self.resume.directory)
        elif config.init_from:
            self.initialise_from(encoder, config.init_from)
        self.say(
            f"teacher: {config.model.layers} layers, hidden {config.model.hidden}, "
            f"{count_parameters(encoder):,} parameters"
        )
        vocab = self.phones(cuts) if config.stage2.steps > 0 else None  # checked before k-means
        centroids = self.units(cuts) if config.stage1.steps > self.state.step else None
        self.plan = BatchPlan(
            cuts,
            batch_seconds=config.train.batch_seconds,
            max_seconds=config.loader.max_seconds,
            min_seconds=config.loader.min_seconds,
            num_buckets=config.loader.num_buckets,
            seed=config.train.seed,
            sample_rate=SAMPLE_RATE,
            world_size=accelerator.num_processes,
            rank=self.rank,
        )
        if self.resume is not None and self.resume.rank_state is None:
            self.say("warning: resuming with another number of processes; the data order changes.")
            self.state.data_position = {"epoch": self.state.data_position["epoch"] + 1, "skip": 0}
        common = {"sample_rate": SAMPLE_RATE, "normalize": True, "seed": config.train.seed}
        finished = True
        if self.state.step < config.stage1.steps:
            if self.resume is None or self.resume.stage != 1:
                torch.manual_seed(config.train.seed * 1000 + 100 + self.rank)
            task = UnitPrediction(encoder, len(centroids), config.stage1.unmasked_weight)
            dataset = PretrainBatches(labeler=UnitLabeler(centroids), **common)
            finished = self.run_stage(1, task, dataset)
        total = config.stage1.steps + config.stage2.steps
        if finished and self.state.step < total:
            if self.resume is None or self.resume.stage != 2:
                torch.manual_seed(config.train.seed * 1000 + 200 + self.rank)
            if config.stage2.freeze_cnn:
                encoder.freeze_feature_encoder()
            encoder.masked_spec_embed.requires_grad_(False)  # fine-tuning keeps the mask vector
            task = PhoneCTC(encoder, len(vocab))
            index = {p: i for i, p in enumerate(vocab)}
            dataset = PretrainBatches(phone_index=index, **common)
            finished = self.run_stage(2, task, dataset)
        accelerator.wait_for_everyone()
        model_dir = self.run_dir / "model"
        if finished and self.main:
            self.state.wall_seconds = self.wall_before + time.perf_counter() - self.started
            export_model(encoder, self.pristine, model_dir)
            write_model_card(self, model_dir, encoder, vocab)
            size = (model_dir / "model.safetensors").stat().st_size / 1e6
            self.say(
                f"done: {self.state.step} steps; teacher written to {model_dir} ({size:.1f} MB)"
            )
            if size > MAX_MODEL_MB:
                self.say(
                    f"warning: model.safetensors is {size:.1f} MB, more than the {MAX_MODEL_MB:g} "
                    "MB a shipped teacher may take; lower model.hidden, model.ffn or model.layers."
                )
        accelerator.wait_for_everyone()
        accelerator.end_training()
        return model_dir


def pretrain_teacher(config: PretrainConfig, command_line: str | None = None) -> Path:
    """Train (or resume) the teacher; returns OUT/model, a plain HF `Wav2Vec2Model` directory.

    `command_line` is recorded in the model card (default: this process's `distilxlsr ...`
    arguments when run from the command line)."""
    _validate(config)
    trainer = _Pretrainer(config, command_line or _default_command_line())
    return trainer.run()


# --------------------------------------------------------------------------- export and card


def export_model(encoder: transformers.Wav2Vec2Model, pristine, model_dir: Path) -> None:
    """The base model (no heads) as an HF directory with its feature-extractor settings."""
    model_dir.mkdir(parents=True, exist_ok=True)
    trained_config = encoder.config
    encoder.config = pristine
    try:
        encoder.save_pretrained(model_dir, safe_serialization=True)
    finally:
        encoder.config = trained_config
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(model_dir)
    for path in model_dir.iterdir():  # readable by everyone: the directory may be shipped
        path.chmod(0o644)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def write_model_card(trainer: _Pretrainer, model_dir: Path, encoder, vocab) -> None:
    config, state = trainer.config, trainer.state
    m = config.model
    units_file = trainer.run_dir / "units.safetensors"
    units_info = {}
    if units_file.is_file():
        from safetensors import safe_open  # noqa: PLC0415

        with safe_open(units_file, "pt") as f:
            units_info = json.loads((f.metadata() or {}).get("info", "{}"))
    invocations = []
    log = trainer.run_dir / "invocations.jsonl"
    if log.is_file():
        invocations = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    commands = [
        f"{i['command'] or '(called from Python: distilxlsr.pretrain.pretrain_teacher)'}"
        f"   # {i['time']}, from step {i['start_step']}"
        for i in invocations
    ]
    s1, s2 = config.stage1, config.stage2
    stage_lines = []
    if s1.steps:
        final = state.final.get("stage1", {})
        stage_lines.append(
            f"- **Stage 1, self-supervised (ran, {s1.steps} steps):** HuBERT's first iteration. "
            f"{config.units.clusters} k-means units on 80-band log-mel frames at the model's 20 ms "
            f"hop ({units_info.get('sample_seconds', '?')} s of training audio, "
            f"{units_info.get('frames', '?')} frames; inertia {units_info.get('inertia_first', 0):.3f}"
            f" -> {units_info.get('inertia_last', 0):.3f}); masked prediction with spans of "
            f"{s1.mask_length} frames (span-start probability {s1.mask_prob}), a linear head on "
            f"the last layer, cross-entropy on masked frames (unmasked weight {s1.unmasked_weight}); "
            f"AdamW, peak lr {s1.lr:g}. Final loss {final.get('loss', float('nan')):.3f}, masked-"
            f"frame unit accuracy {final.get('accuracy', float('nan')):.3f}."
        )
    else:
        stage_lines.append("- **Stage 1, self-supervised:** not run (stage1.steps=0).")
    if s2.steps:
        final = state.final.get("stage2", {})
        stage_lines.append(
            f"- **Stage 2, multilingual phone CTC (ran, {s2.steps} steps):** one vocabulary of "
            f"{len(vocab) - 1} phones (the union over all languages) + blank, a temporary linear "
            f"head on the last layer (dropped: not in this directory), CNN "
            f"{'frozen' if s2.freeze_cnn else 'trained'}, time masking {s2.mask_prob}; AdamW, "
            f"peak lr {s2.lr:g}. Final CTC loss {final.get('loss', float('nan')):.3f}."
        )
    else:
        stage_lines.append("- **Stage 2, multilingual phone CTC:** not run (stage2.steps=0).")
    size = (model_dir / "model.safetensors").stat().st_size / 1e6
    n_params = count_parameters(encoder)
    card = f"""---
library_name: transformers
pipeline_tag: feature-extraction
tags: [speech, wav2vec2, xls-r, multilingual, distilxlsr]
---

# Tiny multilingual wav2vec 2.0 teacher (distilxlsr)

A small pre-LN wav2vec 2.0 model with XLS-R's architecture, scaled down, made by
`distilxlsr pretrain-teacher` as the teacher of distilxlsr's offline pipeline. It is a plain
Hugging Face `Wav2Vec2Model` ({n_params:,} parameters, {size:.1f} MB): {m.layers} transformer
layers, hidden {m.hidden}, {m.heads} heads, FFN {m.ffn}, `do_stable_layer_norm=True`,
layer-norm CNN with bias, {m.conv_channels} channels, kernels {list(CONV_KERNEL)}, strides
{list(CONV_STRIDE)} (20 ms frames, 16 kHz input, normalised per utterance).

```python
from transformers import AutoFeatureExtractor, AutoModel

model = AutoModel.from_pretrained("{model_dir.name}")
extractor = AutoFeatureExtractor.from_pretrained("{model_dir.name}")
```

## How it was made

Command line(s) (a resumed run lists every invocation):

```
{chr(10).join(commands) or "(unknown)"}
```

{chr(10).join(stage_lines)}
- **Data:** `{trainer.data_info["path"]}`, train split of {len(trainer.data_info["languages"])}
  language(s): {", ".join(trainer.data_info["languages"])}; {trainer.data_info["summary"]}.
  Batches of {config.train.batch_seconds:g} s of audio per process, crops of at most
  {config.loader.max_seconds:g} s; {state.audio_seconds / 3600:.2f} h of audio seen in all.
- **Seed:** {config.train.seed}. **Steps:** {state.step} ({s1.steps} + {s2.steps}).
- **Wall time:** {_duration(state.wall_seconds)} (training steps {_duration(state.train_seconds)}).
- **Machine:** {describe_machine(trainer.accelerator)}; torch {torch.__version__},
  transformers {transformers.__version__}.
- **Skipped steps (non-finite gradient):** {state.bad_steps}.

Scores are not measured by this command: run `distilxlsr evaluate --model DIR --data CORPUS`.
It was trained on the data named above only; it is a small model for pipeline tests and demos,
not a substitute for XLS-R.

## Config

```yaml
{yaml.safe_dump(to_dict(config), sort_keys=False).rstrip()}
```
"""
    (model_dir / "README.md").write_text(card)
