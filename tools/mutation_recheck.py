"""Re-test the mutants a `make mutation` run did not kill (survived, no tests, timeout) against
the tests as they are now, without a new full run (an hour of both cores here).

    python tools/mutation_recheck.py [--mutants mutants] [--jobs 2] [--limit 120] [--only RE]

Why: mutmut copies the tests when its run starts and, on a busy machine, calls a mutant whose
tests ran slowly a timeout. After new tests are written, only the mutants left over need
testing again. Each one runs its module's test files (MODULE_TESTS, the same files as
`pytest_add_cli_args_test_selection` in pyproject.toml) from mutmut's mutated tree with
MUTANT_UNDER_TEST set, stopping at the first failure. The current tests/ are copied into the
tree first. Verdicts go to `<mutants>/recheck.json` ({name: "killed" | "survived" | "timeout"}),
which `mutation_report.py` folds in; a stopped recheck resumes (`--again`: start over).
A mutated module whose source changed since the run is
rechecked against its old mutants: run `make mutation` again for exact figures on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mutation_report import read, status  # noqa: E402

COMPILE_TEST = "tests/models/test_taps.py::test_tap_compiles_as_one_graph"
MODULE_TESTS = {
    "models/layers.py": ["tests/models/test_layers.py", "tests/models/test_taps.py"],
    "models/student.py": ["tests/models/test_student.py"],
    "distill/losses.py": [
        "tests/distill/test_losses.py",
        "tests/distill/test_train.py::test_distiller_pairs_student_layer_i_with_target_i",
    ],
    "training/checkpoint.py": ["tests/training/test_checkpoint.py"],
    "data/shuffle.py": ["tests/data/test_shuffle.py"],
    "data/loader.py": [
        "tests/data/test_loader.py",
        "tests/data/test_scan_cuts.py",
        "tests/data/test_manifest_errors.py",
        "tests/data/test_loader_static.py",
    ],
    "data/static.py": ["tests/data/test_loader_static.py"],
    "evaluate/per.py": ["tests/evaluate/test_per.py"],
    "evaluate/ctc.py": [
        "tests/evaluate/test_ctc.py",
        "tests/evaluate/test_harness.py::test_probe_learns",
        "tests/evaluate/test_harness.py::"
        "test_finetuning_keeps_the_cnn_frozen_and_trains_head_then_body",
    ],
    "export.py": ["tests/test_export.py"],
    "training/loop.py": [
        "tests/training/test_loop.py::test_accumulating_two_micro_batches_is_one_step_over_both",
        "tests/training/test_loop.py::"
        "test_the_consecutive_bad_step_count_starts_again_after_a_good_step",
        "tests/training/test_optim.py",
        "tests/distill/test_train.py::test_an_unfrozen_cnn_is_the_students_own_and_learns",
    ],
    "training/optim.py": ["tests/training/test_optim.py"],
    "distill/distiller.py": [
        "tests/distill/test_train.py::test_an_unfrozen_cnn_is_the_students_own_and_learns",
        "tests/distill/test_train.py::test_distiller_pairs_student_layer_i_with_target_i",
        "tests/distill/test_train.py::test_shared_cnn_gives_the_same_loss_and_gradients",
        "tests/distill/test_train.py::test_prepare_for_distillation_freezes_the_cnn_of_every_family",
        "tests/distill/test_distiller_taps.py::test_shared_cnn_skips_the_students_cnn",
    ],
    "evaluate/harness.py": [
        "tests/evaluate/test_harness.py::"
        "test_each_seed_trains_its_own_probe_the_one_that_seed_trains_alone",
        "tests/evaluate/test_harness.py::"
        "test_a_student_identical_to_its_teacher_has_cka_1_at_every_paired_layer",
        "tests/evaluate/test_harness.py::test_evaluate_writes_reports_and_is_deterministic",
    ],
    "data/prepare/utterance.py": ["tests/data/test_prepare.py"],
}


def tests_for(module: str) -> list[str]:
    for suffix, files in MODULE_TESTS.items():
        if module.endswith(suffix):
            return files
    raise SystemExit(f"no test files listed for {module} in MODULE_TESTS")


def verdict(tree: Path, name: str, tests: list[str], limit: float) -> str:
    env = dict(os.environ, MUTANT_UNDER_TEST=name, PYTHONPATH="src", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["--deselect", COMPILE_TEST, *tests]
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mutants", default="mutants", help="mutmut's scratch directory")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument(
        "--again", action="store_true", help="forget earlier verdicts (default: resume)"
    )
    parser.add_argument(
        "--only", default="", help="re-test the leftovers whose names match this regex"
    )
    args = parser.parse_args(argv)
    tree = Path(args.mutants)
    results = read(tree)
    if not results:
        print(f"no mutmut results under {tree}/; run `make mutation` first")
        return 1
    shutil.copytree("tests", tree / "tests", dirs_exist_ok=True)
    out = tree / "recheck.json"
    found = json.loads(out.read_text()) if out.is_file() and not args.again else {}
    todo = [
        (name, tests_for(module))
        for module, codes in results.items()
        for name, code in codes.items()
        if status(code) in ("survived", "no tests", "timeout")
        and (re.search(args.only, name) if args.only else name not in found)
    ]
    print(f"rechecking {len(todo)} mutants with {args.jobs} process(es)", flush=True)

    def one(item):
        name, tests = item
        return name, verdict(tree, name, tests, args.limit)

    with ThreadPoolExecutor(args.jobs) as pool:
        for i, (name, result) in enumerate(pool.map(one, todo), 1):
            found[name] = result
            out.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
            print(f"[{i}/{len(todo)}] {result}: {name}", flush=True)
    counts = {
        v: sum(1 for n, _ in todo if found[n] == v) for v in ("killed", "survived", "timeout")
    }
    every = {v: sum(1 for x in found.values() if x == v) for v in counts}
    print(f"this recheck: {counts}; all verdicts in {out}: {every}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
