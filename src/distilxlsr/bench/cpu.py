"""The CPU sections of `distilxlsr bench`: phoneme-shuffle and loader throughput, padding
efficiency, student vs teacher inference, and synthetic-corpus throughput."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distilxlsr.bench.common import (
    audio_batch,
    duration_only_cuts,
    librispeech_like_durations,
    model_pair,
    sync,
    timed,
)
from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.data.shuffle import phoneme_shuffle, tile_segments


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
    per_call = timed(lambda: phoneme_shuffle(audio, segments, rng, mode, sample_rate), 1.0)
    return {"mode": mode, "utterance_seconds": seconds, "x_realtime_per_core": seconds / per_call}


def loader_throughput(num_utterances: int = 48, mode: str = "utterance") -> dict:
    """Decode (FLAC) + shuffle + crop + collate in the training process, x real time."""
    from distilxlsr.data.corpora import load_cuts  # noqa: PLC0415
    from distilxlsr.data.loader import AudioBatches, BatchPlan  # noqa: PLC0415
    from distilxlsr.data.shuffle import make_transform  # noqa: PLC0415
    from distilxlsr.data.toy import make_toy_corpus  # noqa: PLC0415
    from distilxlsr.distill.recipe import ShuffleConfig  # noqa: PLC0415

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


def _inference_child(model_type, config_dict, utterances, seconds, queue):
    """In a fresh process: peak resident memory growth while building and running one model,
    sampled every millisecond (CPU has no allocator statistics like CUDA's), and the peak of the
    tensors' own bytes (counted op by op, as `distilxlsr plan` counts them)."""
    import threading  # noqa: PLC0415

    import psutil  # noqa: PLC0415

    from distilxlsr.models.loading import model_class  # noqa: PLC0415
    from distilxlsr.plan import LiveBytes  # noqa: PLC0415

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
        with LiveBytes() as tensors:  # the tensors' bytes exactly, beside the blurred RSS
            model = cls(cls.config_class.from_dict(config_dict)).eval()
            batch = audio_batch(utterances, seconds, torch.device("cpu"))
            with torch.inference_mode():
                model(**batch)
        done.set()
        sampler.join()
        queue.put(
            {
                "peak_bytes": max(peak[0], process.memory_info().rss) - base,
                "peak_tensor_bytes": tensors.peak,
            }
        )
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
    teacher, student, _ = model_pair(shape, layers, dev)
    student.eval()
    batch = audio_batch(utterances, seconds, dev)
    result: dict = {"shape": shape, "layers": layers, "batch_audio_seconds": utterances * seconds}
    for name, model in (("teacher", teacher), ("student", student)):

        def run(model=model):
            with torch.inference_mode():
                model(**batch)
            sync(dev)

        result[f"{name}_latency_s"] = timed(run, min_seconds=min_seconds)
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
            result[f"{name}_peak_tensor_bytes"] = report["peak_tensor_bytes"]
    result["latency_ratio"] = result["student_latency_s"] / result["teacher_latency_s"]
    result["memory_ratio"] = (
        result["student_peak_memory_bytes"] / result["teacher_peak_memory_bytes"]
    )
    return result


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
