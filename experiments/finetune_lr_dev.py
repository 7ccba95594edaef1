"""Is fine-tuning worse than the frozen probe because of its learning rate? A check on dev.

In the replication (experiments/reproduce_mini.py), T1 and its students fine-tuned with the
default recipe (`FinetuneConfig`: 400 steps at lr 1e-4, the head alone for the first 15%)
reached a worse unheard-tier test PER than a linear probe on their frozen layers (T1: 62.2%
against 47.8%). A linear CTC head that starts from random weights moves little in 400 Adam
steps at lr 1e-4 (at most about 0.04 per weight), while the probe learns at 3e-3. This
fine-tunes one model at several learning rates, everything else the default recipe, and scores
each on the `dev` split (never `test`) of a few `unheard` languages, beside the same model's
frozen probe on the same dev split (the default probe, as in the teachers' gate).

results/finetune_lr_dev.json was measured with evaluate/ctc.py's own fine-tuning loop, which
the `finetune` job (asr/) replaced; run today, the script fine-tunes with the job's recipe
(`evaluation_finetune`: phone targets, the head alone for `frozen.steps`, then `full.steps` at
each `full.lr`).

    python experiments/finetune_lr_dev.py [--model runs/teachers/T1/model] [--langs sw,tt]
        [--lrs 1e-4,1e-3] [--steps 400]

Resumable (each lr's evaluation reuses the languages already done). Writes
results/finetune_lr_dev.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from distilxlsr import tune_malloc
from distilxlsr.asr.recipe import FullStage
from distilxlsr.evaluate.ctc import ProbeConfig
from distilxlsr.evaluate.harness import evaluate
from distilxlsr.evaluate.recipe import evaluation_finetune


def row(results: dict) -> dict:
    """The one model's dev PER per language and macro, and its train PER (underfit or not)."""
    (model,) = results["models"]
    return {
        "per_language": model["per"],
        "macro": model["per_mean"],
        "train_per_language": model["train_per"],
        "train_macro": model["train_per_mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="runs/teachers/T1/model", help="the model fine-tuned")
    parser.add_argument("--data", default="runs/evidence/data", help="corpus v2")
    parser.add_argument("--langs", default="sw,tt", help="unheard-tier languages, dev split")
    parser.add_argument("--lrs", default="1e-4,1e-3", help="peak learning rates tried")
    parser.add_argument("--steps", type=int, default=FullStage.steps)
    parser.add_argument("--work", default="runs/finetune-lr-dev")
    parser.add_argument("--out", default="results/finetune_lr_dev.json")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one language each")
    parser.add_argument(
        "--probe-steps", type=int, default=ProbeConfig.steps, help="the frozen probe's steps"
    )
    args = parser.parse_args()
    tune_malloc()
    langs = args.langs.split(",")
    lrs = [float(x) for x in args.lrs.split(",")]
    work = Path(args.work)
    common = dict(data=args.data, langs=langs, split="dev", seeds=[0], jobs=args.jobs)
    start = time.perf_counter()
    probe = evaluate(
        [f"model={args.model}"],
        out=str(work / "probe"),
        probe=ProbeConfig(steps=args.probe_steps),
        **common,
    )
    rows = {"frozen probe": row(probe)}
    for lr in lrs:
        config = evaluation_finetune()
        config.full.steps, config.full.lr = args.steps, lr
        tuned = evaluate(
            [f"model={args.model}"],
            out=str(work / f"finetune-lr{lr:g}"),
            mode="finetune",
            finetune_config=config,
            **common,
        )
        rows[f"fine-tuned, lr {lr:g}"] = row(tuned)
    out = {
        "model": args.model,
        "split": "dev",
        "languages": langs,
        "steps": args.steps,
        "probe_steps": args.probe_steps,
        "command": "python experiments/finetune_lr_dev.py "
        f"--model {args.model} --langs {args.langs} --lrs {args.lrs} --steps {args.steps} "
        f"--probe-steps {args.probe_steps}",
        "rows": rows,
        "seconds": round(time.perf_counter() - start),
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for name, r in rows.items():
        cells = " ".join(f"{k} {v:.1%}" for k, v in r["per_language"].items())
        print(f"{name:>22}: dev PER {r['macro']:.1%} ({cells}), train PER {r['train_macro']:.1%}")


if __name__ == "__main__":
    main()
