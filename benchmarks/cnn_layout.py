"""The layer-norm CNN (XLS-R's) run channels-last against transformers' layers, which transpose
each layer's output for its LayerNorm and back (docs/design.md, "Layer representations").
Alternately (A B A B ...), one process, torch's default threads; prints seconds per call of each,
the ratio pair by pair (median, min, max) and the largest difference of the CNN's outputs:

- `cnn`: XLS-R's CNN (7 layers of 512 channels, random weights) alone, inference mode, on
  `--utterances` x `--seconds` of audio;
- `distill`: the CPU benchmark's distillation step (`distilxlsr bench`'s `distill` section: the
  8-layer width-512 XLS-R-shaped teacher -> jump:2 student, shared CNN, 2 x 5 s), whose teacher
  CNN runs once per step;
- `features`: the evaluation's feature extraction (every layer of the same teacher, inference
  mode), as `evaluate` runs it for each language.

transformers' layers are selected by making every layer look unknown to the channels-last path
(distilxlsr.models.layers._is_layer_norm_conv), which is how a group-norm CNN runs.

    python benchmarks/cnn_layout.py [--pairs 5] [--sections cnn,distill,features]
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import contextmanager
from pathlib import Path

import torch

from distilxlsr import tune_malloc
from distilxlsr.bench.common import (
    audio_batch,
    device_seconds,
    distill_stepper,
    emit,
    ratio_pairs,
)
from distilxlsr.models import layers
from distilxlsr.models.loading import model_class
from distilxlsr.models.presets import shape_config

CPU = torch.device("cpu")


@contextmanager
def transformers_cnn():
    known = layers._is_layer_norm_conv
    layers._is_layer_norm_conv = lambda layer: False
    try:
        yield
    finally:
        layers._is_layer_norm_conv = known


def alternate(run, pairs: int, calls: int) -> dict:
    """run() warmed up both ways, then timed channels-last / transformers alternately."""
    run()
    with transformers_cnn():
        run()
    fast, slow = [], []
    for _ in range(pairs):
        fast.append(device_seconds(run, calls, CPU))
        with transformers_cnn():
            slow.append(device_seconds(run, calls, CPU))
    return {
        "seconds_channels_last": statistics.median(fast),
        "seconds_transformers": statistics.median(slow),
        "ratio_channels_last_over_transformers": ratio_pairs(fast, slow),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3, help="calls timed together per sample")
    parser.add_argument("--utterances", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sections", default="cnn,distill,features")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher = model_class("wav2vec2")(shape_config("cpu-mid")).eval().requires_grad_(False)
    batch = audio_batch(args.utterances, args.seconds, CPU)
    x = batch["input_values"]
    result = {"torch_threads": torch.get_num_threads(), "audio": [args.utterances, args.seconds]}
    sections = args.sections.split(",")
    if "cnn" in sections:
        extractor = teacher.feature_extractor
        with torch.inference_mode():
            fast = layers.run_cnn(extractor, x)
            want = extractor(x)
        result["cnn_max_abs_difference"] = float((fast - want).abs().max())
        result["cnn_max_abs_value"] = float(want.abs().max())

        def cnn():
            with torch.inference_mode():
                layers.run_cnn(extractor, x)

        result["cnn"] = alternate(cnn, args.pairs, args.calls)
    if "distill" in sections:
        step, _ = distill_stepper(device="cpu")
        result["distill"] = alternate(step, args.pairs, args.calls)
    if "features" in sections:
        tap = layers.LayerTap(teacher)
        every = list(range(teacher.config.num_hidden_layers + 1))

        def features():
            with torch.inference_mode():
                tap(x, batch["attention_mask"], every)

        result["features"] = alternate(features, args.pairs, args.calls)
    emit(result, args.out)


if __name__ == "__main__":
    tune_malloc()
    main()
