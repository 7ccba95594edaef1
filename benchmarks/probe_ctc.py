"""The probe's CTC loss: the compiled one (evaluate/ctc_loss.py) against torch's
`F.ctc_loss`, inside the converged probe on a real model's features of one language.

Alternately (A B A B ...), one torch thread, for `--pairs` pairs:

- one evaluation of the full-batch objective (loss and gradient), repeated `--evals` times:
  ms per evaluation of each, and the ratio pair by pair (median, min, max);
- with `--fit`, the whole converged probe at probe seed 0: its seconds, L-BFGS iterations and
  final loss, and its phone error rate on the language's `dev` split (or `--split`), to show the
  two losses train the same probe (they differ by float rounding only, so L-BFGS's path may
  drift a little).

    python benchmarks/probe_ctc.py --model src/distilxlsr/assets/teacher \\
        --data runs/evidence/data/eu [--pairs 3] [--fit] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from distilxlsr import tune_malloc
from distilxlsr.bench.common import emit, ratio_pairs
from distilxlsr.evaluate import ctc
from distilxlsr.evaluate.ctc import Probe, ProbeConfig, probe_decode, train_probe
from distilxlsr.evaluate.ctc_loss import ctc_loss, torch_ctc_loss
from distilxlsr.evaluate.per import phone_error_rate

LOSSES = {"compiled": ctc_loss, "torch": torch_ctc_loss}


def load(model: str, data_dir: Path, split: str):
    from distilxlsr.evaluate.features import ModelFeatures, resolve_model  # noqa: PLC0415
    from distilxlsr.evaluate.languages import load_language  # noqa: PLC0415
    from distilxlsr.evaluate.task import extract_features  # noqa: PLC0415

    data = load_language(data_dir.name, data_dir, split=split)
    features = ModelFeatures(resolve_model(model))
    return (
        data,
        extract_features(features, data.train.waves),
        extract_features(features, data.test.waves),
    )


def evaluation_ms(loss_fn, probe: Probe, packed, labels, evals: int) -> float:
    start = time.perf_counter()
    for _ in range(evals):
        probe.zero_grad(set_to_none=True)
        loss = loss_fn(probe.forward_packed(packed), packed.lengths, labels)
        loss = loss + 3e-3 * probe.head.weight.pow(2).sum()
        loss.backward()
    return 1000 * (time.perf_counter() - start) / evals


def fit(name: str, data, train_feats, test_feats) -> dict:
    current = ctc._ctc
    ctc._ctc = LOSSES[name]
    try:
        labels = [data.encode(p) for p in data.train.phones]
        probe, info = train_probe(train_feats, labels, len(data.vocab), ProbeConfig(seed=0))
    finally:
        ctc._ctc = current
    hypotheses = [data.decode(ids) for ids in probe_decode(probe, test_feats)]
    return info | {"per": phone_error_rate(data.test.phones, hypotheses)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a model directory")
    parser.add_argument("--data", type=Path, required=True, help="one language's directory")
    parser.add_argument("--split", default="dev", help="the split --fit scores (default dev)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--evals", type=int, default=10)
    parser.add_argument("--fit", action="store_true", help="also the whole probe, both ways")
    parser.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, train_feats, test_feats = load(args.model, args.data, args.split)
    labels = [data.encode(p) for p in data.train.phones]
    probe = Probe(train_feats[0].shape[0], train_feats[0].shape[2], len(data.vocab))
    probe.fit_standardisation(train_feats)
    packed = Probe.pack(probe.standardise(train_feats))
    for loss_fn in LOSSES.values():  # warm-up (and the compiled loss's compilation)
        evaluation_ms(loss_fn, probe, packed, labels, 1)
    times = {name: [] for name in LOSSES}
    for _ in range(args.pairs):
        for name, loss_fn in LOSSES.items():
            times[name].append(evaluation_ms(loss_fn, probe, packed, labels, args.evals))
    result = {
        "model": args.model,
        "language": data.lang,
        "train_utterances": len(labels),
        "train_frames": int(packed.lengths.sum()),
        "pairs": args.pairs,
        "evals_per_pair": args.evals,
        "ms_per_evaluation": {n: statistics.median(t) for n, t in times.items()},
        "ratio_compiled_over_torch": ratio_pairs(times["compiled"], times["torch"]),
    }
    if args.fit:
        result["fit"] = {name: fit(name, data, train_feats, test_feats) for name in LOSSES}
        result["fit"]["split"] = data.test_split
    emit(result, args.out)


if __name__ == "__main__":
    tune_malloc()
    main()
