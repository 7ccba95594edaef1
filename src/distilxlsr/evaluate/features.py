"""What the evaluation measures: models (HF directories, hub ids, run directories) and two floors
(`logmel` features and `untrained:M`), each turned into per-layer frame features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distilxlsr.conventions import FRAME_HOP
from distilxlsr.data.loader import collate
from distilxlsr.data.logmel import LogMel
from distilxlsr.errors import UserError
from distilxlsr.export import student_info
from distilxlsr.models.layers import LayerTap
from distilxlsr.models.loading import (
    count_parameters,
    feature_extractor,
    group_norm_cnn,
    load_config,
    load_model,
    model_class,
)
from distilxlsr.models.student import StudentInfo
from distilxlsr.shipped import SHIPPED, shipped_teacher
from distilxlsr.training.rundir import RunDir


@dataclass(frozen=True)
class ModelSpec:
    """One `--model` argument, resolved."""

    name: str
    kind: str  # "hf", "logmel" or "untrained"
    path: str = ""


def resolve_model(arg: str) -> ModelSpec:
    """`logmel`, `untrained:M`, `shipped` (the package's teacher), a run directory (its newest
    checkpoint), an HF dir or hub id."""
    if arg == "logmel":
        return ModelSpec("logmel", "logmel")
    if arg == SHIPPED:
        return ModelSpec(SHIPPED, "hf", str(shipped_teacher()))
    if arg.startswith("untrained:"):
        inner = resolve_model(arg.split(":", 1)[1])
        if inner.kind != "hf":
            raise UserError(f"'{arg}': untrained: needs a model, e.g. untrained:TEACHER_DIR.")
        return ModelSpec(f"untrained:{inner.name}", "untrained", inner.path)
    path = Path(arg)
    if path.is_dir() and RunDir.holds_run(path):
        latest = RunDir(path).latest_checkpoint()
        if latest is None:
            raise UserError(f"run directory '{arg}' has no complete checkpoint to evaluate yet.")
        return ModelSpec(path.name or arg, "hf", str(latest))
    name = path.name if path.is_dir() else arg
    return ModelSpec(name, "hf", arg)


def total_stride(config) -> int:
    return int(np.prod(config.conv_stride))


def layer_map_of(path: str) -> StudentInfo | None:
    """The layer map a student was built with (recorded beside it or in its run)."""
    return student_info(Path(path))


class ModelFeatures:
    """Frozen per-layer features of one model: (layers, frames, dim) per utterance.

    For wav2vec 2.0-family models the layers are the representations of docs/design.md ("Layer representations") for layers
    0..L (0 = the transformer input); `logmel` has one layer of 80 log-mel bands.
    """

    def __init__(
        self, spec: ModelSpec, frame_stride: int = FRAME_HOP, seed: int = 0, device: str = "cpu"
    ):
        self.spec = spec
        self.device = torch.device(device)
        if spec.kind == "logmel":
            self.model = None
            self.logmel = LogMel(stride=frame_stride)
            self.num_layers, self.dim, self.parameters = 1, self.logmel.n_mels, 0
            return
        config = load_config(spec.path)
        if spec.kind == "untrained":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.model = model_class(config.model_type)(config)
        else:
            self.model = load_model(spec.path)
        self.model.eval().requires_grad_(False).to(self.device)
        self.normalize = bool(getattr(feature_extractor(spec.path, config), "do_normalize", True))
        self.tap = LayerTap(self.model)
        self.num_layers = self.model.config.num_hidden_layers + 1
        self.dim = self.model.config.hidden_size
        self.parameters = count_parameters(self.model)
        self.frame_stride = total_stride(self.model.config)

    @property
    def padding_sensitive(self) -> bool:
        """Whether the model's features of an utterance depend on what it is batched with (a
        group-norm CNN)."""
        return self.model is not None and group_norm_cnn(self.model.config)

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        if self.model is None:
            return [self.logmel(w) for w in waves]
        if self.padding_sensitive and len(waves) > 1:
            return [f for w in waves for f in self([w])]
        batch = collate(waves, self.normalize)
        x = batch["input_values"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        reps, frames = self.tap(x, mask, list(range(self.num_layers)))
        stacked = torch.stack(reps, dim=1)  # (B, layers, T, D)
        lengths = frames.sum(-1).tolist()
        # float16 halves the cache; probes upcast per batch.
        return [stacked[i, :, :n].to(torch.float16).cpu() for i, n in enumerate(lengths)]


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two (frames, dim) feature matrices."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    return float(cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))
