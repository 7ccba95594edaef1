"""The planner's memory (`distilxlsr plan`, nothing allocated) against memory measured in real
runs of the same training step:

- GPU: every run of the GPU benchmark (`results/bench-gpu.json`: one process, peak
  `torch.cuda.max_memory_allocated` over distillation steps) against the planner's peak for the
  same shape, batch and precision (fused attention, as the GPU ran it);
- CPU: a real step here at two batch sizes, its allocations recorded by torch's profiler
  (`profile_memory=True`: every allocation and free of torch's CPU allocator, kernels' own
  buffers included), peak above what was live when the step began, against the planner's with
  the CPU's unfused attention (`attention="math"`). The process's resident memory is printed
  too: glibc keeps freed blocks, so it grows about twice as fast as the tensors do.

    python benchmarks/plan_check.py [--shape cpu-mid] [--seconds 5] [--small 2] [--large 8]
        [--out results/plan_check.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from distilxlsr.plan import BENCH_GPU, GB, step_memory

REAL_STEP = """
import resource, sys, torch
from torch.profiler import ProfilerActivity, profile
from distilxlsr.bench.common import distill_stepper
shape, utterances, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
step, _ = distill_stepper(shape, "jump:2", utterances, seconds, "fp32", True, "cpu")
step()  # the optimizer state exists from here on
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    step()
events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
live = peak = 0
for event in sorted(events, key=lambda e: e.start_ns()):
    live += event.nbytes()
    peak = max(peak, live)
print(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def real_cpu_step(shape: str, utterances: int, seconds: float) -> tuple[int, int]:
    """A fresh process's real step on the CPU: the allocator's peak above the step's start,
    and the process's peak resident bytes."""
    out = subprocess.run(
        [sys.executable, "-c", REAL_STEP, shape, str(utterances), str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    )
    step_peak, rss = out.stdout.strip().splitlines()[-1].split()
    return int(step_peak), int(rss)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="cpu-mid")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--small", type=int, default=2)
    parser.add_argument("--large", type=int, default=8)
    parser.add_argument("--out")
    args = parser.parse_args()
    result = {"command": "python benchmarks/plan_check.py " + " ".join(sys.argv[1:])}

    bench = json.loads(BENCH_GPU.read_text())
    rows = []
    for run in bench["gpu"]["runs"]:
        if "+compile" in run["precision"] or "peak_memory_gb" not in run:
            continue
        utterances = 8  # the GPU benchmark's batch: 8 utterances of 15 s
        seconds = run["batch_audio_seconds"] / utterances
        precision = "bf16" if run["precision"] == "bf16" else "no"
        planned, _ = step_memory(
            run["shape"], run["layers"], utterances, seconds, precision, "fp32"
        )
        rows.append(
            {
                "shape": run["shape"],
                "precision": run["precision"],
                "batch_audio_seconds": run["batch_audio_seconds"],
                "measured_gb": run["peak_memory_gb"],
                "planned_gb": planned.peak / GB,
                "planned_over_measured": planned.peak / GB / run["peak_memory_gb"],
            }
        )
        print(
            f"GPU {bench['machine']['gpu']}, {run['shape']} {run['precision']}: measured "
            f"{run['peak_memory_gb']:.2f} GB, planned {planned.peak / GB:.2f} GB "
            f"({planned.peak / GB / run['peak_memory_gb'] - 1:+.1%})",
            flush=True,
        )
    result["gpu"] = {"card": bench["machine"]["gpu"], "runs": rows}

    sizes = (args.small, args.large)
    measured = {n: real_cpu_step(args.shape, n, args.seconds) for n in sizes}
    steps = {
        n: step_memory(args.shape, "jump:2", n, args.seconds, "no", "fp32", attention="math")[0]
        for n in sizes
    }
    planned = {n: steps[n].peak - steps[n].before_step for n in sizes}
    result["cpu"] = {
        "shape": args.shape,
        "utterance_seconds": args.seconds,
        "measured_step_peak_gb": {str(n): measured[n][0] / GB for n in sizes},
        "planned_step_peak_gb": {str(n): planned[n] / GB for n in sizes},
        "planned_over_measured": {str(n): planned[n] / measured[n][0] for n in sizes},
        "process_peak_rss_gb": {str(n): measured[n][1] / GB for n in sizes},
    }
    for n in sizes:
        print(
            f"CPU, {args.shape}, {n} x {args.seconds:g} s: step's peak above its start measured "
            f"{measured[n][0] / GB:.3f} GB, planned {planned[n] / GB:.3f} GB "
            f"({planned[n] / measured[n][0] - 1:+.1%}); process resident peak "
            f"{measured[n][1] / GB:.2f} GB",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
