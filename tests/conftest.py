"""Shared fixtures: tiny random teachers and a tiny generated corpus, built by the tests."""

from __future__ import annotations

import os

# No hub at test time: a hub id must fail at once instead of waiting for a network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from distilxlsr.data.toy import make_toy_corpus  # noqa: E402
from tests.helpers import tiny_model  # noqa: E402


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


@pytest.fixture(scope="session")
def two_language_corpus(tmp_path_factory):
    """ROOT with en and sw train splits of 10 toy utterances each (teacher pretraining)."""
    root = tmp_path_factory.mktemp("two_languages")
    make_toy_corpus(root, "en", "train", num_utterances=10, seed=0)
    make_toy_corpus(root, "sw", "train", num_utterances=10, seed=1)
    return root


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device: skipped, and said so, on a machine without one."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
