"""Evidence v3 part 2: levers on the shipped teacher T1, each a continuation of its weights,
then the v3 gate on dev (experiments/teacher_gate_v3.py) for every candidate that finished.

Why these levers (results/unit_quality.json): k-means units of T1's layers are no more phonetic
than log-mel's (PNMI 0.55 either way) and carry more of the voice (voice NMI on unheard dev:
log-mel 0.34, T1's layer 8 0.46), so another HuBERT iteration on T1's own units would teach
voices. Both candidates therefore continue T1 on log-mel units, with the masked frames weighing
more than in T1's recipe (unmasked weight 0.5, not 1.0), for 1,200 more steps:

- `cont-logmel`: that alone (T1 had 500 steps, about 1.3 passes over its 6 h);
- `cont-logmel-speed`: the same with voice perturbation (`stage1.speed_range=[0.85, 1.15]`:
  each utterance played 0.85-1.15x as fast, its units those of the clean audio), so that the
  targets stop following the voice.

The pair isolates the perturbation; each against T1 gives the continuation's effect. Every run
resumes where it stopped (the same command); a candidate another process is training is
skipped (its run lock), and the gate covers the candidates whose model exists.

    python experiments/teacher_levers.py [--only NAME] [--gate-only] [--jobs 1]

Writes runs/teachers_v3/<name>/ (the runs) and results/teacher_gate_v3/dev/ (the gate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from distilxlsr import tune_malloc
from distilxlsr.errors import UserError
from distilxlsr.pretraining.pretrain import pretrain_teacher
from distilxlsr.pretraining.recipe import load_pretrain_config

BASE = [
    "split=pretrain",
    "languages=[english,label,heard]",
    "init_from=src/distilxlsr/assets/teacher",
    "units.source=logmel",
    "stage1.steps=1200",
    "stage1.lr=3e-4",
    "stage1.warmup_steps=60",
    "stage1.unmasked_weight=0.5",
    "stage2.steps=0",
    "train.batch_seconds=60",
    "train.checkpoint_every=100",
    "loader.num_workers=1",
    "train.seed=0",
]
CANDIDATES = {
    "cont-logmel": BASE,
    "cont-logmel-speed": [*BASE, "stage1.speed_range=[0.85,1.15]"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="runs/evidence/data")
    parser.add_argument("--runs", default="runs/teachers_v3")
    parser.add_argument("--only", choices=sorted(CANDIDATES))
    parser.add_argument("--gate-only", action="store_true")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    names = [args.only] if args.only else list(CANDIDATES)
    for name in names if not args.gate_only else []:
        run = Path(args.runs) / name
        if (run / "model" / "model.safetensors").is_file():
            continue
        overrides = [f"data={args.data}", f"out={run}", *CANDIDATES[name]]
        try:
            pretrain_teacher(
                load_pretrain_config("pretrain-tiny-teacher", overrides),
                command_line=f"(experiments/teacher_levers.py {name})",
            )
        except UserError as err:  # e.g. another process holds the run
            print(f"{name}: {err}", flush=True)
    done = [
        f"{name}={Path(args.runs) / name / 'model'}"
        for name in CANDIDATES
        if (Path(args.runs) / name / "model" / "model.safetensors").is_file()
    ]
    gate = [sys.executable, "experiments/teacher_gate_v3.py", "T1=shipped", *done]
    subprocess.run([*gate, "--jobs", str(args.jobs)], check=True)


if __name__ == "__main__":
    tune_malloc()
    main()
