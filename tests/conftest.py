"""Shared fixtures: tiny random teachers and a tiny generated corpus, built by the tests."""

from __future__ import annotations

import os

# No hub at test time: a hub id must fail at once instead of waiting for a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from distilxlsr.data.toy import make_toy_corpus  # noqa: E402
from distilxlsr.models.presets import tiny_config  # noqa: E402
from distilxlsr.models.teacher import model_class  # noqa: E402


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


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """A pre-LN (XLS-R-like) tiny teacher saved as an HF directory."""
    path = tmp_path_factory.mktemp("teacher_preln")
    tiny_model("wav2vec2", pre_ln=True).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def postln_teacher_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher_postln")
    tiny_model("wav2vec2", pre_ln=False).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory):
    """ROOT with en/cuts_train.jsonl.gz: 12 generated utterances of 1-3 s with alignments."""
    root = tmp_path_factory.mktemp("toy")
    make_toy_corpus(root, "en", "train", num_utterances=12, seed=0)
    return root


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


@pytest.fixture(scope="session")
def two_language_corpus(tmp_path_factory):
    """ROOT with en and sw train splits of 10 toy utterances each (teacher pretraining)."""
    root = tmp_path_factory.mktemp("two_languages")
    make_toy_corpus(root, "en", "train", num_utterances=10, seed=0)
    make_toy_corpus(root, "sw", "train", num_utterances=10, seed=1)
    return root


def distill_args(teacher, corpus, out, *extra: str) -> list[str]:
    """`distilxlsr distill` arguments for a tiny run on a toy corpus's English."""
    return [
        "distill",
        "--config",
        "tiny-cpu",
        f"teacher={teacher}",
        f"data.train={corpus / 'en'}",
        f"out={out}",
        "data.num_workers=0",
        "data.max_seconds=2.0",
        "train.batch_seconds=6.0",
        *extra,
    ]
