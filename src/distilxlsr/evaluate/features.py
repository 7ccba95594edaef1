"""What the evaluation measures: models (HF directories, hub ids, run directories) and two floors
(`logmel` features and `untrained:M`), each turned into per-layer frame features."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

from distilxlsr.data.loader import collate
from distilxlsr.distill import checkpoint as ckpt
from distilxlsr.errors import UserError
from distilxlsr.export import student_info
from distilxlsr.models.layers import LayerTap
from distilxlsr.models.teacher import (
    count_parameters,
    feature_extractor,
    load_config,
    load_model,
    model_class,
)


@dataclass(frozen=True)
class ModelSpec:
    """One `--model` argument, resolved."""

    name: str
    kind: str  # "hf", "logmel" or "untrained"
    path: str = ""


def resolve_model(arg: str) -> ModelSpec:
    """`logmel`, `untrained:M`, a run directory (its newest checkpoint), an HF dir or hub id."""
    if arg == "logmel":
        return ModelSpec("logmel", "logmel")
    if arg.startswith("untrained:"):
        inner = resolve_model(arg.split(":", 1)[1])
        if inner.kind != "hf":
            raise UserError(f"'{arg}': untrained: needs a model, e.g. untrained:TEACHER_DIR.")
        return ModelSpec(f"untrained:{inner.name}", "untrained", inner.path)
    path = Path(arg)
    if path.is_dir() and (path / "checkpoints").is_dir():
        latest = ckpt.latest_checkpoint(path)
        if latest is None:
            raise UserError(f"run directory '{arg}' has no complete checkpoint to evaluate yet.")
        return ModelSpec(path.name or arg, "hf", str(latest))
    name = path.name if path.is_dir() else arg
    return ModelSpec(name, "hf", arg)


def total_stride(config) -> int:
    return int(np.prod(config.conv_stride))


def layer_map_of(path: str) -> dict | None:
    """The layer map a student was built with (recorded beside it or in its run)."""
    run_dir = Path(path).parent.parent if Path(path).parent.name == "checkpoints" else None
    return student_info(Path(path), run_dir)


class ModelFeatures:
    """Frozen per-layer features of one model: (layers, frames, dim) per utterance.

    For wav2vec 2.0-family models the layers are the representations of DESIGN.md for layers
    0..L (0 = the transformer input); `logmel` has one layer of 80 log-mel bands.
    """

    def __init__(
        self, spec: ModelSpec, frame_stride: int = 320, seed: int = 0, device: str = "cpu"
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

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        if self.model is None:
            return [self.logmel(w) for w in waves]
        batch = collate(waves, self.normalize)
        x = batch["input_values"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        reps, frames = self.tap(x, mask, list(range(self.num_layers)))
        stacked = torch.stack(reps, dim=1)  # (B, layers, T, D)
        lengths = frames.sum(-1).tolist()
        # float16 halves the cache; probes upcast per batch.
        return [stacked[i, :, :n].to(torch.float16).cpu() for i, n in enumerate(lengths)]


class LogMel:
    """80-band log-mel features with per-utterance mean/variance normalisation, at a given hop."""

    def __init__(
        self, sample_rate: int = 16000, n_mels: int = 80, stride: int = 320, win: int = 400
    ):
        self.n_mels, self.stride, self.win = n_mels, stride, win
        self.n_fft = 2 ** math.ceil(math.log2(win))
        self.window = torch.hann_window(win)
        self.filters = mel_filterbank(sample_rate, self.n_fft, n_mels)

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
        if len(x) < self.win:
            x = torch.nn.functional.pad(x, (0, self.win - len(x)))
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.stride,
            win_length=self.win,
            window=self.window,
            center=False,
            return_complex=True,
        )
        mel = self.filters @ spec.abs().square()
        feats = torch.log(mel + 1e-6).T  # (frames, n_mels)
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-5)
        return feats[None].to(torch.float16)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular filters equally spaced on the mel scale (HTK formula), (n_mels, n_fft//2+1)."""

    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sample_rate / 2), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    filters = np.zeros((n_mels, len(bins)))
    for i in range(n_mels):
        lo, centre, hi = edges[i : i + 3]
        rising = (bins - lo) / (centre - lo)
        falling = (hi - bins) / (hi - centre)
        filters[i] = np.clip(np.minimum(rising, falling), 0.0, None)
    return torch.tensor(filters, dtype=torch.float32)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear centred kernel alignment of two (frames, dim) feature matrices."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    return float(cross / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)))


def hf_ctc_class(model_type: str) -> type:
    """The *ForCTC class of a model family (for fine-tuning)."""
    base = model_class(model_type).__name__
    return getattr(transformers, base.replace("Model", "ForCTC"))
