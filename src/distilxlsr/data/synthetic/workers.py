"""The process pool of the synthetic corpus: a fresh engine process for every chunk.

The library keeps global state and its output depends on what it synthesised before
(data/synthetic/engine.py), so the main process never loads it: `jobs` worker processes started
afresh with `python -c` (like multiprocessing's spawn, without re-importing the caller's
__main__) never load it either, and fork one child per chunk of `CHUNK` utterances; the child
loads the library, synthesises the chunk in a fixed call order, writes the FLAC files and exits.
Each chunk therefore starts from the same state, and the corpus is a pure function of (language,
split, minutes, seed) whatever the number of jobs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

from distilxlsr.data.synthetic.render import render_chunk


def _synthesize_chunk(task: tuple[list[dict], str]) -> dict:
    """Synthesise one chunk in a forked child, so that every chunk starts from a fresh library
    state (this process must never have loaded the library)."""
    specs, audio_dir = task
    if not hasattr(os, "fork"):  # pragma: no cover - the worker then serves one chunk and exits
        return render_chunk(specs, audio_dir)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = ("ok", render_chunk(specs, audio_dir))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                payload = ("error", f"{type(exc).__name__}: {exc}")
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(pickle.dumps(payload))
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the eSpeak child process died (wait status {status})")
    kind, payload = pickle.loads(data)
    if kind != "ok":
        raise RuntimeError(f"eSpeak synthesis failed: {payload}")
    return payload


def _read_frame(stream) -> object:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    size = int.from_bytes(header, "little")
    return pickle.loads(stream.read(size))


def _write_frame(stream, obj: object) -> None:
    data = pickle.dumps(obj)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def serve_worker() -> None:
    """Entry point of a worker process: chunks in on stdin, results out on stdout."""
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the protocol
    protocol_in = sys.stdin.buffer
    while True:
        try:
            task = _read_frame(protocol_in)
        except EOFError:
            return
        if task is None:
            return
        try:
            reply = ("ok", _synthesize_chunk(task))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write_frame(protocol_out, reply)


def _kill(process: subprocess.Popen) -> None:
    """Kill a worker and the chunk process it may have forked."""
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover
            process.kill()


class Workers:
    """`jobs` worker processes started with `python -c` (like multiprocessing's spawn, without
    re-importing the caller's __main__, so callers need no `if __name__ == "__main__"` guard);
    `submit` returns a future. The workers never load libespeak-ng themselves."""

    def __init__(self, jobs: int):
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._all: list[subprocess.Popen] = []
        for _ in range(jobs):
            self._idle.put(None)  # started on first use
        self._threads = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="synth")

    def _start(self) -> subprocess.Popen:
        package_root = str(Path(__file__).resolve().parents[3])  # the directory holding distilxlsr
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from distilxlsr.data.synthetic.workers import serve_worker; serve_worker()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=hasattr(os, "killpg"),  # its own group: killed with its children
        )
        self._all.append(process)
        return process

    def _run(self, task) -> dict:
        process = self._idle.get()
        try:
            if process is None or process.poll() is not None:
                process = self._start()
            _write_frame(process.stdin, task)
            try:
                kind, payload = _read_frame(process.stdout)
            except EOFError:
                _kill(process)
                raise RuntimeError("a synth worker process died") from None
            if not hasattr(os, "fork"):  # pragma: no cover - one chunk per process there
                _write_frame(process.stdin, None)
                process = None
        finally:
            self._idle.put(process)
        if kind != "ok":
            raise RuntimeError(payload)
        return payload

    def submit(self, task):
        return self._threads.submit(self._run, task)

    def close(self, wait: bool = True) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=not wait)
        for process in self._all:
            if process.poll() is None:
                if wait:
                    with contextlib.suppress(OSError):
                        _write_frame(process.stdin, None)
                        process.stdin.close()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        _kill(process)
                else:
                    _kill(process)
            with contextlib.suppress(OSError):
                process.wait()
