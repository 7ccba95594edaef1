"""The learning-rate schedule of every training run: the warm-up factor at its first, middle and last
steps for each decay, checked directly, and the rate the optimizer applies at each step."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from distilxlsr.distill.recipe import TrainConfig
from distilxlsr.training.loop import OptimizerStep, PlainProcess, Task
from distilxlsr.training.optim import Schedule, lr_factor


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
def test_the_warm_up_rises_linearly_to_the_peak_at_its_last_step(decay):
    """Warm-up w = 4: factor (s + 1) / w at step s < w; the decay starts from 1 at step w."""
    factor = lr_factor(Schedule(20, lr=1.0, warmup_steps=4, decay=decay, min_lr_ratio=0.1))
    assert [factor(s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
def test_a_warm_up_of_0_steps_is_5_percent_of_the_run(decay):
    factor = lr_factor(Schedule(100, lr=1.0, warmup_steps=0, decay=decay))  # w = 5
    assert [factor(s) for s in (0, 2, 4, 5)] == pytest.approx([0.2, 0.6, 1.0, 1.0], abs=1e-12)
    # a run shorter than 20 steps has one step of warm-up: the first step is at the peak
    assert lr_factor(Schedule(19, lr=1.0, decay=decay))(0) == 1.0


def test_the_decays_after_the_warm_up():
    def schedule(decay):
        return lr_factor(Schedule(20, lr=1.0, warmup_steps=4, decay=decay, min_lr_ratio=0.1))

    linear, cosine, constant = (schedule(d) for d in ("linear", "cosine", "constant"))
    # 16 steps of decay from 1 (step 4) to 0.1 (step 20), half-way at step 12
    assert [linear(s) for s in (12, 19, 20)] == pytest.approx([0.55, 0.15625, 0.1], abs=1e-12)
    assert [cosine(s) for s in (12, 20)] == pytest.approx([0.55, 0.1], abs=1e-12)
    assert [constant(s) for s in (12, 19, 20)] == [1.0, 1.0, 1.0]


def test_a_held_schedule_warms_up_as_the_planned_one():
    """Resumed with more steps and train.extend=hold: the planned run's warm-up, then the factor
    reached at `hold_from`."""
    held = lr_factor(Schedule(40, lr=1.0, warmup_steps=4, hold_from=2, planned_steps=20))
    assert [held(s) for s in (0, 1, 2, 3, 30)] == [0.25, 0.5, 0.75, 0.75, 0.75]


class _Line(Task):
    def __init__(self):
        self.module = nn.Linear(2, 1)

    def __call__(self, module, batch, step):
        loss = module(batch["x"]).pow(2).mean()
        return loss, {"loss": loss.detach()}


def test_the_optimizer_applies_the_factor_of_each_step():
    """Optimizer step n (0-based) runs at lr x factor(n): the first at lr / w."""
    task = _Line()
    schedule = Schedule(10, lr=0.5, warmup_steps=4)
    stepper = OptimizerStep(task, schedule, TrainConfig(), PlainProcess(torch.device("cpu")))
    rates = []
    hook = register_optimizer_step_pre_hook(
        lambda optimizer, *_: rates.append(optimizer.param_groups[0]["lr"])
    )
    batch = {"x": torch.ones(3, 2)}
    try:
        for step in range(6):
            stepper(lambda: batch, step)
    finally:
        hook.remove()
    factor = lr_factor(schedule)
    assert rates == pytest.approx([0.5 * factor(n) for n in range(6)], abs=1e-12)
    assert rates[:5] == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5], abs=1e-12)


def test_the_tristage_schedule_warms_up_holds_and_decays_exponentially():
    """20 steps: 4 of warm-up, 6 held at the peak, then 10 decaying exponentially to 0.01 (each
    step x 0.01^(1/10)), which the last step reaches."""
    factor = lr_factor(
        Schedule(20, lr=1.0, warmup_steps=4, decay="tristage", hold_steps=6, min_lr_ratio=0.01)
    )
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert [factor(s) for s in range(4, 11)] == [1.0] * 7
    assert [factor(s) for s in (15, 20)] == pytest.approx([0.1, 0.01], rel=1e-12)


class _TwoGroups(_Line):
    def parameter_groups(self):
        return [{"params": [self.module.weight]}, {"params": [self.module.bias], "lr": 2.0}]


def test_a_task_may_give_a_parameter_group_its_own_peak_rate():
    task = _TwoGroups()
    schedule = Schedule(10, lr=0.5, warmup_steps=2, decay="constant")
    stepper = OptimizerStep(task, schedule, TrainConfig(), PlainProcess(torch.device("cpu")))
    rates = []
    hook = register_optimizer_step_pre_hook(
        lambda optimizer, *_: rates.append([g["lr"] for g in optimizer.param_groups])
    )
    try:
        for step in range(3):
            stepper(lambda: {"x": torch.ones(3, 2)}, step)
    finally:
        hook.remove()
    flat = [rate for step in rates for rate in step]
    assert flat == pytest.approx([0.25, 1.0, 0.5, 2.0, 0.5, 2.0], abs=1e-12)  # both scaled alike
