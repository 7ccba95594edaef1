"""Speed-up of the probe's feature cache: the harness computes a frozen model's features once
per language and trains the probe on them; without the cache every probe step would run the
model on its batch. Measured on one language: cached (extract once + all steps) against uncached
(the same steps, each running the model on its batch; timed over `--uncached-steps` and scaled).

    python benchmarks/probe_cache.py --model src/distilxlsr/assets/teacher --data data/synth/es
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from distilxlsr import tune_malloc
from distilxlsr.evaluate.ctc import ProbeConfig, train_probe
from distilxlsr.evaluate.features import ModelFeatures, resolve_model
from distilxlsr.evaluate.languages import load_language
from distilxlsr.evaluate.task import extract_features


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="src/distilxlsr/assets/teacher")
    parser.add_argument("--data", default="data/synth/es")
    parser.add_argument("--uncached-steps", type=int, default=50)
    args = parser.parse_args()
    config = ProbeConfig()
    data = load_language(Path(args.data).name, Path(args.data))
    features = ModelFeatures(resolve_model(args.model))
    labels = [data.encode(p) for p in data.train.phones]

    start = time.perf_counter()
    cached = extract_features(features, data.train.waves)
    extract_seconds = time.perf_counter() - start
    _, info = train_probe(cached, labels, len(data.vocab), config)
    cached_total = extract_seconds + info["seconds"]

    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(args.uncached_steps):
        pick = torch.randint(len(labels), (config.batch_utterances,), generator=generator)
        features([data.train.waves[i] for i in pick])  # what each step would cost without a cache
    forward_per_step = (time.perf_counter() - start) / args.uncached_steps
    uncached_total = info["seconds"] + config.steps * forward_per_step
    result = {
        "model": args.model,
        "language": data.lang,
        "train_seconds_of_audio": data.train.seconds,
        "steps": config.steps,
        "cached_total_s": cached_total,
        "extract_once_s": extract_seconds,
        "probe_training_s": info["seconds"],
        "model_forward_per_step_s": forward_per_step,
        "uncached_total_s": uncached_total,
        "speedup": uncached_total / cached_total,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    tune_malloc()
    main()
