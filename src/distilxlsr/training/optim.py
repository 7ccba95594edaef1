"""Optimizer, learning-rate schedule and precision: one definition for every training run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch.distributed.optim import ZeroRedundancyOptimizer


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


def make_optimizer(params, schedule: Schedule, optim) -> tuple[torch.optim.Optimizer, object]:
    """Fused AdamW (GPU and CPU: one kernel for all parameters, and its `found_inf` lets the NaN
    guard skip a step without a host sync) and its LambdaLR schedule; with
    `optimizer_sharding=zero1` and several processes, wrapped in torch's ZeroRedundancyOptimizer
    (each process keeps and updates 1/N of the state)."""
    settings = dict(
        lr=schedule.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        fused=True,
    )
    if optim.optimizer_sharding == "zero1" and sharded_processes() > 1:
        optimizer = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.AdamW, **settings)
    else:
        optimizer = torch.optim.AdamW(params, **settings)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule))


def sharded_processes() -> int:
    """The processes an optimizer's state can be sharded over (1 without a process group)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The AdamW that updates this process's parameters (a ZeroRedundancyOptimizer's own)."""
    return optimizer.optim if isinstance(optimizer, ZeroRedundancyOptimizer) else optimizer


def gather_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Called by every process before the main one reads `optimizer.state_dict()`: a
    ZeroRedundancyOptimizer's shards are gathered there (a collective); others need nothing."""
    if isinstance(optimizer, ZeroRedundancyOptimizer):
        optimizer.consolidate_state_dict(to=0)


def mixed_precision_mode(setting: str) -> str:
    """accelerate's mixed-precision name for a config's `mixed_precision` setting."""
    if setting == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return setting
