"""The labelled CTC teacher's gate (`results/models/labelled-teacher`): on every evaluation
language its probe test PER must be lower than a log-mel probe's and lower than the untrained
network's (same harness, default probe).

Runs the evaluation, prints the table and the verdict, writes OUT/results.* and appends the gate
table to the teacher's model card.

    python experiments/teacher_gate.py --teacher results/models/labelled-teacher --data data/synth --out results/teacher_gate
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distilxlsr import tune_malloc
from distilxlsr.demo import EVAL_LANGS
from distilxlsr.evaluate.harness import evaluate
from distilxlsr.evaluate.report import markdown_table

LABELLED_TEACHER = Path(__file__).resolve().parents[1] / "results" / "models" / "labelled-teacher"
"""The CTC teacher fine-tuned on every evaluation language's phone labels (the labelled upper
bound; shipped until the label-free T1 replaced it)."""

MARK = "\n## Gate\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", default=str(LABELLED_TEACHER))
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--out", default="results/teacher_gate")
    args = parser.parse_args()
    models = [args.teacher, "logmel", f"untrained:{args.teacher}"]
    results = evaluate(models, args.data, args.out, mode="probe", langs=EVAL_LANGS)
    teacher, logmel, untrained = results["models"]
    failures = [
        lang
        for lang in results["languages"]
        if not teacher["per"][lang] < min(logmel["per"][lang], untrained["per"][lang])
    ]
    verdict = "PASSED" if not failures else f"FAILED on {', '.join(failures)}"
    table = markdown_table(results)
    print(table)
    print(f"gate {verdict}")
    card = Path(args.teacher) / "README.md"
    text = card.read_text().split(MARK)[0]
    command = f"python experiments/teacher_gate.py --teacher {args.teacher} --data {args.data} --out {args.out}"
    card.write_text(
        text.rstrip() + "\n" + MARK + "\n"
        f"On every one of the {len(results['languages'])} evaluation languages the teacher's probe "
        f"test PER must be lower than a log-mel probe's and the untrained network's: **{verdict}**.\n\n"
        f"Measured by `{command}` (synthetic test speakers, disjoint from training speakers):\n\n"
        + table
    )


if __name__ == "__main__":
    tune_malloc()
    main()
