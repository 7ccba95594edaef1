"""Choose the evaluation probe's learning rate and length on the `dev` split (never `test`).

For a trained model (the labelled CTC teacher, `results/models/labelled-teacher`) and for the
log-mel floor, on one language of each tier:
a probe is trained on the language's `train` split (corpus v2: its own speakers and words) and
scored (PER) on `dev` after each length in the grid, for each learning rate, with and without
per-dimension standardisation of the features. Lengths are scored inside one run (the first n
steps of a longer probe are an n-step probe). Each feature kind gets its own setting (SUPERB, too,
tunes the learning rate per upstream model): the trained models' probe is chosen on the teacher,
the floor's on log-mel, so that the floor is as strong as the probe can make it (a weak floor
would inflate every gain retained). Per kind, the grid is widened until the best learning rate
and length lie inside it, or until a widening improved the best by less than `TOLERANCE` (the
dev noise this selection cannot tell apart; log-mel's dev PER moves by several points from one
length to the next), at most five times; the shortest setting whose mean dev PER is within
`TOLERANCE` (relative) of the kind's best becomes its default (`ProbeConfig` for trained models,
`FLOOR_PROBE` for log-mel). An option worse at every setting of a kind's first grid (the teacher
is run first) is not carried into the longer runs.

    python experiments/probe_selection.py [--data runs/evidence/data] [--out results/probe_selection.json]

Resumable: every (model, language, lr, standardisation, max steps) result is kept in the
output's `runs` and skipped when present.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from distilxlsr import tune_malloc
from distilxlsr.evaluate.ctc import ProbeConfig, probe_decode, train_probe
from distilxlsr.evaluate.features import ModelFeatures, resolve_model
from distilxlsr.evaluate.languages import load_utterances
from distilxlsr.evaluate.per import phone_error_rate
from distilxlsr.evaluate.task import extract_features

LABELLED_TEACHER = Path(__file__).resolve().parents[1] / "results" / "models" / "labelled-teacher"
"""The CTC teacher fine-tuned on every evaluation language's phone labels (the labelled upper
bound; shipped until the label-free T1 replaced it)."""

LANGS = "es,it,sw"  # one per tier: label, heard, unheard
LRS = (3e-3, 1e-2, 3e-2)
LENGTHS = (250, 500, 1000, 2000)
# A shorter probe is chosen over the best when its score is within this of the best's (in units
# of each model's best dev PER): evaluation time grows with the length, dev noise does not shrink.
TOLERANCE = 0.03


def _score(out: Path, record: dict) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out)


STANDARDISE = (True, False)


def _key(name, lang, lr, std, lengths) -> str:
    return f"{name}/{lang}/lr={lr:g}/std={std}/max={max(lengths)}"


def _setting(lr, std, steps) -> str:
    return f"lr={lr:g} standardise={std} steps={steps}"


def run_grid(record, out, models, langs, data, lrs, lengths) -> None:
    runs = record.setdefault("runs", {})
    for name, spec in models.items():
        features = None
        for lang in langs:
            todo = [
                (lr, std)
                for lr in lrs
                for std in STANDARDISE
                if _key(name, lang, lr, std, lengths) not in runs
            ]
            if not todo:
                continue
            if features is None:
                features = (
                    ModelFeatures(resolve_model(spec))
                    if spec != "logmel"
                    else ModelFeatures(resolve_model("logmel"), frame_stride=320)
                )
            train, _ = load_utterances(data / lang, "train")
            dev, _ = load_utterances(data / lang, "dev")
            vocab = sorted({p for seq in train.phones for p in seq})
            index = {p: i + 1 for i, p in enumerate(vocab)}
            labels = [[index[p] for p in seq] for seq in train.phones]
            train_feats = extract_features(features, train.waves)
            dev_feats = extract_features(features, dev.waves)
            for lr, std in todo:
                scores = {}
                start = time.perf_counter()

                def score(step, probe, scores=scores, dev=dev, feats=dev_feats, vocab=vocab):
                    if step in lengths:
                        hyp = probe_decode(probe, feats)
                        words = [[vocab[t - 1] for t in h] for h in hyp]
                        scores[str(step)] = phone_error_rate(dev.phones, words)

                config = ProbeConfig(steps=max(lengths), lr=lr, standardise=std)
                train_probe(train_feats, labels, len(vocab) + 1, config, score)
                key = _key(name, lang, lr, std, lengths)
                runs[key] = {
                    "model": name,
                    "lang": lang,
                    "lr": lr,
                    "standardise": std,
                    "dev_per": scores,
                    "seconds": time.perf_counter() - start,
                    "dev_utterances": len(dev.ids),
                    "dev_phones": sum(len(p) for p in dev.phones),
                }
                best = min(scores, key=scores.get)
                print(
                    f"{name} {lang} lr={lr:g} standardise={std}: dev PER "
                    + " ".join(f"{k}:{v:.3f}" for k, v in scores.items())
                    + f" (best {best}; {runs[key]['seconds']:.0f} s)",
                    flush=True,
                )
                _score(out, record)


def table(record, models, langs, lrs, lengths) -> dict[str, dict[str, float]]:
    """(model -> setting -> mean dev PER over languages), from the runs so far."""
    means: dict[str, dict[str, float]] = {}
    for name in models:
        for lr in lrs:
            for std in (True, False):
                for steps in lengths:
                    values = []
                    for lang in langs:
                        for run in record["runs"].values():
                            if (
                                run["model"] == name
                                and run["lang"] == lang
                                and run["lr"] == lr
                                and run.get("standardise") == std
                                and str(steps) in run["dev_per"]
                            ):
                                values.append(run["dev_per"][str(steps)])
                                break
                    if len(values) == len(langs):
                        means.setdefault(name, {})[_setting(lr, std, steps)] = float(
                            np.mean(values)
                        )
    return means


def dominated_option(means: dict[str, dict[str, float]]) -> bool | None:
    """The standardisation option that is worse than the other at every (lr, steps) of the grid
    for some model, else None."""
    for option in STANDARDISE:
        for by_setting in means.values():
            pairs = [
                (v, by_setting.get(k.replace(f"standardise={option}", f"standardise={not option}")))
                for k, v in by_setting.items()
                if f"standardise={option} " in k
            ]
            if pairs and all(other is not None and v > other for v, other in pairs):
                return option
    return None


def select_for(record, out, name, spec, langs, data, widen: bool) -> dict:
    """One feature kind's grid, widened until its best lr and length lie inside it, or until a
    widening improved the best mean dev PER by less than `TOLERANCE` (relative: below what this
    selection can tell apart), at most five times; the shortest setting within `TOLERANCE` of
    the best is the kind's probe."""
    global STANDARDISE  # noqa: PLW0603 - narrowed when an option is dominated
    lrs, lengths = list(LRS), list(LENGTHS)
    previous, stopped = None, "round limit"
    for _ in range(5):
        run_grid(record, out, {name: spec}, langs, data, lrs, lengths)
        means = table(record, [name], langs, lrs, lengths)[name]
        if len(STANDARDISE) > 1 and (dropped := dominated_option({name: means})) is not None:
            # Widening costs a full run per (language, lr, option): an option that loses at
            # every setting of the grid is not carried into longer runs, for any kind.
            STANDARDISE = (not dropped,)
            record["standardise_dropped"] = {"option": dropped, "by": name}
            print(f"standardise={dropped} is worse at every setting for {name}: not widened")
        options = {k: v for k, v in means.items() if any(f"={o} " in k for o in STANDARDISE)}
        best = min(options, key=options.get)
        best_lr = float(best.split()[0].split("=")[1])
        best_steps = int(best.split()[2].split("=")[1])
        at_edge = best_lr in (lrs[0], lrs[-1]) or best_steps == lengths[-1]
        converged = previous is not None and previous - options[best] < TOLERANCE * previous
        if not at_edge or not widen or converged:
            stopped = "inside" if not at_edge else "converged" if converged else "not widened"
            break
        previous = options[best]
        if best_lr == lrs[0]:
            lrs.insert(0, lrs[0] / 3)
        elif best_lr == lrs[-1]:
            lrs.append(lrs[-1] * 3)
        if best_steps == lengths[-1]:
            lengths.append(lengths[-1] * 2)
        print(f"{name}: best {best} at the grid's edge: widening to lr {lrs}, steps {lengths}")
    relative = {k: v / options[best] for k, v in options.items()}
    near = [k for k, v in relative.items() if v <= 1 + TOLERANCE]
    chosen = min(near, key=lambda k: (int(k.split()[2].split("=")[1]), relative[k]))
    print(
        f"{name}: widening stopped ({stopped}); best {best} (mean dev PER {options[best]:.4f}); "
        f"chosen {chosen} "
        f"({options[chosen]:.4f}; the shortest within {TOLERANCE:.0%} of the best)"
    )
    return {
        "lrs": lrs,
        "lengths": lengths,
        "means": means,
        "best": best,
        "chosen": chosen,
        "inside_grid": not at_edge,
        "stopped": stopped,
    }


def main() -> None:
    global STANDARDISE  # noqa: PLW0603 - narrowed by --check
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="runs/evidence/data")
    parser.add_argument("--langs", default=LANGS)
    parser.add_argument("--out", default="results/probe_selection.json")
    parser.add_argument(
        "--check",
        metavar="LR,STANDARDISE,STEPS",
        help="only train this one setting longer (e.g. 0.01,False,4000), keeping the record",
    )
    parser.add_argument(
        "--no-widen",
        action="store_true",
        help="summarise the grid as it is, even if the best is at its edge (recorded)",
    )
    args = parser.parse_args()
    out = Path(args.out)
    record = json.loads(out.read_text()) if out.is_file() else {}
    if "runs" not in record:
        record = {"runs": {}}
    # The teacher first: its grid decides whether standardisation is carried into longer runs.
    models = {"teacher": str(LABELLED_TEACHER), "logmel": "logmel"}
    langs = args.langs.split(",")
    if args.check:
        lr, std, steps = args.check.split(",")
        STANDARDISE = (std == "True",)
        lengths = [*LENGTHS, int(steps)]
        run_grid(record, out, models, langs, Path(args.data), [float(lr)], lengths)
        return
    kinds = {
        name: select_for(record, out, name, spec, langs, Path(args.data), not args.no_widen)
        for name, spec in models.items()
    }
    for stale in ("overall", "best", "chosen", "inside_grid", "means", "lrs", "lengths"):
        record.pop(stale, None)  # the single-setting summary of the first selection
    record.update(
        {
            "what": "probe lr, standardisation and steps chosen on the dev split (corpus v2), "
            "never test, for each feature kind: the trained models' probe on the teacher, the "
            "log-mel floor's on log-mel",
            "command": "python experiments/probe_selection.py",
            "langs": langs,
            "tolerance": TOLERANCE,
            "kinds": kinds,
            "longer_checks": {
                key: run["dev_per"]
                for key, run in record["runs"].items()
                if int(key.rsplit("=", 1)[1]) > max(kinds[run["model"]]["lengths"])
            },
        }
    )
    _score(out, record)


if __name__ == "__main__":
    tune_malloc()
    main()
