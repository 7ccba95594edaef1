"""Why T1 failed its gate, and which first-iteration recipe to use instead, chosen on dev.

T1's first iteration (stage-1 lr 1e-3 from the first step, masked frames only) stayed at the
unit prior: masked-unit accuracy 0.016 at step 150 and 0.032 at step 500, loss 4.35 against
ln(100) = 4.61; its probe then scored 92-94% dev PER, worse than its untrained network (~75%).
This sweep trains short first iterations (`--steps`, the schedule compressed to them) of T1's
data and architecture with a few recipes, and probes each on the dev split of two `heard` and
two `unheard` languages beside the untrained network and log-mel (the gate's probe). Recipes:

- `baseline`: T1's (lr 1e-3, no warm-up, masked frames only);
- `warmup`: lr 5e-4 with 10% linear warm-up;
- `unmasked`: the warm-up recipe, and unmasked frames' units predicted too (weight 1);
- `lowmask`: the warm-up recipe with a span-start probability of 0.3 instead of 0.65.

    python experiments/teacher_recipe_sweep.py [--steps 120] [--recipes warmup,unmasked]

Resumable (finished runs and evaluations are reused). Writes results/teacher_recipe_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from distilxlsr import tune_malloc
from distilxlsr.evaluate.harness import evaluate
from distilxlsr.pretraining.pretrain import pretrain_teacher
from distilxlsr.pretraining.recipe import load_pretrain_config

RECIPES = {
    "baseline": [],
    "warmup": ["stage1.lr=5e-4", "stage1.warmup_steps={warmup}"],
    "unmasked": ["stage1.lr=5e-4", "stage1.warmup_steps={warmup}", "stage1.unmasked_weight=1.0"],
    "lowmask": ["stage1.lr=5e-4", "stage1.warmup_steps={warmup}", "stage1.mask_prob=0.3"],
}
LANGS = {"heard": ["it", "el"], "unheard": ["sw", "eu"]}


def train(name: str, data: Path, out: Path, steps: int, batch_seconds: float) -> Path:
    model = out / name / "model"
    if (model / "model.safetensors").is_file():
        return model
    overrides = [o.format(warmup=max(1, steps // 10)) for o in RECIPES[name]]
    config = load_pretrain_config(
        "pretrain-tiny-teacher",
        [
            f"data={data}",
            f"out={out / name}",
            "split=pretrain",
            "languages=[english,label,heard]",
            "model.family=wav2vec2",
            "train.seed=0",
            "loader.num_workers=1",
            f"train.batch_seconds={batch_seconds:g}",
            f"train.checkpoint_every={max(1, steps // 2)}",
            f"stage1.steps={steps}",
            "stage2.steps=0",
            *overrides,
        ],
    )
    return pretrain_teacher(config, command_line=f"(experiments/teacher_recipe_sweep.py {name})")


def final_metrics(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "accuracy" in r]
    return {"step": rows[-1]["step"], "loss": rows[-1]["loss"], "accuracy": rows[-1]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="runs/evidence/data")
    parser.add_argument("--out", default="runs/teacher-sweep")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-seconds", type=float, default=60.0)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--result", default="results/teacher_recipe_sweep.json")
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    names = args.recipes.split(",")
    models, seconds = {}, {}
    for name in names:
        start = time.perf_counter()
        models[name] = train(name, data, out, args.steps, args.batch_seconds)
        seconds[name] = time.perf_counter() - start
        print(f"{name}: {final_metrics(out / name)} ({seconds[name]:.0f} s)", flush=True)
    first = models[names[0]]
    langs = [lang for tier in LANGS.values() for lang in tier]
    results = evaluate(
        [*(f"{n}={m}" for n, m in models.items()), "logmel", f"untrained=untrained:{first}"],
        str(data),
        str(out / "eval"),
        split="dev",
        langs=langs,
        jobs=args.jobs,
    )
    per = {m["name"]: m["per"] for m in results["models"]}
    table = {
        name: {
            "recipe": RECIPES.get(name, []),
            "steps": args.steps,
            **({"final": final_metrics(out / name)} if name in models else {}),
            "dev_per": per[name],
            "mean_dev_per": {
                t: float(np.mean([per[name][x] for x in ls])) for t, ls in LANGS.items()
            },
        }
        for name in per
    }
    Path(args.result).write_text(
        json.dumps(
            {
                "command": "python experiments/teacher_recipe_sweep.py "
                f"--steps {args.steps} --recipes {args.recipes}",
                "split": "dev",
                "batch_seconds": args.batch_seconds,
                "recipes": table,
            },
            indent=1,
        )
        + "\n"
    )
    for name, row in table.items():
        means = {t: round(100 * v, 1) for t, v in row["mean_dev_per"].items()}
        print(f"{name}: dev PER {means} {row.get('final', '')}", flush=True)


if __name__ == "__main__":
    tune_malloc()
    main()
