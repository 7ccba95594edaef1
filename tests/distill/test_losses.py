import math

import pytest
import torch

from distilxlsr.distill.losses import DistillLoss, layer_loss
from distilxlsr.errors import UserError


def test_l1_cos_by_hand():
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    t = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])  # the third frame is padding
    l1 = (1 + 1 + 0 + 1) / 4
    cos = [0.0, 1.0]
    expected = l1 + 0.5 * sum(-math.log(1 / (1 + math.exp(-c))) for c in cos) / 2
    got = layer_loss(s, t, mask, "l1_cos", cos_weight=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_padding_never_matters():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    s2 = s.clone()
    s2[0, 3:] = 1e6
    assert layer_loss(s, t, mask).item() == layer_loss(s2, t, mask).item()


def test_mse():
    s = torch.tensor([[[1.0, 3.0]]])
    t = torch.zeros(1, 1, 2)
    assert layer_loss(s, t, torch.ones(1, 1, dtype=torch.bool), "mse").item() == 5.0


def test_weighted_mean_over_layers_and_terms():
    ones = torch.ones(1, 1, 2)
    zeros = torch.zeros(1, 1, 2)
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss = DistillLoss("mse", 1.0, [1.0, 3.0], 2)
    total, terms = loss([ones, 2 * ones], [zeros, zeros], mask)
    assert terms.tolist() == [1.0, 4.0]
    assert total.item() == pytest.approx((1 * 1 + 3 * 4) / 4)


def test_bad_weights():
    with pytest.raises(UserError, match="3 values but 2 layers"):
        DistillLoss("l1_cos", 1.0, [1, 1, 1], 2)
    with pytest.raises(UserError, match="loss.kind"):
        DistillLoss("kl", 1.0, None, 2)


def test_default_weights_are_the_plain_mean_and_cos_weight_reaches_every_layer():
    torch.manual_seed(0)
    student = [torch.randn(2, 4, 3) for _ in range(3)]
    teacher = [torch.randn(2, 4, 3) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    total, terms = DistillLoss("l1_cos", 0.25, None, 3)(student, teacher, mask)
    by_hand = [
        layer_loss(s, t, mask, "l1_cos", 0.25) for s, t in zip(student, teacher, strict=True)
    ]
    assert terms.tolist() == pytest.approx([x.item() for x in by_hand], rel=1e-6)
    assert total.item() == pytest.approx(sum(x.item() for x in by_hand) / 3, rel=1e-6)
    assert not terms.requires_grad


def test_layer_counts_must_match():
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss = DistillLoss("mse", 1.0, None, 2)
    with pytest.raises(ValueError):
        loss([torch.zeros(1, 2, 3)] * 3, [torch.zeros(1, 2, 3)] * 2, mask)


@pytest.mark.parametrize("weights", [[0.0, 1.0], [0.5, 0.5], [0.0, 0.25]])
def test_zero_and_small_weights_are_accepted(weights):
    loss = DistillLoss("mse", 1.0, weights, 2)
    assert loss.weights == pytest.approx([w / sum(weights) for w in weights])


@pytest.mark.parametrize("weights", [[-1.0, 3.0], [0.0, 0.0]])
def test_negative_or_all_zero_weights_are_one_error(weights):
    with pytest.raises(UserError) as err:
        DistillLoss("mse", 1.0, weights, 2)
    assert str(err.value) == "loss.layer_weights must be non-negative with a positive sum."


def test_unknown_kind_names_the_choices():
    with pytest.raises(UserError) as err:
        DistillLoss("kl", 1.0, None, 2)
    assert str(err.value) == "loss.kind 'kl' must be one of l1_cos, mse."


def test_layer_loss_defaults_to_l1_cos_and_refuses_unknown_kinds():
    torch.manual_seed(1)
    s, t = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    mask = torch.ones(1, 3, dtype=torch.bool)
    assert layer_loss(s, t, mask).item() == layer_loss(s, t, mask, "l1_cos", 1.0).item()
    with pytest.raises(UserError, match="loss.kind 'l1' must be one of"):
        layer_loss(s, t, mask, "l1")
