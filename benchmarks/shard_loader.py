"""Loader throughput from shards (`distilxlsr shard`) against per-file FLAC, the same cuts in
the same batches, alternating A/B/A/B in one process so background load hits both.

Each round reads `--batches` batches of the training plan through `AudioBatches` in this process
(one loader worker's work: read, decode, crop, phoneme-shuffle, normalise, pad) and reports
audio seconds delivered per second; the shards are written first (into a temporary directory)
from the same corpus. The ratio shards/files is taken round by round.

    python benchmarks/shard_loader.py [--data runs/evidence/data/en --split pretrain]
        [--batch-seconds 60] [--batches 40] [--rounds 5] [--shuffle utterance]

On this machine the files are in the page cache after the first round, as the shards are: the
figure compares the read-and-decode path, not a network file system's cost per file opened
(which is what shards save on a cluster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from distilxlsr import tune_malloc
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import AudioBatches, BatchPlan, ShardBatchPlan
from distilxlsr.data.shard_writer import write_shards
from distilxlsr.data.shuffle import make_transform
from distilxlsr.distill.recipe import ShuffleConfig


def throughput(plan, dataset: AudioBatches, batches: int) -> float:
    """Audio seconds per second over `batches` batches of `plan`, loaded in this process."""
    samples = 0
    start = time.perf_counter()
    for ref, _ in zip(plan, range(batches), strict=False):
        samples += dataset[ref]["num_samples"]
    return samples / 16000 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="runs/evidence/data/en")
    parser.add_argument("--split", default="pretrain")
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=6.0)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--shuffle", default="utterance", help="phoneme shuffle mode (or none)")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument(
        "--only",
        choices=["files", "shards"],
        help="read --batches batches from one source once and exit (for timing whole processes "
        "side by side); with --shards-dir, shards written there before",
    )
    parser.add_argument("--shards-dir", help="shards of --data (written if missing)")
    args = parser.parse_args()
    kwargs = dict(
        batch_seconds=args.batch_seconds,
        max_seconds=args.max_seconds,
        min_seconds=0.5,
        num_buckets=10,
        seed=0,
    )
    transform = make_transform(ShuffleConfig(mode=args.shuffle))
    dataset = AudioBatches(transform=transform, seed=0)
    if args.only:
        shards = Path(args.shards_dir or "runs/bench-shards")
        if not (shards / "shards.json").is_file():
            write_shards(args.data, shards, args.split, args.shard_size, say=lambda *_: None)
        if args.only == "files":
            plan = BatchPlan(load_cuts(args.data, args.split), **kwargs)
        else:
            plan = ShardBatchPlan(load_cuts(shards), **kwargs)
        print(f"{args.only}: {throughput(plan, dataset, args.batches):.0f} audio-s/s")
        return
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        write_shards(args.data, shards, args.split, args.shard_size, say=lambda *_: None)
        files_plan = BatchPlan(load_cuts(args.data, args.split), **kwargs)
        shard_plan = ShardBatchPlan(load_cuts(shards), **kwargs)
        throughput(files_plan, dataset, 3)  # warm the page cache and the imports
        throughput(shard_plan, dataset, 3)
        rows = []
        for round_ in range(args.rounds):
            files = throughput(files_plan, dataset, args.batches)
            sharded = throughput(shard_plan, dataset, args.batches)
            rows.append({"files": files, "shards": sharded, "ratio": sharded / files})
            print(
                f"round {round_ + 1}: files {files:.0f} audio-s/s, shards {sharded:.0f} "
                f"audio-s/s, shards/files {sharded / files:.3f}",
                flush=True,
            )
    summary = {
        "command": "python benchmarks/shard_loader.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "median_files": statistics.median(r["files"] for r in rows),
        "median_shards": statistics.median(r["shards"] for r in rows),
        "median_ratio": statistics.median(r["ratio"] for r in rows),
        "ratio_range": [min(r["ratio"] for r in rows), max(r["ratio"] for r in rows)],
        "rounds": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    tune_malloc()
    main()
