"""Optimizer, learning-rate schedule and precision: one definition for every training run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Schedule:
    """Peak learning rate and its course over one run (or one pretraining stage)."""

    steps: int
    lr: float
    warmup_steps: int = 0
    """Linear warm-up steps; 0 means 5% of `steps`."""
    decay: str = "linear"
    min_lr_ratio: float = 0.0
    hold_steps: int = 0
    """With decay `tristage`: steps held at the peak after the warm-up, before the decay."""
    hold_from: int | None = None
    """Resumed with more steps but the rate kept: from this step on the factor stays what the
    schedule of `planned_steps` gave here."""
    planned_steps: int = 0


def lr_factor(schedule: Schedule) -> Callable[[int], float]:
    """Linear warm-up, then linear or cosine decay to `min_lr_ratio` (a factor on `lr`), or
    none (`constant`), or `tristage` (wav2vec 2.0's fine-tuning): `hold_steps` at the peak, then
    an exponential decay to `min_lr_ratio` at the last step."""
    if schedule.hold_from is not None:
        planned = lr_factor(replace(schedule, steps=schedule.planned_steps, hold_from=None))
        held = planned(schedule.hold_from)
        return lambda step: held if step >= schedule.hold_from else planned(step)
    warmup = schedule.warmup_steps or max(1, int(0.05 * schedule.steps))
    total = max(schedule.steps, warmup + 1)
    floor = schedule.min_lr_ratio
    decay = schedule.decay

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if decay == "constant":
            return 1.0
        if decay == "tristage":
            held = step - warmup - schedule.hold_steps
            if held < 0:
                return 1.0
            span = max(1, total - warmup - schedule.hold_steps)
            return math.exp(math.log(floor) * min(1.0, held / span))
        progress = min(1.0, (step - warmup) / (total - warmup))
        if decay == "cosine":
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return floor + (1 - floor) * (1 - progress)

    return factor


def make_optimizer(params, schedule: Schedule, optim) -> tuple[torch.optim.AdamW, object]:
    """Fused AdamW (GPU and CPU: one kernel for all parameters, and its `found_inf` lets the NaN
    guard skip a step without a host sync) and its LambdaLR schedule."""
    optimizer = torch.optim.AdamW(
        params,
        lr=schedule.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        fused=True,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule))


def mixed_precision_mode(setting: str) -> str:
    """accelerate's mixed-precision name for a config's `mixed_precision` setting."""
    if setting == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return setting
