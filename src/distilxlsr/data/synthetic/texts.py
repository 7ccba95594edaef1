"""What the synthetic corpus says: texts per language and split, and each utterance's spec.

English texts are sentences from Jane Austen's *Lady Susan* (public domain); the other languages
get random sequences of words from CLDR data plus numbers written as digits (eSpeak speaks them in
the language). A text is a test text iff its CRC-32 is 0 modulo 10, so no test sentence occurs in
train (assets/text/README.md).
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import numpy as np

from distilxlsr.data.synthetic.voices import check_language, speaker_pool

TEST_MODULUS = 10  # a text with crc32 % TEST_MODULUS == 0 is a test text
TEXT_DIR = Path(__file__).resolve().parents[2] / "assets" / "text"


def text_split(text: str) -> str:
    """`test` for about one text in ten, fixed by the text itself (so test texts are not in train)."""
    return "test" if zlib.crc32(text.encode("utf-8")) % TEST_MODULUS == 0 else "train"


def asset_path(lang: str) -> Path:
    return TEXT_DIR / ("en_sentences.json" if lang == "en" else f"words_{lang}.json")


@functools.cache
def _text_source(lang: str) -> tuple[str, ...]:
    data = json.loads(asset_path(lang).read_text(encoding="utf-8"))
    return tuple(data["sentences"] if lang == "en" else data["words"])


@functools.cache
def _english_pool(split: str) -> tuple[str, ...]:
    return tuple(s for s in _text_source("en") if text_split(s) == split)


def make_text(lang: str, split: str, rng: np.random.Generator) -> str:
    """One sentence of `lang` for `split`: a real English sentence, or for the other languages
    4-10 words of the language's word list and, in a third of the texts, a number in digits."""
    if lang == "en":
        pool = _english_pool(split)
        return pool[int(rng.integers(len(pool)))]
    words = _text_source(lang)
    while True:
        chosen = [words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(4, 11)))]
        if rng.random() < 1 / 3:
            number = int(10 ** rng.uniform(0, 4))  # 1..9999, log-uniform
            chosen.insert(int(rng.integers(len(chosen) + 1)), str(number))
        text = " ".join(chosen) + "."
        if text_split(text) == split:
            return text


def utterance_spec(lang: str, split: str, seed: int, index: int) -> dict:
    """What utterance `index` of a corpus says and who says it (a pure function of the arguments)."""
    rng = np.random.default_rng(
        [seed, zlib.crc32(lang.encode()), zlib.crc32(split.encode()), index]
    )
    pool = speaker_pool(check_language(lang), split)
    speaker = pool[int(rng.integers(len(pool)))]
    text = make_text(lang, split, rng)
    return {
        "id": f"synth-{lang}-{split}-{index:06d}",
        "lang": lang,
        "text": text,
        "speaker": speaker,
        "rand_seed": int(rng.integers(1, 2**31 - 1)),
    }
