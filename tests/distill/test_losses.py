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
