"""Checkpoint files: written atomically (a temporary directory, then one rename), the newest K
kept, read back without unpickling anything but tensors and plain containers.

Only `training.rundir.RunDir` composes checkpoint paths; this module knows the files inside one
(docs/design.md, "Run directory"):
  config.json, model.safetensors   the trained model as a plain Hugging Face model directory
  task_state.safetensors           a task's own weights beside the model (e.g. a pretraining head)
  training_state.pt                optimizer and LR-scheduler state (loaded with weights_only=True)
  rank-<r>.pt                      each process's RNG states, data position, parameter fingerprint
  trainer_state.json               step, counters, timings
  run_config.yaml                  the resolved run config
  manifest.json                    every other file's size and SHA-256, written last
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from distilxlsr.config import save_config
from distilxlsr.errors import UserError

CHECKPOINTS = "checkpoints"
"""The folder of a run's checkpoints (`RunDir.CHECKPOINTS`); this module lays out its inside."""

CHECKPOINT_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a temporary directory is never complete)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [
        d
        for d in root.iterdir()
        if d.is_dir() and CHECKPOINT_DIR.match(d.name) and (d / "trainer_state.json").is_file()
    ]
    return sorted(found, key=lambda d: int(CHECKPOINT_DIR.match(d.name).group(1)))


def incomplete_checkpoints(run_dir: Path) -> list[Path]:
    """step-* directories without trainer_state.json (not temporaries: those never count)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(
        d
        for d in root.iterdir()
        if d.is_dir() and CHECKPOINT_DIR.match(d.name) and not (d / "trainer_state.json").is_file()
    )


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


MANIFEST = "manifest.json"
REQUIRED = ("config.json", "model.safetensors", "training_state.pt", "trainer_state.json")
"""What a resume reads, checked in checkpoints written before manifests existed."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model_dir: str | Path) -> str | None:
    """SHA-256 over a local model directory's weight files (the name and SHA-256 of each
    `*.safetensors`, in name order); None for a hub id or a directory without such files."""
    files = sorted(Path(model_dir).glob("*.safetensors")) if Path(model_dir).is_dir() else []
    if not files:
        return None
    listing = "\n".join(f"{path.name} {file_sha256(path)}" for path in files)
    return hashlib.sha256(listing.encode()).hexdigest()


def write_manifest(directory: Path) -> None:
    """Sizes and checksums of every file of a fully written checkpoint (the last file written)."""
    directory = Path(directory)
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (directory / MANIFEST).write_text(json.dumps({"files": files}, indent=1) + "\n")


def check_checkpoint(directory: Path) -> str | None:
    """None for an intact checkpoint; else what is wrong with it, in a few words."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        missing = [name for name in REQUIRED if not (directory / name).is_file()]
        return f"{', '.join(missing)} missing" if missing else None
    try:
        files = json.loads(manifest.read_text())["files"]
        entries = [(name, int(e["bytes"]), str(e["sha256"])) for name, e in files.items()]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} unreadable"
    for name, size, digest in entries:
        path = directory / name
        if not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} written"
        if file_sha256(path) != digest:
            return f"{name} does not match its checksum"
    return None


def latest_intact_checkpoint(run_dir: Path, warn=print) -> Path | None:
    """The newest checkpoint that passes `check_checkpoint`; each newer one that fails is named
    in one warning line and skipped."""
    for directory in reversed(list_checkpoints(run_dir)):
        problem = check_checkpoint(directory)
        if problem is None:
            return directory
        warn(f"warning: skipping checkpoint {directory} ({problem}); trying the one before it.")
    return None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Half-written checkpoints of a killed run."""
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith(".tmp-"):
                shutil.rmtree(d, ignore_errors=True)


def temporary_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f".tmp-{checkpoint_name(step)}"


def save_model(model: torch.nn.Module, config, directory: Path) -> None:
    """A loadable HF model directory: `config` (the pristine config) + safetensors weights."""
    config.save_pretrained(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})


def load_model_state(model: torch.nn.Module, directory: Path) -> None:
    state = load_file(Path(directory) / "model.safetensors")
    model.load_state_dict(state, strict=True)


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def commit(tmp: Path, run_dir: Path, step: int, keep: int) -> Path:
    """Make a fully written temporary directory the checkpoint of `step`; keep the newest `keep`."""
    _fsync_tree(tmp)
    final = Path(run_dir) / CHECKPOINTS / checkpoint_name(step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)  # atomic on POSIX: a checkpoint is either complete or absent
    found = list_checkpoints(run_dir)
    for old in found[: max(0, len(found) - max(1, keep))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def parameter_fingerprint(model: torch.nn.Module) -> torch.Tensor:
    """Per tensor (sum, sum of squares) in float64: equal on every rank unless DDP desynced."""
    with torch.no_grad():
        rows = [
            torch.stack([p.double().sum(), p.double().square().sum()]) for p in model.parameters()
        ]
    return torch.stack(rows).cpu()


def save_rank_state(
    directory: Path, rank: int, data_position: dict, fingerprint: torch.Tensor | None = None
) -> None:
    state = {
        "parameter_fingerprint": fingerprint,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data_position": data_position,
    }
    torch.save(state, directory / f"rank-{rank}.pt")


def load_rank_state(directory: Path, rank: int) -> dict | None:
    path = Path(directory) / f"rank-{rank}.pt"
    if not path.is_file():
        return None
    return _safe_load(path)


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def read_trainer_state(directory: Path) -> dict:
    return json.loads((Path(directory) / "trainer_state.json").read_text())


def write_trainer_state(directory: Path, state: dict) -> None:
    (Path(directory) / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")


def save_run_config(directory: Path, config) -> None:
    """The resolved run config, as the run directory's config.yaml holds it."""
    save_config(config, Path(directory) / "run_config.yaml")


def save_training_state(directory: Path, state: dict) -> None:
    """Optimizer, scheduler and plain values (a resumable task's stage, say)."""
    torch.save(state, Path(directory) / "training_state.pt")


def _safe_load(path: Path):
    """torch.load with weights_only=True; a file that would need more is one error line."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"'{path}' holds objects that cannot be loaded without running code, which "
            "distilxlsr refuses; delete that checkpoint directory to resume from the one before."
        ) from None


def load_training_state(directory: Path) -> dict:
    return _safe_load(Path(directory) / "training_state.pt")


TASK_STATE = "task_state.safetensors"


def save_task_state(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    if tensors:
        state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(state, Path(directory) / TASK_STATE)


def load_task_state(directory: Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / TASK_STATE
    return load_file(path) if path.is_file() else {}
