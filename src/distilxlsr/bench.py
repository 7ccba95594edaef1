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
- gpu, gpu-sweep, gpu-split (bench_gpu.py) and gpu-shapes (bench_shapes.py): XLS-R-shaped runs
  on one GPU, only when named.
"""

from __future__ import annotations

import difflib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.data.shuffle import phoneme_shuffle, tile_segments
from distilxlsr.errors import UserError
from distilxlsr.training.machine import machine_info


def _timed(fn, min_seconds: float = 1.0, min_runs: int = 3) -> float:
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

    return 2 * size**3 / _timed(run, min_seconds=1.0)


def synthetic_alignment(seconds: float, sample_rate: int, rng: np.random.Generator):
    """A LibriSpeech-like utterance: ~12 phones/s in words of 2-6 phones, short pauses."""
    n = int(seconds * sample_rate)
    audio = (0.1 * rng.standard_normal(n)).astype(np.float32)
    phones, words, pos = [], [], 0.15
    while pos < seconds - 0.3:
        start = pos
        for _ in range(int(rng.integers(2, 7))):
            dur = float(rng.uniform(0.04, 0.12))
            phones.append((pos, pos + dur, "a"))
            pos += dur
        words.append((start, pos))
        pos += float(rng.uniform(0.0, 0.15))
    return audio, tile_segments(phones, n, sample_rate, words=words)


def shuffle_throughput(
    mode: str = "utterance", seconds: float = 12.0, sample_rate: int = SAMPLE_RATE
) -> dict:
    """x real time on one core (torch/numpy threads are not used by the shuffle)."""
    rng = np.random.default_rng(0)
    audio, segments = synthetic_alignment(seconds, sample_rate, rng)
    per_call = _timed(lambda: phoneme_shuffle(audio, segments, rng, mode, sample_rate), 1.0)
    return {"mode": mode, "utterance_seconds": seconds, "x_realtime_per_core": seconds / per_call}


def loader_throughput(num_utterances: int = 48, mode: str = "utterance") -> dict:
    """Decode (FLAC) + shuffle + crop + collate in the training process, x real time."""
    from distilxlsr.config import ShuffleConfig  # noqa: PLC0415
    from distilxlsr.data.corpora import load_cuts  # noqa: PLC0415
    from distilxlsr.data.loader import AudioBatches, BatchPlan  # noqa: PLC0415
    from distilxlsr.data.shuffle import make_transform  # noqa: PLC0415
    from distilxlsr.data.toy import make_toy_corpus  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        make_toy_corpus(tmp, "en", "train", num_utterances=num_utterances, seconds=(4.0, 16.0))
        cuts = load_cuts(Path(tmp) / "en")
        plan = BatchPlan(
            cuts, batch_seconds=60.0, max_seconds=15.0, min_seconds=0.5, num_buckets=4, seed=0
        )
        dataset = AudioBatches(transform=make_transform(ShuffleConfig(mode=mode)), seed=0)
        refs = []
        for ref in plan:
            if ref.epoch > 0:
                break
            refs.append(ref)
        start = time.perf_counter()
        samples = sum(dataset[ref]["num_samples"] for ref in refs)
        elapsed = time.perf_counter() - start
    return {
        "audio_seconds": samples / SAMPLE_RATE,
        "x_realtime": samples / SAMPLE_RATE / elapsed,
        "mode": mode,
    }


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


def padding_efficiency(
    batch_seconds: float = 200.0,
    max_seconds: float = 15.0,
    num_buckets: int = 30,
    n: int = 20000,
    seed: int = 0,
) -> dict:
    """Real samples / all samples of the padded batches over one epoch of the training sampler
    (`BatchPlan`: crop to max_seconds, duration buckets), on LibriSpeech-like durations."""
    import warnings  # noqa: PLC0415

    from distilxlsr.data.loader import BatchPlan  # noqa: PLC0415

    warnings.filterwarnings("ignore", message=".*eagerly read CutSet.*")
    durations = librispeech_like_durations(n, seed)
    plan = BatchPlan(
        duration_only_cuts(durations),
        batch_seconds=batch_seconds,
        max_seconds=max_seconds,
        min_seconds=0.5,
        num_buckets=num_buckets,
        seed=seed,
    )
    real = padded = batches = 0
    for batch in plan.epoch_sampler(0):
        lengths = [c.num_samples for c in batch]
        real += sum(lengths)
        padded += max(lengths) * len(lengths)
        batches += 1
    return {
        "efficiency": real / padded,
        "batches": batches,
        "mean_duration_s": float(durations.mean()),
        "mean_batch_seconds": real / SAMPLE_RATE / batches,
        "batch_seconds": batch_seconds,
        "max_seconds": max_seconds,
        "num_buckets": num_buckets,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_seconds(run, steps: int, device: torch.device) -> float:
    """Seconds per call of `run` over `steps` calls, the device synchronised before and after
    (the calls themselves queue freely, as in training)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    _sync(device)
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


def _pair(
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
    from distilxlsr.config import load_config  # noqa: PLC0415
    from distilxlsr.distill.distiller import Distiller, prepare_for_distillation  # noqa: PLC0415
    from distilxlsr.models.layers import parse_layer_map  # noqa: PLC0415
    from distilxlsr.models.presets import shape_config  # noqa: PLC0415
    from distilxlsr.models.student import build_student  # noqa: PLC0415
    from distilxlsr.models.teacher import model_class  # noqa: PLC0415

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
    run = load_config(
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


def _audio_batch(utterances: int, seconds: float, device: torch.device) -> dict:
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
    from distilxlsr.config import TrainConfig  # noqa: PLC0415
    from distilxlsr.distill.distiller import DistillTask  # noqa: PLC0415
    from distilxlsr.training.loop import OptimizerStep, PlainProcess  # noqa: PLC0415
    from distilxlsr.training.optim import Schedule  # noqa: PLC0415

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    teacher, student, distiller = _pair(shape, layers, dev, share_cnn, taps, static_shapes)
    task = DistillTask(distiller, student, student.config)
    process = PlainProcess(dev, torch.bfloat16 if precision.startswith("bf16") else None)
    # The training loop's own step (accumulation, clipping, NaN guard, fused AdamW, schedule).
    stepper = OptimizerStep(task, Schedule(steps=10**6, lr=1e-5), TrainConfig(), process)
    stepper.prepare(
        compile_module=precision.endswith("+compile"), dynamic=False if static_shapes else None
    )
    fixed = _audio_batch(utterances, seconds, dev)

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


def _inference_child(model_type, config_dict, utterances, seconds, queue):
    """In a fresh process: peak resident memory growth while building and running one model,
    sampled every millisecond (CPU has no allocator statistics like CUDA's)."""
    import threading  # noqa: PLC0415

    import psutil  # noqa: PLC0415

    from distilxlsr.models.teacher import model_class  # noqa: PLC0415

    try:
        process = psutil.Process()
        base = process.memory_info().rss
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.001)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cls = model_class(model_type)
        model = cls(cls.config_class.from_dict(config_dict)).eval()
        batch = _audio_batch(utterances, seconds, torch.device("cpu"))
        with torch.inference_mode():
            model(**batch)
        done.set()
        sampler.join()
        queue.put({"peak_bytes": max(peak[0], process.memory_info().rss) - base})
    except Exception as err:  # reported to the parent, which raises it
        queue.put({"error": repr(err)})


def inference_ratio(
    shape: str = "cpu-mid",
    layers: str = "jump:2",
    utterances: int = 2,
    seconds: float = 10.0,
    device: str | None = None,
    min_seconds: float = 2.0,
) -> dict:
    """Student vs teacher: latency and peak memory of inference on identical batches
    (latency: the mean over repeated runs lasting at least `min_seconds`)."""
    import multiprocessing  # noqa: PLC0415

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    teacher, student, _ = _pair(shape, layers, dev)
    student.eval()
    batch = _audio_batch(utterances, seconds, dev)
    result: dict = {"shape": shape, "layers": layers, "batch_audio_seconds": utterances * seconds}
    for name, model in (("teacher", teacher), ("student", student)):

        def run(model=model):
            with torch.inference_mode():
                model(**batch)
            _sync(dev)

        result[f"{name}_latency_s"] = _timed(run, min_seconds=min_seconds)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            run()
            result[f"{name}_peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    if dev.type == "cpu":
        context = multiprocessing.get_context("spawn")
        for name, model in (("teacher", teacher), ("student", student)):
            queue = context.Queue()
            args = (model.config.model_type, model.config.to_dict(), utterances, seconds, queue)
            child = context.Process(target=_inference_child, args=args)
            child.start()
            while True:  # wait for the report, but not for a child that died without one
                try:
                    report = queue.get(timeout=1.0)
                    break
                except Exception:  # queue.Empty
                    if not child.is_alive():
                        report = {"error": f"exit code {child.exitcode}"}
                        break
            child.join()
            if "error" in report:
                raise RuntimeError(f"memory measurement of the {name} failed: {report['error']}")
            result[f"{name}_peak_memory_bytes"] = report["peak_bytes"]
    result["latency_ratio"] = result["student_latency_s"] / result["teacher_latency_s"]
    result["memory_ratio"] = (
        result["student_peak_memory_bytes"] / result["teacher_peak_memory_bytes"]
    )
    return result


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
        from distilxlsr import bench_gpu  # noqa: PLC0415

        cuda = torch.cuda.is_available()
        if "gpu" in wanted:
            results["gpu"] = bench_gpu.gpu_suite()
        if "gpu-sweep" in wanted:
            results["gpu_sweep"] = bench_gpu.batch_sweep() if cuda else {"error": "no GPU"}
        if "gpu-split" in wanted:
            results["gpu_split"] = bench_gpu.step_split() if cuda else {"error": "no GPU"}
    if "gpu-shapes" in wanted:
        from distilxlsr.bench_shapes import gpu_shapes_suite  # noqa: PLC0415

        results["gpu_shapes"] = gpu_shapes_suite()
    if "shuffle" in wanted:
        torch.set_num_threads(torch.get_num_threads())
        results["shuffle"] = shuffle_throughput("utterance")
        results["shuffle_segment"] = shuffle_throughput("segment")
    if "loader" in wanted:
        results["loader"] = loader_throughput()
    if "padding" in wanted:
        from distilxlsr.bench_shapes import static_yield  # noqa: PLC0415

        pad = padding_efficiency()
        results["padding_efficiency"] = pad["efficiency"]
        results["padding"] = pad | {"static_shapes": static_yield()}
    if "synth" in wanted:
        results["synth"] = synth_throughput()
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    print(summary_table(results))
    return results


def synth_throughput(seconds_per_language: float = 30.0) -> dict:
    """eSpeak corpus synthesis, x real time on one core (`jobs=1`), resampling included."""
    try:
        from distilxlsr.data.synthetic import synthesize_corpus  # noqa: PLC0415
    except ImportError as err:  # the engine package is optional at run time
        return {"error": f"synthetic corpus unavailable: {err}"}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        manifests = synthesize_corpus(
            Path(tmp),
            ["en", "es"],
            seconds_per_language / 60,
            "train",
            seed=0,
            jobs=1,
            progress=False,
        )
        elapsed = time.perf_counter() - start
        from distilxlsr.data.corpora import load_cuts  # noqa: PLC0415

        audio = sum(c.duration for m in manifests for c in load_cuts(m))
    return {"audio_seconds": audio, "x_realtime_per_core": audio / elapsed}


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
