"""Summarise a mutmut run (`make mutation`): per mutated module the share of mutants killed, and
every surviving mutant by name (`mutmut show NAME` prints its diff).

    python tools/mutation_report.py [--mutants mutants] [--min 85] [--diffs]

Reads the `.meta` files mutmut 3 writes beside each mutated module under `mutants/`. Killed:
a test failed; timeout: the tests ran out of CPU time (an endless loop, or a loaded machine: not
counted as killed); survived: every test that reaches the mutated function passed; no tests: no
selected test reaches it; not checked: the run stopped first. The score is killed / total. With
`--min`, exits with status 1 when a module scores below it. Verdicts that
`tools/mutation_recheck.py` wrote (`<mutants>/recheck.json`: the run's leftovers tested
again against newer tests) replace the run's own, unless `--run-only`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3}  # a test failed (3: pytest's internal error, which mutmut also counts)
TIMEOUT = {24, -24, 36, 152, 255}  # SIGXCPU or mutmut's own limit
SURVIVED = {0}
NO_TESTS = {5, 33}
RECHECK_CODE = {"killed": 1, "survived": 0, "timeout": 24}  # mutation_recheck.py's verdicts


def status(code: int | None) -> str:
    if code in KILLED:
        return "killed"
    if code in TIMEOUT:
        return "timeout"
    if code in SURVIVED:
        return "survived"
    if code in NO_TESTS:
        return "no tests"
    if code is None:
        return "not checked"
    return f"other ({code})"


def read(mutants: Path) -> dict[str, dict[str, int | None]]:
    """{module path: {mutant name: exit code}} from every .meta file."""
    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        module = meta.relative_to(mutants).as_posix()[: -len(".meta")]
        out[module] = data["exit_code_by_key"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mutants", default="mutants", help="mutmut's scratch directory")
    parser.add_argument("--min", type=float, default=None, help="fail below this %% killed")
    parser.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    parser.add_argument(
        "--run-only", action="store_true", help="ignore recheck.json (the run's own verdicts)"
    )
    args = parser.parse_args(argv)
    results = read(Path(args.mutants))
    if not results:
        print(f"no mutmut results under {args.mutants}/; run `make mutation` first")
        return 1
    rechecked = Path(args.mutants) / "recheck.json"
    if rechecked.is_file() and not args.run_only:
        verdicts = json.loads(rechecked.read_text())
        for codes in results.values():
            for name in codes.keys() & verdicts.keys():
                codes[name] = RECHECK_CODE[verdicts[name]]
        print(f"({len(verdicts)} verdicts from `tools/mutation_recheck.py`, {rechecked})\n")
    print("| module | killed | total | % killed | timeout | survived | no tests | not checked |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    low = []
    survivors = []
    all_counts: Counter = Counter()
    for module, codes in results.items():
        counts = Counter(status(c) for c in codes.values())
        all_counts.update(counts)
        total = len(codes)
        share = 100.0 * counts["killed"] / total if total else 100.0
        print(
            f"| {module} | {counts['killed']} | {total} | {share:.1f} | {counts['timeout']} "
            f"| {counts['survived']} | {counts['no tests']} | {counts['not checked']} |"
        )
        if args.min is not None and share < args.min:
            low.append(module)
        survivors += [
            f"{name}  ({status(c)})"
            for name, c in codes.items()
            if status(c) in ("survived", "no tests", "timeout")
        ]
    total = sum(all_counts.values())
    print(
        f"| **all** | {all_counts['killed']} | {total} | "
        f"{100.0 * all_counts['killed'] / max(1, total):.1f} | {all_counts['timeout']} "
        f"| {all_counts['survived']} | {all_counts['no tests']} | {all_counts['not checked']} |"
    )
    if survivors:
        print(f"\n{len(survivors)} checked and not killed (`mutmut show NAME` for the diff):")
        for name in sorted(survivors):
            print(f"  {name}")
            name = name.split()[0]
            if args.diffs:
                diff = subprocess.run(
                    [str(Path(sys.executable).parent / "mutmut"), "show", name],
                    capture_output=True,
                    text=True,
                ).stdout
                print("    " + diff.replace("\n", "\n    "))
    if low:
        print(f"\nbelow {args.min:g}% killed: {', '.join(low)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
