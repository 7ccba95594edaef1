"""Fine-tuning's step with the frozen CNN's outputs reused (`FrozenCNNOutputs`, the default)
against the CNN run at every step. Both fine-tune the same model on the same utterances with the
same seed, alternately (A B A B ...), one torch thread; prints seconds per step of each (model
loading and the reused outputs' one pass included), the ratio pair by pair (median, min, max),
and the relative difference of the two runs' last losses.

    python benchmarks/finetune_step.py --data runs/evidence/data/sw [--pairs 3] [--steps 10]
    python benchmarks/finetune_step.py --model DIR --data CORPUS/<lang>

The default model is the shipped teacher (a layer-norm CNN, as XLS-R's); a group-norm CNN is
never replaced, so there the two runs are the same.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from distilxlsr import tune_malloc
from distilxlsr.bench.common import emit, ratio_pairs
from distilxlsr.demo import shipped_teacher
from distilxlsr.evaluate.ctc import FinetuneConfig, finetune
from distilxlsr.evaluate.languages import load_language


def timed(model: str, data, config: FinetuneConfig, reuse: bool) -> tuple[float, float]:
    labels = [data.encode(p) for p in data.train.phones]
    start = time.perf_counter()
    _, info = finetune(
        model,
        data.train.waves,
        labels,
        len(data.vocab),
        config,
        normalize=True,
        reuse_cnn_outputs=reuse,
    )
    return (time.perf_counter() - start) / config.steps, info["final_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="one language's directory")
    parser.add_argument("--model", help="a model directory (default: the shipped teacher)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = args.model or str(shipped_teacher())
    data = load_language(args.data.name, args.data)
    config = FinetuneConfig(steps=args.steps)
    timed(model, data, FinetuneConfig(steps=2), True)  # warm-up
    reused, every, losses = [], [], []
    for _ in range(args.pairs):
        s_reused, loss_reused = timed(model, data, config, True)
        s_every, loss_every = timed(model, data, config, False)
        reused.append(s_reused)
        every.append(s_every)
        losses.append(abs(loss_reused - loss_every) / abs(loss_every))
    seconds = sum(len(w) for w in data.train.waves) / 16000
    emit(
        {
            "model": args.model or "shipped teacher",
            "language": args.data.name,
            "train_utterances": len(data.train.waves),
            "train_seconds": round(seconds, 1),
            "steps": args.steps,
            "batch_utterances": config.batch_utterances,
            "pairs": args.pairs,
            "s_per_step_reused_cnn_outputs": statistics.median(reused),
            "s_per_step_cnn_every_step": statistics.median(every),
            "ratio_reused_over_every_step": ratio_pairs(reused, every),
            "max_relative_difference_of_last_loss": max(losses),
        },
        args.out,
    )


if __name__ == "__main__":
    tune_malloc()
    main()
