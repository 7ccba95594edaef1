"""Builders the tests share (imported as `tests.helpers`; fixtures live in conftest.py): tiny
random models, the `distill` and `pretrain-teacher` arguments of a tiny run, audio files, a
fairseq-style corpus, and the experiment scripts loaded as modules."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from distilxlsr.models.loading import model_class
from distilxlsr.models.presets import tiny_config


def tiny_model(model_type: str = "wav2vec2", pre_ln: bool = True, layers: int = 4, seed: int = 0):
    """A tiny random model whose every LayerNorm (and GroupNorm) has its own random weight and
    bias: with transformers' 1/0 initialisation all norms compute the same function, and a test
    could not tell one LayerNorm from another (say LN_l from LN_{l+1})."""
    torch.manual_seed(seed)
    model = model_class(model_type)(tiny_config(model_type, pre_ln=pre_ln, layers=layers))
    randomize_norms(model, seed)
    return model.eval()


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        for module in model.modules():
            if (
                isinstance(module, torch.nn.LayerNorm | torch.nn.GroupNorm)
                and module.weight is not None
            ):
                shape = module.weight.shape
                module.weight.copy_(1.0 + 0.3 * torch.randn(shape, generator=generator))
                module.bias.copy_(0.3 * torch.randn(shape, generator=generator))


TINY_TEACHER = [
    "model.hidden=32",
    "model.layers=2",
    "model.heads=2",
    "model.ffn=64",
    "model.conv_channels=16",
    "model.pos_conv_kernel=16",
    "model.pos_conv_groups=4",
    "units.clusters=8",
    "units.sample_seconds=20",
    "units.iterations=10",
]
"""`pretrain-teacher` overrides for a teacher of hidden 32, 2 layers, and 8 k-means units."""


def distill_args(teacher, corpus, out, *extra: str, train: Path | None = None) -> list[str]:
    """`distilxlsr distill` arguments for a tiny run on a toy corpus's English (or on `train`,
    e.g. its shards)."""
    return [
        "distill",
        "--config",
        "tiny-cpu",
        f"teacher={teacher}",
        f"data.train={train or corpus / 'en'}",
        f"out={out}",
        "data.num_workers=0",
        "data.max_seconds=2.0",
        "train.batch_seconds=6.0",
        *extra,
    ]


def write_audio(path: Path, seconds: float, sr: int = 16000, channels: int = 1, **kwargs) -> Path:
    rng = np.random.default_rng(len(path.name))
    n = int(round(seconds * sr))
    audio = 0.1 * rng.standard_normal((n, channels)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio if channels > 1 else audio[:, 0], sr, **kwargs)
    return path


def make_fairseq(directory: Path) -> Path:
    audio = directory.parent / "wavs"
    for name in ("a", "b", "c", "d"):
        write_audio(audio / "spkA" / f"{name}.wav", 0.8)
    directory.mkdir(parents=True)
    (directory / "train.tsv").write_text(
        f"{audio}\nspkA/a.wav\t12800\nspkA/b.wav\t12800\nspkA/c.wav\t12800\n"
    )
    (directory / "train.phn").write_text("h a | m b a |\nm a m a |\nh a q |\n")
    (directory / "train.wrd").write_text("ha mba\nmama\nhaq\n")
    (directory / "valid.tsv").write_text(f"{audio}\nspkA/d.wav\t12800\n")
    (directory / "valid.phn").write_text("b a b a |\n")
    (directory / "dict.phn.txt").write_text("a 10\nh 3\nm 5\nb 4\n")
    return directory


EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@contextlib.contextmanager
def script_module(path: Path) -> Iterator:
    """A script (experiments/, tools/) imported as a module under its file's name, registered in
    `sys.modules` while in use (dataclasses resolve their annotations through it)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]
