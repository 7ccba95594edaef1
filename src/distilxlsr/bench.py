"""`distilxlsr bench`: the figures of the performance issue, each measured side by side in one run.

- machine: CPU, cores, torch version, and the dense matmul peak measured here;
- distill: distillation step throughput (audio-seconds/s) and FLOP/s (counted by torch's
  FlopCounterMode on one step) as a fraction of the measured matmul peak;
- inference: student vs teacher latency and peak memory on identical batches;
- shuffle: phoneme-shuffle throughput, x real time on one core;
- loader: decode + shuffle + crop + collate throughput, x real time;
- padding_efficiency: real samples / all samples in the bucketing sampler's batches on a
  LibriSpeech-like duration distribution;
- synth: synthetic-corpus throughput, x real time per core (when the eSpeak engine is present).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distilxlsr.data.shuffle import phoneme_shuffle, tile_segments


def _timed(fn, min_seconds: float = 1.0, min_runs: int = 3) -> float:
    """Seconds per call: warm up once, then repeat until `min_seconds` have passed."""
    fn()
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < min_seconds:
        fn()
        runs += 1
    return (time.perf_counter() - start) / runs


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


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
    mode: str = "utterance", seconds: float = 12.0, sample_rate: int = 16000
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
    return {"audio_seconds": samples / 16000, "x_realtime": samples / 16000 / elapsed, "mode": mode}


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


def duration_only_cuts(durations: np.ndarray, sample_rate: int = 16000):
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
        "mean_batch_seconds": real / 16000 / batches,
        "batch_seconds": batch_seconds,
        "max_seconds": max_seconds,
        "num_buckets": num_buckets,
    }


def run_bench(out: str | Path, sections: list[str] | None = None) -> dict:
    """Measure every section (or the named ones), print a table, write JSON to `out`."""
    results: dict = {"machine": machine_info()}
    wanted = set(sections or ["shuffle", "loader", "padding"])
    if "shuffle" in wanted:
        torch.set_num_threads(torch.get_num_threads())
        results["shuffle"] = shuffle_throughput("utterance")
        results["shuffle_segment"] = shuffle_throughput("segment")
    if "loader" in wanted:
        results["loader"] = loader_throughput()
    if "padding" in wanted:
        pad = padding_efficiency()
        results["padding_efficiency"] = pad["efficiency"]
        results["padding"] = pad
    Path(out).write_text(json.dumps(results, indent=2) + "\n")
    return results
