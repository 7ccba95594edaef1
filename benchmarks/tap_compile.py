"""A distillation step on the CPU with the hook-based layer taps, the explicit taps, and the
explicit taps compiled (`train.compile`: torch.compile, inductor), measured side by side.

Each variant is the training loop's own step (teacher forward under inference mode, student
forward + backward, fused AdamW) on the same random batch, built from the same seed. After one
warm-up step each (the compiled one compiles there, timed separately), the variants run in
alternating rounds of a few steps, so that a load change on the machine reaches all of them;
the per-variant median step time and the ratios are printed (and written as JSON with --out).

    PYTHONPATH=src python benchmarks/tap_compile.py [--shape small] [--rounds 5] [--no-compile]
        [--no-dropout] [--out FILE.json]

Shapes: tiny (the tests' tiny model: hidden 32, 4 layers, a 3-layer CNN of 32 channels) and
small (hidden 256, 8 layers, XLS-R's CNN); a jump:2 student, batches of 2 x 2 s. GPU figures
come from `distilxlsr bench --sections gpu` (benchmarks/gpu.sh).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from distilxlsr.bench import common as bench
from distilxlsr.models import presets

SHAPES = {"tiny": None, "small": (256, 8, 1024, 4)}  # tiny: presets.tiny_config()
DROPOUTS = ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout")
VARIANTS = {
    "hooks": ("fp32", "hooks"),
    "explicit": ("fp32", "explicit"),
    "compiled": ("fp32+compile", "explicit"),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per variant and round")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per utterance")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--no-dropout",
        action="store_true",
        help="all dropout off (by default the config's: transformers' defaults, 0.1)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    name = f"bench-{args.shape}"
    presets.SHAPES[name] = SHAPES[args.shape] or (32, 4, 64, 2)  # tiny: for the name check
    shape_config = presets.shape_config

    def config(n: str):
        if n != name:
            return shape_config(n)
        config = shape_config(n) if SHAPES[args.shape] else presets.tiny_config()
        if args.no_dropout:
            config.update({k: 0.0 for k in DROPOUTS})
        return config

    presets.shape_config = config  # what bench's pair of models is built from
    variants = [v for v in VARIANTS if not (args.no_compile and v == "compiled")]
    steps, first = {}, {}
    for variant in variants:
        precision, taps = VARIANTS[variant]
        torch.manual_seed(0)
        step, _ = bench.distill_stepper(
            name, "jump:2", 2, args.seconds, precision, True, "cpu", taps
        )
        start = time.perf_counter()
        step()  # warm-up; compilation for the compiled variant
        first[variant] = time.perf_counter() - start
        steps[variant] = step
        print(f"{variant:>8}: first step {first[variant]:.1f} s", flush=True)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        order = variants if round_ % 2 == 0 else variants[::-1]
        for variant in order:
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[variant]()
            times[variant].append((time.perf_counter() - start) / args.steps)
    median = {v: statistics.median(t) for v, t in times.items()}
    result = {
        "shape": args.shape,
        "dropout": not args.no_dropout,
        "dims": SHAPES[args.shape],
        "batch_audio_seconds": 2 * args.seconds,
        "torch_threads": torch.get_num_threads(),
        "first_step_seconds": first,
        "step_seconds": times,
        "median_step_seconds": median,
        "hooks_over_explicit": median["hooks"] / median["explicit"],
    }
    if "compiled" in median:
        result["explicit_over_compiled"] = median["explicit"] / median["compiled"]
        result["hooks_over_compiled"] = median["hooks"] / median["compiled"]
    for variant in variants:
        print(f"{variant:>8}: median step {median[variant] * 1000:8.1f} ms")
    for key in ("hooks_over_explicit", "explicit_over_compiled", "hooks_over_compiled"):
        if key in result:
            print(f"{key}: {result[key]:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
