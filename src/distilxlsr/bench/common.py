"""What every benchmark of `distilxlsr bench` shares: timing (device-synchronised seconds, the
measured matmul peak, pair-by-pair ratios, JSON output), a random-weight teacher-student pair with
its distillation step, fixed random batches, and LibriSpeech-like utterance durations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from distilxlsr.conventions import SAMPLE_RATE


def timed(fn, min_seconds: float = 1.0, min_runs: int = 3) -> float:
    """Seconds per call: warm up once, then repeat until `min_seconds` have passed."""
    fn()
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / runs


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int | None = None) -> float:
    """Dense matmul FLOP/s measured on this machine (the denominator of 'fraction of peak')."""
    size = size or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def run():
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    return 2 * size**3 / timed(run, min_seconds=1.0)


def librispeech_like_durations(n: int, seed: int = 0) -> np.ndarray:
    """Durations (s) shaped like LibriSpeech's 960 h training set (mean ~12.3 s, 1-35 s): a main
    mode at ~14-16 s (its segmenter's target), a tail of shorter utterances (chapter ends, short
    sentences) and a thin tail of longer ones up to 35 s."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.66, 0.30, 0.04])
    main = rng.normal(14.6, 1.4, size=n)
    short = rng.uniform(1.0, 12.0, size=n)
    long = 17.0 + rng.exponential(3.5, size=n)
    durations = np.where(kind == 0, main, np.where(kind == 1, short, long))
    return np.clip(durations, 1.0, 35.0).round(3)


def duration_only_cuts(durations: np.ndarray, sample_rate: int = SAMPLE_RATE):
    """Cuts over recordings that exist only as durations (samplers never read audio)."""
    from lhotse import CutSet, MonoCut, Recording  # noqa: PLC0415
    from lhotse.audio import AudioSource  # noqa: PLC0415

    cuts = []
    for i, duration in enumerate(durations):
        samples = int(round(duration * sample_rate))
        recording = Recording(
            id=f"utt{i:06d}",
            sources=[AudioSource(type="file", channels=[0], source="/dev/null")],
            sampling_rate=sample_rate,
            num_samples=samples,
            duration=samples / sample_rate,
        )
        cuts.append(
            MonoCut(
                id=recording.id,
                start=0.0,
                duration=recording.duration,
                channel=0,
                recording=recording,
            )
        )
    return CutSet.from_cuts(cuts)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_seconds(run, steps: int, device: torch.device) -> float:
    """Seconds per call of `run` over `steps` calls, the device synchronised before and after
    (the calls themselves queue freely, as in training)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    sync(device)
    return (time.perf_counter() - start) / steps


def ratio_pairs(a: list[float], b: list[float]) -> dict:
    """a/b pair by pair (A and B timed alternately, so a drift of the machine's speed between
    pairs cancels): the median, min and max of the ratios."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)}


def emit(result: dict, out: Path | None) -> None:
    """A benchmark's figures: printed, and written to `out` (JSON) when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def model_pair(
    shape: str,
    layers: str,
    device: torch.device,
    share_cnn: bool = True,
    taps: str = "explicit",
    static_shapes: bool = False,
):
    """A random-weight teacher of a named shape, its student, and the Distiller joining them;
    `taps="hooks"`: layers captured by forward hooks (the taps before the explicit ones);
    `static_shapes`: the Distiller of a `data.static_shapes` run (taps without a mask)."""
    from distilxlsr.distill.distiller import Distiller, prepare_for_distillation  # noqa: PLC0415
    from distilxlsr.distill.recipe import load_distill_config  # noqa: PLC0415
    from distilxlsr.models.layers import parse_layer_map  # noqa: PLC0415
    from distilxlsr.models.loading import model_class  # noqa: PLC0415
    from distilxlsr.models.presets import shape_config  # noqa: PLC0415
    from distilxlsr.models.student import build_student  # noqa: PLC0415

    config = shape_config(shape)
    config.layerdrop = 0.0
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    teacher = model_class(config.model_type)(config).eval().requires_grad_(False)
    layer_map = parse_layer_map(layers, config.num_hidden_layers)
    student = build_student(teacher, layer_map)
    prepare_for_distillation(student, freeze_cnn=True)
    teacher.to(device)
    student.to(device)
    run = load_distill_config(
        None,
        [
            "teacher=x",
            f"student.share_cnn={str(share_cnn).lower()}",
            f"data.static_shapes={str(static_shapes).lower()}",
        ],
    )
    if taps not in ("explicit", "hooks"):
        raise ValueError(f"taps '{taps}' must be explicit or hooks")
    explicit = None if taps == "explicit" else False
    return teacher, student, Distiller(teacher, student, layer_map, run, explicit=explicit)


def audio_batch(utterances: int, seconds: float, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(utterances, int(seconds * SAMPLE_RATE), generator=generator)
    return {
        "input_values": x.to(device),
        "attention_mask": torch.ones_like(x, dtype=torch.long).to(device),
    }


def distill_stepper(
    shape: str = "cpu-mid",
    layers: str = "jump:2",
    utterances: int = 2,
    seconds: float = 5.0,
    precision: str = "fp32",
    share_cnn: bool = True,
    device: str | None = None,
    taps: str = "explicit",
    static_shapes: bool = False,
):
    """One distillation step as a function (teacher forward, student forward + backward, fused
    AdamW: the training loop's own step) on a fixed random batch, or on the batch it is given;
    `precision` "+compile" compiles both taps (`train.compile`); `static_shapes`: as a
    `data.static_shapes` run (taps without a mask, static graphs). Returns (step, device)."""
    from distilxlsr.distill.distiller import DistillTask  # noqa: PLC0415
    from distilxlsr.distill.recipe import TrainConfig  # noqa: PLC0415
    from distilxlsr.training.loop import OptimizerStep, PlainProcess  # noqa: PLC0415
    from distilxlsr.training.optim import Schedule  # noqa: PLC0415

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    teacher, student, distiller = model_pair(shape, layers, dev, share_cnn, taps, static_shapes)
    task = DistillTask(distiller, student, student.config)
    process = PlainProcess(dev, torch.bfloat16 if precision.startswith("bf16") else None)
    # The training loop's own step (accumulation, clipping, NaN guard, fused AdamW, schedule).
    stepper = OptimizerStep(task, Schedule(steps=10**6, lr=1e-5), TrainConfig(), process)
    stepper.prepare(
        compile_module=precision.endswith("+compile"), dynamic=False if static_shapes else None
    )
    fixed = audio_batch(utterances, seconds, dev)

    def step(batch: dict = fixed):
        stepper(lambda: batch, 0)

    return step, dev


def distill_throughput(
    shape: str = "cpu-mid",
    layers: str = "jump:2",
    utterances: int = 2,
    seconds: float = 5.0,
    steps: int = 3,
    precision: str = "fp32",
    share_cnn: bool = True,
    device: str | None = None,
    taps: str = "explicit",
) -> dict:
    """Distillation steps (teacher forward, student forward + backward, fused AdamW) on random
    audio: audio-seconds per second, and FLOP/s counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    step, dev = distill_stepper(
        shape, layers, utterances, seconds, precision, share_cnn, device, taps
    )
    step()  # warm-up (and compilation)
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    per_step = device_seconds(step, steps, dev)
    result = {
        "shape": shape,
        "layers": layers,
        "precision": precision,
        "share_cnn": share_cnn,
        "taps": taps,
        "batch_audio_seconds": utterances * seconds,
        "step_seconds": per_step,
        "audio_s_per_s": utterances * seconds / per_step,
        "flops_per_step": flops,
        "flops_per_s": flops / per_step,
    }
    if dev.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return result
