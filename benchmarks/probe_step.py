"""The probe's training step: the current Probe.forward (each utterance padded with F.pad, then
stacked) against the reference that padded with pad_sequence, whose backward clones the whole
padded gradient once per utterance. Both train the same probe on the same features, alternately
(A B A B ...), one torch thread; prints ms per step of each, the ratio pair by pair (median, min,
max), and whether the two probes' parameters are bit-identical after training.

Features are random, shaped like the shipped teacher's on corpus v2 (9 layer outputs of 256
dimensions, 40-330 frames of 20 ms, 82 training utterances, 39 symbols), or a real model's on one
language with --model and --data.

    python benchmarks/probe_step.py [--pairs 5] [--steps 100]
    python benchmarks/probe_step.py --model src/distilxlsr/assets/teacher --data DIR/it
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from distilxlsr import tune_malloc
from distilxlsr.bench.common import emit, ratio_pairs
from distilxlsr.evaluate.ctc import Probe, ProbeConfig, train_probe


def pad_sequence_forward(self: Probe, feats: list[torch.Tensor]):
    """The reference: Probe.forward before the change, padding with pad_sequence."""
    weights = self.layer_weights()
    mixed = [(weights @ f.reshape(f.shape[0], -1)).view(f.shape[1], f.shape[2]) for f in feats]
    lengths = torch.tensor([m.shape[0] for m in mixed])
    padded = nn.utils.rnn.pad_sequence(mixed, batch_first=True)
    return F.log_softmax(self.head(padded), dim=-1), lengths


def random_task(utterances: int, layers: int, dim: int, vocab: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(40, 330, (utterances,), generator=generator).tolist()
    feats = [torch.randn(layers, t, dim, generator=generator).half() for t in frames]
    labels = [
        torch.randint(1, vocab, (max(1, t // 5),), generator=generator).tolist() for t in frames
    ]
    return feats, labels, vocab


def real_task(model: str, data_dir: Path):
    from distilxlsr.evaluate.features import ModelFeatures, resolve_model  # noqa: PLC0415
    from distilxlsr.evaluate.languages import load_language  # noqa: PLC0415
    from distilxlsr.evaluate.task import extract_features  # noqa: PLC0415

    data = load_language(data_dir.name, data_dir)
    feats = extract_features(ModelFeatures(resolve_model(model)), data.train.waves)
    return feats, [data.encode(p) for p in data.train.phones], len(data.vocab)


def timed(forward, feats, labels, vocab, steps: int):
    current = Probe.forward
    Probe.forward = forward
    try:
        start = time.perf_counter()
        probe, _ = train_probe(feats, labels, vocab, ProbeConfig(steps=steps))
        return probe, (time.perf_counter() - start) / steps
    finally:
        Probe.forward = current


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--model", help="a model directory (with --data): its real features")
    parser.add_argument("--data", type=Path, help="one language's directory of a corpus")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    if (args.model is None) != (args.data is None):
        parser.error("--model and --data go together")
    torch.set_num_threads(1)
    task = real_task(args.model, args.data) if args.model else random_task(82, 9, 256, 39)
    current_forward = Probe.forward
    timed(current_forward, *task, steps=5)  # warm-up
    new, old, identical = [], [], True
    for _ in range(args.pairs):
        probe_new, s_new = timed(current_forward, *task, steps=args.steps)
        probe_old, s_old = timed(pad_sequence_forward, *task, steps=args.steps)
        new.append(s_new)
        old.append(s_old)
        a, b = probe_new.state_dict(), probe_old.state_dict()
        identical &= all(torch.equal(a[k], b[k]) for k in a)
    result = {
        "features": "real" if args.model else "random",
        "steps": args.steps,
        "pairs": args.pairs,
        "ms_per_step_current": 1000 * statistics.median(new),
        "ms_per_step_pad_sequence": 1000 * statistics.median(old),
        "ratio_current_over_pad_sequence": ratio_pairs(new, old),
        "bit_identical": identical,
    }
    emit(result, args.out)


if __name__ == "__main__":
    tune_malloc()
    main()
