"""Teacher pretraining's config, `PretrainConfig` (docs/design.md, "Teacher pretraining").

The model's shape, the stage-1 units and the two stages are the teacher's own sections; the
loader and the optimizer are the sections every training run shares (`distilxlsr.config`, the
config machinery), with defaults for a small teacher. Each value is checked when the config
loads; `PretrainConfig.validate` checks the run as a whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from distilxlsr.config import (
    DECAYS,
    LoaderConfig,
    OptimConfig,
    check_fields,
    closed,
    load_config,
)
from distilxlsr.conventions import SAMPLE_RATE, frames_of
from distilxlsr.errors import UserError

FAMILIES = ("wav2vec2", "hubert")
REQUIRED = {"data"}
"""Keys without a usable default: a run must set them."""


@dataclass
class TeacherShape:
    """The model: XLS-R's architecture with fewer channels, layers and dimensions, or HuBERT's."""

    family: str = closed("wav2vec2", FAMILIES)
    """`wav2vec2`: XLS-R's (pre-LN `Wav2Vec2Model`, layer-norm CNN with bias); `hubert`:
    HuBERT's (post-LN `HubertModel`, group-norm CNN without bias)."""
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
    """Stage-1 targets: k-means on log-mel frames (80 bands, 25 ms windows, 20 ms hop), or on
    one layer of an earlier teacher (HuBERT's next iteration)."""

    source: str = "logmel"
    """`logmel` (HuBERT's first iteration), or a teacher model directory (e.g. the first
    iteration's OUT/model) whose layer `units.layer` is clustered (its next iteration)."""
    layer: int = 0
    """The layer of `units.source` clustered (1..its layers; with a model source only)."""
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
    speed_range: list[float] = field(default_factory=list)
    """Voice perturbation, e.g. [0.85, 1.15]: each utterance is played faster or slower by a
    factor drawn uniformly in this range (pitch, formants and tempo change together, as another
    vocal tract and speaking rate would) while its units stay those of the unperturbed audio,
    stretched to the new length, so the teacher learns targets that do not follow the voice.
    Empty: off. Not with `loader.static_shapes`."""


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
class TeacherLoaderConfig(LoaderConfig):
    """The shared loader settings with defaults for short pretraining crops."""

    max_seconds: float = 6.0
    """Utterances longer than this are randomly cropped to it (seeded per cut and epoch)."""
    num_buckets: int = 10
    """Duration buckets of the sampler."""
    num_workers: int = 1
    """Data-loader worker processes (0 = load in the training process)."""


@dataclass
class TeacherOptimConfig(OptimConfig):
    """The shared optimizer and bookkeeping settings, with a teacher's defaults; each stage
    sets its own steps, peak learning rate and warm-up."""

    weight_decay: float = 0.01
    batch_seconds: float = 60.0
    """Audio seconds per batch per process (after cropping)."""
    seed: int = 0
    """Seed of the initialisation, k-means, sampler, crops, masks and dropout."""
    decay: str = closed("linear", DECAYS)
    """Decay after warm-up within each stage: `linear`, `cosine` or `constant`."""
    min_lr_ratio: float = 0.0
    """Each stage's learning rate decays to `lr * min_lr_ratio`."""
    checkpoint_every: int = 250
    """Write a checkpoint every N steps (and at the end of each stage)."""
    keep_checkpoints: int = 2
    """Keep only the newest K checkpoints."""
    log_every: int = 25
    """Log metrics (metrics.jsonl, progress bar) every N steps."""


@dataclass
class PretrainConfig:
    data: str = ""
    """Training data: a corpus directory ROOT (the `split` of every language under it),
    ROOT/<lang> or a cut manifest."""
    split: str = "train"
    """The split trained on: `train`, or `pretrain` (corpus v2: the teachers' own speakers, so
    that no probe later trains on audio its teacher heard). Never dev or test."""
    languages: list[str] = field(default_factory=list)
    """Languages of `data` to train on, by code (`en`) or tier (`english`, `label`, `heard`);
    empty: every language. A language of the `unheard` tier is refused, and phone labels
    (stage 2) of a `heard` one (see `tier_protocol`)."""
    tier_protocol: bool = True
    """Enforce corpus v2's tiers (above). `false` only for a labelled upper bound that hears
    every language and reads every language's labels; its card says so."""
    out: str = "runs/teacher"
    """Run directory; the model is written to OUT/model. The same `out` again resumes."""
    init_from: str = ""
    """An HF Wav2Vec2Model directory whose weights start a new run instead of a random init
    (e.g. a label-free teacher, to add phone CTC: stage1.steps=0, stage2.steps=N). Its
    shape must match `model`."""
    model: TeacherShape = field(default_factory=TeacherShape)
    units: UnitsConfig = field(default_factory=UnitsConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    loader: TeacherLoaderConfig = field(default_factory=TeacherLoaderConfig)
    train: TeacherOptimConfig = field(default_factory=TeacherOptimConfig)

    def validate(self) -> None:
        """One-line errors for settings a run cannot start with, before anything is loaded or
        written: every value (as when the config loads, for a config built in code), then the
        settings that depend on each other."""
        check_fields(self)
        m, t, ld = self.model, self.train, self.loader
        if not self.data:
            raise UserError(
                "no training data given; set data=DIR (a corpus directory or manifest)."
            )
        if self.split in ("dev", "valid", "test"):
            raise UserError(
                f"split={self.split} is held out for choices and reports; a teacher trains on "
                "split=train or split=pretrain."
            )
        u = self.units
        if u.source == "logmel" and u.layer:
            raise UserError(
                "units.layer applies to a model source; with units.source=logmel leave it 0."
            )
        if u.source != "logmel" and u.layer < 1:
            raise UserError(
                f"units.source is a model ('{u.source}'): set units.layer to the layer clustered "
                "(1 or more; HuBERT clusters a middle-to-upper layer)."
            )
        if m.hidden % m.heads or m.hidden % m.pos_conv_groups:
            raise UserError(
                f"model.hidden={m.hidden} must be divisible by model.heads={m.heads} and "
                f"model.pos_conv_groups={m.pos_conv_groups}."
            )
        if self.stage1.steps < 0 or self.stage2.steps < 0:
            raise UserError("stage1.steps and stage2.steps must not be negative.")
        if self.stage1.steps + self.stage2.steps < 1:
            raise UserError("nothing to train: set stage1.steps and/or stage2.steps above 0.")
        t.check("train")
        for name, stage in (("stage1", self.stage1), ("stage2", self.stage2)):
            if not (stage.lr > 0 and math.isfinite(stage.lr)):
                raise UserError(f"{name}.lr={stage.lr} must be a positive finite number.")
        if t.batch_seconds < ld.max_seconds:
            raise UserError(
                f"train.batch_seconds ({t.batch_seconds:g}) must be at least loader.max_seconds "
                f"({ld.max_seconds:g}), or the longest utterances fit no batch."
            )
        ld.check(t.batch_seconds, "loader", "train")
        if self.units.clusters < 2 or self.units.sample_seconds <= 0:
            raise UserError("units.clusters must be at least 2 and units.sample_seconds positive.")
        speeds = self.stage1.speed_range
        if speeds and (len(speeds) != 2 or not 0.5 <= speeds[0] <= speeds[1] <= 2.0):
            raise UserError(
                f"stage1.speed_range={speeds} must be [low, high] with 0.5 <= low <= high <= 2 "
                "(e.g. [0.85, 1.15]), or [] for none."
            )
        if speeds and ld.static_shapes:
            raise UserError(
                "stage1.speed_range changes each utterance's length, which static shapes fix: "
                "set loader.static_shapes=false or stage1.speed_range=[]."
            )
        shortest = frames_of(int(ld.min_seconds * SAMPLE_RATE))
        for name, stage in (("stage1", self.stage1), ("stage2", self.stage2)):
            if not 0.0 <= stage.mask_prob <= 1.0 or stage.mask_length < 1:
                raise UserError(
                    f"{name}.mask_prob must lie between 0 and 1 and {name}.mask_length be at "
                    "least 1."
                )
            if stage.steps and stage.mask_prob > 0 and stage.mask_length > shortest:
                raise UserError(
                    f"{name}.mask_length={stage.mask_length} frames is longer than the shortest "
                    f"utterance allowed (loader.min_seconds={ld.min_seconds:g} s = {shortest} "
                    "frames); raise loader.min_seconds or lower the mask length."
                )


# Settings a resumed run may change; any other difference would silently make another model.
RESUMABLE_CHANGES = {
    "stage1.steps",
    "stage2.steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.max_bad_steps",
    "train.trackers",
    "loader.num_workers",
}


def load_pretrain_config(path: str | Path | None, overrides: list[str] = ()) -> PretrainConfig:
    """Defaults, then the YAML file's differences, then `key=value` overrides."""
    return load_config(PretrainConfig, path, overrides)
