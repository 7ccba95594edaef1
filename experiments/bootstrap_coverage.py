"""Coverage of the evaluation's 95% bootstrap intervals in a simulation whose truth is known:
the previous bootstrap (seeds and utterances drawn anew within each language) against the
hierarchical one (seeds once for every language, voices within each language, utterances within
each voice; evaluate/stats.py), both as the replication uses them (`bootstrap_per`, 1000
resamples, percentile intervals).

The simulated evaluation has v2's shape: 15 languages of `--utterances` test utterances each,
spread evenly over V voices, S seeds, and four models: a floor (log-mel), a teacher and two
students of it (the method and no shuffle). Model k's expected PER on utterance i of voice v of
language l with seed s is its language's base rate times a log-normal factor

    exp(u_lv + f_lvk + h_lvk + w_ks + o_ksl + c_s + a_i + b_ik - var/2)

(`EFFECTS`): a voice effect every model shares and one the floor or the networks have alone, a
per-model voice interaction, a seed effect shared by all 15 languages (one network), a
seed-by-language one, a seed-index effect the two students share (the same English draw), an
utterance effect every model shares and one of its own; edits are Poisson with mean
phones × rate. Every factor has mean 1, so a model's population PER on a language is exactly its
base rate, and the truth of every statistic is known: the no-shuffle − method difference of macro
PER over all 15 languages (primary comparison b), the method student's relative gap to its
teacher and its gain retained over the 5 `unheard` languages (primary comparison a), and the
method student's own macro PER over all 15. Voices differ far more than utterances (voice
effects ~0.3 on the log scale, as v2's eu: 33 / 52 / 143% PER on its three voices), as in v2's
records.

For each design (seeds × voices per language) and replication, fresh voices, seeds and utterances
are drawn, both bootstraps are run on the same data, and each 95% interval is checked against the
truth. Coverage is the share of replications whose interval holds the truth (gain retained:
among those where it has an interval; "no interval" counts apart).

    python experiments/bootstrap_coverage.py [--designs 3x3,8x6,8x8] [--replications 2000]
        [--out results/bootstrap_coverage.json]

About 16 minutes on one core (2,000 replications of each of 3 designs, both bootstraps).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from distilxlsr.evaluate.stats import HIERARCHICAL, UTTERANCE, bootstrap_per, interval

LANGUAGES = 15
UNHEARD = range(10, 15)  # the tier of primary comparison (a)
MODELS = ("floor", "teacher", "method", "no-shuffle")
FLOOR, TEACHER, METHOD, NO_SHUFFLE = range(4)
EFFECTS = {
    "voice": 0.30,  # u: a voice every model finds hard or easy
    "voice_floor": 0.30,  # f: the floor's own voice effect (log-mel against the networks)
    "voice_model": 0.08,  # h: each model's voice interaction
    "seed": 0.010,  # w: one network, every language
    "seed_language": 0.010,  # o: a seed on one language
    "seed_shared": 0.005,  # c: seed index s, shared by the two students (the English draw)
    "utterance": 0.25,  # a: an utterance every model finds hard or easy
    "utterance_model": 0.10,  # b: each model's own
}
"""Standard deviations of the log-normal factors (module doc)."""
STUDENT_GAP = 0.04  # the method's student: 4% above its teacher's PER on every language
SHUFFLE_EFFECT = 0.002  # no shuffle: 0.2% above the method's PER
FLOOR_GAP = 0.30  # the floor: 30% above the teacher's PER
STATISTICS = ("shuffle_effect", "rel_gap", "gain_retained", "method_per")


def truth(base: np.ndarray) -> dict[str, float]:
    """The statistics at the population PERs `base` (models × languages)."""
    unheard = base[:, list(UNHEARD)].mean(axis=1)
    macro = base.mean(axis=1)
    return {
        "shuffle_effect": float(macro[NO_SHUFFLE] - macro[METHOD]),
        "rel_gap": float(unheard[METHOD] / unheard[TEACHER] - 1),
        "gain_retained": float(
            (unheard[FLOOR] - unheard[METHOD]) / (unheard[FLOOR] - unheard[TEACHER])
        ),
        "method_per": float(macro[METHOD]),
    }


def simulate(
    rng: np.random.Generator, base: np.ndarray, seeds: int, voices: int, utterances: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[list[str]]]:
    """One test set and its edit counts: per language edits (M, n, S), phones (n,), voices."""
    e = EFFECTS
    models = len(MODELS)
    seed = rng.normal(0, e["seed"], size=(models, seeds))
    shared = rng.normal(0, e["seed_shared"], size=seeds)
    students = np.array([0, 0, 1, 1])[:, None]  # who shares the seed index's English draw
    is_floor = (np.arange(models) == FLOOR).astype(np.float64)
    # Each model's total log-scale variance: exp(x - variance / 2) has mean 1.
    variance = (
        e["voice"] ** 2
        + is_floor * e["voice_floor"] ** 2
        + e["voice_model"] ** 2
        + e["seed"] ** 2
        + e["seed_language"] ** 2
        + students[:, 0] * e["seed_shared"] ** 2
        + e["utterance"] ** 2
        + e["utterance_model"] ** 2
    )[:, None, None]
    edits, phones, names = [], [], []
    for lang in range(LANGUAGES):
        voice_of = np.arange(utterances) % voices
        u = rng.normal(0, e["voice"], size=voices)
        floor_only = rng.normal(0, e["voice_floor"], size=voices)
        h = rng.normal(0, e["voice_model"], size=(models, voices))
        o = rng.normal(0, e["seed_language"], size=(models, seeds))
        a = rng.normal(0, e["utterance"], size=utterances)
        b = rng.normal(0, e["utterance_model"], size=(models, utterances))
        p = 30 + rng.poisson(25, size=utterances)
        log_rate = (
            u[voice_of][None, :, None]
            + is_floor[:, None, None] * floor_only[voice_of][None, :, None]
            + h[:, voice_of][:, :, None]
            + (seed + o + students * shared[None, :])[:, None, :]
            + a[None, :, None]
            + b[:, :, None]
        )
        rate = base[:, lang][:, None, None] * np.exp(log_rate - variance / 2)
        edits.append(rng.poisson(rate * p[None, :, None]).astype(np.float64))
        phones.append(p.astype(np.float64))
        names.append([f"l{lang}+v{v}" for v in voice_of])
    return edits, phones, names


def intervals(per) -> dict[str, list[float] | None]:
    """The 95% intervals of the four statistics from one bootstrap's resamples."""
    _, all_ = per.macro(range(LANGUAGES))
    _, unheard = per.macro(UNHEARD)
    gain = unheard[FLOOR] - unheard[TEACHER]
    out = {
        "shuffle_effect": interval(all_[NO_SHUFFLE] - all_[METHOD]),
        "rel_gap": interval(unheard[METHOD] / unheard[TEACHER] - 1),
        "method_per": interval(all_[METHOD]),
        "gain_retained": None,
    }
    if interval(gain)[0] > 0:  # as gain_retained_interval: no interval for a doubtful gain
        out["gain_retained"] = interval((unheard[FLOOR] - unheard[METHOD]) / gain)
    return out


def run_design(seeds: int, voices: int, utterances: int, replications: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, seeds, voices])
    base = np.empty((len(MODELS), LANGUAGES))
    base[TEACHER] = np.linspace(0.30, 0.70, LANGUAGES)
    base[METHOD] = base[TEACHER] * (1 + STUDENT_GAP)
    base[NO_SHUFFLE] = base[METHOD] * (1 + SHUFFLE_EFFECT)
    base[FLOOR] = base[TEACHER] * (1 + FLOOR_GAP)
    true = truth(base)
    held = {s: {stat: 0 for stat in STATISTICS} for s in (UTTERANCE, HIERARCHICAL)}
    missing = {s: 0 for s in (UTTERANCE, HIERARCHICAL)}
    widths = {s: {stat: [] for stat in STATISTICS} for s in (UTTERANCE, HIERARCHICAL)}
    start = time.perf_counter()
    for r in range(replications):
        edits, phones, names = simulate(rng, base, seeds, voices, utterances)
        for scheme in (UTTERANCE, HIERARCHICAL):
            per = bootstrap_per(edits, phones, seed=r, voices=names, scheme=scheme)
            for stat, ci in intervals(per).items():
                if ci is None:
                    missing[scheme] += 1
                    continue
                held[scheme][stat] += ci[0] <= true[stat] <= ci[1]
                widths[scheme][stat].append(ci[1] - ci[0])
    out = {
        "seeds": seeds,
        "voices_per_language": voices,
        "utterances_per_language": utterances,
        "replications": replications,
        "truth": true,
        "seconds": round(time.perf_counter() - start, 1),
    }
    for scheme in (UTTERANCE, HIERARCHICAL):
        scored = {
            stat: replications - (missing[scheme] if stat == "gain_retained" else 0)
            for stat in STATISTICS
        }
        out[scheme] = {
            "coverage": {
                stat: held[scheme][stat] / scored[stat] if scored[stat] else None
                for stat in STATISTICS
            },
            "median_width": {
                stat: float(np.median(w)) if w else None for stat, w in widths[scheme].items()
            },
            "gain_retained_without_interval": missing[scheme],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--designs", default="3x3,8x6,8x8", help="SEEDSxVOICES, comma-separated")
    parser.add_argument("--replications", type=int, default=2000)
    parser.add_argument("--utterances", type=int, default=75, help="test utterances per language")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/bootstrap_coverage.json")
    args = parser.parse_args()
    designs = []
    for item in args.designs.split(","):
        seeds, voices = (int(x) for x in item.split("x"))
        result = run_design(seeds, voices, args.utterances, args.replications, args.seed)
        designs.append(result)
        for scheme in (UTTERANCE, HIERARCHICAL):
            cover = result[scheme]["coverage"]
            print(
                f"{seeds} seeds x {voices} voices, {scheme:>12}: "
                + ", ".join(
                    f"{k} {'n/a' if v is None else f'{100 * v:.1f}%'}" for k, v in cover.items()
                )
                + f" (gain retained without interval: "
                f"{result[scheme]['gain_retained_without_interval']})",
                flush=True,
            )
    out = {
        "command": "python experiments/bootstrap_coverage.py "
        f"--designs {args.designs} --replications {args.replications}",
        "level": 0.95,
        "effects": EFFECTS,
        "student_gap": STUDENT_GAP,
        "shuffle_effect": SHUFFLE_EFFECT,
        "floor_gap": FLOOR_GAP,
        "designs": designs,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
