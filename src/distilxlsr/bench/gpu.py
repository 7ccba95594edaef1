"""The GPU figures of `distilxlsr bench` (run by `benchmarks/gpu.sh`; every function also runs on
the CPU at a tiny shape, which is how the tests exercise them).

- `gpu_suite` (section `gpu`): XLS-R-300M-shaped teacher -> 12-layer student, fp32, bf16 with the
  hook taps, bf16 with the explicit taps, and bf16 + torch.compile;
- `batch_sweep` (section `gpu-sweep`): the same step at growing batch sizes until the GPU runs
  out of memory: audio-s/s, fraction of the measured peak and peak memory per size, and the
  fastest size;
- `step_split` (section `gpu-split`): one step cut into its phases (the teacher's CNN, the
  teacher's layers, the student's forward with the loss, the backward, clipping with the
  optimizer step), each timed between device synchronisations and counted in FLOPs, so that
  what bounds the step is named; and the CNN alone in fp32, bf16, and bf16 with cuDNN's
  autotuner (`torch.backends.cudnn.benchmark`).
"""

from __future__ import annotations

import time

import torch

from distilxlsr.bench.common import (
    audio_batch,
    device_seconds,
    distill_throughput,
    matmul_peak,
    model_pair,
    sync,
)
from distilxlsr.conventions import SAMPLE_RATE


def _peaks(dev: torch.device) -> dict[str, float]:
    if dev.type == "cuda":
        return {"fp32": matmul_peak(dev, torch.float32), "bf16": matmul_peak(dev, torch.bfloat16)}
    fp32 = matmul_peak(dev, torch.float32)
    return {"fp32": fp32, "bf16": fp32}  # the CPU runs the tiny shapes in fp32 only


def gpu_suite(
    shape: str = "xls-r-300m", utterances: int = 8, seconds: float = 15.0, steps: int = 10
) -> dict:
    """XLS-R-300M-shaped teacher -> 12-layer student on one GPU: fp32, bf16 with the hook taps
    (the eager reference before the explicit ones), bf16, and bf16 + torch.compile of both
    explicit taps."""
    if not torch.cuda.is_available():
        return {"error": "no GPU"}
    dev = torch.device("cuda")
    peaks = _peaks(dev)
    runs = []
    for precision, taps in (
        ("fp32", "explicit"),
        ("bf16", "hooks"),
        ("bf16", "explicit"),
        ("bf16+compile", "explicit"),
    ):
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
        torch.cuda.empty_cache()
        result = distill_throughput(
            shape, "jump:2", utterances, seconds, steps, precision, True, "cuda", taps
        )
        peak = peaks["fp32" if precision == "fp32" else "bf16"]
        runs.append(result | {"fraction_of_peak": result["flops_per_s"] / peak})
        print(
            f"{precision:>13} {taps:>8} taps: {result['audio_s_per_s']:8.0f} audio-s/s, "
            f"{result['flops_per_s'] / 1e12:6.1f} TFLOP/s = {result['flops_per_s'] / peak:.0%} of "
            f"the measured {peak / 1e12:.0f} TFLOP/s, peak memory {result['peak_memory_gb']:.1f} GB",
            flush=True,
        )
    speed = {(r["precision"], r["taps"]): r["audio_s_per_s"] for r in runs}
    return {
        "matmul_peak_flops": peaks,
        "runs": runs,
        "explicit_vs_hook_taps": speed[("bf16", "explicit")] / speed[("bf16", "hooks")],
        "compile_speedup": speed[("bf16+compile", "explicit")] / speed[("bf16", "explicit")],
    }


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def batch_sweep(
    shape: str = "xls-r-300m",
    sizes: tuple[int, ...] = (4, 8, 16, 32, 64),
    seconds: float = 15.0,
    steps: int = 5,
    precision: str = "bf16",
    device: str | None = None,
) -> dict:
    """The distillation step at each batch size (utterances of `seconds`), smallest first, until
    one runs out of memory (recorded, and the sweep stops there): audio-s/s, fraction of the
    measured peak, peak memory. `best` is the size with the most audio-s/s."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    peak = _peaks(dev)["fp32" if precision == "fp32" else "bf16"]
    runs: list[dict] = []
    for size in sizes:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        try:
            result = distill_throughput(
                shape, "jump:2", size, seconds, steps, precision, True, str(dev)
            )
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            if not _out_of_memory(err):
                raise
            runs.append({"utterances": size, "batch_audio_seconds": size * seconds, "oom": True})
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            print(f"  batch {size:3d} x {seconds:g} s: out of memory", flush=True)
            break
        runs.append(result | {"utterances": size, "fraction_of_peak": result["flops_per_s"] / peak})
        memory = result.get("peak_memory_gb")
        print(
            f"  batch {size:3d} x {seconds:g} s: {result['audio_s_per_s']:8.0f} audio-s/s, "
            f"{result['flops_per_s'] / peak:.0%} of peak"
            + (f", peak memory {memory:.1f} GB" if memory is not None else ""),
            flush=True,
        )
    fitted = [r for r in runs if not r.get("oom")]
    best = max(fitted, key=lambda r: r["audio_s_per_s"]) if fitted else None
    return {
        "shape": shape,
        "precision": precision,
        "seconds_per_utterance": seconds,
        "matmul_peak_flops": peak,
        "runs": runs,
        "best_utterances": best["utterances"] if best else None,
        "best_audio_s_per_s": best["audio_s_per_s"] if best else None,
    }


PHASES = ("teacher_cnn", "teacher_layers", "student_forward", "backward", "optimizer")


def step_split(
    shape: str = "xls-r-300m",
    utterances: int = 8,
    seconds: float = 15.0,
    steps: int = 5,
    precision: str = "bf16",
    device: str | None = None,
) -> dict:
    """One eager distillation step (shared CNN, explicit taps) cut into `PHASES`, each timed
    between device synchronisations (averaged over `steps` after a warm-up) and counted in
    FLOPs; `share` is each phase's part of their sum. `whole_step_seconds` is the same step
    without the synchronisations in between (the training loop's), so their cost shows. Then
    the teacher's CNN alone: fp32, bf16 (autocast), and bf16 with cuDNN's autotuner."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bf16 = precision == "bf16"
    peak = _peaks(dev)["bf16" if bf16 else "fp32"]
    teacher, student, distiller = model_pair(shape, "jump:2", dev, share_cnn=True)
    if not distiller.share_cnn:
        raise RuntimeError("the step split measures the shared-CNN step")
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    batch = audio_batch(utterances, seconds, dev)
    x, mask = batch["input_values"], batch["attention_mask"]
    phases = _step_phases(teacher, distiller, params, optimizer, x, mask, bf16)
    flops, seconds_by_phase, whole_seconds = _measure_phases(phases, steps, dev)
    total = sum(seconds_by_phase.values())
    split = _phase_rows(seconds_by_phase, flops, peak)
    audio = utterances * seconds
    return {
        "shape": shape,
        "precision": precision,
        "batch_audio_seconds": audio,
        "matmul_peak_flops": peak,
        "phases": split,
        "sum_of_phases_seconds": total,
        "whole_step_seconds": whole_seconds,
        "audio_s_per_s": audio / whole_seconds,
        "bound_by": max(PHASES, key=lambda n: seconds_by_phase[n]),
        "cnn": cnn_variants(teacher, x, steps),
    }


def _step_phases(teacher, distiller, params, optimizer, x, mask, bf16: bool) -> dict:
    """The step's `PHASES` as callables, in order, each taking the previous one's output."""
    from distilxlsr.models.layers import run_cnn  # noqa: PLC0415

    dev = x.device
    targets, student_layers = distiller.layer_map.targets, distiller.student_layers

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    # Each phase takes the previous one's output; together they are Distiller.__call__ and
    # OptimizerStep's backward, clipping and step.
    state: dict = {}

    def teacher_cnn():
        with torch.inference_mode(), autocast():
            state["cnn"] = run_cnn(teacher.feature_extractor, x)

    def teacher_layers():
        with torch.inference_mode(), autocast():
            reps, frames, _ = distiller.teacher_tap(
                x, mask, targets, cnn_features=state["cnn"], return_cnn=True
            )
        state["targets"] = [r.clone() for r in reps]
        state["frames"] = frames.clone()
        state["cnn_copy"] = state["cnn"].clone()

    def student_forward():
        with autocast():
            preds, _ = distiller.student_tap(x, mask, student_layers, state["cnn_copy"])
            wanted = [t.to(p.dtype) for t, p in zip(state["targets"], preds, strict=True)]
            state["loss"], _ = distiller.loss(preds, wanted, state["frames"])

    def backward():
        state.pop("loss").backward()

    def optimizer_step():
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return dict(
        zip(
            PHASES,
            (teacher_cnn, teacher_layers, student_forward, backward, optimizer_step),
            strict=True,
        )
    )


def _measure_phases(phases: dict, steps: int, dev: torch.device) -> tuple[dict, dict, float]:
    """After a warm-up step: each phase's FLOPs, its mean seconds between synchronisations over
    `steps`, and the whole step's mean seconds without them."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    def whole():
        for run in phases.values():
            run()

    whole()  # warm-up
    flops = {}
    for name, run in phases.items():
        counter = FlopCounterMode(display=False)
        with counter:
            run()
        flops[name] = counter.get_total_flops()
    seconds_by_phase = dict.fromkeys(PHASES, 0.0)
    for _ in range(steps):
        for name, run in phases.items():
            sync(dev)
            start = time.perf_counter()
            run()
            sync(dev)
            seconds_by_phase[name] += (time.perf_counter() - start) / steps
    return flops, seconds_by_phase, device_seconds(whole, steps, dev)


def _phase_rows(seconds_by_phase: dict, flops: dict, peak: float) -> dict:
    """Each phase's seconds, share of their sum, FLOPs and fraction of `peak`, printed as rows."""
    total = sum(seconds_by_phase.values())
    split = {
        name: {
            "seconds": seconds_by_phase[name],
            "share": seconds_by_phase[name] / total,
            "flops": flops[name],
            "fraction_of_peak": flops[name] / seconds_by_phase[name] / peak,
        }
        for name in PHASES
    }
    for name, row in split.items():
        print(
            f"  {name:>16}: {row['seconds'] * 1e3:8.1f} ms ({row['share']:4.0%}), "
            f"{row['flops'] / 1e12:6.2f} TFLOP, {row['fraction_of_peak']:.0%} of peak",
            flush=True,
        )
    return split


def cnn_variants(teacher, x: torch.Tensor, steps: int = 5) -> dict:
    """The teacher's CNN alone under inference mode: fp32, bf16 autocast, bf16 with cuDNN's
    autotuner (which picks a kernel per input shape: worth it only for shapes that repeat, as
    static-shape batches do), and bf16 with transformers' CNN layers instead of the channels-last
    ones the taps run (docs/design.md, "Layer representations"). Seconds per call and
    audio-s/s."""
    from distilxlsr.models.layers import run_cnn  # noqa: PLC0415

    dev = x.device
    audio = x.shape[0] * x.shape[1] / SAMPLE_RATE
    results = {}
    before = torch.backends.cudnn.benchmark
    try:
        for name, bf16, autotune, channels_last in (
            ("fp32", False, False, True),
            ("bf16", True, False, True),
            ("bf16_cudnn_autotune", True, True, True),
            ("bf16_transformers_layers", True, False, False),
        ):
            if dev.type != "cuda" and autotune:
                continue  # cuDNN is the GPU's
            torch.backends.cudnn.benchmark = autotune

            def run(bf16=bf16, channels_last=channels_last):
                with (
                    torch.inference_mode(),
                    torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16),
                ):
                    run_cnn(teacher.feature_extractor, x, channels_last)

            run()  # warm-up (and the autotuner's search)
            per_call = device_seconds(run, steps, dev)
            results[name] = {"seconds": per_call, "audio_s_per_s": audio / per_call}
    finally:
        torch.backends.cudnn.benchmark = before
    return results
