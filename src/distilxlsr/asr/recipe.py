"""The fine-tuning job's config, `FinetuneConfig` (docs/design.md, "Downstream ASR").

fairseq's wav2vec 2.0 fine-tuning, scaled to minutes of audio: a new CTC head over the last
layer, first trained alone on the frozen model (`frozen`), then with the transformer (`full`,
its own learning rate, the head keeping a higher one) under a tri-stage schedule; the CNN stays
frozen throughout, layerdrop is off, and SpecAugment's masks are sized to the model's width.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from distilxlsr.asr.vocab import TARGETS
from distilxlsr.config import LoaderConfig, OptimConfig, check_fields, closed, load_config
from distilxlsr.errors import UserError

REQUIRED = {"model", "data"}
"""Keys without a usable default: a run must set them."""


@dataclass
class FrozenStage:
    """Stage 1: the new CTC head learns alone; the pretrained model is frozen."""

    steps: int = 150
    """Optimizer steps with the model frozen (0: the body trains from the first step)."""
    lr: float = 3e-3
    """Peak learning rate of the head (linear warm-up over `warmup_steps`, then constant)."""
    warmup_steps: int = 10
    """Linear warm-up steps of the head."""


@dataclass
class FullStage:
    """Stage 2: the transformer (and feature projection) learns too; the CNN stays frozen."""

    steps: int = 350
    """Optimizer steps of the whole model after stage 1."""
    lr: float = 1e-4
    """Peak learning rate of the pretrained weights."""
    head_lr: float = 1e-3
    """Peak learning rate of the CTC head (higher: it started from nothing, fairseq's heads
    learn at the model's rate for thousands more steps than these)."""
    warmup_fraction: float = 0.1
    """Tri-stage schedule: the share of `steps` warming up linearly ..."""
    hold_fraction: float = 0.4
    """... the share held at the peak, the rest decaying exponentially to `final_lr_scale`."""
    final_lr_scale: float = 0.05
    """The learning rate at the last step, as a factor of the peak."""


@dataclass
class MaskingConfig:
    """SpecAugment of the fine-tuning (Hugging Face's masks over time steps and channels)."""

    time_prob: float = 0.3
    """Share of frames that start a masked time span (wav2vec 2.0's base_10m: 0.65; a few
    minutes of short utterances take less: docs/results.md, "Downstream ASR")."""
    time_length: int = 10
    """Frames per masked time span."""
    feature_prob: float = 0.1
    """Share of channels that start a masked channel span."""
    feature_length: int = 64
    """Channels per masked channel span for a 1024-wide model; scaled to the model's width."""


@dataclass
class DecodingConfig:
    """Decoding with a language model, set up when the run ends (asr.decoding)."""

    lm: bool = True
    """Estimate an n-gram of the training transcripts' tokens (characters with the word
    delimiter, or phones), write it as OUT/model/lm.arpa and choose the LM weight and word
    bonus on `eval_split`."""
    order: int = 6
    """The n-gram's order (asr.lm.CHAR_ORDER)."""
    beam_size: int = 50
    """Hypotheses the beam search keeps per frame."""
    lm_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 1.5])
    """LM weights tried on `eval_split` (the lowest CER, or PER, is kept)."""
    word_bonuses: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0, 2.0])
    """Word bonuses tried with each weight (character targets only)."""


@dataclass
class FinetuneLoaderConfig(LoaderConfig):
    """Whole utterances: a transcript belongs to its whole recording, so nothing is cropped;
    an utterance longer than `max_seconds` is skipped (counted and reported)."""

    max_seconds: float = 30.0
    """Longer utterances are skipped (their transcript would not fit a crop)."""
    num_buckets: int = 5
    """Duration buckets of the sampler."""
    num_workers: int = 0
    """Data-loader worker processes (0 = load in the training process)."""


@dataclass
class FinetuneOptimConfig(OptimConfig):
    """The shared optimizer settings with a fine-tuning's defaults."""

    batch_seconds: float = 40.0
    """Audio seconds per batch per process (about 8 utterances of the synthetic corpus)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    log_every: int = 25
    trackers: list[str] = field(default_factory=list)
    """Experiment trackers under RUN/logs (`tensorboard`, `wandb`, `mlflow`); none by default."""


@dataclass
class FinetuneRecipe:
    """How a recogniser is trained and decoded, whatever the model and language: the settings
    `evaluate --mode finetune` takes as its `finetune` section."""

    targets: str = closed("chars", TARGETS)
    """`chars`: the characters of the normalised transcripts (supervision text) and a word
    delimiter; `phones`: the supervisions' phones (custom['phones'])."""
    frozen: FrozenStage = field(default_factory=FrozenStage)
    full: FullStage = field(default_factory=FullStage)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    loader: FinetuneLoaderConfig = field(default_factory=FinetuneLoaderConfig)
    train: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)

    def validate_recipe(self) -> None:
        """One-line errors for recipe settings a run cannot start with."""
        if self.frozen.steps < 0 or self.full.steps < 0:
            raise UserError("frozen.steps and full.steps must not be negative.")
        if self.frozen.steps + self.full.steps < 1:
            raise UserError("nothing to train: set frozen.steps and/or full.steps above 0.")
        for name, lr in (
            ("frozen.lr", self.frozen.lr),
            ("full.lr", self.full.lr),
            ("full.head_lr", self.full.head_lr),
        ):
            if not (lr > 0 and math.isfinite(lr)):
                raise UserError(f"{name}={lr} must be a positive finite number.")
        f = self.full
        if not (
            f.warmup_fraction >= 0
            and f.hold_fraction >= 0
            and f.warmup_fraction + f.hold_fraction <= 1
        ):
            raise UserError(
                "full.warmup_fraction and full.hold_fraction must be at least 0 and sum to at "
                "most 1."
            )
        if not 0 < f.final_lr_scale <= 1:
            raise UserError("full.final_lr_scale must lie in (0, 1].")
        m = self.masking
        if not (0 <= m.time_prob <= 1 and 0 <= m.feature_prob <= 1):
            raise UserError("masking.time_prob and masking.feature_prob must lie between 0 and 1.")
        if m.time_length < 1 or m.feature_length < 1:
            raise UserError("masking.time_length and masking.feature_length must be at least 1.")
        d = self.decoding
        if d.order < 1 or d.beam_size < 1:
            raise UserError("decoding.order and decoding.beam_size must be at least 1.")
        if d.lm and not (d.lm_weights and d.word_bonuses):
            raise UserError("decoding.lm_weights and decoding.word_bonuses need a value each.")
        self.train.check("train")
        if self.train.batch_seconds < self.loader.max_seconds:
            raise UserError(
                f"train.batch_seconds ({self.train.batch_seconds:g}) must be at least "
                f"loader.max_seconds ({self.loader.max_seconds:g}), or the longest utterances "
                "fit no batch."
            )
        if self.loader.static_shapes:
            raise UserError(
                "loader.static_shapes crops utterances, which would cut transcripts; fine-tuning "
                "reads whole utterances (leave it false)."
            )


@dataclass
class FinetuneConfig(FinetuneRecipe):
    """One fine-tuning run: the recipe, with the model, the language's data and the run
    directory."""

    model: str = ""
    """The pretrained model: anything `evaluate` accepts (an HF directory, a hub id, a run
    directory's newest checkpoint, an exported student, `shipped`)."""
    data: str = ""
    """One language's corpus directory (its cuts_<split>.jsonl.gz with transcripts)."""
    split: str = "train"
    """The split trained on (never dev or test)."""
    eval_split: str = "dev"
    """The split the card's CER/WER are measured on after training ('' for none; a missing
    split is skipped with a note)."""
    out: str = "runs/recogniser"
    """Run directory; the recogniser is written to OUT/model. The same `out` again resumes."""

    @classmethod
    def of(cls, recipe: FinetuneRecipe, **run) -> FinetuneConfig:
        """A run of `recipe` (deep-copied) with the run's own settings (model, data, out, ...)."""
        return cls(
            **{f.name: copy.deepcopy(getattr(recipe, f.name)) for f in fields(recipe)}, **run
        )

    def validate(self) -> None:
        """One-line errors for settings a run cannot start with (every value as when the config
        loads, then the settings that depend on each other)."""
        check_fields(self)
        if not self.model:
            raise UserError("no model given; set model=PATH (a model directory, run or hub id).")
        if not self.data:
            raise UserError("no training data given; set data=DIR (one language's corpus).")
        if self.split in ("dev", "valid", "test"):
            raise UserError(
                f"split={self.split} is held out for choices and reports; fine-tune on train."
            )
        self.validate_recipe()


RESUMABLE_CHANGES = {
    "full.steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.max_bad_steps",
    "train.trackers",
    "loader.num_workers",
    "eval_split",
    "decoding.lm",
    "decoding.order",
    "decoding.beam_size",
    "decoding.lm_weights",
    "decoding.word_bonuses",
}
"""Settings a resumed run may change; any other difference would silently make another model."""


def load_finetune_config(path: str | Path | None, overrides: list[str] = ()) -> FinetuneConfig:
    """Defaults, then the YAML file's differences, then `key=value` overrides."""
    return load_config(FinetuneConfig, path, overrides)
