"""The planner's figures for distilling XLS-R 300M, 1B and 2B (jump:2) on LibriSpeech 960 h, on
one node and on eight (8 GPUs each), for 40 GB and 80 GB cards, with and without the optimizer
state sharded: the table docs/scale.md shows.

    python benchmarks/plan_table.py [--out results/plan_table.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from distilxlsr.plan import plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teachers", default="xls-r-300m,xls-r-1b,xls-r-2b")
    parser.add_argument("--out", default="results/plan_table.json")
    args = parser.parse_args()
    rows = []
    for teacher in args.teachers.split(","):
        for memory in (40.0, 80.0):
            for gpus in (8, 64):
                for sharding in ("none", "zero1"):
                    p = plan(teacher, gpus=gpus, gpu_memory_gb=memory, optimizer_sharding=sharding)
                    rows.append(asdict(p))
                    m, t = p.memory_gb, p.time
                    print(
                        f"{teacher} {memory:g} GB x {gpus} {sharding}: total {m['total']:.1f} GB "
                        f"at {p.batch_seconds:g} s, largest {p.largest_batch_seconds:g} s, "
                        f"{t['run_hours_compute']:.1f} h compute "
                        f"({t['run_hours_with_allreduce']:.1f} h with the all-reduce)",
                        flush=True,
                    )
    command = "python benchmarks/plan_table.py " + " ".join(sys.argv[1:])
    Path(args.out).write_text(json.dumps({"command": command, "plans": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
