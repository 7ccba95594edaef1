"""How distilxlsr treats a hostile user: every attempt is a subprocess of the real CLI (issue 16).

Five groups of attempts, each on a fresh tiny corpus and a tiny random teacher made in a temporary
directory (no network: HF_HUB_OFFLINE=1, HF_HOME inside the temporary directory):

1. config mistakes: each must be refused with one line naming the key (exit 2, no traceback);
   the corrected command must then run in the same run directory ("a failed start never blocks
   the fix", counted separately);
2. damaged checkpoints: resume falls back to the newest intact checkpoint with a one-line warning
   and ends bit-identical to an uninterrupted run; `export` of the run takes that checkpoint (with
   the warning), `export` of the damaged checkpoint directory itself is refused in one line;
3. kills: SIGKILL at random moments and during checkpoint writes, then the same command again
   must end bit-identical to an uninterrupted run (same metrics steps, same audio seconds); a
   second process on a live run directory is refused in one line; a stale lock is taken over
   with a message;
4. bad data inputs (manifests, audio, prepare recipes, synth, export/evaluate paths): refused in
   one line, or a counted reject / skip where the specification says so;
5. hostile checkpoints and models: pickles whose unpickling would create a marker file, YAML tags,
   `auto_map` custom code, path-traversal ids, decompression bombs; nothing may run (the marker
   never appears, the HF modules cache stays empty) and nothing is written outside the output
   directory.

"Handled as specified" for a refusal: exit status 2, exactly one line starting
`distilxlsr <cmd>: error:` on stderr, it is the last line (argparse's usage lines may precede it),
it names what the attempt got wrong, and no `Traceback`. A traceback, exit 0 where an error was
due, a silent wrong result or a hang (timeout) is "not handled". The script exits 0 whatever it
measures; the failures are listed at the end and written, with the tables, to
results/hostile-inputs.json.

    python tools/hostile_inputs.py [--jobs 2] [--kills 12] [--groups 1,2,3,4,5] [--keep]

Each payload only creates a marker file inside the temporary directory.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gzip
import json
import os
import pickle
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))

GROUPS = {
    1: "config mistakes",
    2: "damaged checkpoints",
    3: "kills and locks",
    4: "bad data inputs",
    5: "hostile checkpoints and models",
}
RUN_TIMEOUT = 420  # seconds for a command that trains (a tiny run takes 10-40 s on 2 busy cores)
FAIL_TIMEOUT = 240  # seconds for a command that should fail before training


# ---------------------------------------------------------------------------------------------
# Running the CLI
# ---------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One finished (or killed) CLI process."""

    argv: list[str]
    rc: int | None
    """Exit status; None when it was still running at its timeout (a hang)."""
    stdout: str
    stderr: str
    seconds: float
    killed: bool = False

    @property
    def command(self) -> str:
        return "distilxlsr " + shlex.join(self.argv)

    @property
    def hung(self) -> bool:
        return self.rc is None and not self.killed

    def lines(self, stream: str = "stderr") -> list[str]:
        text = self.stderr if stream == "stderr" else self.stdout
        parts = text.replace("\r", "\n").split("\n")
        return [p.rstrip() for p in parts if p.strip()]

    def tail(self, n: int = 8) -> list[str]:
        """The last lines of stderr without progress bars (for the failure report)."""
        keep = [x for x in self.lines() if not _progress_line(x)]
        return keep[-n:]

    def traceback_tail(self) -> str:
        lines = self.tail(3)
        return " | ".join(lines) if lines else "(no stderr)"


def _progress_line(line: str) -> bool:
    return ("it/s]" in line or "step/s]" in line or "s/step]" in line or "s/it]" in line) and (
        "%|" in line
    )


class Lab:
    """The temporary directory and how every process is started."""

    def __init__(self, root: Path):
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._counter = 0
        self._lock = threading.Lock()

    def sandbox(self, name: str) -> Path:
        with self._lock:
            self._counter += 1
            n = self._counter
        safe = "".join(c if c.isalnum() else "-" for c in name)[:40]
        path = self.root / "attempts" / f"{n:03d}-{safe}"
        path.mkdir(parents=True)
        return path

    def env(self, cwd: Path, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(SRC) + (
            os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else ""
        )
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
        env["HF_HOME"] = str(cwd / ".hf_home")  # inside the sandbox: any write there is seen
        env["TOKENIZERS_PARALLELISM"] = "false"
        env["OMP_NUM_THREADS"] = "1"  # the same thread count in every run: comparable weights
        env["MKL_NUM_THREADS"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def spawn(self, argv: list[str], cwd: Path, env: dict | None = None):
        with self._lock:
            self._counter += 1
            n = self._counter
        out = open(self.logs / f"{n:04d}.out", "w+")  # noqa: SIM115 (closed in finish)
        err = open(self.logs / f"{n:04d}.err", "w+")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "distilxlsr", *argv],
            cwd=cwd,
            env=self.env(cwd, env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: a kill reaches loader workers too
        )
        return _Running(proc, argv, out, err, time.monotonic())

    def cli(self, argv: list[str], cwd: Path, timeout: float = FAIL_TIMEOUT, env=None) -> Call:
        return self.spawn(argv, cwd, env).finish(timeout)


@dataclass
class _Running:
    proc: subprocess.Popen
    argv: list[str]
    out: object
    err: object
    started: float

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def finish(self, timeout: float, killed: bool = False) -> Call:
        try:
            rc = self.proc.wait(timeout=max(0.0, timeout - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
            rc = None
        if killed:
            rc = None
        seconds = time.monotonic() - self.started
        texts = []
        for f in (self.out, self.err):
            f.flush()
            f.seek(0)
            texts.append(f.read())
            f.close()
        return Call(self.argv, rc, texts[0], texts[1], seconds, killed)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    group: int
    name: str
    expected: str
    outcome: str
    ok: bool
    command: str = ""
    stderr_tail: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    seconds: float = 0.0


def refusal(call: Call, cmd: str, needles=()) -> tuple[bool, str]:
    """(handled, outcome) for an input that must be refused in one line naming `needles` (all of
    them; an entry that is a tuple: any of its items)."""
    if call.hung:
        return False, f"hang: still running after {call.seconds:.0f} s"
    if "Traceback" in call.stderr:
        return False, "traceback: " + call.traceback_tail()
    if call.rc == 0:
        return False, "exit 0 where an error was due"
    prefix = f"distilxlsr {cmd}: error:"
    lines = call.lines()
    errors = [x for x in lines if x.startswith(prefix)]
    if call.rc != 2 or len(errors) != 1 or lines[-1] != errors[0]:
        last = lines[-1] if lines else "(no stderr)"
        return False, f"exit {call.rc}, {len(errors)} error line(s); last line: {last[:160]}"
    message = errors[0][len(prefix) :].strip()
    for needle in needles:
        options = needle if isinstance(needle, tuple) else (needle,)
        if not any(str(o).lower() in message.lower() for o in options):
            return False, f"one line, but it does not name {options[0]!r}: {message[:160]}"
    return True, "refused: " + message


def succeeded(call: Call) -> tuple[bool, str]:
    if call.hung:
        return False, f"hang: still running after {call.seconds:.0f} s"
    if "Traceback" in call.stderr:
        return False, "traceback: " + call.traceback_tail()
    if call.rc != 0:
        return False, f"exit {call.rc}: {call.traceback_tail()}"
    return True, "exit 0"


def warned(call: Call, *needles: str) -> str | None:
    """The stderr/stdout line holding every needle, if any."""
    for line in call.lines() + call.lines("stdout"):
        if all(n in line for n in needles):
            return line
    return None


def row_from_call(group, name, expected, ok_outcome, call: Call, **extra) -> Row:
    ok, outcome = ok_outcome
    return Row(
        group,
        name,
        expected,
        outcome,
        ok,
        command=call.command,
        stderr_tail=[] if ok else call.tail(),
        extra=extra,
        seconds=round(call.seconds, 1),
    )


# ---------------------------------------------------------------------------------------------
# Fixtures: a tiny teacher, a tiny corpus, uninterrupted reference runs
# ---------------------------------------------------------------------------------------------


@dataclass
class Reference:
    """An uninterrupted run: its directory, per-step weights and bookkeeping."""

    path: Path
    weights: dict[int, dict]
    audio_seconds: float
    metric_steps: list[int]
    seconds: float


class Fixtures:
    def __init__(self, lab: Lab):
        self.lab = lab
        base = lab.root / "fixtures"
        self.teacher = base / "teacher"
        self.corpus = base / "corpus"
        self.data = self.corpus / "en"
        self.official = base / "official.pt"
        self.g2: Reference | None = None
        self.g3: Reference | None = None

    def build(self, need_runs: set[int]) -> None:
        import torch

        from distilxlsr.data.toy import make_toy_corpus
        from distilxlsr.models.interop import export_official
        from distilxlsr.models.loading import model_class
        from distilxlsr.models.presets import tiny_config

        torch.manual_seed(0)
        teacher = model_class("wav2vec2")(tiny_config("wav2vec2", pre_ln=True, layers=4))
        teacher.eval().save_pretrained(self.teacher)
        make_toy_corpus(self.corpus, "en", "train", num_utterances=8, seconds=(1.0, 2.0), seed=0)
        # an authors'-layout checkpoint (the authors' model has a feature projection only when
        # the CNN is narrower or wider than the transformer)
        source = self.official.parent / "official-source"
        model_class("wav2vec2")(
            tiny_config("wav2vec2", layers=2, conv_channels=24)
        ).save_pretrained(source)
        export_official(source, self.official)
        self.payloads_live = check_payloads(self.official.parent / "probe")
        jobs = {}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            if 2 in need_runs or 5 in need_runs:
                jobs["g2"] = pool.submit(self._reference, "g2", self.g2_args)
            if 3 in need_runs:
                jobs["g3"] = pool.submit(self._reference, "g3", self.g3_args)
        for key, job in jobs.items():
            setattr(self, key, job.result())

    def distill_args(self, out: Path, steps: int = 1, *extra: str, config="tiny-cpu") -> list[str]:
        """The tiny run every attempt starts from (later key=value arguments override these)."""
        return [
            "distill",
            "--config",
            str(config),
            f"teacher={self.teacher}",
            f"data.train={self.data}",
            f"out={out}",
            "data.num_workers=0",
            "data.max_seconds=1.0",
            "train.batch_seconds=3.0",
            "train.warmup_steps=0",
            "train.log_every=1",
            "train.checkpoint_every=1",
            f"train.max_steps={steps}",
            *extra,
        ]

    def g2_args(self, out: Path) -> list[str]:
        """Checkpoints at steps 1, 2 and 3 (all kept)."""
        return self.distill_args(out, 3, "train.keep_checkpoints=3")

    def g3_args(self, out: Path) -> list[str]:
        """6 steps, a checkpoint every 2 (the newest 2 kept), metrics every step."""
        return self.distill_args(out, 6, "train.checkpoint_every=2", "train.keep_checkpoints=2")

    def _reference(self, name: str, make_args) -> Reference:
        cwd = self.lab.root / "fixtures" / f"{name}-cwd"
        cwd.mkdir(parents=True, exist_ok=True)
        out = self.lab.root / "fixtures" / f"{name}-run"
        call = self.lab.cli(make_args(out), cwd, RUN_TIMEOUT)
        ok, outcome = succeeded(call)
        if not ok:
            raise SystemExit(f"the reference run {name} failed ({outcome}):\n{call.stderr[-3000:]}")
        return read_reference(out, call.seconds)


def read_reference(out: Path, seconds: float = 0.0) -> Reference:
    from safetensors.torch import load_file

    weights = {}
    for d in sorted((out / "checkpoints").glob("step-*")):
        weights[int(d.name.split("-")[1])] = load_file(d / "model.safetensors")
    return Reference(out, weights, final_audio(out), metric_steps(out), seconds)


def newest(run: Path) -> Path | None:
    found = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    return found[-1] if found else None


def final_audio(run: Path) -> float | None:
    last = newest(run)
    try:
        return json.loads((last / "trainer_state.json").read_text())["run_state"]["audio_seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def metric_steps(run: Path) -> list[int] | None:
    """The metrics' steps, or None if a line does not parse."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            return None
    return steps


def same_weights(file: Path, reference: dict) -> tuple[bool, str]:
    from safetensors.torch import load_file

    try:
        got = load_file(file)
    except Exception as err:  # a file the run left unreadable
        return False, f"{file.name} unreadable ({type(err).__name__})"
    if got.keys() != reference.keys():
        return False, "different tensor names"
    differ = [k for k in got if not bool((got[k] == reference[k]).all())]
    if differ:
        return False, f"{len(differ)} of {len(got)} tensors differ"
    return True, "bit-identical"


def compare_run(run: Path, ref: Reference, steps: list[int] | None = None) -> list[str]:
    """What differs between a finished run and the reference (empty: nothing)."""
    problems = []
    last = newest(run)
    final_step = max(ref.weights)
    if last is None or int(last.name.split("-")[1]) != final_step:
        return [f"newest checkpoint {last.name if last else None}, expected step {final_step}"]
    ok, detail = same_weights(last / "model.safetensors", ref.weights[final_step])
    if not ok:
        problems.append(f"weights: {detail}")
    got_steps = metric_steps(run)
    if got_steps != (steps if steps is not None else ref.metric_steps):
        problems.append(f"metrics steps {got_steps} vs {ref.metric_steps}")
    audio = final_audio(run)
    if audio is None or abs(audio - ref.audio_seconds) > 1e-6 * max(1.0, ref.audio_seconds):
        problems.append(f"audio_seconds {audio} vs {ref.audio_seconds}")
    from distilxlsr.training.checkpoint import check_checkpoint

    problem = check_checkpoint(last)
    if problem:
        problems.append(f"final checkpoint not intact ({problem})")
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    if leftovers:
        problems.append(f"temporary checkpoints left: {leftovers}")
    if (run / "lock").exists():
        problems.append("lock file left behind")
    return problems


# ---------------------------------------------------------------------------------------------
# Group 1: config mistakes
# ---------------------------------------------------------------------------------------------


def write_config_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "latin1": folder / "latin1.yaml",
        "list": folder / "list.yaml",
        "tag": folder / "tag.yaml",
    }
    files["latin1"].write_bytes("# réglages du modèle\ntrain:\n  lr: 0.001\n".encode("latin-1"))
    files["list"].write_text("- train.lr=0.001\n- train.max_steps=1\n")
    files["tag"].write_text("train: !!python/object:collections.OrderedDict {}\n")
    return files


CONFIG_MISTAKES = [
    # (name, extra key=value arguments, what the one-line error must name)
    ("train.lr=.inf", ["train.lr=.inf"], ["train.lr"]),
    ("train.lr=.nan", ["train.lr=.nan"], ["train.lr"]),
    ("train.eps negative", ["train.eps=-1e-8"], ["train.eps"]),
    ("train.weight_decay negative", ["train.weight_decay=-0.01"], ["train.weight_decay"]),
    ("data.num_workers negative", ["data.num_workers=-1"], ["data.num_workers"]),
    ("data.max_seconds zero", ["data.max_seconds=0"], ["data.max_seconds"]),
    ("data.sample_rate zero", ["data.sample_rate=0"], ["data.sample_rate"]),
    ("train.batch_seconds zero", ["train.batch_seconds=0"], ["train.batch_seconds"]),
    ("train.grad_accum zero", ["train.grad_accum=0"], ["train.grad_accum"]),
    ("train.keep_checkpoints zero", ["train.keep_checkpoints=0"], ["train.keep_checkpoints"]),
    ("shuffle.mode=utterence", ["shuffle.mode=utterence"], [("shuffle.mode", "utterence")]),
    ("train.decay=foo", ["train.decay=foo"], ["train.decay"]),
    ("train.mixed_precision=int8", ["train.mixed_precision=int8"], ["mixed_precision"]),
    ("student.layers=jump:5", ["student.layers=jump:5"], ["jump:5"]),
    ("loss.layer_weights with NaN", ["loss.layer_weights=[1,.nan]"], ["loss.layer_weights"]),
    ("loss.layer_weights wrong length", ["loss.layer_weights=[1,1,1]"], ["layer_weights"]),
    ("loss.kind=l2", ["loss.kind=l2"], [("loss.kind", "l2")]),
    ("student.representation=bogus", ["student.representation=bogus"], ["representation"]),
    ("typo train.learing_rate", ["train.learing_rate=1e-4"], ["learing_rate"]),
    ("train.max_steps=ten", ["train.max_steps=ten"], ["train.max_steps"]),
    ("student.freeze_cnn=maybe", ["student.freeze_cnn=maybe"], ["student.freeze_cnn"]),
    ("shuffle.p=1.5", ["shuffle.p=1.5"], ["shuffle.p"]),
    # (teacher mistakes: the argument is filled in by `config_attempts`)
    ("teacher path typo", ["teacher={teacher}x"], ["{teacher}x"]),
    ("teacher hub id, no network", ["teacher=facebook/wav2vec2-xls-r-300m"], ["wav2vec2-xls-r"]),
    ("teacher config.json is a list", ["teacher={listed}"], ["config.json"]),
    # (config files: --config is replaced)
    ("config file not UTF-8", ["--config=latin1"], [("utf-8", "latin1.yaml")]),
    ("config file is a YAML list", ["--config=list"], ["list.yaml"]),
    ("config file with a !!python tag", ["--config=tag"], ["tag.yaml"]),
]


def config_attempt(lab: Lab, fx: Fixtures, name: str, extra: list[str], needles) -> Row:
    box = lab.sandbox("cfg-" + name)
    out = box / "run"
    files = write_config_files(box / "configs")
    listed = box / "listed"
    listed.mkdir()
    (listed / "config.json").write_text("[1, 2]")
    fill = {"teacher": fx.teacher, "listed": listed}
    config = "tiny-cpu"
    args = []
    for item in extra:
        if item.startswith("--config="):
            config = files[item.split("=", 1)[1]]
        else:
            args.append(item.format(**fill))
    needles = [
        tuple(str(x).format(**fill) for x in n) if isinstance(n, tuple) else n.format(**fill)
        for n in needles
    ]
    bad = lab.cli(fx.distill_args(out, 1, *args, config=config), box)
    ok, outcome = refusal(bad, "distill", needles)
    # the corrected command, in the same run directory
    fix = lab.cli(fx.distill_args(out, 1), box, RUN_TIMEOUT)
    fix_ok, fix_outcome = succeeded(fix)
    if fix_ok:
        from distilxlsr.training.checkpoint import check_checkpoint

        last = newest(out)
        if last is None or last.name != "step-0000001" or check_checkpoint(last):
            fix_ok, fix_outcome = False, f"exit 0 but newest checkpoint is {last}"
    row = row_from_call(1, name, "refused in one line naming it", (ok, outcome), bad)
    row.extra = {
        "fix_ok": fix_ok,
        "fix_outcome": fix_outcome if fix_ok else fix_outcome + " :: " + fix.traceback_tail(),
        "fix_command": fix.command,
    }
    row.seconds = round(bad.seconds + fix.seconds, 1)
    return row


# ---------------------------------------------------------------------------------------------
# Group 2: damaged checkpoints
# ---------------------------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x04
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_text('{"run_state": {"step": ')


def _only(ckpt: Path, keep: set[str]) -> None:
    for p in ckpt.iterdir():
        if p.name not in keep:
            p.unlink()


def _step(run: Path, n: int) -> Path:
    return run / "checkpoints" / f"step-{n:07d}"


def _cut_metrics(run: Path) -> None:
    path = run / "metrics.jsonl"
    data = path.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last + (len(data) - last) // 2])  # half of the last line, no newline


DAMAGE = [
    # (name, damage(run), the step resume and export must fall back to; 0: none is intact)
    ("model.safetensors truncated", lambda r: _truncate(_step(r, 3) / "model.safetensors"), 2),
    ("model.safetensors deleted", lambda r: (_step(r, 3) / "model.safetensors").unlink(), 2),
    ("model.safetensors bit flip", lambda r: _flip(_step(r, 3) / "model.safetensors"), 2),
    ("trainer_state.json garbage", lambda r: _garbage(_step(r, 3) / "trainer_state.json"), 2),
    ("training_state.pt truncated", lambda r: _truncate(_step(r, 3) / "training_state.pt"), 2),
    ("rank-0.pt deleted", lambda r: (_step(r, 3) / "rank-0.pt").unlink(), 2),
    ("manifest.json garbage", lambda r: (_step(r, 3) / "manifest.json").write_text("garbage"), 2),
    ("config.json deleted", lambda r: (_step(r, 3) / "config.json").unlink(), 2),
    (
        "only some files (config, weights, trainer_state)",
        lambda r: _only(_step(r, 3), {"config.json", "model.safetensors", "trainer_state.json"}),
        2,
    ),
    (
        "metrics.jsonl partial last line (kill mid-write, before checkpoint 3)",
        lambda r: (shutil.rmtree(_step(r, 3)), _cut_metrics(r)),
        2,
    ),
    ("trainer_state.json deleted", lambda r: (_step(r, 3) / "trainer_state.json").unlink(), 2),
    (
        "two newest damaged (3: weights truncated, 2: rank-0.pt bit flip)",
        lambda r: (
            _truncate(_step(r, 3) / "model.safetensors"),
            _flip(_step(r, 2) / "rank-0.pt"),
        ),
        1,
    ),
    (
        "every checkpoint damaged (training_state.pt truncated in 1, 2, 3)",
        lambda r: [_truncate(_step(r, n) / "training_state.pt") for n in (1, 2, 3)],
        0,
    ),
]


def damage_attempt(lab: Lab, fx: Fixtures, name: str, damage, fallback: int) -> Row:
    ref = fx.g2
    box = lab.sandbox("dmg-" + name)
    run = box / "run"
    shutil.copytree(ref.path, run)
    damage(run)
    metrics_kind = "metrics" in name
    problems, notes = [], []
    calls = []

    # export of the damaged checkpoint directory itself
    target = _step(run, 2 if metrics_kind else 3)
    ec = lab.cli(["export", str(target), "--out", str(box / "export-ckpt")], box)
    calls.append(ec)
    if metrics_kind:
        ok, outcome = succeeded(ec)
        if not ok:
            problems.append(f"export of intact {target.name}: {outcome}")
    elif target.is_dir():
        ok, outcome = refusal(ec, "export", [target.name])
        if not ok:
            problems.append(f"export of {target.name}: {outcome}")
        else:
            notes.append("export of the checkpoint refused")

    # export of the run: the newest intact checkpoint
    er = lab.cli(["export", str(run), "--out", str(box / "export-run")], box)
    calls.append(er)
    if fallback == 0:
        ok, outcome = refusal(er, "export", ["intact"])
        if not ok:
            problems.append(f"export of the run: {outcome}")
    else:
        ok, outcome = succeeded(er)
        if not ok:
            problems.append(f"export of the run: {outcome}")
        else:
            same, detail = same_weights(
                box / "export-run" / "model.safetensors", ref.weights[fallback]
            )
            if not same:
                problems.append(f"export of the run: not step {fallback}'s weights ({detail})")
            if not metrics_kind and not warned(er, "skipping checkpoint", "step-0000003"):
                problems.append("export of the run: no warning naming step-0000003")

    # resume with the same command
    rc = lab.cli(fx.g2_args(run), box, RUN_TIMEOUT)
    calls.append(rc)
    ok, outcome = succeeded(rc)
    if not ok:
        problems.append(f"resume: {outcome}")
    else:
        if not metrics_kind and not warned(rc, "skipping checkpoint", "step-0000003"):
            problems.append("resume: no warning naming step-0000003")
        said = warned(rc, "resuming", f"from step {fallback}")
        if fallback and not said:
            problems.append(f"resume: did not say it resumed from step {fallback}")
        problems += [f"resume: {p}" for p in compare_run(run, ref)]
    expected = (
        "resume and export fall back to step "
        + (str(fallback) if fallback else "0 (start over; export refused)")
        + (" with a one-line warning; export of the checkpoint refused" if not metrics_kind else "")
        + "; final weights identical"
    )
    ok = not problems
    outcome = (
        "; ".join(problems)
        if problems
        else "as specified (" + ", ".join(notes + ["resumed identically"]) + ")"
    )
    failing = next((c for c in calls if "Traceback" in c.stderr or c.hung), calls[-1])
    return Row(
        2,
        name,
        expected,
        outcome,
        ok,
        command=" ;; ".join(c.command for c in calls),
        stderr_tail=[] if ok else failing.tail(),
        seconds=round(sum(c.seconds for c in calls), 1),
    )


# ---------------------------------------------------------------------------------------------
# Group 3: kills and locks
# ---------------------------------------------------------------------------------------------


def kill_attempt(lab: Lab, fx: Fixtures, index: int, mode: str, seed: int) -> Row:
    ref = fx.g3
    rng = random.Random(seed)
    box = lab.sandbox(f"kill-{index}")
    run = box / "run"
    args = fx.g3_args(run)
    during_write = False
    what = ""
    for attempt in range(3):
        if run.exists():
            shutil.rmtree(run)
        proc = lab.spawn(args, box)
        if mode == "random":
            delay = rng.uniform(1.0, max(2.0, 0.9 * ref.seconds)) / (attempt + 1)
            while proc.alive() and time.monotonic() - proc.started < delay:
                time.sleep(0.01)
            what = f"at {time.monotonic() - proc.started:.1f} s"
        else:
            target = rng.choice([2, 4, 6])
            tmp = run / "checkpoints" / f".tmp-step-{target:07d}"
            while proc.alive() and not tmp.exists():
                if time.monotonic() - proc.started > RUN_TIMEOUT:
                    break
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.008))
            what = f"while writing checkpoint {target}"
        if not proc.alive():
            proc.finish(1)
            continue  # it ended before the kill: try again earlier
        proc.kill()
        proc.finish(30, killed=True)
        break
    else:
        return Row(3, f"kill {index}: {mode}", "", "the run always ended before the kill", False)
    temporaries = (
        sorted(p.name for p in (run / "checkpoints").glob(".tmp-*"))
        if (run / "checkpoints").is_dir()
        else []
    )
    during_write = bool(temporaries)
    stale_lock = (run / "lock").exists()
    resumed = lab.cli(args, box, RUN_TIMEOUT)
    ok, outcome = succeeded(resumed)
    problems = [] if ok else [outcome]
    if ok:
        problems += compare_run(run, ref)
        if stale_lock and not warned(resumed, "taking over", "lock"):
            problems.append("stale lock taken over without a message")
    state = []
    if during_write:
        state.append(f"half-written {temporaries[0]} left")
    if stale_lock:
        state.append("stale lock taken over")
    ok = not problems
    outcome = (
        "identical weights, metrics, audio seconds" + (f" ({', '.join(state)})" if state else "")
        if ok
        else "; ".join(problems)
    )
    return Row(
        3,
        f"kill {index}: SIGKILL {what}",
        "same command resumes; bit-identical to the uninterrupted run",
        outcome,
        ok,
        command=resumed.command,
        stderr_tail=[] if ok else resumed.tail(),
        extra={"kill": True, "during_write": during_write, "stale_lock": stale_lock},
        seconds=round(resumed.seconds, 1),
    )


def _wait_for(path: Path, proc, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.alive():
        if path.exists():
            return True
        time.sleep(0.02)
    return path.exists()


def second_process_attempt(lab: Lab, fx: Fixtures) -> list[Row]:
    """A long first run; two more processes on its run directory while it trains; then SIGTERM
    stops the first (it checkpoints and exits), and its metrics must hold each step once."""
    box = lab.sandbox("lock-second")
    run = box / "run"
    args = fx.distill_args(run, 100_000, "train.checkpoint_every=50")
    first = lab.spawn(args, box)
    rows = []
    if not _wait_for(run / "metrics.jsonl", first, RUN_TIMEOUT):
        first.kill()
        call = first.finish(5)
        return [Row(3, "second process", "", "the first run never started", False, call.command)]
    attempts = (
        ("second process, same command, while the first runs", []),
        ("second process, other settings (train.lr), while the first runs", ["train.lr=0.001"]),
    )
    others = [(name, lab.spawn([*args, *extra], box)) for name, extra in attempts]
    for name, second in others:
        call = second.finish(FAIL_TIMEOUT)
        ok, outcome = refusal(call, "distill", [("in use", "lock")])
        if not first.alive():
            ok, outcome = False, f"inconclusive: the first run ended early ({outcome})"
        expected = "refused in one line (run directory in use)"
        rows.append(row_from_call(3, name, expected, (ok, outcome), call))
    first.proc.send_signal(signal.SIGTERM)
    done = first.finish(RUN_TIMEOUT)
    ok, outcome = succeeded(done)
    if ok:
        seen = metric_steps(run)
        last = newest(run)
        if not seen or seen != list(range(1, len(seen) + 1)):
            ok, outcome = False, f"metrics steps not 1..N once each: {seen}"
        elif last is None or int(last.name.split("-")[1]) != seen[-1]:
            ok, outcome = False, f"stopped at step {seen[-1]} but newest checkpoint is {last}"
        else:
            outcome = f"stopped by SIGTERM at step {seen[-1]} with a checkpoint; metrics 1..{seen[-1]} once each"
    expected = "unaffected: metrics not interleaved; SIGTERM checkpoints and stops"
    rows.append(row_from_call(3, "the first run, after the others", expected, (ok, outcome), done))
    return rows


def stale_lock_attempts(lab: Lab, fx: Fixtures) -> list[Row]:
    rows = []
    # 1. SIGKILL after the lock is taken and training began: the rerun takes over, with a message
    box = lab.sandbox("lock-stale-kill")
    run = box / "run"
    args = fx.g3_args(run)
    proc = lab.spawn(args, box)
    started = _wait_for(run / "metrics.jsonl", proc, RUN_TIMEOUT)
    proc.kill()
    proc.finish(30, killed=True)
    left = (run / "lock").exists()
    call = lab.cli(args, box, RUN_TIMEOUT)
    ok, outcome = succeeded(call)
    if not started or not left:
        ok, outcome = False, f"setup: training started {started}, lock left {left}"
    elif ok:
        line = warned(call, "taking over", "lock")
        problems = compare_run(run, fx.g3)
        if not line:
            problems.insert(0, "no message about the stale lock")
        ok = not problems
        outcome = "; ".join(problems) if problems else f"taken over: {line.strip()[:120]}"
    rows.append(
        row_from_call(
            3,
            "stale lock after SIGKILL",
            "taken over with a message; identical result",
            (ok, outcome),
            call,
            kill=True,
            stale_lock=True,
        )
    )

    # 2. a lock file with garbage in it (a kill while the lock was being written)
    box = lab.sandbox("lock-garbage")
    run = box / "run"
    run.mkdir()
    (run / "lock").write_text('{"pid": ')
    call = lab.cli(fx.distill_args(run, 1), box, RUN_TIMEOUT)
    ok, outcome = succeeded(call)
    if ok:
        line = warned(call, "taking over")
        ok, outcome = (
            (True, f"taken over: {line.strip()[:120]}")
            if line
            else (False, "exit 0 without a message")
        )
    rows.append(
        row_from_call(3, "garbage lock file", "taken over with a message", (ok, outcome), call)
    )

    # 3. a lock held by a live process on this host (this script)
    box = lab.sandbox("lock-live")
    run = box / "run"
    run.mkdir()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    (run / "lock").write_text(json.dumps(holder))
    call = lab.cli(fx.distill_args(run, 1), box)
    rows.append(
        row_from_call(
            3,
            "lock of a live process on this host",
            "refused in one line naming the pid",
            refusal(call, "distill", [str(os.getpid())]),
            call,
        )
    )
    still = (run / "lock").is_file() and json.loads((run / "lock").read_text()).get(
        "pid"
    ) == os.getpid()
    if not still:
        rows[-1].ok, rows[-1].outcome = False, "the live process's lock was removed or replaced"

    # 4. a lock from another host (its process cannot be checked: treated as live)
    box = lab.sandbox("lock-other-host")
    run = box / "run"
    run.mkdir()
    (run / "lock").write_text(json.dumps({"pid": 12345, "host": "elsewhere.invalid", "since": 0}))
    call = lab.cli(fx.distill_args(run, 1), box)
    rows.append(
        row_from_call(
            3,
            "lock from another host",
            "refused in one line naming the host",
            refusal(call, "distill", ["elsewhere.invalid"]),
            call,
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------
# Group 4: bad data inputs
# ---------------------------------------------------------------------------------------------


def _rewrite_manifest(manifest: Path, change) -> None:
    with gzip.open(manifest, "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(manifest, "wt") as f:
        f.write("".join(line + "\n" for line in change(lines)))


def _drop_rate(lines):
    first = json.loads(lines[0])
    del first["recording"]["sampling_rate"]
    return [json.dumps(first), *lines[1:]]


def _negative_duration(lines):
    first = json.loads(lines[0])
    first["duration"] = -1.0
    return [json.dumps(first), *lines[1:]]


def _audio_files(data: Path) -> list[Path]:
    return sorted((data / "audio").rglob("*.flac"))


def _write_wav(path: Path, seconds: float, sr: int = 16000, seed: int = 0) -> Path:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * rng.standard_normal(int(seconds * sr)).astype("float32"), sr)
    return path


def _write_grid(path: Path, xmax: float = 1.2) -> Path:
    from praatio import textgrid

    phones = [(0.1, 0.3, "HH"), (0.3, 0.5, "AH0"), (0.5, 0.7, "L"), (0.7, 0.9, "OW1")]
    words = [(0.1, 0.9, "hello")]
    grid = textgrid.Textgrid()
    grid.addTier(textgrid.IntervalTier("words", words, 0.0, xmax))
    grid.addTier(textgrid.IntervalTier("phones", phones, 0.0, xmax))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    return path


def _librispeech(root: Path, grids: Path, n: int = 4) -> Path:
    """train-clean-100/19/198 with n utterances (FLAC + trans.txt) and MFA TextGrids."""
    chapter = root / "train-clean-100" / "19" / "198"
    lines = []
    for i in range(n):
        utt = f"19-198-{i:04d}"
        wav = _write_wav(chapter / f"{utt}.wav", 1.2, seed=i)
        import soundfile as sf

        data, sr = sf.read(wav)
        sf.write(chapter / f"{utt}.flac", data, sr)
        wav.unlink()
        lines.append(f"{utt} HELLO")
        _write_grid(grids / "19" / f"{utt}.TextGrid")
    (chapter / "19-198.trans.txt").write_text("\n".join(lines) + "\n")
    return chapter / "19-198.trans.txt"


def _rejected(out: Path, lang: str = "en") -> dict[str, str]:
    path = out / lang / "rejected_train.jsonl"
    if not path.is_file():
        return {}
    return {
        json.loads(x)["id"]: json.loads(x)["reason"]
        for x in path.read_text().splitlines()
        if x.strip()
    }


@dataclass
class DataCase:
    name: str
    expected: str
    run: Callable[[Lab, Fixtures, Path], Row]


def fresh_corpus(box: Path) -> Path:
    """A new toy corpus in the sandbox (its manifests name its own audio files)."""
    from distilxlsr.data.toy import make_toy_corpus

    make_toy_corpus(box / "corpus", "en", "train", num_utterances=8, seconds=(1.0, 2.0), seed=0)
    return box / "corpus"


def counted_skip(call: Call) -> str | None:
    """A line that reports skipped input (not the loop's "0 skipped steps")."""
    for line in call.lines() + call.lines("stdout"):
        low = line.lower()
        if "skipped steps" in low:
            continue
        if "skip" in low or "unreadable" in low or "rejected" in low:
            return line
    return None


def _distill_refused(
    name, prepare, needles, expected="refused in one line naming the input", allow_skip=False
):
    def attempt(lab: Lab, fx: Fixtures, box: Path) -> Row:
        data_dir = fresh_corpus(box)
        data_arg, extra = prepare(data_dir / "en", box)
        needed = [n(data_dir / "en", box) if callable(n) else n for n in needles]
        call = lab.cli(
            fx.distill_args(box / "run", 1, f"data.train={data_arg}", *extra), box, RUN_TIMEOUT
        )
        result = refusal(call, "distill", needed)
        if allow_skip and call.rc == 0 and "Traceback" not in call.stderr:
            line = counted_skip(call)
            result = (True, f"exit 0, counted: {line.strip()[:120]}") if line else result
        return row_from_call(4, name, expected, result, call)

    return DataCase(name, expected, attempt)


def _distill_refused_or_skipped(name, prepare, needle):
    """Damaged audio: a one-line error naming the file, or a run that counts and names the skip."""
    expected = "one line naming the file, or exit 0 with the file counted as skipped"

    def attempt(lab: Lab, fx: Fixtures, box: Path) -> Row:
        data_dir = fresh_corpus(box)
        bad = prepare(data_dir / "en")
        call = lab.cli(
            fx.distill_args(box / "run", 2, f"data.train={data_dir / 'en'}"), box, RUN_TIMEOUT
        )
        if call.rc == 0 and "Traceback" not in call.stderr:
            line = warned(call, bad.name) or counted_skip(call)
            result = (
                (True, f"exit 0, counted: {line.strip()[:120]}")
                if line
                else (False, "exit 0 without a word about the damaged file (silent)")
            )
        else:
            result = refusal(call, "distill", [(bad.name, needle)])
        return row_from_call(4, name, expected, result, call)

    return DataCase(name, expected, attempt)


def _cli_refused(name, make_argv, cmd, needles, expected="refused in one line"):
    def attempt(lab: Lab, fx: Fixtures, box: Path) -> Row:
        argv = make_argv(fx, box)
        call = lab.cli(argv, box)
        needed = [n(fx, box) if callable(n) else n for n in needles]
        return row_from_call(4, name, expected, refusal(call, cmd, needed), call)

    return DataCase(name, expected, attempt)


def _prepare_case(name, expected, build, argv, check):
    """A prepare run that must succeed (exit 0) with `check(out, call) -> problem or None`."""

    def attempt(lab: Lab, fx: Fixtures, box: Path) -> Row:
        build(box)
        call = lab.cli(argv(box), box, RUN_TIMEOUT)
        ok, outcome = succeeded(call)
        if ok:
            problem = check(box / "out", call)
            ok, outcome = (False, problem) if problem else (True, "exit 0; " + expected)
        return row_from_call(4, name, expected, (ok, outcome), call)

    return DataCase(name, expected, attempt)


def _dup_line(box: Path) -> None:
    trans = _librispeech(box / "LibriSpeech", box / "mfa")
    trans.write_text(trans.read_text() + "19-198-0001 HELLO\n")


def _conflict_line(box: Path) -> None:
    trans = _librispeech(box / "LibriSpeech", box / "mfa", n=6)
    trans.write_text(trans.read_text() + "19-198-0001 GOODBYE\n")


def _ls_argv(box: Path) -> list[str]:
    return [
        "prepare",
        "librispeech",
        str(box / "LibriSpeech"),
        "--alignments",
        str(box / "mfa"),
        "--out",
        str(box / "out"),
        "--max-reject-share",
        "0.5",
    ]


def _check_no_reject(out: Path, call: Call):
    return f"rejects {_rejected(out)}" if _rejected(out) else None


def _check_conflict(out: Path, call: Call):
    got = _rejected(out)
    if got != {"19-198-0001": "conflicting_transcript"}:
        return f"rejects {got} (expected 19-198-0001 as conflicting_transcript)"
    if not warned(call, "1 ", "transcript"):
        return "rejected, but the summary does not mention it"
    return None


def _textgrid_corpus(box: Path, names, sr: int = 16000, seconds: float = 1.2) -> tuple[Path, Path]:
    audio, grids = box / "corpus", box / "aligned"
    for i, name in enumerate(names):
        _write_wav(audio / "spk1" / f"{name}.wav", seconds, sr=sr, seed=i)
        (audio / "spk1" / f"{name}.lab").write_text("hello")
        _write_grid(grids / "spk1" / f"{name}.TextGrid")
    return audio, grids


def _tg_argv(box: Path, *extra: str) -> list[str]:
    return [
        "prepare",
        "textgrid",
        str(box / "corpus"),
        str(box / "aligned"),
        "--lang",
        "xx",
        "--out",
        str(box / "out"),
        "--max-reject-share",
        "0.9",
        *extra,
    ]


def _truncated_wav(box: Path) -> None:
    audio, _ = _textgrid_corpus(box, ["whole", "cut"])
    cut = audio / "spk1" / "cut.wav"
    cut.write_bytes(cut.read_bytes()[:-8000])


def _check_truncated(out: Path, call: Call):
    got = _rejected(out, "xx")
    return (
        None
        if got == {"cut": "truncated_audio"}
        else f"rejects {got} (expected cut: truncated_audio)"
    )


def _alike(box: Path) -> None:
    _textgrid_corpus(box, ["take  ;1", "take ##1"], sr=22050)  # not 16 kHz: converted to FLAC


def _check_alike(out: Path, call: Call):
    from distilxlsr.data.corpora import load_cuts

    cuts = {c.id: c for c in load_cuts(out / "xx", "train")}
    if set(cuts) != {"take  ;1", "take ##1"}:
        return f"cuts {sorted(cuts)}"
    files = {c.recording.sources[0].source for c in cuts.values()}
    if len(files) != 2:
        return f"both cuts name one audio file {files}"
    for cut in cuts.values():
        if cut.load_audio().shape[1] != cut.recording.num_samples:
            return f"{cut.id}: manifest length differs from its audio"
    return None


def _garbage_grid(box: Path) -> None:
    _textgrid_corpus(box, ["good", "broken"])
    (box / "aligned" / "spk1" / "broken.TextGrid").write_text("this is not a TextGrid\n")


def _check_garbage_grid(out: Path, call: Call):
    got = _rejected(out, "xx")
    return None if list(got) == ["broken"] else f"rejects {got} (expected broken)"


def _cv(box: Path) -> None:
    root = box / "cv" / "zz"
    for i in (1, 2):
        _write_wav(root / "clips" / f"x{i}.wav", 0.8, sr=48000, seed=i)
    (root / "train.tsv").write_text("path\tsentence\tclient_id\nx1.wav\tblah\tc1\nx2.wav\tblah\n")
    (box / "labels.tsv").write_text("x1.wav\tb l a h\nx2.wav\tb l a h\n")


def _cv_argv(box: Path) -> list[str]:
    return [
        "prepare",
        "commonvoice",
        str(box / "cv" / "zz"),
        "--lang",
        "zz",
        "--phones",
        str(box / "labels.tsv"),
        "--out",
        str(box / "out"),
        "--max-reject-share",
        "0.9",
    ]


def _check_cv(out: Path, call: Call):
    from distilxlsr.data.corpora import load_cuts

    speakers = {c.id: c.supervisions[0].speaker for c in load_cuts(out / "zz", "train")}
    if speakers != {"x1": "c1", "x2": "unknown"}:
        return f"speakers {speakers} (expected x1: c1, x2: unknown)"
    return None


def _bad_flac(kind: str):
    def damage(data: Path) -> Path:
        victim = _audio_files(data)[2]
        if kind == "truncated":
            victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
        else:
            victim.write_bytes(os.urandom(victim.stat().st_size))
        return victim

    return damage


def _no_train_split(data: Path, box: Path):
    (data / "cuts_train.jsonl.gz").rename(data / "cuts_test.jsonl.gz")
    return data.parent, []


def _empty_manifest(data: Path, box: Path):
    with gzip.open(data / "cuts_train.jsonl.gz", "wt") as f:
        f.write("")
    return data, []


def _not_gzip(data: Path, box: Path):
    (data / "cuts_train.jsonl.gz").write_text("not gzip at all\n")
    return data, []


def _truncated_teacher_case(lab: Lab, fx: Fixtures, box: Path) -> Row:
    teacher = box / "teacher"
    shutil.copytree(fx.teacher, teacher)
    weights = teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    call = lab.cli(fx.distill_args(box / "run", 1, f"teacher={teacher}"), box)
    return row_from_call(
        4,
        "teacher model.safetensors truncated",
        "refused in one line naming the input",
        refusal(call, "distill", ["model.safetensors"]),
        call,
    )


def _evaluate_argv(fx: Fixtures, box: Path) -> list[str]:
    return [
        "evaluate",
        "--model",
        str(fx.teacher),
        "--data",
        str(box / "nowhere"),
        "--out",
        str(box / "eval"),
    ]


DATA_CASES = [
    _distill_refused("manifest that is not gzip", _not_gzip, ["cuts_train.jsonl.gz"]),
    _distill_refused(
        "cut without sampling_rate",
        lambda d, b: (_rewrite_manifest(d / "cuts_train.jsonl.gz", _drop_rate), (d, []))[1],
        ["sampling_rate"],
    ),
    _distill_refused(
        "broken manifest line further down",
        lambda d, b: (
            _rewrite_manifest(d / "cuts_train.jsonl.gz", lambda ls: [*ls[:3], "{broken", *ls[3:]]),
            (d, []),
        )[1],
        ["cuts_train.jsonl.gz"],
    ),
    _distill_refused(
        "audio deleted after prepare",
        lambda d, b: (_audio_files(d)[1].unlink(), (d, []))[1],
        [lambda d, b: "en-train-00001.flac"],
    ),
    _distill_refused("empty manifest", _empty_manifest, [("no usable cut", "empty", "holds no")]),
    _distill_refused(
        "data path that does not exist",
        lambda d, b: (b / "no-such-corpus", []),
        ["no-such-corpus"],
    ),
    _distill_refused(
        "a JSON file that is not a manifest (config.json)",
        lambda d, b: ((b / "config.json").write_text('{"a": 1}'), (b / "config.json", []))[1],
        ["config.json"],
    ),
    _distill_refused(
        "recordings manifest instead of cuts",
        lambda d, b: (d / "recordings_train.jsonl.gz", []),
        ["recordings_train.jsonl.gz"],
    ),
    _distill_refused(
        "directory without manifests",
        lambda d, b: ((b / "empty-dir").mkdir(), (b / "empty-dir", []))[1],
        ["empty-dir"],
    ),
    _distill_refused("no train split (test only)", _no_train_split, ["cuts_train"]),
    _distill_refused("data.train empty", lambda d, b: ("", []), ["data.train"]),
    _distill_refused(
        "every cut shorter than data.min_seconds",
        lambda d, b: (d, ["data.min_seconds=30", "data.max_seconds=60"]),
        ["data.min_seconds"],
    ),
    _distill_refused(
        "a cut with a negative duration",
        lambda d, b: (_rewrite_manifest(d / "cuts_train.jsonl.gz", _negative_duration), (d, []))[1],
        [("duration", "en-train-00000")],
        expected="refused in one line naming the cut (or counted as skipped)",
        allow_skip=True,
    ),
    _distill_refused_or_skipped(
        "audio file truncated after prepare", _bad_flac("truncated"), "audio"
    ),
    _distill_refused_or_skipped(
        "audio file overwritten with random bytes", _bad_flac("garbage"), "audio"
    ),
    DataCase(
        "teacher model.safetensors truncated",
        "refused in one line naming the input",
        _truncated_teacher_case,
    ),
    _prepare_case(
        "LibriSpeech trans.txt: identical line repeated",
        "no reject (a harmless repeat)",
        _dup_line,
        _ls_argv,
        _check_no_reject,
    ),
    _prepare_case(
        "LibriSpeech trans.txt: conflicting line",
        "counted reject conflicting_transcript",
        _conflict_line,
        _ls_argv,
        _check_conflict,
    ),
    _prepare_case(
        "truncated WAV (textgrid corpus)",
        "counted reject truncated_audio",
        _truncated_wav,
        lambda b: _tg_argv(b),
        _check_truncated,
    ),
    _prepare_case(
        "ids that sanitise alike ('take  ;1', 'take ##1')",
        "two audio files, each matching its manifest",
        _alike,
        lambda b: _tg_argv(b),
        _check_alike,
    ),
    _prepare_case(
        "a TextGrid that is garbage",
        "counted reject",
        _garbage_grid,
        lambda b: _tg_argv(b),
        _check_garbage_grid,
    ),
    _prepare_case(
        "Common Voice: client_id last, a short row",
        "speaker unknown for the short row",
        _cv,
        _cv_argv,
        _check_cv,
    ),
    _cli_refused(
        "synth --minutes inf",
        lambda fx, b: ["synth", "--langs", "en", "--minutes", "inf", "--out", str(b / "s")],
        "synth",
        ["--minutes"],
    ),
    _cli_refused(
        "synth --minutes nan",
        lambda fx, b: ["synth", "--langs", "en", "--minutes", "nan", "--out", str(b / "s")],
        "synth",
        ["--minutes"],
    ),
    _cli_refused(
        "synth --minutes -5",
        lambda fx, b: ["synth", "--langs", "en", "--minutes", "-5", "--out", str(b / "s")],
        "synth",
        ["--minutes"],
    ),
    _cli_refused(
        "synth --langs unknown language",
        lambda fx, b: ["synth", "--langs", "qq", "--minutes", "0.1", "--out", str(b / "s")],
        "synth",
        ["qq"],
    ),
    _cli_refused(
        "prepare librispeech: root does not exist",
        lambda fx, b: [
            "prepare",
            "librispeech",
            str(b / "nope"),
            "--alignments",
            str(b),
            "--out",
            str(b / "o"),
        ],
        "prepare",
        ["nope"],
    ),
    _cli_refused(
        "prepare textgrid without --lang",
        lambda fx, b: ["prepare", "textgrid", str(b), str(b), "--out", str(b / "o")],
        "prepare",
        ["--lang"],
    ),
    _cli_refused(
        "prepare fairseq: directory without tsv",
        lambda fx, b: ["prepare", "fairseq", str(b), "--out", str(b / "o")],
        "prepare",
        [".tsv"],
    ),
    _cli_refused(
        "prepare --max-seconds nan",
        lambda fx, b: (_cv(b), [*_cv_argv(b), "--max-seconds", "nan"])[1],
        "prepare",
        [("max-seconds", "max_seconds")],
    ),
    _cli_refused(
        "prepare --jobs 0",
        lambda fx, b: (_cv(b), [*_cv_argv(b), "--jobs", "0"])[1],
        "prepare",
        ["jobs"],
    ),
    _cli_refused(
        "prepare --max-reject-share nan",
        lambda fx, b: (_cv(b), [*_cv_argv(b), "--max-reject-share", "nan"])[1],
        "prepare",
        [("max-reject-share", "max_reject_share")],
    ),
    _cli_refused(
        "shuffle --mode utterence",
        lambda fx, b: [
            "shuffle",
            "--cuts",
            str(fx.data),
            "--mode",
            "utterence",
            "--out",
            str(b / "o"),
        ],
        "shuffle",
        ["utterence"],
    ),
    _cli_refused(
        "export of a path that does not exist",
        lambda fx, b: ["export", str(b / "nope"), "--out", str(b / "o")],
        "export",
        ["nope"],
    ),
    _cli_refused(
        "export of a run that never checkpointed",
        lambda fx, b: (
            (b / "run" / "checkpoints").mkdir(parents=True),
            ["export", str(b / "run"), "--out", str(b / "o")],
        )[1],
        "export",
        ["checkpoint"],
    ),
    _cli_refused("evaluate --data that does not exist", _evaluate_argv, "evaluate", ["nowhere"]),
    _cli_refused(
        "init-student --layers jump:3 (4-layer teacher)",
        lambda fx, b: [
            "init-student",
            "--teacher",
            str(fx.teacher),
            "--layers",
            "jump:3",
            "--out",
            str(b / "s"),
        ],
        "init-student",
        ["jump:3"],
    ),
]


# ---------------------------------------------------------------------------------------------
# Group 5: hostile checkpoints and models
# ---------------------------------------------------------------------------------------------


class OpensMarker:
    """Unpickling this calls open(marker, "w"): it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class TouchesMarker:
    """Unpickling this runs `touch marker` in a shell (os.system)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, ("touch " + shlex.quote(self.marker),))


def check_payloads(folder: Path) -> bool:
    """The payloads are real: plain unpickling runs them (here, on purpose, in the temp dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    live = True
    for cls in (OpensMarker, TouchesMarker):
        probe = folder / f"probe-{cls.__name__}"
        result = pickle.loads(pickle.dumps(cls(probe)))
        if hasattr(result, "close"):
            result.close()
        live = live and probe.exists()
    return live


def snapshot(box: Path, skip: set[Path]) -> dict[str, tuple[int, int]]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(box):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in filenames:
            p = here / name
            try:
                st = p.lstat()
            except OSError:
                continue
            files[str(p.relative_to(box))] = (st.st_size, st.st_mtime_ns)
    return files


def official_checkpoint(fx: Fixtures, path: Path, change: dict | None = None) -> Path:
    """An authors'-layout checkpoint of a tiny model (`change`: edits to its config)."""
    import torch

    shutil.copy(fx.official, path)
    if change:
        ckpt = torch.load(path, weights_only=True)
        ckpt["Config"]["model"].update(change)
        torch.save(ckpt, path)
    return path


def _zip_bomb(path: Path, size: int = 1 << 30) -> Path:
    mode = zipfile.ZIP_DEFLATED
    with (
        zipfile.ZipFile(path, "w", compression=mode, compresslevel=9) as archive,
        archive.open("archive/data.pkl", "w", force_zip64=True) as f,
    ):
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            f.write(block)
    return path


@dataclass
class HostileCase:
    name: str
    expected: str
    prepare: Callable
    """(lab, fx, box, marker) -> (argv, cmd, judge); judge(call, box) -> (ok, outcome)."""


def _judge_refused(cmd, needles):
    return lambda call, box: refusal(call, cmd, needles)


def _judge_refused_or_fallback(call: Call, box: Path):
    if call.rc == 0 and "Traceback" not in call.stderr:
        line = warned(call, "skipping checkpoint")
        return (
            (True, f"fell back: {line.strip()[:120]}")
            if line
            else (False, "exit 0 without a word about the hostile file")
        )
    return refusal(call, "distill", [("training_state.pt", "rank-0.pt", "checkpoint")])


def _judge_ran(call: Call, box: Path):
    ok, outcome = succeeded(call)
    return ok, outcome + (" (the built-in class was used; the custom code ignored)" if ok else "")


def _h_import_pickle(kind: str):
    def prepare(lab, fx, box, marker):
        import torch

        path = box / "evil.pt"
        payload = OpensMarker(marker) if kind == "open" else TouchesMarker(marker)
        cfg_ckpt = official_checkpoint(fx, box / "plain.pt")
        plain = torch.load(cfg_ckpt, weights_only=True)
        content = {"x": payload, "Config": plain["Config"], "Student": plain["Student"]}
        if kind == "open":
            torch.save(content, path)
        else:
            with open(path, "wb") as f:
                pickle.dump(content, f, protocol=2)
        return ["import-official", str(path), "--out", str(box / "out")], _judge_refused(
            "import-official", ["evil.pt"]
        )

    return prepare


def _h_teacher_bin(cmd: str):
    def prepare(lab, fx, box, marker):
        teacher = box / "teacher"
        teacher.mkdir()
        shutil.copy(fx.teacher / "config.json", teacher / "config.json")
        with open(teacher / "pytorch_model.bin", "wb") as f:
            pickle.dump({"w": OpensMarker(marker)}, f, protocol=2)
        if cmd == "distill":
            argv = fx.distill_args(box / "out", 1, f"teacher={teacher}")
        else:
            argv = ["init-student", "--teacher", str(teacher), "--out", str(box / "out")]
        return argv, _judge_refused(cmd, [("pytorch_model.bin", str(teacher))])

    return prepare


def _h_checkpoint_pickle(name: str, rewrite_manifest: bool):
    def prepare(lab, fx, box, marker):
        import torch

        from distilxlsr.training.checkpoint import write_manifest

        run = box / "out"
        shutil.copytree(fx.g2.path, run)
        target = _step(run, 3) / name
        if name == "training_state.pt":
            torch.save({"optimizer": OpensMarker(marker), "scheduler": {}}, target)
        else:
            torch.save({"data_position": TouchesMarker(marker)}, target)
        if rewrite_manifest:
            (_step(run, 3) / "manifest.json").unlink()
            write_manifest(_step(run, 3))
        return fx.g2_args(run), _judge_refused_or_fallback

    return prepare


def _h_yaml_apply(lab, fx, box, marker):
    path = box / "evil.yaml"
    path.write_text(
        f"train: !!python/object/apply:os.system [{json.dumps('touch ' + shlex.quote(str(marker)))}]\n"
    )
    return fx.distill_args(box / "out", 1, config=path), _judge_refused("distill", ["evil.yaml"])


def _h_run_config_tag(lab, fx, box, marker):
    run = box / "out"
    shutil.copytree(fx.g2.path, run)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(
        f"x: !!python/object/apply:os.system [{json.dumps('touch ' + shlex.quote(str(marker)))}]\n"
        + text
    )
    return fx.g2_args(run), _judge_refused("distill", ["config.yaml"])


def _h_auto_map(cmd: str):
    def prepare(lab, fx, box, marker):
        teacher = box / "teacher"
        shutil.copytree(fx.teacher, teacher)
        config = json.loads((teacher / "config.json").read_text())
        config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
        (teacher / "config.json").write_text(json.dumps(config, indent=2))
        (teacher / "evil.py").write_text(
            f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
            "from transformers import Wav2Vec2Config as EvilConfig, Wav2Vec2Model as EvilModel\n"
        )
        if cmd == "distill":
            return fx.distill_args(box / "out", 1, f"teacher={teacher}"), _judge_ran
        return ["init-student", "--teacher", str(teacher), "--out", str(box / "out")], _judge_ran

    return prepare


def _h_auto_map_unknown_type(lab, fx, box, marker):
    teacher = box / "teacher"
    shutil.copytree(fx.teacher, teacher)
    config = json.loads((teacher / "config.json").read_text())
    config["model_type"] = "evil"
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (teacher / "config.json").write_text(json.dumps(config))
    (teacher / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    return fx.distill_args(box / "out", 1, f"teacher={teacher}"), _judge_refused(
        "distill", ["evil"]
    )


def _h_safetensors_header(lab, fx, box, marker):
    teacher = box / "teacher"
    teacher.mkdir()
    shutil.copy(fx.teacher / "config.json", teacher / "config.json")
    # a header that claims 1 TB: reading it must not allocate
    (teacher / "model.safetensors").write_bytes((1 << 40).to_bytes(8, "little") + b'{"a":')
    return fx.distill_args(box / "out", 1, f"teacher={teacher}"), _judge_refused(
        "distill", ["model.safetensors"]
    )


def _h_zip_bomb(lab, fx, box, marker):
    path = _zip_bomb(box / "bomb.pt")
    return ["import-official", str(path), "--out", str(box / "out")], _judge_refused(
        "import-official", ["bomb.pt"]
    )


def _h_absurd_sizes(lab, fx, box, marker):
    path = official_checkpoint(
        fx, box / "huge.pt", {"encoder_embed_dim": 1 << 24, "encoder_ffn_embed_dim": 1 << 24}
    )
    return ["import-official", str(path), "--out", str(box / "out")], _judge_refused(
        "import-official", ["huge.pt"]
    )


def _h_cv_traversal(lab, fx, box, marker):
    root = box / "a" / "b" / "cv" / "zz"
    _write_wav(box / "a" / "b" / "escape.wav", 0.8, sr=48000)
    _write_wav(root / "clips" / "ok.wav", 0.8, sr=48000, seed=1)
    (root / "train.tsv").write_text(
        "path\tsentence\tclient_id\nok.wav\tblah\tc\n../../../escape.wav\tblah\tc\n"
    )
    (box / "labels.tsv").write_text("ok.wav\tb l a h\nescape.wav\tb l a h\n")
    argv = [
        "prepare",
        "commonvoice",
        str(root),
        "--lang",
        "zz",
        "--phones",
        str(box / "labels.tsv"),
        "--out",
        str(box / "out"),
        "--max-reject-share",
        "0.9",
    ]
    return argv, lambda call, b: succeeded(call) if call.rc == 0 else refusal(call, "prepare", [])


def _h_lang_traversal(lab, fx, box, marker):
    _cv(box)
    argv = [
        "prepare",
        "commonvoice",
        str(box / "cv" / "zz"),
        "--lang",
        "../escape",
        "--phones",
        str(box / "labels.tsv"),
        "--out",
        str(box / "out"),
        "--max-reject-share",
        "0.9",
    ]
    return (
        argv,
        lambda call, b: succeeded(call) if call.rc == 0 else refusal(call, "prepare", ["--lang"]),
    )


def _h_librispeech_traversal(lab, fx, box, marker):
    trans = _librispeech(box / "LibriSpeech", box / "mfa")
    trans.write_text(trans.read_text() + "../../../../escape HELLO\n")
    argv = _ls_argv(box)
    return argv, lambda call, b: succeeded(call) if call.rc == 0 else refusal(call, "prepare", [])


def _h_hub_traversal(lab, fx, box, marker):
    return fx.distill_args(box / "out", 1, "teacher=x/.."), _judge_refused("distill", ["x/.."])


HOSTILE_CASES = [
    HostileCase(
        "import-official: torch.save pickle, __reduce__ open()",
        "refused in one line; nothing runs",
        _h_import_pickle("open"),
    ),
    HostileCase(
        "import-official: legacy pickle, __reduce__ os.system",
        "refused in one line; nothing runs",
        _h_import_pickle("system"),
    ),
    HostileCase(
        "teacher pytorch_model.bin pickle (distill)",
        "refused in one line; nothing runs",
        _h_teacher_bin("distill"),
    ),
    HostileCase(
        "teacher pytorch_model.bin pickle (init-student)",
        "refused in one line; nothing runs",
        _h_teacher_bin("init-student"),
    ),
    HostileCase(
        "checkpoint training_state.pt pickle, manifest re-signed",
        "refused in one line or fallback; nothing runs",
        _h_checkpoint_pickle("training_state.pt", True),
    ),
    HostileCase(
        "checkpoint rank-0.pt pickle, manifest re-signed",
        "refused in one line or fallback; nothing runs",
        _h_checkpoint_pickle("rank-0.pt", True),
    ),
    HostileCase(
        "checkpoint training_state.pt pickle, manifest as written",
        "fallback with a warning; nothing runs",
        _h_checkpoint_pickle("training_state.pt", False),
    ),
    HostileCase(
        "--config YAML !!python/object/apply:os.system",
        "refused in one line; nothing runs",
        _h_yaml_apply,
    ),
    HostileCase(
        "run directory config.yaml with !!python/object/apply",
        "refused in one line; nothing runs",
        _h_run_config_tag,
    ),
    HostileCase(
        "teacher config.json auto_map to custom code (distill)",
        "custom code never imported",
        _h_auto_map("distill"),
    ),
    HostileCase(
        "teacher config.json auto_map to custom code (init-student)",
        "custom code never imported",
        _h_auto_map("init-student"),
    ),
    HostileCase(
        "teacher model_type unknown + auto_map",
        "refused in one line; nothing runs",
        _h_auto_map_unknown_type,
    ),
    HostileCase(
        "teacher safetensors header claiming 1 TB",
        "refused in one line, nothing allocated",
        _h_safetensors_header,
    ),
    HostileCase(
        "import-official: 1 MB zip expanding to 1 GiB",
        "refused in one line before expanding",
        _h_zip_bomb,
    ),
    HostileCase(
        "import-official: config asking for 2^24-wide layers",
        "refused in one line before allocating",
        _h_absurd_sizes,
    ),
    HostileCase(
        "Common Voice path ../../../escape.wav", "nothing written outside --out", _h_cv_traversal
    ),
    HostileCase(
        "prepare --lang ../escape", "refused, or nothing written outside --out", _h_lang_traversal
    ),
    HostileCase(
        "LibriSpeech id ../../../../escape",
        "nothing written outside --out",
        _h_librispeech_traversal,
    ),
    HostileCase(
        "teacher=x/.. (a hub id that climbs)",
        "refused in one line; nothing fetched or written",
        _h_hub_traversal,
    ),
]


def hostile_attempt(lab: Lab, fx: Fixtures, case: HostileCase) -> Row:
    box = lab.sandbox("hostile-" + case.name)
    marker = box / "PWNED-marker"
    argv, judge = case.prepare(lab, fx, box, marker)
    out = box / "out"
    outputs = {out, box / ".hf_home"}  # .hf_home is checked on its own below
    before = snapshot(box, outputs)
    start = time.monotonic()
    call = lab.cli(argv, box, RUN_TIMEOUT)
    ok, outcome = judge(call, box)
    after = snapshot(box, outputs)
    written = sorted(k for k, v in after.items() if before.get(k) != v)
    hf_home = box / ".hf_home"
    modules = (
        sorted(str(p.relative_to(box)) for p in hf_home.rglob("*.py")) if hf_home.is_dir() else []
    )
    executed = marker.exists()
    problems = []
    if executed:
        problems.append("CODE RAN: the marker file exists")
    if written:
        problems.append(f"wrote outside --out: {written[:4]}")
    if modules:
        problems.append(f"custom code copied into the HF modules cache: {modules[:3]}")
    if not ok:
        problems.append(outcome)
    row = row_from_call(
        5,
        case.name,
        case.expected,
        (not problems, "; ".join(problems) if problems else outcome),
        call,
    )
    row.extra = {"executed": executed, "wrote_outside": written}
    row.seconds = round(time.monotonic() - start, 1)
    return row


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def plan(lab: Lab, fx: Fixtures, groups: set[int], kills: int, seed: int):
    """(label, attempt) pairs, longest first (so that the pool's tail is short)."""
    tasks: list[tuple[str, Callable[[], list[Row]]]] = []
    if 3 in groups:
        tasks.append(("second process", lambda: second_process_attempt(lab, fx)))
        tasks.append(("stale lock", lambda: stale_lock_attempts(lab, fx)))
        rng = random.Random(seed)
        for i in range(kills):
            mode = "checkpoint" if i % 2 else "random"
            s = rng.randrange(1 << 30)
            tasks.append(
                (f"kill {i + 1}", lambda i=i, m=mode, s=s: [kill_attempt(lab, fx, i + 1, m, s)])
            )
    if 2 in groups:
        for name, damage, fallback in DAMAGE:
            tasks.append(
                (name, lambda n=name, d=damage, f=fallback: [damage_attempt(lab, fx, n, d, f)])
            )
    if 1 in groups:
        for name, extra, needles in CONFIG_MISTAKES:
            tasks.append(
                (name, lambda n=name, e=extra, k=needles: [config_attempt(lab, fx, n, e, k)])
            )
    if 5 in groups:
        for case in HOSTILE_CASES:
            tasks.append((case.name, lambda c=case: [hostile_attempt(lab, fx, c)]))
    if 4 in groups:
        for case in DATA_CASES:
            tasks.append(
                (case.name, lambda c=case: [c.run(lab, fx, lab.sandbox("data-" + c.name))])
            )
    return tasks


def _guard(task: Callable[[], list[Row]], label: str) -> list[Row]:
    """A crash of the harness itself becomes a failed row (the measurement goes on)."""
    try:
        return task()
    except Exception as err:  # noqa: BLE001
        import traceback

        return [
            Row(
                0,
                label,
                "",
                f"HARNESS ERROR {type(err).__name__}: {err}",
                False,
                stderr_tail=traceback.format_exc().splitlines()[-6:],
            )
        ]


def _cell(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def report(rows: list[Row], groups: set[int]) -> dict:
    summary = {"groups": {}}
    total_ok = total = 0
    for g in sorted(groups):
        mine = [r for r in rows if r.group == g]
        ok = sum(r.ok for r in mine)
        total_ok += ok
        total += len(mine)
        print(f"\n## Group {g}: {GROUPS[g]} — handled as specified: {ok} of {len(mine)}\n")
        print(f"| {'attempt':<58} | {'expected':<44} | {'outcome':<70} | ok |")
        print(f"| {'-' * 58} | {'-' * 44} | {'-' * 70} | -- |")
        for r in mine:
            print(
                f"| {_cell(r.name, 58):<58} | {_cell(r.expected, 44):<44} | {_cell(r.outcome, 70):<70} | {'ok' if r.ok else 'NO'} |"
            )
        entry = {
            "name": GROUPS[g],
            "handled": ok,
            "tried": len(mine),
            "rows": [asdict(r) for r in mine],
        }
        if g == 1:
            fixes = [r for r in mine if r.extra.get("fix_ok") is not None]
            fixed = sum(bool(r.extra["fix_ok"]) for r in fixes)
            entry["fix_after_failed_start"] = {"ran": fixed, "tried": len(fixes)}
            print(
                f"\nfailed start never blocks the fix: the corrected command ran in the same run "
                f"directory {fixed} of {len(fixes)} times"
            )
        if g == 3:
            killed = [r for r in mine if r.extra.get("kill")]
            same = sum(r.ok for r in killed)
            during = sum(bool(r.extra.get("during_write")) for r in killed)
            entry["kills"] = {
                "tried": len(killed),
                "identical": same,
                "during_checkpoint_writes": during,
            }
            print(
                f"\nkills survived with identical weights: {same} of {len(killed)} "
                f"({during} during checkpoint writes)"
            )
        if g == 5:
            ran = sum(bool(r.extra.get("executed")) for r in mine)
            outside = sum(bool(r.extra.get("wrote_outside")) for r in mine)
            entry["executed"] = ran
            entry["wrote_outside"] = outside
            print(
                f"\nhostile payloads that ran: {ran} of {len(mine)}; attempts that wrote outside "
                f"their output directory: {outside}"
            )
        summary["groups"][str(g)] = entry
    harness = [r for r in rows if r.group == 0]
    if harness:
        summary["harness_errors"] = [asdict(r) for r in harness]
    summary["handled"], summary["tried"] = total_ok, total
    print(f"\n# Overall: handled as specified {total_ok} of {total}")
    failures = [r for r in rows if not r.ok]
    if failures:
        print(f"\n# Not handled ({len(failures)})\n")
        for r in failures:
            print(
                f"- [group {r.group}] {r.name}\n    outcome: {r.outcome}\n    command: {r.command}"
            )
            if "fix_ok" in r.extra and not r.extra["fix_ok"]:
                print(f"    corrected command: {r.extra['fix_outcome']}")
            for line in r.stderr_tail:
                print(f"      | {line[:240]}")
    fix_failures = [r for r in rows if r.extra.get("fix_ok") is False]
    if fix_failures:
        print("\n# Corrected command blocked after a failed start\n")
        for r in fix_failures:
            print(f"- {r.name}: {r.extra['fix_outcome']}")
    return summary


def _scrub(obj, root: str):
    """Temporary paths as $TMP in the JSON file."""
    if isinstance(obj, str):
        return obj.replace(root, "$TMP")
    if isinstance(obj, list):
        return [_scrub(x, root) for x in obj]
    if isinstance(obj, dict):
        return {k: _scrub(v, root) for k, v in obj.items()}
    return obj


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2, help="attempts run at once (default 2)")
    parser.add_argument(
        "--kills", type=int, default=12, help="SIGKILL trials (half during checkpoint writes)"
    )
    parser.add_argument("--groups", default="1,2,3,4,5", help="comma-separated groups to run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(REPO / "results" / "hostile-inputs.json"))
    parser.add_argument(
        "--workdir", help="parent of the temporary directory (default: system temp)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--only", help="only the attempts whose name contains this (debugging)")
    args = parser.parse_args()
    groups = {int(g) for g in args.groups.split(",") if g.strip()}
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="hostile-", dir=args.workdir))
    lab = Lab(root)
    print(f"working in {root}", flush=True)
    try:
        fx = Fixtures(lab)
        fx.build(groups)
        print(
            f"fixtures ready in {time.monotonic() - started:.0f} s (reference runs: "
            f"{fx.g2.seconds if fx.g2 else 0:.0f} s, {fx.g3.seconds if fx.g3 else 0:.0f} s)",
            flush=True,
        )
        tasks = plan(lab, fx, groups, args.kills, args.seed)
        if args.only:
            tasks = [(label, t) for label, t in tasks if args.only.lower() in label.lower()]
        rows: list[Row] = []
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = [pool.submit(_guard, t, label) for label, t in tasks]
            for done, future in enumerate(concurrent.futures.as_completed(futures), start=1):
                for r in future.result():
                    rows.append(r)
                    mark = "ok" if r.ok else "NOT HANDLED"
                    print(
                        f"[{done}/{len(tasks)} {time.monotonic() - started:5.0f} s] group {r.group} "
                        f"{r.name}: {mark} ({r.seconds:.0f} s)",
                        flush=True,
                    )
        order = {id(r): i for i, r in enumerate(rows)}
        rows.sort(key=lambda r: (r.group, _order_key(r), order[id(r)]))
        rows = [Row(**_scrub(asdict(r), str(root))) for r in rows]  # temporary paths as $TMP
        summary = report(rows, groups)
        summary["payloads_verified_live"] = fx.payloads_live
        summary = {
            "issue": 16,
            "command": ("python tools/hostile_inputs.py " + shlex.join(sys.argv[1:])).strip(),
            "commit": _git_head(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "seconds": round(time.monotonic() - started),
            "jobs": args.jobs,
            **summary,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        print(f"\nwrote {path} ({summary['seconds']} s in all)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _order_key(row: Row) -> int:
    """Rows in the order the attempts are defined."""
    names = {
        1: [c[0] for c in CONFIG_MISTAKES],
        2: [d[0] for d in DAMAGE],
        4: [c.name for c in DATA_CASES],
        5: [c.name for c in HOSTILE_CASES],
    }.get(row.group, [])
    if row.group == 3 and row.name.startswith("kill "):
        return 100 + int(row.name.split()[1].rstrip(":"))
    return names.index(row.name) if row.name in names else 0


def _git_head() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
