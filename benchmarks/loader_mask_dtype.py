"""The attention mask's dtype in the loader: bool (what `collate` returns) against int64 (what it
returned before), side by side in one run, alternating A/B/A/B so background load hits both.

Measures the collate of one batch in the process, and a DataLoader with loader workers passing
whole batches to the training process (which is where a GPU run was loader-bound: the mask as
int64 is 8 bytes per audio sample, twice the float32 audio).

    python benchmarks/loader_mask_dtype.py [--batch-seconds 320] [--workers 1] [--batches 24]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from distilxlsr import tune_malloc
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import AudioBatches, BatchPlan, collate, make_loader
from distilxlsr.data.toy import make_toy_corpus


def int64_mask(batch: dict) -> dict:
    """The former behaviour: the same batch with the mask converted to int64."""
    batch["attention_mask"] = batch["attention_mask"].long()
    return batch


class Int64Mask(AudioBatches):
    def __getitem__(self, ref):
        return int64_mask(super().__getitem__(ref))


def through_loader(dataset, plan, refs: int, workers: int) -> float:
    """Audio seconds per second delivered to the training process."""
    loader = make_loader(plan, dataset, num_workers=workers, pin_memory=False)
    samples, start = 0, None
    for i, batch in enumerate(loader):
        if i == 2:  # workers started and prefetching
            start = time.perf_counter()
        elif i > 2:
            samples += batch["num_samples"]
        if i == refs + 2:
            break
    return samples / 16000 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-seconds", type=float, default=320.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_toy_corpus(tmp, "en", "train", num_utterances=240, seconds=(4.0, 12.0))
        cuts = load_cuts(Path(tmp) / "en")
        plan = BatchPlan(
            cuts, args.batch_seconds, max_seconds=6.0, min_seconds=0.5, num_buckets=4, seed=0
        )
        ref = next(iter(plan))
        waves = [AudioBatches().load(cut, 0) for cut in ref.cuts]
        datasets = {"bool": AudioBatches(), "int64": Int64Mask()}
        collate_s = {k: [] for k in datasets}
        loader_x = {k: [] for k in datasets}
        for _ in range(args.rounds):
            for name in datasets:
                start = time.perf_counter()
                for _ in range(5):
                    batch = collate(waves, True)
                    if name == "int64":
                        int64_mask(batch)
                collate_s[name].append((time.perf_counter() - start) / 5)
                loader_x[name].append(
                    through_loader(datasets[name], plan, args.batches, args.workers)
                )
        mask = collate(waves, True)["attention_mask"]
        print(
            f"batch of {sum(len(w) for w in waves) / 16000:.0f} s audio, {len(waves)} utterances; "
            f"mask {mask.numel() * mask.element_size() / 1e6:.1f} MB as bool, "
            f"{mask.numel() * 8 / 1e6:.1f} MB as int64 (audio {mask.numel() * 4 / 1e6:.1f} MB)"
        )
        for name in datasets:
            print(
                f"{name:>6}: collate {1e3 * statistics.median(collate_s[name]):6.1f} ms, "
                f"through {args.workers} worker(s) {statistics.median(loader_x[name]):7.0f}x "
                "real time (medians)"
            )
        ratio = statistics.median(loader_x["bool"]) / statistics.median(loader_x["int64"])
        print(f"bool / int64 loader throughput: {ratio:.2f}x; torch {torch.__version__}")


if __name__ == "__main__":
    tune_malloc()
    main()
