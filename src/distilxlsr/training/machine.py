"""The machine a run or a benchmark used: one description, as facts and in words."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return model


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info() -> dict:
    """CPU model, cores, torch threads, versions and the GPU (if any), as plain values."""
    info = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def describe_machine(num_processes: int, device: torch.device) -> str:
    """The hardware a run used, in words."""
    if device.type == "cuda":
        return f"{num_processes} x {torch.cuda.get_device_name(device)}"
    info = machine_info()
    return (
        f"{num_processes} process(es) on CPU: {info['cpu']}, {info['cores']} cores, "
        f"{info['torch_threads']} torch threads"
    )
