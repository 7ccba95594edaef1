"""Dataset cards of the synthetic corpus: ROOT/<lang>/README.md (with phones.json, the union of
the splits' phone inventories) and ROOT/SYNTHETIC.md, from the splits' cache stamps."""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Iterable
from pathlib import Path

from distilxlsr.conventions import SAMPLE_RATE, SILENCE
from distilxlsr.data.synthetic.files import stamp_path, write_text
from distilxlsr.data.synthetic.texts import asset_path
from distilxlsr.data.synthetic.voices import (
    HELD_OUT_RATES,
    LANGUAGE_NAMES,
    PITCHES,
    RATES,
    SPLITS,
    VOICES,
    held_out_voices,
    tier_of,
    variant_splits,
)

TIER_MEANING = {
    "label": "a teacher may be trained on its phone labels (train and pretrain splits only)",
    "heard": "a teacher may hear its audio, never its labels",
    "unheard": "no teacher or student hears it before evaluation",
    "english": "the distillation language",
}


def _read_stamps(lang_dir: Path) -> dict[str, dict]:
    stamps = {}
    for split in SPLITS:
        with contextlib.suppress(OSError, ValueError):
            stamps[split] = json.loads(stamp_path(lang_dir, split).read_text(encoding="utf-8"))
    return stamps


def _text_source_line(lang: str) -> str:
    data = json.loads(asset_path(lang).read_text(encoding="utf-8"))
    return f"{data['source']} ({data['licence']})"


def _held_out_line(lang: str) -> str:
    check = held_out_voices()
    voices = check["voices"][lang]
    return (
        f"{voices['test']} test and {voices['dev']} dev voices; {check['shared']} variants shared "
        "with training"
    )


def write_cards(root: Path, langs: Iterable[str]) -> None:
    """ROOT/<lang>/README.md for each language written now, and ROOT/SYNTHETIC.md for all."""
    for lang in langs:
        lang_dir = root / lang
        stamps = _read_stamps(lang_dir)
        lines = [
            f"# Synthetic {LANGUAGE_NAMES[lang]} ({lang}) speech",
            "",
            f"Tier: `{tier_of(lang)}` ({TIER_MEANING[tier_of(lang)]}).",
            "",
            "Made by `distilxlsr synth` (distilxlsr.data.synthetic) with eSpeak NG from the PyPI",
            f"package espeakng-loader. {SAMPLE_RATE // 1000} kHz FLAC; lhotse manifests with phone and word alignments",
            f"from the engine's phoneme and word events (pauses are `{SILENCE}`).",
            "",
            "| split | utterances | hours | speakers | phones | seed | eSpeak NG |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for split, stamp in stamps.items():
            s = stamp["stats"]
            lines.append(
                f"| {split} | {s['utterances']} | {s['hours']:.3f} | {s['speakers']} | "
                f"{s['phones']} | {stamp['args']['seed']} | {s.get('engine', s.get('espeak'))} |"
            )
        lines += [
            "",
            f"Voices: {', '.join(VOICES[lang])}.",
            "Variants per split (voice: split <- variants):",
            *(
                f"- {voice}: "
                + "; ".join(
                    f"{split} <- {', '.join(v for v, s in variant_splits(voice).items() if s == split)}"
                    for split in SPLITS
                )
                for voice in VOICES[lang]
            ),
            f"Pitch: {', '.join(map(str, PITCHES))}. Rate: {', '.join(map(str, RATES))} words/min;",
            f"{', '.join(map(str, HELD_OUT_RATES))} only in dev and test.",
            "A speaker is one voice x variant x pitch x rate. Held-out voices (corpus v3): the",
            "dev and test variants are named eSpeak NG variants that no train or pretrain split of",
            f"any language uses ({_held_out_line(lang)}).",
            "",
            f"Text: {_text_source_line(lang)}.",
            "Words are split (CRC-32 mod 10: 0 test, 1 dev; in English only words of at most 3",
            "sentences): no dev or test word occurs in a train or pretrain text.",
            "",
        ]
        write_text(lang_dir / "README.md", "\n".join(lines))
        union: collections.Counter[str] = collections.Counter()
        for split in stamps:
            with contextlib.suppress(OSError, ValueError):
                table = json.loads((lang_dir / f"phones_{split}.json").read_text(encoding="utf-8"))
                union.update(table["phones"])
        write_text(
            lang_dir / "phones.json",
            json.dumps(
                {
                    "language": lang,
                    "splits": list(stamps),
                    "silence": SILENCE,
                    "note": "union of phones_<split>.json: phone -> count",
                    "phones": dict(sorted(union.items(), key=lambda kv: (-kv[1], kv[0]))),
                },
                ensure_ascii=False,
                indent=1,
            )
            + "\n",
        )
    rows = []
    for lang_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name in VOICES):
        for split, stamp in _read_stamps(lang_dir).items():
            s = stamp["stats"]
            rows.append(
                f"| {lang_dir.name} | {LANGUAGE_NAMES[lang_dir.name]} | {tier_of(lang_dir.name)} | "
                f"{split} | {s['utterances']} | "
                f"{s['hours']:.3f} | {s['speakers']} | {s['phones']} |"
            )
    card = [
        "# Synthetic speech corpus (eSpeak NG)",
        "",
        "Written by `distilxlsr synth`; each language's README.md has the details.",
        "",
        "Tiers: "
        + "; ".join(f"`{tier}`: {meaning}" for tier, meaning in TIER_MEANING.items())
        + ".",
        "",
        "| language | name | tier | split | utterances | hours | speakers | phones |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    write_text(root / "SYNTHETIC.md", "\n".join(card))
