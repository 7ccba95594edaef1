"""A fingerprint of the demo's recipe: 8 steps of its distillation and a short probe of teacher
and student on two languages. Run it with two versions of the code on the same machine and
corpus (`PYTHONPATH=<checkout>/src python experiments/demo_recipe_fingerprint.py OUT`): equal
weight hashes and PERs mean `make demo` gives the same table with both.

    python experiments/demo_recipe_fingerprint.py /tmp/fp --data demo_out/data
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file

from distilxlsr import tune_malloc
from distilxlsr.demo import demo_distill_config, shipped_teacher
from distilxlsr.distill.train import distill
from distilxlsr.evaluate.ctc import ProbeConfig
from distilxlsr.evaluate.harness import evaluate


def weights_hash(path: Path) -> str:
    state = load_file(path / "model.safetensors")
    return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="a new directory for the run and the probe")
    parser.add_argument("--data", type=Path, default=Path("demo_out/data"), help="demo corpus")
    parser.add_argument("--langs", default="ka,sw")
    args = parser.parse_args()
    distill(demo_distill_config(shipped_teacher(), args.data, args.out / "run", steps=8))
    checkpoints = sorted((args.out / "run" / "checkpoints").glob("step-*"))
    for checkpoint in checkpoints:
        print(checkpoint.name, weights_hash(checkpoint)[:16])
    results = evaluate(
        [str(shipped_teacher()), str(checkpoints[-1])],
        str(args.data),
        str(args.out / "probe"),
        langs=args.langs.split(","),
        probe=ProbeConfig(steps=60),
    )
    for model in results["models"]:
        print("PER", json.dumps(model["per"], sort_keys=True))


if __name__ == "__main__":
    tune_malloc()
    main()
