"""What the synthetic corpus says: texts per language and split, and each utterance's spec.

English texts are sentences from Jane Austen's *Lady Susan* (public domain); the other languages
get random sequences of words from CLDR data plus numbers written as digits (eSpeak speaks them in
the language). Corpus v2 splits by *word* (docs/design.md, "Synthetic corpus"): a word (a number
counts as one) is a test word if its CRC-32 is 0 modulo 10, a dev word if it is 1, a train word
otherwise; in English only rare words (in at most `ENGLISH_RARE` sentences) are held out, so that
enough sentences stay for training. A text belongs to `test` if it holds a test word, else to
`dev` if it holds a dev word, else to `train` (and `pretrain`): no dev or test word ever occurs in
a training text of its language.
"""

from __future__ import annotations

import collections
import functools
import json
import re
import zlib
from pathlib import Path

import numpy as np

from distilxlsr.data.synthetic.voices import TRAINING_SPLITS, check_language, speaker_pool

WORD_MODULUS = 10  # crc32 % 10: 0 -> test word, 1 -> dev word, else train word
ENGLISH_RARE = 3  # English words in more sentences than this are always train words
TEXT_DIR = Path(__file__).resolve().parents[2] / "assets" / "text"
_TOKEN = re.compile(r"[^\W\d_]+|\d+")


def tokens(text: str) -> list[str]:
    """The words of a text as the split sees them: runs of letters or of digits, case-folded."""
    return _TOKEN.findall(text.casefold())


def text_kind(split: str) -> str:
    """Which texts a split speaks: `pretrain` speaks train texts."""
    return "train" if split in TRAINING_SPLITS else split


@functools.cache
def _english_sentence_counts() -> collections.Counter[str]:
    return collections.Counter(w for s in _text_source("en") for w in set(tokens(s)))


def word_split(lang: str, word: str) -> str:
    """`test`, `dev` or `train`: the split a (case-folded) word's texts belong to."""
    if lang == "en" and _english_sentence_counts()[word] > ENGLISH_RARE:
        return "train"
    bucket = zlib.crc32(word.encode("utf-8")) % WORD_MODULUS
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def text_split(lang: str, text: str) -> str:
    """`test` if the text holds a test word, else `dev` if it holds a dev word, else `train`."""
    found = {word_split(lang, w) for w in tokens(text)}
    return "test" if "test" in found else "dev" if "dev" in found else "train"


def asset_path(lang: str) -> Path:
    return TEXT_DIR / ("en_sentences.json" if lang == "en" else f"words_{lang}.json")


@functools.cache
def _text_source(lang: str) -> tuple[str, ...]:
    data = json.loads(asset_path(lang).read_text(encoding="utf-8"))
    return tuple(data["sentences"] if lang == "en" else data["words"])


@functools.cache
def _english_pool(kind: str) -> tuple[str, ...]:
    return tuple(s for s in _text_source("en") if text_split("en", s) == kind)


@functools.cache
def _word_pool(lang: str, kind: str) -> tuple[str, ...]:
    return tuple(w for w in _text_source(lang) if text_split(lang, w) == kind)


def _number(lang: str, kind: str, rng: np.random.Generator) -> str:
    while True:
        number = str(int(10 ** rng.uniform(0, 4)))  # 1..9999, log-uniform
        if word_split(lang, number) == kind:
            return number


def make_text(lang: str, split: str, rng: np.random.Generator) -> str:
    """One sentence of `lang` for `split`: a real English sentence of the split, or for the other
    languages 4-10 words of the split's words and, in a third of the texts, a number in digits."""
    kind = text_kind(split)
    if lang == "en":
        pool = _english_pool(kind)
        return pool[int(rng.integers(len(pool)))]
    words = _word_pool(lang, kind)
    chosen = [words[int(i)] for i in rng.integers(len(words), size=int(rng.integers(4, 11)))]
    if rng.random() < 1 / 3:
        chosen.insert(int(rng.integers(len(chosen) + 1)), _number(lang, kind, rng))
    return " ".join(chosen) + "."


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
