"""`distilxlsr demo`: the DistilXLSR recipe end to end, offline, on the embedded defaults.

1. synthesize (cached) English training speech and the 15 evaluation languages' train/test sets
   (corpus v2: test speakers, a speaking rate and test words held out; docs/design.md);
2. distil the shipped label-free teacher (T1: it never read a label nor heard the `unheard`
   tier; see its card) into a `jump:2` student on English only, with utterance-level phoneme
   shuffling;
3. export the student as a plain Hugging Face model;
4. probe teacher, student and log-mel features on the 15 languages and print the PER tables:
   per language, and per tier with bootstrap confidence intervals and the gain retained (the
   share of the teacher's improvement over log-mel that the student keeps).

`--quick` runs the same stages at toy size (two languages, a few steps) in about 20 seconds,
in OUT/quick/, so that the quick and the full demo never share a run directory: each resumes
or reuses its own. Its numbers only show that the pipeline runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from distilxlsr.data.synthetic import EVAL_LANGUAGES
from distilxlsr.distill.recipe import (
    DataConfig,
    DistillConfig,
    ShuffleConfig,
    StudentConfig,
    TrainConfig,
)
from distilxlsr.errors import UserError
from distilxlsr.evaluate.ctc import FLOOR_PROBE, ProbeConfig
from distilxlsr.shipped import SHIPPED, shipped_teacher  # noqa: F401 (also public here)

EVAL_LANGS = list(EVAL_LANGUAGES)  # the paper's low-resource set, mirrored


@dataclass(frozen=True)
class DemoSize:
    english_minutes: float
    langs: list[str]
    train_minutes: float
    test_minutes: float
    distill_steps: int
    probe_iterations: int
    """The networks' probes stop after this many L-BFGS iterations."""
    floor_iterations: int
    """The log-mel floor's probe stops after this many (log-mel converges more slowly)."""


# The demo's probes are evaluate's (L-BFGS, each feature kind its own penalty), capped to fit 15
# minutes on 2 cores (converged probes take 300-1100 iterations; 200 for all took 785 s for the
# 45 probes): on the dev split the shipped teacher's PER after 60-120 iterations was within 1-3
# points of its converged value, log-mel's within 5-10 after 200 (docs/design.md, "The probe").
FULL = DemoSize(20.0, EVAL_LANGS, 5.0, 5.0, 300, probe_iterations=100, floor_iterations=200)
QUICK = DemoSize(0.5, ["es", "sw"], 0.4, 0.25, 6, probe_iterations=60, floor_iterations=60)


def synthesize_demo_corpus(data: Path, size: DemoSize, jobs: int = 2) -> None:
    """English training speech and the evaluation languages' train and test sets (cached)."""
    from distilxlsr.data.synthetic import synthesize_corpus  # noqa: PLC0415

    synthesize_corpus(data, ["en"], size.english_minutes, "train", seed=0, jobs=jobs)
    synthesize_corpus(data, size.langs, size.train_minutes, "train", seed=0, jobs=jobs)
    synthesize_corpus(data, size.langs, size.test_minutes, "test", seed=0, jobs=jobs)


def demo_distill_config(
    teacher: str | Path,
    data: Path,
    run_dir: Path,
    steps: int,
    layers: str = "jump:2",
    shuffle: str = "utterance",
    seed: int = 0,
) -> DistillConfig:
    """The demo's distillation (also each variant of `make reproduce-mini`): the synthetic
    English train split, 6 s crops, 40 s batches, lr 5e-4 with 10% warm-up."""
    return DistillConfig(
        teacher=str(teacher),
        out=str(run_dir),
        data=DataConfig(train=str(data / "en"), max_seconds=6.0, num_workers=1),
        student=StudentConfig(layers=layers, seed=seed),
        shuffle=ShuffleConfig(mode=shuffle, p=1.0),
        train=TrainConfig(
            max_steps=steps,
            lr=5e-4,
            warmup_steps=max(1, steps // 10),
            batch_seconds=40.0,
            seed=seed,
            checkpoint_every=max(1, steps // 3),
            log_every=max(1, steps // 30),
        ),
    )


QUICK_FOLDER = "quick"
"""`demo --quick` writes under OUT/quick/: its own data, run, student and results."""

TOY_NOTE = (
    "note: toy size (2 languages, {test} minutes of test speech each, {steps} distillation "
    "steps, probes of at most {probe} iterations): these numbers only show that the pipeline runs and say "
    "nothing about the method; `distilxlsr demo` (about 15 minutes) measures it."
)


def _check_demo_run(run_dir: Path, config: DistillConfig) -> None:
    """Refuse, in the demo's terms, a run directory left by another size or version of the
    demo, or distilled from another shipped teacher (distill's own messages would point to
    `out=`, which the demo does not take)."""
    from distilxlsr.distill.train import RESUMABLE_CHANGES  # noqa: PLC0415
    from distilxlsr.training.checkpoint import weights_sha256  # noqa: PLC0415
    from distilxlsr.training.rundir import RunDir  # noqa: PLC0415

    run = RunDir(run_dir)
    try:
        run.check_resumable(config, RESUMABLE_CHANGES)
    except UserError:
        raise UserError(
            f"'{run_dir}' holds a distillation run with other settings (left by another "
            f"version of the demo); delete '{run_dir}' or pass another --out."
        ) from None
    before = run.facts().get("teacher_sha256")
    if before and before != weights_sha256(shipped_teacher()):
        raise UserError(
            f"'{run_dir}' holds a student of another shipped teacher (left by an earlier "
            f"version of distilxlsr); delete '{run_dir}' or pass another --out."
        )


MIN_TEACHER_GAIN = 0.01
"""Below this gain of the teacher over log-mel (1 PER point) a gain retained divides by noise."""


def _gain_words(results: dict) -> str:
    """The summary line's words on the gain over log-mel: the share the student retains, or why
    there is none to retain."""
    by_name = {m["name"]: m for m in results["models"]}
    if "logmel" not in by_name:
        return ""
    teacher_gain = by_name["logmel"]["per_mean"] - by_name["teacher"]["per_mean"]
    if teacher_gain < MIN_TEACHER_GAIN:
        return (
            f"; the teacher is {100 * teacher_gain:+.1f} points from log-mel: "
            "no gain over log-mel to retain"
        )
    kept = by_name["student"].get("gain_retained", {}).get("all")
    return "" if kept is None else f"; gain over log-mel retained {kept:.2f}"


def run_demo(out: Path, quick: bool = False, jobs: int = 2) -> dict:
    """The demo in `out` (`quick`: toy size, in OUT/quick/); returns the evaluation results."""
    from distilxlsr.distill.train import distill  # noqa: PLC0415
    from distilxlsr.evaluate.harness import evaluate  # noqa: PLC0415
    from distilxlsr.evaluate.report import (  # noqa: PLC0415
        markdown_table,
        provenance_lines,
        tier_table,
    )
    from distilxlsr.export import export_hf  # noqa: PLC0415

    size = QUICK if quick else FULL
    out = out / QUICK_FOLDER if quick else out
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    shipped_teacher()  # a missing teacher fails before anything runs
    timings = {}

    start = time.perf_counter()
    print(f"[1/4] synthesizing speech (cached) in {data}", flush=True)
    synthesize_demo_corpus(data, size, jobs)
    timings["synth"] = time.perf_counter() - start

    start = time.perf_counter()
    run_dir = out / "run"
    print(
        f"[2/4] distilling the shipped teacher into a jump:2 student on English with shuffled "
        f"phonemes ({size.distill_steps} steps) in {run_dir}",
        flush=True,
    )
    config = demo_distill_config(SHIPPED, data, run_dir, size.distill_steps)
    _check_demo_run(run_dir, config)
    distill(config)
    timings["distill"] = time.perf_counter() - start

    student = out / "student"
    print(f"[3/4] exporting the student to {student}", flush=True)
    export_hf(run_dir, student)

    start = time.perf_counter()
    print(
        f"[4/4] probing teacher, student and log-mel features on {len(size.langs)} languages",
        flush=True,
    )
    probe = replace(ProbeConfig(), steps=size.probe_iterations)
    floor = replace(FLOOR_PROBE, steps=size.floor_iterations)
    results = evaluate(
        [f"teacher={SHIPPED}", f"student={student}", "logmel"],
        str(data),
        str(out),
        mode="probe",
        langs=size.langs,
        probe=probe,
        floor_probe=floor,
        similarity=True,
        jobs=jobs,
    )
    timings["evaluate"] = time.perf_counter() - start
    export_hf(run_dir, student, out / "results.json")  # the card now carries the results
    print()
    print(provenance_lines(results))
    print(markdown_table(results))
    print(tier_table(results))
    teacher_row, student_row, _ = results["models"]
    print(
        f"student: {student_row['params']:,} parameters ({student_row['params'] / teacher_row['params']:.1%} "
        f"of the teacher), mean PER {100 * student_row['per_mean']:.1f}% vs the teacher's "
        f"{100 * teacher_row['per_mean']:.1f}% (gap {100 * student_row['abs_gap']:+.1f} points"
        f"{_gain_words(results)})"
    )
    if quick:
        print(
            TOY_NOTE.format(
                test=size.test_minutes, steps=size.distill_steps, probe=size.probe_iterations
            )
        )
    print(
        f"stages: synth {timings['synth']:.0f} s, distill {timings['distill']:.0f} s, "
        f"evaluate {timings['evaluate']:.0f} s"
    )
    print(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'per.png'}")
    print(f"student (Hugging Face model): {student}")
    return results
