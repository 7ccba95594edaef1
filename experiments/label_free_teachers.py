"""Label-free teachers (evidence v2, part 2): T1, T2 and T-EN, made without a single label, and
their gates on corpus v2's dev split (never test).

- T1: XLS-R's architecture (pre-LN `Wav2Vec2Model`), HuBERT-style masked prediction, two
  iterations (the second's units: k-means on layer `--units-layer` of the first), on the
  `pretrain` split of English and the `label` and `heard` tiers;
- T2: HuBERT's architecture (post-LN `HubertModel`), the same two iterations, English and the
  `label` tier only, another seed;
- T-EN: XLS-R's architecture, English only (the paper's "English-pretrained model").

No teacher hears an `unheard` language or reads a label (`pretrain-teacher` refuses both). Each
run resumes where it stopped (run the same command again). The gate: on the `dev` split, the
teacher's mean probe PER over the `heard` tier and over the `unheard` tier must each be lower than
log-mel's and than its own untrained network's; every language is reported.

    python experiments/label_free_teachers.py [--data runs/evidence/data] [--out runs/teachers]
        [--teachers T1,T2,T-EN] [--steps1 N] [--steps2 N] [--gate-only]

Writes OUT/<teacher>/model (the teacher and its card), OUT/<teacher>/iteration1, and
OUT/gate/<teacher>/ (results.*) and OUT/gate.json (the verdicts, per tier and language).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from distilxlsr import tune_malloc
from distilxlsr.data.corpora import cuts_file
from distilxlsr.data.synthetic import TIERS, synthesize_evidence_corpus
from distilxlsr.evaluate.ctc import ProbeConfig
from distilxlsr.evaluate.harness import evaluate
from distilxlsr.pretraining.pretrain import pretrain_teacher
from distilxlsr.pretraining.recipe import load_pretrain_config

TEACHERS = {
    "T1": {"family": "wav2vec2", "languages": "[english,label,heard]", "seed": 0},
    # HuBERT's group-norm CNN normalises over every frame of a row, padding included: T2 trains
    # on static-shape batches (fixed crop lengths, no padding), as HuBERT was trained on crops.
    "T2": {"family": "hubert", "languages": "[english,label]", "seed": 1, "static": True},
    "T-EN": {"family": "wav2vec2", "languages": "[english]", "seed": 2},
}
GATE_TIERS = ("heard", "unheard")
CARD_GATE = "\n## Gate (dev split)\n"


# Stage 1's recipe for both iterations, chosen on dev by experiments/teacher_recipe_sweep.py
# (results/teacher_recipe_sweep.json): the first T1, trained at lr 1e-3 from the first step on
# masked frames only, stayed at the unit prior and failed its gate; 120 steps of this recipe
# already probed at 43.8% / 51.7% dev PER (heard / unheard) against 79.5% / 77.3% with warm-up
# alone and 74.9% / 73.0% for the untrained network.
def stage1_recipe(steps: int) -> list[str]:
    """lr 5e-4 after a 10% linear warm-up; the units of unmasked frames are predicted too."""
    return [
        "stage1.lr=5e-4",
        f"stage1.warmup_steps={max(1, steps // 10)}",
        "stage1.unmasked_weight=1.0",
    ]


def make_corpus(data: Path, english_minutes: float, lang_minutes: float, jobs: int) -> None:
    """Corpus v2's evaluation splits, then the `pretrain` split of English and of the label and
    heard tiers (each skipped where present)."""
    synthesize_evidence_corpus(data, jobs=jobs)
    wanted = {"en": english_minutes} | {
        lang: lang_minutes for tier in ("label", "heard") for lang in TIERS[tier]
    }
    for minutes in sorted(set(wanted.values())):
        langs = [
            lang
            for lang, m in wanted.items()
            if m == minutes and cuts_file(data / lang, "pretrain") is None
        ]
        if langs:
            subprocess.run(
                [sys.executable, "-m", "distilxlsr", "synth", "--langs", ",".join(langs),
                 "--minutes", str(minutes), "--split", "pretrain", "--out", str(data),
                 "--jobs", str(jobs)],
                check=True,
            )  # fmt: skip


def train_teacher(
    name: str, data: Path, out: Path, steps1: int, steps2: int, layer: int, workers: int,
    batch_seconds: float, label_ctc_steps: int = 0,
) -> Path:  # fmt: skip
    spec = TEACHERS[name]
    common = [
        f"data={data}",
        f"loader.num_workers={workers}",
        f"train.batch_seconds={batch_seconds:g}",
        "train.checkpoint_every=100",  # a CPU run is stopped and resumed across sittings
        "split=pretrain",
        f"languages={spec['languages']}",
        f"model.family={spec['family']}",
        f"train.seed={spec['seed']}",
        f"loader.static_shapes={str(spec.get('static', False)).lower()}",
    ]
    first = pretrain_once(
        out / name / "iteration1",
        [*common, *stage1_recipe(steps1), f"stage1.steps={steps1}", "stage2.steps=0"],
        f"{name} it1",
    )
    second = pretrain_once(
        out / name,
        [
            *common,
            *stage1_recipe(steps2),
            f"stage1.steps={steps2}",
            "stage2.steps=0",
            f"units.source={first}",
            f"units.layer={layer}",
        ],
        f"{name} it2",
    )
    if not label_ctc_steps:
        return second
    # The fallback: phone CTC on the label tier only, from the label-free teacher.
    return pretrain_once(
        out / name / "label-ctc",
        [
            *[c for c in common if not c.startswith("languages=")],
            "languages=[label]",
            f"init_from={second}",
            "stage1.steps=0",
            f"stage2.steps={label_ctc_steps}",
            f"stage2.warmup_steps={max(1, label_ctc_steps // 10)}",
        ],
        f"{name} ctc",
    )


def pretrain_once(run: Path, overrides: list[str], label: str) -> Path:
    """One `pretrain-tiny-teacher` run into RUN (resumed if stopped; skipped once its model
    exists); returns RUN/model."""
    if not (run / "model" / "model.safetensors").is_file():
        config = load_pretrain_config("pretrain-tiny-teacher", [*overrides, f"out={run}"])
        pretrain_teacher(config, command_line=f"(experiments/label_free_teachers.py {label})")
    return run / "model"


def final_model(out: Path, name: str, label_ctc_steps: int) -> Path:
    """Where a teacher's finished model is: after its second iteration, or after the fallback's
    label-tier CTC."""
    return out / name / ("label-ctc" if label_ctc_steps else "") / "model"


def gate(name: str, model: Path, data: Path, out: Path, jobs: int, probe_steps: int | None) -> dict:
    """The teacher against log-mel and its untrained network on dev, heard and unheard tiers."""
    langs = [lang for tier in GATE_TIERS for lang in TIERS[tier]]
    short = {}
    if probe_steps:  # a smoke run of this script: every probe as short as that
        short = {
            "probe": ProbeConfig(steps=probe_steps),
            "floor_probe": ProbeConfig(steps=probe_steps),
        }
    results = evaluate(
        [f"{name}={model}", "logmel", f"untrained=untrained:{model}"],
        str(data),
        str(out / "gate" / name),
        langs=langs,
        split="dev",
        jobs=jobs,
        **short,
    )
    per = {m["name"]: m["per"] for m in results["models"]}
    tiers = {}
    for tier in GATE_TIERS:
        means = {m: float(np.mean([per[m][lang] for lang in TIERS[tier]])) for m in per}
        tiers[tier] = {
            "mean_dev_per": means,
            "passed": means[name] < means["logmel"] and means[name] < means["untrained"],
        }
    return {
        "teacher": name,
        "model": str(model),
        "split": "dev",
        "passed": all(t["passed"] for t in tiers.values()),
        "tiers": tiers,
        "per_language": {lang: {m: per[m][lang] for m in per} for lang in langs},
    }


def gate_section(name: str, record: dict) -> str:
    """The card's Gate section: the rule, the verdict, the tier means and every language's dev
    PER beside log-mel's and the untrained network's."""
    verdict = "PASSED" if record["passed"] else "FAILED"
    lines = [
        CARD_GATE,
        "On corpus v2's dev split (never test), the teacher's mean probe PER over the `heard` tier "
        "and over the `unheard` tier must each be lower than a log-mel probe's and its own "
        f"untrained network's: **{verdict}**. Measured by "
        f"`python experiments/label_free_teachers.py --teachers {name}` (its last step).",
        "",
        f"| tier (dev) | {name} | log-mel | untrained | passed |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for tier, result in record["tiers"].items():
        means = result["mean_dev_per"]
        lines.append(
            f"| {tier} ({', '.join(TIERS[tier])}) | {100 * means[name]:.1f}% "
            f"| {100 * means['logmel']:.1f}% | {100 * means['untrained']:.1f}% "
            f"| {'yes' if result['passed'] else 'no'} |"
        )
    lines += ["", f"| language | {name} | log-mel | untrained |", "| --- | ---: | ---: | ---: |"]
    for lang, per in record["per_language"].items():
        lines.append(
            f"| {lang} | {100 * per[name]:.1f}% | {100 * per['logmel']:.1f}% "
            f"| {100 * per['untrained']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def write_gate_section(model: Path, name: str, record: dict) -> None:
    """Put (or replace) the Gate section at the end of the teacher's card."""
    card = model / "README.md"
    text = card.read_text().split(CARD_GATE)[0]
    card.write_text(text.rstrip() + "\n" + gate_section(name, record))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="runs/evidence/data")
    parser.add_argument("--out", default="runs/teachers")
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--steps1", type=int, default=500, help="iteration 1's steps")
    parser.add_argument("--steps2", type=int, default=500, help="iteration 2's steps")
    parser.add_argument("--units-layer", type=int, default=4, help="layer clustered for it. 2")
    parser.add_argument("--english-minutes", type=float, default=60.0)
    parser.add_argument("--lang-minutes", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=2, help="synthesis and evaluation processes")
    parser.add_argument(
        "--workers", type=int, default=1, help="loader workers per teacher run (the config: 8)"
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=60.0,
        help="audio per step (the shipped config's 320 s is a GPU's: on 2 CPU cores it reached "
        "23 GB and was killed)",
    )
    parser.add_argument(
        "--label-ctc-steps",
        type=int,
        default=0,
        help="the fallback: this many steps of phone CTC on the label tier after the two "
        "label-free iterations (default 0: label-free)",
    )
    parser.add_argument("--gate-only", action="store_true", help="gate the teachers made so far")
    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="train only (evidence v3 gates its teachers with experiments/teacher_gate_v3.py)",
    )
    parser.add_argument(
        "--probe-steps", type=int, help="smoke runs only: every probe this short (default: chosen)"
    )
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    names = args.teachers.split(",")
    unknown = [n for n in names if n not in TEACHERS]
    if unknown:
        parser.error(f"unknown teacher {unknown[0]}; choose from {', '.join(TEACHERS)}")
    make_corpus(data, args.english_minutes, args.lang_minutes, args.jobs)
    record_path = out / "gate.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for name in names:
        start = time.perf_counter()
        model = final_model(out, name, args.label_ctc_steps)
        if not args.gate_only:
            model = train_teacher(
                name, data, out, args.steps1, args.steps2, args.units_layer, args.workers,
                args.batch_seconds, args.label_ctc_steps,
            )  # fmt: skip
        if args.no_gate or not (model / "model.safetensors").is_file():
            continue
        record[name] = gate(name, model, data, out, args.jobs, args.probe_steps)
        record[name]["seconds"] = time.perf_counter() - start
        out.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=1) + "\n")
        write_gate_section(model, name, record[name])
        verdict = "PASSED" if record[name]["passed"] else "FAILED"
        means = {t: v["mean_dev_per"] for t, v in record[name]["tiers"].items()}
        print(f"{name}: gate {verdict} on dev: {json.dumps(means)}", flush=True)


if __name__ == "__main__":
    tune_malloc()
    main()
