"""Static-shape batches measured (`distilxlsr bench`): what the crops keep of LibriSpeech-like
audio (section `padding`), and the distillation step on the batch sequence of each loader,
eager and compiled (section `gpu-shapes`, `bash benchmarks/gpu.sh OUT gpu-shapes`).

The batches are the first ones of each loader's epoch 0 over LibriSpeech-like durations (the
plans run without audio): the dynamic bucketing sampler's (padded, masks) and the static
plan's (K shapes, full rows, no mask). The audio in them is random; throughput counts real
samples only, so padding counts as lost time.
"""

from __future__ import annotations

import time
import warnings

import torch

from distilxlsr.bench.common import (
    distill_stepper,
    duration_only_cuts,
    librispeech_like_durations,
    sync,
)
from distilxlsr.conventions import SAMPLE_RATE


def plan_rows(
    static: bool,
    batch_seconds: float = 120.0,
    max_seconds: float = 15.0,
    count: int = 24,
    crop_lengths: list[float] | None = None,
    n: int = 4000,
    seed: int = 0,
) -> list[list[int]]:
    """Per batch, its rows' lengths in samples: the first `count` batches of epoch 0 of the
    static (`crop_lengths`, [] = the default) or the dynamic plan (30 buckets)."""
    from distilxlsr.data.loader import BatchPlan  # noqa: PLC0415
    from distilxlsr.data.static import StaticBatchPlan  # noqa: PLC0415

    warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
    cuts = duration_only_cuts(librispeech_like_durations(n, seed))
    if static:
        plan = StaticBatchPlan(
            cuts, batch_seconds, list(crop_lengths or []), max_seconds, 0.5, seed
        )
    else:
        plan = BatchPlan(cuts, batch_seconds, max_seconds, 0.5, num_buckets=30, seed=seed)
    rows = []
    for ref, _ in zip(plan, range(count), strict=False):
        rows.append([ref.samples or c.num_samples for c in ref.cuts])
    return rows


def rows_batch(lengths: list[int], device: torch.device, seed: int = 0) -> dict:
    """Random audio with these row lengths, zero-padded to the longest, with its bool mask."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    x = torch.randn(len(lengths), width, generator=generator) * mask
    return {"input_values": x.to(device), "attention_mask": mask.to(device)}


def shapes_throughput(
    shape: str,
    rows: list[list[int]],
    static: bool,
    precision: str = "bf16",
    device: str | None = None,
    warmup: int = 3,
) -> dict:
    """The distillation step over a loader's batch sequence: each distinct shape (static) or
    the first `warmup` batches (dynamic) run once first (compilation for "+compile"), then the
    whole sequence is timed. Real audio-seconds per second, the share of real samples, and the
    graphs dynamo compiled during the timed pass (a recompilation there costs time)."""
    from torch._dynamo.utils import counters  # noqa: PLC0415

    torch._dynamo.reset()
    step, dev = distill_stepper(
        shape, "jump:2", 1, 1.0, precision, True, device, static_shapes=static
    )
    batches = [rows_batch(r, dev, i) for i, r in enumerate(rows)]
    shapes = {tuple(b["input_values"].shape) for b in batches}
    if static:
        first = {tuple(b["input_values"].shape): b for b in reversed(batches)}
        warm = list(first.values())
    else:
        warm = batches[:warmup]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for batch in warm:
        step(batch)
    sync(dev)
    warmup_seconds = time.perf_counter() - start
    graphs_before = counters["stats"]["unique_graphs"]
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    sync(dev)
    elapsed = time.perf_counter() - start
    real = sum(sum(r) for r in rows)
    padded = sum(b["input_values"].numel() for b in batches)
    result = {
        "loader": "static" if static else "dynamic",
        "precision": precision,
        "batches": len(batches),
        "distinct_shapes": len(shapes),
        "audio_seconds": real / SAMPLE_RATE,
        "real_sample_share": real / padded,
        "warmup_batches": len(warm),
        "warmup_seconds": warmup_seconds,
        "graphs_compiled_while_timed": counters["stats"]["unique_graphs"] - graphs_before,
        "seconds": elapsed,
        "audio_s_per_s": real / SAMPLE_RATE / elapsed,
    }
    if dev.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return result


def gpu_shapes_suite(
    shape: str = "xls-r-300m",
    batch_seconds: float = 120.0,
    max_seconds: float = 15.0,
    count: int = 24,
    crop_lengths: list[float] | None = None,
) -> dict:
    """XLS-R-300M-shaped teacher -> 12-layer student in bf16 on one GPU: the dynamic loader's
    batches eager and compiled (dynamic shapes after the second), the static loader's eager and
    compiled (one static graph per shape, no mask)."""
    if not torch.cuda.is_available():
        return {"error": "no GPU"}
    sequences = {
        static: plan_rows(static, batch_seconds, max_seconds, count, crop_lengths)
        for static in (False, True)
    }
    runs = []
    # The reference (today's default) first, then the two compiled runs: printed as they end,
    # so a run cut short by its time limit has said the most.
    for static, precision in (
        (False, "bf16"),
        (True, "bf16+compile"),
        (False, "bf16+compile"),
        (True, "bf16"),
    ):
        torch.cuda.empty_cache()
        result = shapes_throughput(shape, sequences[static], static, precision, "cuda")
        runs.append(result)
        print(
            f"{result['loader']:>8} {precision:>13}: {result['audio_s_per_s']:8.0f} audio-s/s "
            f"over {result['batches']} batches of {result['distinct_shapes']} shapes "
            f"({result['real_sample_share']:.3f} real samples), warm-up "
            f"{result['warmup_seconds']:.0f} s, {result['graphs_compiled_while_timed']} graphs "
            f"compiled while timed, peak memory {result['peak_memory_gb']:.1f} GB",
            flush=True,
        )
    speed = {(r["loader"], r["precision"]): r["audio_s_per_s"] for r in runs}
    return {
        "shape": shape,
        "batch_seconds": batch_seconds,
        "runs": runs,
        "static_compiled_over_dynamic_compiled": speed[("static", "bf16+compile")]
        / speed[("dynamic", "bf16+compile")],
        "static_compiled_over_dynamic_eager": speed[("static", "bf16+compile")]
        / speed[("dynamic", "bf16")],
    }


def static_yield(
    batch_seconds: float = 200.0,
    max_seconds: float = 15.0,
    crop_lengths: list[float] | None = None,
    n: int = 20000,
    seed: int = 0,
) -> dict:
    """What the static crops keep of LibriSpeech-like audio (cropped to max_seconds), the cuts
    they skip and the cuts an epoch drops with partial batches (the plan's own counts)."""
    from distilxlsr.data.static import StaticBatchPlan  # noqa: PLC0415

    plan = StaticBatchPlan(
        duration_only_cuts(librispeech_like_durations(n, seed)),
        batch_seconds,
        list(crop_lengths or []),
        max_seconds,
        0.5,
        seed,
    )
    stats = plan.stats
    usable = sum(stats.cuts) + stats.skipped_short
    return {
        "crop_lengths": stats.lengths,
        "per_batch": stats.per_batch,
        "audio_kept": stats.kept,
        "cuts_skipped_short": stats.skipped_short / usable,
        "cuts_dropped_per_epoch": stats.partial_cuts / usable,
        "batches_per_epoch": stats.batches,
        "batch_seconds": batch_seconds,
        "max_seconds": max_seconds,
    }
