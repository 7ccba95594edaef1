"""How phonetic, and how voice-bound, are a teacher's HuBERT targets? k-means units of each
candidate source scored on corpus v3's `dev` split (never `test`).

A label-free teacher learns what its targets encode (HuBERT, iteration after iteration). Here each
candidate unit source — log-mel (HuBERT's first iteration) and each layer of a trained teacher
(the next iteration's) — gets `--clusters` k-means units fitted on `--sample-seconds` of the
teacher's own `pretrain` split (the languages `--languages` names: no label read, no unheard
language). On the dev split of the `heard` and `unheard` tiers, every 20 ms frame gets its unit and
its phone (from the corpus's alignments, used here only to score) and its voice (the speaker's
eSpeak variant):

- PNMI, phone-normalised mutual information I(phone; unit) / H(phone) (HuBERT's measure): the
  share of the phone's uncertainty a unit removes; higher is better;
- phone purity: how often a unit's most common phone is the frame's phone;
- voice NMI, I(voice; unit) / H(voice): how much of the voice the units carry; a target that
  encodes the voice teaches the teacher to tell voices apart, which a recogniser of unheard
  voices must ignore. Lower is better.

    python experiments/unit_quality.py [--data runs/evidence/data] [--teacher DIR]
        [--layers 2,4,6,8] [--out results/unit_quality.json]

Resumable: each source's scores are kept in the output and skipped when present.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from distilxlsr import tune_malloc
from distilxlsr.conventions import FRAME_HOP, FRAME_WINDOW, SAMPLE_RATE
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import load_mono
from distilxlsr.data.synthetic import TIERS
from distilxlsr.demo import shipped_teacher
from distilxlsr.evaluate.stats import voice_of
from distilxlsr.pretraining.units import LayerFeatures, fit_units, nearest, unit_features

HOP_SECONDS = FRAME_HOP / SAMPLE_RATE  # 20 ms
CENTRE_SECONDS = FRAME_WINDOW / 2 / SAMPLE_RATE  # a frame's centre after its start: 12.5 ms
PRETRAIN_LANGUAGES = ("en", *TIERS["label"], *TIERS["heard"])  # T1's languages
SCORED = (*TIERS["heard"], *TIERS["unheard"])


def frame_labels(cut, frames: int) -> tuple[list[str | None], str]:
    """The phone under the centre of each 20 ms frame (None: silence or none) and the voice."""
    supervision = cut.supervisions[0]
    phones: list[str | None] = [None] * frames
    for item in supervision.alignment["phone"]:
        first = max(0, int(np.ceil((item.start - CENTRE_SECONDS) / HOP_SECONDS)))
        last = min(
            frames, int(np.ceil((item.start + item.duration - CENTRE_SECONDS) / HOP_SECONDS))
        )
        for i in range(first, last):
            phones[i] = item.symbol
    return phones, voice_of(supervision.speaker)  # "sw+Andy-p50-r150" -> "sw+Andy"


def normalised_mi(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) / H(a) for two integer label arrays."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / (pa[:, None] * pb[None, :])[nz])).sum())
    entropy = float(-(pa[pa > 0] * np.log(pa[pa > 0])).sum())
    return mi / entropy


def purity(phone: np.ndarray, unit: np.ndarray) -> float:
    joint = np.zeros((unit.max() + 1, phone.max() + 1))
    np.add.at(joint, (unit, phone), 1)
    return float(joint.max(1).sum() / joint.sum())


def score(features, centroids: torch.Tensor, data: Path) -> dict:
    """PNMI, phone purity and voice NMI per scored language and per tier."""
    result = {}
    for lang in SCORED:
        units, phones, voices = [], [], []
        for cut in load_cuts(data / lang, "dev"):
            feats = features(load_mono(cut, SAMPLE_RATE))[0].float()
            unit = nearest(feats, centroids)[0].numpy()
            phone, voice = frame_labels(cut, len(unit))
            keep = [i for i, p in enumerate(phone) if p is not None]
            units += unit[keep].tolist()
            phones += [phone[i] for i in keep]
            voices += [voice] * len(keep)
        unit_a = np.asarray(units)
        phone_a = np.unique(phones, return_inverse=True)[1]
        voice_a = np.unique(voices, return_inverse=True)[1]
        result[lang] = {
            "pnmi": normalised_mi(phone_a, unit_a),
            "phone_purity": purity(phone_a, unit_a),
            "voice_nmi": normalised_mi(voice_a, unit_a),
            "frames": len(unit_a),
        }
    for tier in ("heard", "unheard"):
        result[tier] = {
            key: float(np.mean([result[lang][key] for lang in TIERS[tier]]))
            for key in ("pnmi", "phone_purity", "voice_nmi")
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="runs/evidence/data")
    parser.add_argument("--teacher", default=None, help="default: the shipped teacher (T1)")
    parser.add_argument("--layers", default="2,4,6,8")
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--sample-seconds", type=float, default=900.0)
    parser.add_argument("--out", default="results/unit_quality.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data, out = Path(args.data), Path(args.out)
    teacher = args.teacher or str(shipped_teacher())
    record = json.loads(out.read_text()) if out.is_file() else {"sources": {}}
    record |= {"split": "dev", "command": "python experiments/unit_quality.py", "args": vars(args)}
    sources = {"logmel": None} | {
        f"layer{layer}": LayerFeatures(teacher, int(layer)) for layer in args.layers.split(",")
    }
    # Every language with a pretrain split, interleaved (corpus v3: English, label and heard).
    cuts = load_cuts(data, "pretrain")
    present = sorted({c.supervisions[0].language for c in cuts})
    if set(present) - set(PRETRAIN_LANGUAGES):
        parser.error(f"{data} has pretrain splits beyond T1's languages: {present}")
    total = sum(c.duration for c in cuts)
    for name, features in sources.items():
        if name in record["sources"]:
            continue
        start = time.perf_counter()
        centroids, info = fit_units(
            cuts, args.clusters, args.sample_seconds, 30, 0, 0.5, total, features=features
        )
        record["sources"][name] = {
            "units": info | {"seconds": info["seconds"]},
            "dev": score(features or unit_features(), centroids, data),
            "seconds": time.perf_counter() - start,
        }
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(out)
        tiers = {t: record["sources"][name]["dev"][t] for t in ("heard", "unheard")}
        print(name, json.dumps(tiers), flush=True)


if __name__ == "__main__":
    tune_malloc()
    main()
