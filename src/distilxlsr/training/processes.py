"""The processes a run runs on (docs/design.md, "Training loop"): accelerate's object with the
run's precision, process group and trackers, the engines it refuses, and a plain single process
with the same calls for the benchmarks and the planner."""

from __future__ import annotations

import contextlib

import accelerate.utils
import torch
from accelerate import Accelerator
from torch import nn

from distilxlsr.errors import UserError
from distilxlsr.training.optim import mixed_precision_mode
from distilxlsr.training.rundir import RunDir

TRACKERS = ("tensorboard", "wandb", "mlflow")


def make_accelerator(optim, run: RunDir) -> Accelerator:
    """The run's accelerate object: precision, CPU process groups without a GPU, and the
    experiment trackers of `train.trackers` writing under RUN/logs."""
    available = {
        "tensorboard": accelerate.utils.is_tensorboard_available,
        "wandb": accelerate.utils.is_wandb_available,
        "mlflow": accelerate.utils.is_mlflow_available,
    }
    for name in optim.trackers:
        if name not in available:
            raise UserError(f"train.trackers: '{name}' is not one of {', '.join(TRACKERS)}.")
        if not available[name]():
            raise UserError(f"train.trackers: {name} is not installed; `pip install {name}`.")
    accelerator = Accelerator(
        mixed_precision=mixed_precision_mode(optim.mixed_precision),
        # cpu=True when there is no GPU: several CPU processes (torchrun) join one gloo group.
        cpu=not torch.cuda.is_available(),
        log_with=list(optim.trackers) or None,
        project_dir=str(run.logs),
    )
    check_engine(accelerator.distributed_type)
    return accelerator


def check_engine(distributed_type) -> None:
    """Refuse the engines the loop does not support (docs/scale.md): its checkpoints hold whole
    tensors, which FSDP and DeepSpeed shard and save in their own ways."""
    name = getattr(distributed_type, "value", str(distributed_type))
    if name in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):
        raise UserError(
            f"this run was launched with {name}, which distilxlsr does not support: launch with "
            "DDP (launch/accelerate-1node-8gpu.yaml, launch/accelerate-multinode.yaml) and shard "
            "the optimizer state with train.optimizer_sharding=zero1 (docs/scale.md)."
        )


class PlainProcess:
    """The accelerator calls the loop makes, for one process without accelerate (benchmarks)."""

    num_processes = 1
    process_index = 0
    is_main_process = True
    device_placement = False

    def __init__(self, device: torch.device, autocast_dtype: torch.dtype | None = None):
        self.device = device
        self.dtype = autocast_dtype

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def no_sync(self, module):
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params, max_norm: float) -> torch.Tensor:
        return nn.utils.clip_grad_norm_(params, max_norm)

    def prepare(self, *objects, device_placement=None):
        return objects

    def unwrap_model(self, module):
        return module
