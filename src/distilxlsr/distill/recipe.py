"""The distillation's config (`DistillConfig`): the teacher, the data, the student, phoneme
shuffling, the loss and the training loop's settings. Loaded by the config machinery
(`distilxlsr.config`): the defaults, a YAML file (a path or a shipped config's name) holding only
the differences, then `key=value` overrides; each value's range and closed choices (shuffle
modes, layer map syntax, loss kinds, decays, precisions) are checked when it loads, and
`DistillConfig.validate` checks the run as a whole before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from distilxlsr.config import (
    LoaderConfig,
    OptimConfig,
    check_fields,
    checked,
    closed,
    load_config,
)
from distilxlsr.conventions import SAMPLE_RATE, SILENCE_LABELS
from distilxlsr.data.shuffle import MODES as SHUFFLE_MODES
from distilxlsr.distill.losses import LOSS_KINDS
from distilxlsr.errors import UserError
from distilxlsr.models.layers import (
    REPRESENTATIONS,
    check_layer_map_syntax,
    check_targets_syntax,
)

EXTENDS = ("replan", "hold")
"""What a resumed run whose max_steps was raised does with its schedule (`train.extend`)."""
REQUIRED = {"teacher", "data.train"}
"""Keys without a usable default: a run must set them."""


@dataclass
class DataConfig(LoaderConfig):
    """Distillation data: the loader settings plus where the cuts are."""

    train: str = ""
    """Training cuts: a lhotse cut manifest (.jsonl.gz), a corpus directory ROOT (the train split
    of every language under it) or ROOT/<lang> (one language)."""
    sample_rate: int = SAMPLE_RATE
    """Sampling rate the models expect; audio at another rate is resampled."""


@dataclass
class StudentConfig:
    layers: str = checked("jump:2", check_layer_map_syntax)
    """Layer map: `jump:K`, `first:N`, `random:N` or `list:i,j,...` (teacher layers, 1-based)."""
    targets: str = checked("auto", check_targets_syntax)
    """Teacher layers the student layers are distilled towards: `auto` (for `jump:K` and `list:`
    the copied layers; for `first:N`/`random:N` every (L/N)-th layer, so the last student layer
    predicts the last teacher layer) or an explicit `list:i,j,...`."""
    representation: str = closed("auto", REPRESENTATIONS)
    """Layer representation: `auto` (pre-LN models: the next layer's first LayerNorm applied to
    the layer output, the final LayerNorm for the last layer; post-LN models: the layer output)
    or `residual` (the raw layer output, also for pre-LN models)."""
    freeze_cnn: bool = True
    """Keep the CNN feature encoder frozen (it is copied from the teacher)."""
    share_cnn: bool = True
    """With a frozen CNN, run it once per batch for teacher and student (identical weights, so
    identical output; saves a CNN pass)."""
    seed: int = 0
    """Seed for freshly initialised layers (`random:N`)."""
    init: str = ""
    """A student directory written by `distilxlsr init-student` to start from (instead of
    building one from the teacher); its teacher layers and layer map must match this run's."""


@dataclass
class ShuffleConfig:
    mode: str = closed("utterance", SHUFFLE_MODES)
    """Phoneme shuffling: `utterance` (the method: all phones of an utterance permuted; needs
    phone alignments), `word`, `segment` (no alignment needed) or `none`."""
    p: float = 1.0
    """Probability that an utterance is shuffled."""
    silence_labels: list[str] = field(default_factory=lambda: list(SILENCE_LABELS))
    """Alignment labels that count as silence (they keep their slots); gaps are silence too."""


@dataclass
class LossConfig:
    kind: str = closed("l1_cos", LOSS_KINDS)
    """`l1_cos` (L1 + lambda * -log sigmoid(cos), DistilHuBERT's form) or `mse`."""
    cos_weight: float = 1.0
    """lambda, the weight of the cosine term in `l1_cos`."""
    layer_weights: list[float] | None = None
    """One weight per distilled layer (default: all 1); the loss is the weighted mean."""


@dataclass
class TrainConfig(OptimConfig):
    """Distillation: the loop's settings plus the run's length, learning rate and compilation."""

    max_steps: int = 200_000
    """Optimizer steps (each of `grad_accum` micro-batches per process)."""
    lr: float = 2e-4
    """Peak learning rate of AdamW."""
    warmup_steps: int = 0
    """Linear warm-up steps; 0 means 5% of `max_steps`."""
    compile: bool = False
    """torch.compile the student's and the teacher's layer taps, one graph each (GPU runs)."""
    extend: str = closed("replan", EXTENDS)
    """When a resumed run's max_steps is raised: `replan` (the schedule is laid over the new
    length: the rate rises again from where the old decay had brought it) or `hold` (keep the
    rate reached at the resumed step for the added steps)."""


TEACHER_DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass
class DistillConfig:
    teacher: str = ""
    """The teacher: a local Hugging Face model directory, a hub id, or `shipped` (the small
    label-free teacher inside the package)."""
    teacher_dtype: str = closed("auto", TEACHER_DTYPES)
    """The frozen teacher's weights and compute: `auto` (bf16 when the run computes in bf16 on
    a GPU, as `train.mixed_precision=auto` does there; fp32 otherwise), `fp32`, `bf16` (half
    the memory: XLS-R 2B's 8.6 GB become 4.3) or `fp16` (guarded: a non-finite teacher output
    stops the run with one error, as XLS-R can overflow in fp16). The student keeps fp32
    weights (its compute follows `train.mixed_precision`); a cast teacher's CNN is not shared."""

    def resolved_teacher_dtype(self) -> str:
        """`teacher_dtype` with `auto` decided for this machine."""
        if self.teacher_dtype != "auto":
            return self.teacher_dtype
        from distilxlsr.training.optim import mixed_precision_mode

        bf16 = mixed_precision_mode(self.train.mixed_precision) == "bf16"
        return "bf16" if bf16 and torch.cuda.is_available() else "fp32"

    out: str = "runs/distill"
    """Run directory; running again with the same `out` resumes from its newest checkpoint."""
    data: DataConfig = field(default_factory=DataConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    shuffle: ShuffleConfig = field(default_factory=ShuffleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """One-line errors for settings a run cannot start with, before anything is loaded or
        written: every value (as when the config loads, for a config built in code), then the
        settings that depend on each other."""
        check_fields(self)
        if not self.teacher:
            raise UserError("no teacher given; set teacher=DIR, a hub id, or teacher=shipped.")
        self.train.check("train")
        self.data.check(self.train.batch_seconds)


def load_distill_config(
    path: str | Path | None, overrides: list[str] = (), values: dict | None = None
) -> DistillConfig:
    """A distillation config: the defaults, the YAML file `path` (a file or a shipped config's
    name), the already typed `values`, then `key=value` overrides (`distilxlsr.load_config`)."""
    return load_config(DistillConfig, path, overrides, values)
