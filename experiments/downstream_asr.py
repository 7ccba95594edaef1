"""Downstream ASR in miniature (issue 30): the shipped teacher T1 and the demo's student fine-tuned
into character recognisers on each `unheard` language of corpus v3, decoded greedily and with a
character LM, CER/WER on test, and the student's relative gap with its interval.

What the models heard: T1 heard synthetic English and the `label` and `heard` tiers, read no
label; the student heard synthetic English only (distilled from T1 with the demo's recipe). Each
fine-tuning reads one `unheard` language's train transcripts (its first labels and first audio
of that language). Settings are chosen on dev; test is only reported.

    python experiments/downstream_asr.py search   # the recipe grid on dev (T1; sw, tt)
    python experiments/downstream_asr.py run      # T1 and the student on the 5 unheard languages
    python experiments/downstream_asr.py report   # results/downstream/summary.json from the runs
    python experiments/downstream_asr.py modes    # PER on dev: probe, superb, finetune (phones)

Every step resumes: a fine-tuning run directory resumes from its newest checkpoint and a scored
run (results/downstream/runs/*.json) is not scored again. Run it in the background:
    nohup python experiments/downstream_asr.py run > runs/downstream/run.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distilxlsr.asr.finetune import finetune, transcript  # noqa: E402
from distilxlsr.asr.metrics import error_records  # noqa: E402
from distilxlsr.asr.recipe import FinetuneConfig  # noqa: E402
from distilxlsr.asr.recogniser import Recogniser  # noqa: E402
from distilxlsr.conventions import SAMPLE_RATE  # noqa: E402
from distilxlsr.data.corpora import load_cuts  # noqa: E402
from distilxlsr.data.loader import load_mono  # noqa: E402
from distilxlsr.evaluate.stats import bootstrap_per, interval, voice_of  # noqa: E402

DATA = ROOT / "runs/evidence/data"
RUNS = ROOT / "runs/downstream"
RESULTS = ROOT / "results/downstream"
UNHEARD = ["eu", "ia", "ka", "sw", "tt"]
SEARCH_LANGS = ["sw", "tt"]
STUDENT_STEPS = 300  # the full demo's distillation

RECIPES = {
    # fairseq's base_10m shape scaled to ~5 minutes of audio: body frozen for 100 of 350
    # updates, the head at 10x the body's rate, tri-stage, 20 s batches.
    "A": {"frozen.steps": 100, "full.steps": 250, "full.lr": 1e-4, "full.head_lr": 1e-3},
    # the same at 3x the rates (a few minutes of data may want larger steps)
    "B": {"frozen.steps": 100, "full.steps": 250, "full.lr": 3e-4, "full.head_lr": 3e-3},
    # A's loss was still falling when its rate decayed (dev CER 67-80%): twice the updates at
    # a rate a 5.8 M-parameter model takes (the tiny test models learn at 2e-3) ...
    "C": {"frozen.steps": 100, "full.steps": 500, "full.lr": 1e-3, "full.head_lr": 3e-3},
    # ... and between B and C, with a shorter head-only stage
    "D": {"frozen.steps": 50, "full.steps": 500, "full.lr": 5e-4, "full.head_lr": 5e-3},
    # C was better than B (dev CER sw 59% vs 75%) and its loss still fell: twice C's rate
    "E": {"frozen.steps": 100, "full.steps": 500, "full.lr": 2e-3, "full.head_lr": 5e-3},
}
COMMON = {"train.batch_seconds": 20.0, "loader.max_seconds": 20.0, "train.checkpoint_every": 50}


def student_model() -> str:
    """The demo's student of T1 (distilled here once; its run directory's newest checkpoint)."""
    from distilxlsr.demo import demo_distill_config  # noqa: PLC0415
    from distilxlsr.distill.train import distill  # noqa: PLC0415
    from distilxlsr.shipped import SHIPPED  # noqa: PLC0415

    run = RUNS / "student-run"
    config = demo_distill_config(SHIPPED, DATA, run, STUDENT_STEPS)
    distill(config)  # resumes; returns at once when the run is complete
    return str(run)


def config_for(
    model: str,
    lang: str,
    recipe: str,
    out: Path,
    seed: int = 0,
    data: Path = DATA,
    changes: dict | None = None,
) -> FinetuneConfig:
    """Recipe RECIPE for one (model, language) of corpus DATA; CHANGES on top (smoke runs)."""
    c = FinetuneConfig(model=model, data=str(data / lang), out=str(out))
    for key, value in {**COMMON, **RECIPES[recipe], **(changes or {})}.items():
        section, name = key.split(".")
        setattr(getattr(c, section), name, value)
    c.train.seed = seed
    return c


def fine_tune(
    model: str,
    tag: str,
    lang: str,
    recipe: str,
    out: Path | None = None,
    seed: int = 0,
    data: Path = DATA,
    changes: dict | None = None,
) -> dict:
    """Fine-tune (or resume) one (model, language); the job's results.json plus wall time."""
    out = out or RUNS / f"{recipe}-{tag}-{lang}"
    start = time.time()
    config = config_for(model, lang, recipe, out, seed, data, changes)
    finetune(config, command_line=f"downstream_asr {tag} {lang} seed {seed}")
    facts = json.loads((out / "results.json").read_text())
    facts["wall_seconds_this_call"] = round(time.time() - start, 1)
    facts["run"] = str(out.resolve())
    return facts


def score_split(model_dir: Path, lang: str, split: str, data: Path = DATA) -> dict:
    """Per-utterance CER/WER edits of greedy and LM decoding on a split, with voices."""
    cuts = [c for c in load_cuts(data / lang, split) if transcript(c, "chars")]
    refs = [transcript(c, "chars") for c in cuts]
    waves = [load_mono(c, SAMPLE_RATE) for c in cuts]
    recogniser = Recogniser(model_dir)
    log_probs = recogniser.log_probs(waves)
    from distilxlsr.asr.decoding import greedy_transcripts  # noqa: PLC0415

    out = {
        "ids": [c.id for c in cuts],
        "voices": [voice_of(c.supervisions[0].speaker) for c in cuts],
    }
    for how, hyps in (
        ("greedy", greedy_transcripts(recogniser.vocab, log_probs)),
        ("lm", recogniser.beam(log_probs)),
    ):
        records = error_records(refs, hyps, "chars")
        for metric, recs in records.items():
            out[f"{metric}_{how}_edits"] = [r.edits for r in recs]
            out[f"{metric}_length"] = [r.length for r in recs]
        out[f"{how}_examples"] = list(zip(refs[:3], hyps[:3], strict=True))
    return out


def rates(scored: dict) -> dict:
    return {
        f"{metric}_{how}": sum(scored[f"{metric}_{how}_edits"]) / sum(scored[f"{metric}_length"])
        for metric in ("cer", "wer")
        for how in ("greedy", "lm")
    }


def search(args) -> None:
    path = RESULTS / "recipe_search.json"
    table = json.loads(path.read_text())["rows"] if path.is_file() else []
    for recipe in args.recipes:
        for lang in SEARCH_LANGS:
            if any(r["recipe"] == recipe and r["lang"] == lang for r in table):
                continue  # scored in an earlier call
            facts = fine_tune("shipped", "T1", lang, recipe)
            ev = facts["eval"]
            row = {
                "recipe": recipe,
                "lang": lang,
                "dev_cer_greedy": ev["greedy"]["cer"],
                "dev_cer_lm": ev["lm"]["cer"],
                "dev_wer_greedy": ev["greedy"]["wer"],
                "dev_wer_lm": ev["lm"]["wer"],
                "lm_settings": ev.get("lm_settings"),
                "train_seconds": facts["train_seconds"],
            }
            table.append(row)
            print(json.dumps(row), flush=True)
            RESULTS.mkdir(parents=True, exist_ok=True)
            # Another search may have written rows meanwhile: keep them (one row per recipe and
            # language).
            stored = json.loads(path.read_text())["rows"] if path.is_file() else []
            mine = {(r["recipe"], r["lang"]) for r in table}
            table = [r for r in stored if (r["recipe"], r["lang"]) not in mine] + table
            path.write_text(
                json.dumps({"recipes": RECIPES, "common": COMMON, "rows": table}, indent=1) + "\n"
            )


def run(args) -> None:
    (RESULTS / "runs").mkdir(parents=True, exist_ok=True)
    models = {"T1": "shipped"}
    if not args.teacher_only:
        models["student"] = student_model()
    for lang in args.langs:
        for tag, model in models.items():
            path = RESULTS / "runs" / f"{args.recipe}-{tag}-{lang}.json"
            if path.is_file():
                continue
            facts = fine_tune(model, tag, lang, args.recipe)
            model_dir = Path(facts["run"]) / "model"
            record = {
                "model": tag,
                "lang": lang,
                "recipe": args.recipe,
                "dev": facts["eval"],
                "train_seconds": facts["train_seconds"],
                "wall_seconds": facts["wall_seconds_this_call"],
                "test": score_split(model_dir, lang, "test"),
            }
            path.write_text(json.dumps(record) + "\n")
            print(tag, lang, {k: round(v, 4) for k, v in rates(record["test"]).items()}, flush=True)
    report(args)


def one(args) -> None:
    """One (model, language, seed) for another experiment (the replication's fine-tuning):
    fine-tune under --runs (resumes), score test greedily and with the LM, write --record."""
    record_path = Path(args.record)
    if record_path.is_file():
        return
    data = Path(args.data).resolve()
    steps = {"full.steps": args.full_steps, "frozen.steps": args.frozen_steps}
    changes = {key: n for key, n in steps.items() if n}  # smoke runs only
    out = Path(args.runs) / f"{args.tag}-s{args.seed}-{args.lang}"
    facts = fine_tune(args.model, args.tag, args.lang, args.recipe, out, args.seed, data, changes)
    record = {
        "model": args.tag,
        "lang": args.lang,
        "seed": args.seed,
        "recipe": args.recipe,
        "dev": facts["eval"],
        "train_seconds": facts["train_seconds"],
        "wall_seconds": facts["wall_seconds_this_call"],
        "test": score_split(out / "model", args.lang, "test", data),
    }
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record) + "\n")
    print(
        args.tag, args.lang, args.seed, {k: round(v, 4) for k, v in rates(record["test"]).items()}
    )


def report(args) -> None:
    runs = {}
    for path in sorted((RESULTS / "runs").glob(f"{args.recipe}-*.json")):
        r = json.loads(path.read_text())
        runs[(r["model"], r["lang"])] = r
    modes_path = RESULTS / "modes_dev.json"
    dev_per = json.loads(modes_path.read_text())["modes"] if modes_path.is_file() else {}

    def per(mode: str, model: str, lang: str) -> float | None:
        return dev_per.get(mode, {}).get("models", {}).get(model, {}).get("per", {}).get(lang)

    rows = []
    for (model, lang), r in sorted(runs.items()):
        t = rates(r["test"])
        role = "teacher" if model == "T1" else "student"
        dev = r["dev"]
        rows.append(
            {
                "role": role,
                "model": model,
                "lang": lang,
                "split": "dev",
                "probe_per": per("probe", model, lang),
                "superb_per": per("superb", model, lang),
                "finetune_per": per("finetune", model, lang),
                "cer_greedy": dev["greedy"]["cer"],
                "cer_lm": dev["lm"]["cer"],
                "wer_greedy": dev["greedy"]["wer"],
                "wer_lm": dev["lm"]["wer"],
                "train_seconds": r["train_seconds"],
                "wall_seconds": r["wall_seconds"],
            }
        )
        rows.append(
            {
                "role": role,
                "model": model,
                "lang": lang,
                "split": "test",
                "probe_per": None,
                "finetune_per": None,
                **t,
            }
        )
    langs = [lang for lang in UNHEARD if ("T1", lang) in runs and ("student", lang) in runs]
    gap = {"value": None, "ci": None, "langs": langs}
    if langs:
        edits, lengths, voices = [], [], []
        for lang in langs:
            a, b = runs[("T1", lang)]["test"], runs[("student", lang)]["test"]
            assert a["ids"] == b["ids"]
            edits.append(np.array([a["cer_lm_edits"], b["cer_lm_edits"]])[:, :, None])
            lengths.append(np.array(a["cer_length"]))
            voices.append(a["voices"])
        samples = bootstrap_per(edits, lengths, voices=voices)
        point, resampled = samples.macro(range(len(langs)))
        gap = {
            "value": float(point[1] / point[0] - 1),
            "ci": interval(resampled[1] / resampled[0] - 1),
            "langs": langs,
            "teacher_cer_lm": float(point[0]),
            "student_cer_lm": float(point[1]),
            "units": "test voices within each language, then utterances within voices "
            "(hierarchical bootstrap, paired; one fine-tuning seed)",
        }
    summary = {
        "tier": "unheard",
        "seeds": 1,
        "recipe": {"name": args.recipe, **COMMON, **RECIPES[args.recipe]},
        "rows": rows,
        "rel_gap_cer_lm": gap,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (RESULTS / "summary.md").write_text(markdown(summary))
    print(json.dumps(gap))


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def markdown(summary: dict) -> str:
    """summary.md: the test table per language, the dev table and the gap."""
    lines = [
        f"Recipe {summary['recipe']['name']}; one fine-tuning seed; CER/WER in %.",
        "",
        "| lang | split | T1 CER greedy | T1 CER LM | student CER greedy | student CER LM "
        "| T1 WER LM | student WER LM |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by = {(r["role"], r["lang"], r["split"]): r for r in summary["rows"]}
    for split in ("dev", "test"):
        for lang in UNHEARD:
            t, s_ = by.get(("teacher", lang, split)), by.get(("student", lang, split))
            if t is None and s_ is None:
                continue
            t, s_ = t or {}, s_ or {}
            lines.append(
                f"| {lang} | {split} | {_pct(t.get('cer_greedy'))} | {_pct(t.get('cer_lm'))} | "
                f"{_pct(s_.get('cer_greedy'))} | {_pct(s_.get('cer_lm'))} | "
                f"{_pct(t.get('wer_lm'))} | {_pct(s_.get('wer_lm'))} |"
            )
    gap = summary["rel_gap_cer_lm"]
    if gap.get("value") is not None:
        lo, hi = gap["ci"]
        lines += [
            "",
            f"Test, macro over {', '.join(gap['langs'])}: CER with the LM, teacher "
            f"{_pct(gap['teacher_cer_lm'])}%, student {_pct(gap['student_cer_lm'])}%; relative "
            f"gap (student / teacher - 1) {100 * gap['value']:+.1f}% "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}] ({gap['units']}).",
        ]
    return "\n".join(lines) + "\n"


def modes(args) -> None:
    """PER on dev of the three `evaluate` modes (probe, superb, finetune with phone targets,
    the recipe `args.recipe`) for T1 and the student on the unheard languages, with the time per
    (model, language) of each mode; results/downstream/modes_dev.json."""
    from distilxlsr.evaluate.harness import evaluate  # noqa: PLC0415
    from distilxlsr.evaluate.recipe import evaluation_finetune  # noqa: PLC0415

    models = ["T1=shipped"]
    if not args.teacher_only:
        models.append(f"student={student_model()}")
    recipe = evaluation_finetune()
    for key, value in {**COMMON, **RECIPES[args.recipe]}.items():
        section, name = key.split(".")
        setattr(getattr(recipe, section), name, value)
    table = {}
    for mode in args.modes:
        extra = {"finetune_config": recipe} if mode == "finetune" else {}
        out = (
            RUNS / f"modes-{mode}" if mode != "finetune" else RUNS / f"modes-finetune-{args.recipe}"
        )
        start = time.time()
        results = evaluate(
            models + (["logmel"] if mode != "finetune" else []),
            str(DATA),
            str(out),
            mode=mode,
            langs=args.langs,
            split="dev",
            **extra,
        )
        table[mode] = {
            "seconds_this_call": round(time.time() - start, 1),
            "models": {
                m["name"]: {
                    "per": m["per"],
                    "per_mean": m["per_mean"],
                    "seconds_per_language": {
                        lang: {
                            "train": m["details"][lang].get("seconds"),
                            "features": m["details"][lang].get("feature_seconds"),
                        }
                        for lang in results["languages"]
                    },
                }
                for m in results["models"]
            },
        }
        print(mode, {n: round(v["per_mean"], 4) for n, v in table[mode]["models"].items()})
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / "modes_dev.json"
        stored = json.loads(path.read_text()) if path.is_file() else {"modes": {}}
        stored["modes"] |= {mode: table[mode]}  # other calls' modes are kept
        stored |= {"split": "dev", "finetune_recipe": args.recipe}
        path.write_text(json.dumps(stored, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    s = sub.add_parser("search")
    s.add_argument("--recipes", nargs="+", default=list(RECIPES))
    s.set_defaults(func=search)
    r = sub.add_parser("run")
    r.add_argument("--recipe", default="A")
    r.add_argument("--langs", nargs="+", default=UNHEARD)
    r.add_argument("--teacher-only", action="store_true")
    r.set_defaults(func=run)
    m = sub.add_parser("modes")
    m.add_argument("--recipe", default="A")
    m.add_argument("--modes", nargs="+", default=["probe", "superb", "finetune"])
    m.add_argument("--langs", nargs="+", default=UNHEARD)
    m.add_argument("--teacher-only", action="store_true")
    m.set_defaults(func=modes)
    o = sub.add_parser("one", help="one fine-tuning for another experiment (see `one`)")
    o.add_argument("--model", required=True)
    o.add_argument("--tag", required=True)
    o.add_argument("--lang", required=True)
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--recipe", default="C")
    o.add_argument("--runs", required=True, help="fine-tuning run directories go here")
    o.add_argument("--record", required=True, help="the scored record (JSON) written here")
    o.add_argument("--data", default=str(DATA), help="corpus (ROOT/<lang>)")
    o.add_argument("--full-steps", type=int, help="smoke runs only: the full stage this short")
    o.add_argument("--frozen-steps", type=int, help="smoke runs only: the head-only stage")
    o.set_defaults(func=one)
    p = sub.add_parser("report")
    p.add_argument("--recipe", default="A")
    p.set_defaults(func=report)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
