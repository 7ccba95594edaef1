"""`distilxlsr bench`: the figures of the performance issue, each measured side by side in one run.

- machine: CPU, cores, torch version, and the dense matmul peak measured here;
- distill: distillation step throughput (audio-seconds/s) and FLOP/s (counted by torch's
  FlopCounterMode on one step) as a fraction of the measured matmul peak;
- inference: student vs teacher latency and peak memory on identical batches;
- shuffle: phoneme-shuffle throughput, x real time on one core;
- loader: decode + shuffle + crop + collate throughput, x real time;
- padding_efficiency: real samples / all samples in the bucketing sampler's batches on a
  LibriSpeech-like duration distribution;
- synth: synthetic-corpus throughput, x real time per core (when the eSpeak engine is present);
- gpu, gpu-sweep, gpu-split (`bench.gpu`) and gpu-shapes (`bench.shapes`): XLS-R-shaped runs
  on one GPU, only when named.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import torch

from distilxlsr.bench import gpu as bench_gpu
from distilxlsr.bench.common import distill_throughput, matmul_peak
from distilxlsr.bench.cpu import (
    inference_ratio,
    loader_throughput,
    padding_efficiency,
    shuffle_throughput,
    synth_throughput,
)
from distilxlsr.bench.shapes import gpu_shapes_suite, static_yield
from distilxlsr.errors import UserError
from distilxlsr.training.machine import machine_info

DEFAULT_SECTIONS = ("distill", "inference", "shuffle", "loader", "padding", "synth")
GPU_SECTIONS = ("gpu", "gpu-sweep", "gpu-split", "gpu-shapes")
"""Sections at XLS-R-shaped sizes, run only when asked for (they need a GPU)."""


def run_bench(out: str | Path, sections: list[str] | None = None) -> dict:
    """Measure every section (or the named ones), print a table, write JSON to `out`."""
    results: dict = {"machine": machine_info()}
    wanted = set(sections or DEFAULT_SECTIONS)
    unknown = sorted(wanted - set(DEFAULT_SECTIONS) - set(GPU_SECTIONS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*DEFAULT_SECTIONS, *GPU_SECTIONS], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(
            f"bench section '{unknown[0]}' is unknown{hint}; the sections are "
            f"{', '.join(DEFAULT_SECTIONS + GPU_SECTIONS)}."
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if "distill" in wanted:
        precision = "bf16" if device.type == "cuda" else "fp32"
        peak = matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
        results["machine"]["matmul_peak_flops"] = peak
        shared = distill_throughput(precision=precision, share_cnn=True)
        unshared = distill_throughput(precision=precision, share_cnn=False)
        results["distill"] = shared | {
            "fraction_of_peak": shared["flops_per_s"] / peak,
            "without_shared_cnn": unshared | {"fraction_of_peak": unshared["flops_per_s"] / peak},
            "shared_cnn_speedup": shared["audio_s_per_s"] / unshared["audio_s_per_s"],
        }
    if "inference" in wanted:
        # XLS-R 300M's shape: the claim is about the real model, whose CNN is a small share.
        results["inference"] = inference_ratio("xls-r-300m", utterances=1, seconds=10.0)
    if wanted & {"gpu", "gpu-sweep", "gpu-split"}:
        cuda = torch.cuda.is_available()
        if "gpu" in wanted:
            results["gpu"] = bench_gpu.gpu_suite()
        if "gpu-sweep" in wanted:
            results["gpu_sweep"] = bench_gpu.batch_sweep() if cuda else {"error": "no GPU"}
        if "gpu-split" in wanted:
            results["gpu_split"] = bench_gpu.step_split() if cuda else {"error": "no GPU"}
    if "gpu-shapes" in wanted:
        results["gpu_shapes"] = gpu_shapes_suite()
    if "shuffle" in wanted:
        torch.set_num_threads(torch.get_num_threads())
        results["shuffle"] = shuffle_throughput("utterance")
        results["shuffle_segment"] = shuffle_throughput("segment")
    if "loader" in wanted:
        results["loader"] = loader_throughput()
    if "padding" in wanted:
        pad = padding_efficiency()
        results["padding_efficiency"] = pad["efficiency"]
        results["padding"] = pad | {"static_shapes": static_yield()}
    if "synth" in wanted:
        results["synth"] = synth_throughput()
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    print(summary_table(results))
    return results


def summary_table(results: dict) -> str:
    """The figures of the performance issue, one per line, with their targets."""
    rows = []
    if "distill" in results:
        d = results["distill"]
        rows.append(
            (
                "distill audio-s/s",
                f"{d['audio_s_per_s']:.2f}",
                f"{d['shape']}, {d['precision']}, shared CNN",
            )
        )
        rows.append(
            ("distill fraction of matmul peak", f"{d['fraction_of_peak']:.2f}", "target >= 0.50")
        )
        rows.append(
            ("shared-CNN speed-up", f"{d['shared_cnn_speedup']:.2f}x", "vs running the CNN twice")
        )
        rows.append(
            (
                "matmul peak",
                f"{results['machine']['matmul_peak_flops'] / 1e9:.0f} GFLOP/s",
                "measured here",
            )
        )
    if "gpu" in results and "runs" in results["gpu"]:
        g = results["gpu"]
        rows.append(
            ("gpu explicit/hook taps", f"{g['explicit_vs_hook_taps']:.2f}x", "bf16 audio-s/s")
        )
        rows.append(("gpu compile speed-up", f"{g['compile_speedup']:.2f}x", "bf16, explicit taps"))
    sweep = results.get("gpu_sweep", {})
    if sweep.get("best_utterances"):
        rows.append(
            (
                "gpu best batch",
                f"{sweep['best_audio_s_per_s']:.0f} audio-s/s",
                f"{sweep['best_utterances']} x {sweep['seconds_per_utterance']:g} s, bf16",
            )
        )
    split = results.get("gpu_split", {})
    if "phases" in split:
        shares = ", ".join(f"{k} {v['share']:.0%}" for k, v in split["phases"].items())
        rows.append(("gpu step bound by", split["bound_by"], shares))
    if "inference" in results:
        i = results["inference"]
        rows.append(
            ("inference latency student/teacher", f"{i['latency_ratio']:.2f}", "target <= 0.55")
        )
        rows.append(("inference memory student/teacher", f"{i['memory_ratio']:.2f}", "peak"))
    if "shuffle" in results:
        rows.append(
            (
                "shuffle x real time per core",
                f"{results['shuffle']['x_realtime_per_core']:.0f}",
                "target >= 500",
            )
        )
    if "loader" in results:
        rows.append(
            (
                "loader x real time",
                f"{results['loader']['x_realtime']:.0f}",
                "decode + shuffle + collate, 1 process",
            )
        )
    if "padding_efficiency" in results:
        rows.append(
            ("padding efficiency", f"{results['padding_efficiency']:.3f}", "target >= 0.95")
        )
    static = results.get("padding", {}).get("static_shapes")
    if static:
        lengths = "/".join(f"{x:g}" for x in static["crop_lengths"])
        rows.append(("static shapes: audio kept", f"{static['audio_kept']:.3f}", f"{lengths} s"))
    if "gpu_shapes" in results and "runs" in results["gpu_shapes"]:
        g = results["gpu_shapes"]
        rows.append(
            (
                "gpu static/dynamic shapes",
                f"{g['static_compiled_over_dynamic_compiled']:.2f}x",
                "bf16, both compiled",
            )
        )
    if "synth" in results and "x_realtime_per_core" in results["synth"]:
        rows.append(
            (
                "synth x real time per core",
                f"{results['synth']['x_realtime_per_core']:.0f}",
                "target >= 200",
            )
        )
    width = max(len(r[0]) for r in rows) if rows else 0
    return "\n".join(f"{name:<{width}}  {value:>14}  {note}" for name, value, note in rows)
