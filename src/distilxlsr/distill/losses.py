"""The distillation loss: per mapped layer, L1 + lambda * (-log sigmoid(cos)) over real frames
(DistilHuBERT's form) or MSE; a weighted mean over layers; every layer's term returned."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distilxlsr.errors import UserError

LOSS_KINDS = ("l1_cos", "mse")


def check_kind(kind: str) -> None:
    if kind not in LOSS_KINDS:
        raise UserError(f"loss.kind '{kind}' must be one of {', '.join(LOSS_KINDS)}.")


def layer_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "l1_cos",
    cos_weight: float = 1.0,
) -> torch.Tensor:
    """Loss of one layer. `student`, `teacher`: (B, T, D); `mask`: (B, T), True on real frames."""
    check_kind(kind)
    s = student[mask].float()  # (frames, D): padding frames never enter the loss
    t = teacher[mask].float()
    if kind == "mse":
        return F.mse_loss(s, t)
    l1 = F.l1_loss(s, t)
    cos = F.cosine_similarity(s, t, dim=-1)
    return l1 + cos_weight * -F.logsigmoid(cos).mean()


class DistillLoss:
    """Weighted mean over layers of `layer_loss`; returns the total and each layer's term."""

    def __init__(self, kind: str, cos_weight: float, layer_weights: list[float] | None, n: int):
        check_kind(kind)
        weights = [1.0] * n if layer_weights is None else list(layer_weights)
        if len(weights) != n:
            raise UserError(
                f"loss.layer_weights has {len(weights)} values but {n} layers are distilled."
            )
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise UserError("loss.layer_weights must be non-negative with a positive sum.")
        self.kind = kind
        self.cos_weight = cos_weight
        total = sum(weights)
        self.weights = [w / total for w in weights]

    def __call__(
        self, student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, per-layer terms as one (n,) tensor, detached)."""
        terms = torch.stack(
            [
                layer_loss(s, t, mask, self.kind, self.cos_weight)
                for s, t in zip(student, teacher, strict=True)
            ]
        )
        weights = torch.tensor(self.weights, device=terms.device, dtype=terms.dtype)
        return (terms * weights).sum(), terms.detach()
