"""The run directory: its one owner (docs/design.md, "Run directory").

Every command that writes or reads a run (distill, pretrain-teacher, export, evaluate) goes
through `RunDir`; no other code composes paths inside one. Layout:

  config.yaml          the resolved config, written once the run has been validated and loaded
  invocations.jsonl    one line per start: time, command line, step it started from
  checkpoints/         step-NNNNNNN/ (see training.checkpoint), .tmp-* while being written
  metrics.jsonl        one JSON record per log step
  logs/                TensorBoard event files
  student_init/        distillation: the student's config, preprocessor config,
                       distilxlsr.json, provenance.json
  units.safetensors, phones.json, model/    teacher pretraining: targets and the finished model
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from distilxlsr.config import check_resume_compatible, save_config, yaml_problem
from distilxlsr.errors import UserError
from distilxlsr.training import checkpoint as ckpt


class RunDir:
    CONFIG = "config.yaml"
    INVOCATIONS = "invocations.jsonl"
    CHECKPOINTS = ckpt.CHECKPOINTS
    METRICS = "metrics.jsonl"
    LOGS = "logs"
    STUDENT_INIT = "student_init"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- recognising runs and their checkpoints ---

    @classmethod
    def holds_run(cls, path: str | Path) -> bool:
        """True for a directory a run has claimed (or begun to)."""
        path = Path(path)
        return (path / cls.CHECKPOINTS).is_dir() or (path / cls.CONFIG).is_file()

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> RunDir | None:
        """The run a checkpoint directory belongs to, or None for any other directory."""
        path = Path(path)
        if path.parent.name == cls.CHECKPOINTS and ckpt.CHECKPOINT_DIR.match(path.name):
            return cls(path.parent.parent)
        return None

    # --- paths ---

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def logs(self) -> Path:
        return self.path / self.LOGS

    @property
    def student_init(self) -> Path:
        return self.path / self.STUDENT_INIT

    def file(self, name: str) -> Path:
        """A run-level file of a task (units.safetensors, phones.json, results.json, model/)."""
        return self.path / name

    # --- config and resume ---

    def saved_config(self) -> dict | None:
        if not self.config_file.is_file():
            return None
        try:
            saved = yaml.safe_load(self.config_file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            problem = yaml_problem(err) if isinstance(err, yaml.YAMLError) else str(err)
            raise UserError(
                f"'{self.config_file}' cannot be read ({problem}); this run directory was not "
                "written by distilxlsr as it is: use a new out=DIR."
            ) from None
        if not isinstance(saved, dict):
            raise UserError(f"'{self.config_file}' holds no config; use a new out=DIR.")
        return saved

    def check_resumable(self, config: Any, resumable: set[str]) -> dict | None:
        """Refuse a config that would make a resumed run another experiment; returns the saved
        config (None for a new run)."""
        saved = self.saved_config()
        if saved is not None:
            check_resume_compatible(saved, config, self.path, resumable)
        return saved

    def check_processes(self, checkpoint: Path, processes: int) -> None:
        """Refuse to resume `checkpoint` with another number of processes than wrote it: the
        global batch (`batch_seconds` x `grad_accum` x processes) and each process's share of
        the data would change, a different experiment, like the settings `check_resumable`
        refuses. (A checkpoint that records no process count is not checked.)"""
        saved = ckpt.read_trainer_state(checkpoint).get("world_size")
        if saved is None or saved == processes:
            return
        launch = "one process" if saved == 1 else f"`torchrun --nproc_per_node {saved} ...`"
        raise UserError(
            f"run directory '{self.path}' was trained by {saved} process(es) (checkpoint "
            f"{checkpoint.name}), now {processes}: the global batch and each process's data "
            f"would change; resume it with {saved} process(es) ({launch} or accelerate's "
            "--num_processes), or use a new out=DIR."
        )

    def claim(self, config: Any, command_line: str | None, start_step: int) -> None:
        """Make the directory this run's (main process only): checkpoints/, the config and one
        invocation line. Called after the run has been validated and its inputs loaded, so a
        failed start leaves nothing that blocks the corrected command."""
        (self.path / self.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_temporaries(self.path)
        save_config(config, self.config_file)
        invocation = {
            "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "command": command_line,
            "start_step": start_step,
        }
        with open(self.path / self.INVOCATIONS, "a") as f:
            f.write(json.dumps(invocation) + "\n")

    def invocations(self) -> list[dict]:
        path = self.path / self.INVOCATIONS
        return _read_jsonl(path) if path.is_file() else []

    FACTS = "facts.json"

    def write_facts(self, facts: dict) -> None:
        """What the run can say about itself that its config does not (the data's languages
        and hours, the teacher's license), for its model card."""
        tmp = self.path / f".tmp-{self.FACTS}"
        tmp.write_text(json.dumps(facts, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(self.path / self.FACTS)

    def facts(self) -> dict:
        path = self.path / self.FACTS
        try:
            values = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            return {}
        return values if isinstance(values, dict) else {}

    # --- one live process per run directory ---

    LOCK = "lock"

    def acquire(self, say=None) -> None:
        """Take the run directory for this process (main process only): refuses while another
        live process holds it; takes over a lock left by a process that is gone, saying so."""
        say = say or _warn
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / self.LOCK
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(lock)
                if _alive(holder):
                    raise UserError(
                        f"run directory '{self.path}' is in use by process {holder['pid']} on "
                        f"{holder['host']}; wait for it, stop it, or use another out=DIR (if "
                        f"that process is gone, delete {lock})."
                    ) from None
                say(
                    f"taking over {lock}, left by process {holder.get('pid', '?')} on "
                    f"{holder.get('host', '?')}, which is no longer running."
                )
                lock.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(mine, f)
            return
        raise UserError(f"could not take {lock}: another process keeps taking it.")

    def release(self) -> None:
        lock = self.path / self.LOCK
        holder = _read_lock(lock) if lock.is_file() else {}
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            lock.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.path.rmdir()  # a start that failed before claiming leaves nothing behind

    # --- checkpoints ---

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        return ckpt.list_checkpoints(self.path)

    def latest_checkpoint(self) -> Path | None:
        """The newest intact checkpoint (corrupt or incomplete newer ones are skipped, each with
        a one-line warning on stderr)."""
        latest = ckpt.latest_intact_checkpoint(self.path, warn=_warn)
        newest = latest.name if latest is not None else ""
        for unfinished in ckpt.incomplete_checkpoints(self.path):
            if unfinished.name > newest:
                _warn(f"warning: skipping checkpoint {unfinished} (trainer_state.json missing).")
        return latest

    def new_checkpoint(self, step: int) -> Path:
        """The temporary directory a checkpoint of `step` is written to (see `commit`)."""
        return ckpt.temporary_dir(self.path, step)

    def commit(self, tmp: Path, step: int, keep: int) -> Path:
        return ckpt.commit(tmp, self.path, step, keep)

    # --- metrics ---

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict]:
        """The logged records (a partial last line, left by a kill mid-write, is skipped)."""
        return _read_jsonl(self.metrics_file) if self.metrics_file.is_file() else []

    def drop_metrics_after(self, step: int) -> int:
        """On resume from `step`: remove records of later steps (they will be logged again), so
        each step appears once. Returns how many were dropped."""
        if not self.metrics_file.is_file():
            return 0
        records = self.metrics()
        kept = [r for r in records if r.get("step", 0) <= step]
        if len(kept) != len(records) or not _ends_cleanly(self.metrics_file):
            tmp = self.metrics_file.with_name(f".tmp-{self.METRICS}")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(self.metrics_file)
        return len(records) - len(kept)


def _read_lock(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # unreadable or half-written: treated as left by a process that is gone


def _alive(holder: dict) -> bool:
    """Whether the lock's process still runs (a lock from another host counts as live)."""
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if holder.get("host") != socket.gethostname():
        return True
    if pid == os.getpid():
        return False  # this process left it (an earlier call that did not finish)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_command_line() -> str | None:
    """This process's `distilxlsr ...` arguments when run from the command line, else None."""
    name = Path(sys.argv[0]).name if sys.argv else ""
    if name in ("distilxlsr", "__main__.py"):
        return shlex.join(["distilxlsr", *sys.argv[1:]])
    return None


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return records


def _ends_cleanly(path: Path) -> bool:
    data = path.read_bytes()
    return not data or data.endswith(b"\n")
