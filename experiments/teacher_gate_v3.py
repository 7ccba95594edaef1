"""Evidence v3 part 2's teacher gate, on corpus v3's `dev` split (never test): each candidate
teacher against log-mel on the `unheard` tier with the converged probe over several probe seeds.

A teacher passes if its gain over log-mel (log-mel's macro PER minus its own, averaged over the
probe seeds) is at least `--bar` points (20 for T1 and T2, 10 for T-EN), the lower end of the
hierarchical interval of that gain (probe seeds, then test voices within each language, then
utterances) at least `--lower` points (10; 3 for T-EN), and it beats log-mel on at least 4 of the
5 languages (per-language PER averaged over seeds).

All candidates share one evaluation directory, so log-mel and every teacher already scored there
are reused (a candidate added later costs only its own probes):

    python experiments/teacher_gate_v3.py T1=shipped CAND=runs/teachers_v3/cand/model
        [--seeds 0,1,2] [--jobs 1] [--out results/teacher_gate_v3/dev]

Writes OUT/results.* (the evaluation's report) and OUT/gate.json (each teacher's verdict, with
the figures behind it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from distilxlsr import tune_malloc
from distilxlsr.data.synthetic import TIERS
from distilxlsr.evaluate.harness import evaluate

BARS = {"T-EN": (0.10, 0.03)}
"""(gain, interval's lower end) for teachers whose gate differs from T1's and T2's (20, 10)."""
DEFAULT_BAR = (0.20, 0.10)


def bar_of(name: str) -> tuple[float, float]:
    """A candidate's bar: its family's (T-EN's candidates are named T-EN-<lever>)."""
    family = next((f for f in BARS if name == f or name.startswith(f + "-")), None)
    return BARS[family] if family else DEFAULT_BAR


def verdict(name: str, results: dict, bar: tuple[float, float]) -> dict:
    """The gate of teacher `name` from an evaluation that holds it and `logmel`."""
    per = {m["name"]: m for m in results["models"]}
    teacher, floor = per[name], per["logmel"]
    comparison = next(c for c in results["comparisons"] if (c["a"], c["b"]) == ("logmel", name))
    languages = results["languages"]
    beaten = [lang for lang in languages if teacher["per"][lang] < floor["per"][lang]]
    gain, (low, high) = comparison["diff"], comparison["ci"]
    return {
        "teacher": name,
        "path": teacher["path"],
        "heard": teacher.get("provenance"),
        "split": results["split"],
        "seeds": results["seeds"],
        "macro_per": {"teacher": teacher["per_mean"], "logmel": floor["per_mean"]},
        "gain": gain,
        "gain_ci": [low, high],
        "per_language": {
            lang: {"teacher": teacher["per"][lang], "logmel": floor["per"][lang]}
            for lang in languages
        },
        "languages_beaten": beaten,
        "rule": {"gain": bar[0], "ci_low": bar[1], "languages": 4},
        "passed": gain >= bar[0] and low >= bar[1] and len(beaten) >= 4,
    }


CARD_SECTION = "## Gate v3 (dev split)"


def card_section(g: dict, command: str) -> str:
    """The gate in words, for the teacher's model card."""
    per, rule = g["per_language"], g["rule"]
    low, high = g["gain_ci"]
    return "\n".join(
        [
            CARD_SECTION,
            "",
            f"Corpus v3 `dev`, `unheard` tier ({', '.join(per)}), the converged probe at probe "
            f"seeds {', '.join(map(str, g['seeds']))}: macro PER "
            f"{100 * g['macro_per']['teacher']:.1f}% against log-mel's "
            f"{100 * g['macro_per']['logmel']:.1f}%, a gain of {100 * g['gain']:+.1f} points "
            f"[{100 * low:+.1f}, {100 * high:+.1f}] (hierarchical: probe seeds, test voices, "
            f"utterances); lower than log-mel on {len(g['languages_beaten'])} of {len(per)} "
            f"({', '.join(g['languages_beaten']) or 'none'}). The gate asks a gain of at least "
            f"{100 * rule['gain']:.0f} points, the interval's lower end at least "
            f"{100 * rule['ci_low']:.0f}, {rule['languages']} of {len(per)} languages: "
            f"**{'passed' if g['passed'] else 'failed'}**. (`{command}`)",
            "",
        ]
    )


def write_card(model: Path, g: dict, command: str) -> None:
    """Put (or replace) the gate's section in the model card MODEL/README.md, where one exists."""
    card = model / "README.md"
    if not card.is_file():
        return
    text = card.read_text()
    if CARD_SECTION in text:
        head, rest = text.split(CARD_SECTION, 1)
        tail = rest.split("\n## ", 1)
        text = head + (("## " + tail[1]) if len(tail) > 1 else "")
    section = card_section(g, command)
    if "\n## Citation" in text:  # before the citation, which ends a card
        head, tail = text.split("\n## Citation", 1)
        text = head.rstrip("\n") + "\n\n" + section + "\n## Citation" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    card.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("teachers", nargs="+", help="NAME=PATH (PATH: a model dir or shipped)")
    parser.add_argument("--data", default="runs/evidence/data")
    parser.add_argument("--out", default="results/teacher_gate_v3/dev")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--no-card", action="store_true", help="leave the models' cards as they are"
    )
    args = parser.parse_args()
    names = [t.split("=", 1)[0] for t in args.teachers]
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.perf_counter()
    results = evaluate(
        [*args.teachers, "logmel"],
        args.data,
        args.out,
        langs=list(TIERS["unheard"]),
        split="dev",
        seeds=seeds,
        jobs=args.jobs,
        compare=[("logmel", name) for name in names],
    )
    record_path = Path(args.out) / "gate.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    for name in names:
        record[name] = verdict(name, results, bar_of(name))
        g = record[name]
        print(
            f"{name}: gain over log-mel {100 * g['gain']:+.1f} points "
            f"[{100 * g['gain_ci'][0]:+.1f}, {100 * g['gain_ci'][1]:+.1f}] (dev, unheard, "
            f"{len(seeds)} probe seeds), beats log-mel on {len(g['languages_beaten'])} of "
            f"{len(g['per_language'])}: gate {'PASSED' if g['passed'] else 'FAILED'}",
            flush=True,
        )
    command = "python experiments/teacher_gate_v3.py " + " ".join(args.teachers)
    for name in names:
        path = Path(record[name]["path"])
        if path.is_dir() and not args.no_card:
            write_card(path, record[name], command)
    record["_meta"] = {
        "command": command,
        "seconds_this_call": round(time.perf_counter() - start, 1),
        "mean_seed_spread_logmel": float(
            np.mean(
                [
                    np.ptp(m["details"][lang]["per"])
                    for m in results["models"]
                    if m["name"] == "logmel"
                    for lang in results["languages"]
                ]
            )
        ),
    }
    record_path.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    tune_malloc()
    main()
