"""Choose the evaluation probe's learning rate and steps once, on held-out *training* speakers.

For a few languages, the training speakers are split 80/20 by speaker; probes over log-mel
features (never a model under test) are trained on the 80% and scored (PER) on the 20%. The
setting with the lowest mean held-out PER becomes `ProbeConfig`'s default for every model.

    python benchmarks/probe_selection.py --data data/synth --langs es,ru,sw
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import zlib
from pathlib import Path

import numpy as np

from distilxlsr import tune_malloc
from distilxlsr.evaluate.ctc import ProbeConfig, probe_decode, train_probe
from distilxlsr.evaluate.features import ModelFeatures, resolve_model
from distilxlsr.evaluate.harness import _extract, load_language
from distilxlsr.evaluate.per import phone_error_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--langs", default="es,ru,sw")
    parser.add_argument("--lrs", default="1e-3,3e-3,1e-2")
    parser.add_argument("--steps", default="500,1500,3000")
    parser.add_argument("--out", default="docs/probe_selection.json")
    args = parser.parse_args()
    features = ModelFeatures(resolve_model("logmel"), frame_stride=320)
    grid = list(
        itertools.product(
            [float(x) for x in args.lrs.split(",")], [int(x) for x in args.steps.split(",")]
        )
    )
    scores: dict[str, list[float]] = {f"lr={lr:g} steps={steps}": [] for lr, steps in grid}
    for lang in args.langs.split(","):
        data = load_language(lang, Path(args.data) / lang)
        held = [zlib.crc32(s.encode()) % 5 == 0 for s in data.train.speakers]  # 20% of speakers
        fit = [i for i, h in enumerate(held) if not h]
        dev = [i for i, h in enumerate(held) if h]
        feats = _extract(features, data.train.waves)
        labels = [data.encode(p) for p in data.train.phones]
        for lr, steps in grid:
            start = time.perf_counter()
            head, _ = train_probe(
                [feats[i] for i in fit],
                [labels[i] for i in fit],
                len(data.vocab),
                ProbeConfig(steps=steps, lr=lr),
            )
            hyp = probe_decode(head, [feats[i] for i in dev])
            per = phone_error_rate(
                [data.train.phones[i] for i in dev], [data.decode(h) for h in hyp]
            )
            scores[f"lr={lr:g} steps={steps}"].append(per)
            print(
                f"{lang} lr={lr:g} steps={steps}: held-out PER {per:.3f} ({time.perf_counter() - start:.0f} s, "
                f"{len(fit)} fit / {len(dev)} held-out utterances)",
                flush=True,
            )
    means = {k: float(np.mean(v)) for k, v in scores.items()}
    best = min(means, key=means.get)
    print(json.dumps(means, indent=2))
    print(f"chosen: {best} (mean held-out PER {means[best]:.3f})")
    Path(args.out).write_text(
        json.dumps({"langs": args.langs, "means": means, "chosen": best}, indent=2) + "\n"
    )


if __name__ == "__main__":
    tune_malloc()
    main()
