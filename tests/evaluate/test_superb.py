"""The SUPERB-style downstream: frozen layers' weighted sum into a small Transformer with CTC."""

from __future__ import annotations

import math

import pytest
import torch

from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.evaluate.harness import evaluate
from distilxlsr.evaluate.superb import SuperbConfig, SuperbDownstream, train_superb

SMALL = SuperbConfig(steps=30, batch_utterances=2, width=16, heads=2, ffn=32, warmup_steps=5)


def _feats(seed=0, lengths=(7, 12, 9, 15)):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, n, 8, generator=generator) for n in lengths]


LABELS = [[1, 2], [3, 1, 2], [2, 3], [1, 1, 3]]


@pytest.fixture(scope="module")
def eval_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    make_toy_corpus(root, "aa", "train", num_utterances=6, seed=1)
    make_toy_corpus(root, "aa", "test", num_utterances=3, seed=2)
    return root


def test_padding_changes_no_utterance_s_output():
    model = SuperbDownstream(3, 8, 4, SMALL).eval()
    short, long = _feats()[0], _feats()[3]
    with torch.no_grad():
        alone, n = model([short])
        together, lengths = model([short, long])
    assert lengths.tolist() == [7, 15] and n.tolist() == [7]
    torch.testing.assert_close(together[0, :7], alone[0])


def test_training_lowers_the_loss_and_is_a_function_of_the_seed():
    feats = _feats()
    first, info = train_superb(feats, LABELS, 4, SMALL)
    again, _ = train_superb(feats, LABELS, 4, SMALL)
    other, _ = train_superb(feats, LABELS, 4, SuperbConfig(**{**SMALL.__dict__, "seed": 1}))
    assert not first.training and info["steps"] == 30 and math.isfinite(info["final_loss"])
    a, b, c = (m.state_dict() for m in (first, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    longer, longer_info = train_superb(
        feats, LABELS, 4, SuperbConfig(**{**SMALL.__dict__, "steps": 200})
    )
    assert (
        longer_info["final_loss"]
        < 0.5
        * train_superb(feats, LABELS, 4, SuperbConfig(**{**SMALL.__dict__, "steps": 2}))[1][
            "final_loss"
        ]
    )
    weights = longer.layer_weights()
    assert weights.shape == (3,) and float(weights.sum()) == pytest.approx(1.0)


def test_superb_mode_evaluates_networks_and_the_log_mel_floor(tmp_path, eval_corpus, teacher_dir):
    config = SuperbConfig(steps=3, batch_utterances=2, width=16, heads=2, ffn=32)
    results = evaluate(
        [f"t={teacher_dir}", "logmel"],
        str(eval_corpus),
        str(tmp_path / "sb"),
        mode="superb",
        langs=["aa"],
        superb=config,
    )
    assert results["mode"] == "superb" and results["config"]["width"] == 16
    for model in results["models"]:
        assert math.isfinite(model["per"]["aa"])
        assert len(model["details"]["aa"]["layer_weights"][0]) >= 1
