"""Rebuild the bundled text assets of `distilxlsr synth` (run once by a maintainer, not at run time).

    python3 -m venv /tmp/babelvenv && /tmp/babelvenv/bin/pip install babel
    /tmp/babelvenv/bin/python build_text_assets.py --austen PATH/TO/en.txt --out .

* ``en_sentences.json``: sentences and clauses of Jane Austen's *Lady Susan* (public domain), taken
  from the copy of the Project Gutenberg etext that the BSD-licensed ``music21`` wheel ships as
  ``music21/languageExcerpts/trainingData/en.txt`` (music21 10.5.0). Only the novel's text is
  kept (no Project Gutenberg header, footer or trademark), cut at sentence and clause boundaries
  into pieces of 4 to 22 words.
* ``words_<lang>.json``: words of each evaluation language, taken from the Unicode CLDR locale
  data as shipped by ``babel`` (CLDR data: Unicode License v3; babel: BSD-3-Clause): the names of
  languages, territories, scripts, currencies, units, months, days, date fields, time zones and
  the words of list and unit patterns, split into words, filtered to the language's own letters
  and capped to the most frequent ones.

Words and sentences that make eSpeak NG switch to another language (it reads some names, e.g.
"Hong Kong" in French, with English rules and phones) are dropped, using the library of
``espeakng-loader`` (install it into the same throwaway venv).

This script needs babel and espeakng-loader; the package never imports it.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import unicodedata
from pathlib import Path

LANGS = ["el", "eu", "ia", "nl", "pl", "es", "fr", "it", "ky", "ru", "sv", "tr", "tt", "sw", "ka"]
SCRIPTS = {"el": "GREEK", "ky": "CYRILLIC", "ru": "CYRILLIC", "tt": "CYRILLIC", "ka": "GEORGIAN"}
MAX_WORDS = 1500
SECTIONS = [
    "languages",
    "territories",
    "scripts",
    "variants",
    "currency_names",
    "currency_names_plural",
    "unit_display_names",
    "unit_patterns",
    "compound_unit_patterns",
    "months",
    "days",
    "quarters",
    "eras",
    "day_periods",
    "date_fields",
    "datetime_formats_relative",
    "meta_zones",
    "time_zones",
    "measurement_systems",
    "list_patterns",
]
DANGLING = {
    "and",
    "but",
    "or",
    "nor",
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "for",
    "that",
    "which",
    "with",
    "by",
    "as",
}
SHORT_FORMS = {"short", "narrow", "abbreviated"}
ABBREVIATIONS = ("Mr.", "Mrs.", "Dr.", "St.", "Messrs.")


def _strings(value):
    """Every string inside a (nested) babel locale-data value."""
    if isinstance(value, str):
        yield value
    elif hasattr(value, "items"):
        for key, item in value.items():
            if isinstance(key, str) and key.split("-")[-1] in SHORT_FORMS:
                continue  # abbreviations ("km", "Jan."), not words
            if isinstance(key, str) and not key.isascii():
                yield key
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ")[0]


def words_for(lang: str) -> list[str]:
    from babel import Locale

    locale = Locale.parse(lang)
    script = SCRIPTS.get(lang, "LATIN")
    counts: collections.Counter[str] = collections.Counter()
    first_form: dict[str, str] = {}
    for section in SECTIONS:
        for text in _strings(locale._data[section]):
            text = re.sub(r"\{\d+\}", " ", text)
            for token in re.findall(r"[^\W\d_]+(?:['’-][^\W\d_]+)*", text):
                token = token.replace("’", "'")
                letters_only = token.replace("'", "").replace("-", "")
                if len(token) < 2 or not letters_only.isalpha() or token.isupper():
                    continue
                if any(ch.isupper() for ch in token[1:]):  # mmHg, McDonald
                    continue
                if any(_script(ch) != script for ch in token if ch.isalpha()):
                    continue
                key = token.casefold()
                counts[key] += 1
                first_form.setdefault(key, token)
    # Drop words with letters this locale hardly uses (foreign names such as "Curaçao" in pl).
    letters: collections.Counter[str] = collections.Counter()
    for key in counts:
        letters.update(set(key.replace("'", "").replace("-", "")))
    rare = {ch for ch, n in letters.items() if n < 5}
    # Short words count only when frequent (function words), not as rare unit abbreviations.
    keep = [k for k in counts if not (set(k) & rare) and (len(k) >= 4 or counts[k] >= 3)]
    keep.sort(key=lambda k: (-counts[k], k))
    return sorted(first_form[k] for k in keep[:MAX_WORDS])


def _clean(text: str) -> str:
    text = text.replace("--", ", ").replace("_", "")
    text = re.sub(r"[\"“”‘()\[\]]", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,;:.!?])", r"\1", text)
    text = re.sub(r"([,;:])[,;:]+", r"\1", text)
    return text.strip(" ,;:")


def _pieces(sentence: str, low: int = 4, high: int = 22) -> list[str]:
    """Cut a long sentence at ';', ':' and then ',' into pieces of `low` to `high` words."""
    words = sentence.split()
    if len(words) <= high:
        return [sentence] if len(words) >= low else []
    for mark in (";", ":", ","):
        parts = [p.strip() for p in re.split(rf"(?<={re.escape(mark)})\s", sentence)]
        if len(parts) > 1:
            out, current = [], ""
            for part in parts:
                candidate = f"{current} {part}".strip()
                if current and len(candidate.split()) > high:
                    out.append(current)
                    current = part
                else:
                    current = candidate
            out.append(current)
            if all(len(p.split()) <= high for p in out):
                result = []
                for piece in out:
                    piece = piece.rstrip(",;:") + ("" if piece[-1] in ".!?" else ".")
                    if len(piece.split()) >= low:
                        result.append(piece[0].upper() + piece[1:])
                return result
    return []


def english_sentences(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    body = [
        line
        for line in lines
        if "Project Gutenberg" not in line
        and not re.fullmatch(r"[A-Z0-9 ,.'-]*", line.strip())
        or not line.strip()
    ]
    paragraphs = " \n".join(body).split(" \n \n")
    sentences: list[str] = []
    for paragraph in paragraphs:
        text = _clean(paragraph.replace("\n", " "))
        for abbr in ABBREVIATIONS:
            text = text.replace(abbr + " ", abbr[:-1] + "\u0000 ")
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
            sentence = sentence.replace("\u0000", ".").strip()
            if not sentence or sentence[-1] not in ".!?":
                continue
            for piece in _pieces(sentence):
                last = piece.rstrip(".!?").split()[-1].lower()
                if re.fullmatch(r"[A-Za-z0-9 ,;:.!?'-]+", piece) and last not in DANGLING:
                    sentences.append(piece)
    return list(dict.fromkeys(sentences))


class _Phonemizer:
    """espeak_TextToPhonemes through ctypes, only to see whether eSpeak switches language."""

    def __init__(self):
        import ctypes

        import espeakng_loader

        self.ctypes = ctypes
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        if lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0) <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self.lib = lib

    def switches(self, voice: str, text: str) -> bool:
        ctypes = self.ctypes
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"no eSpeak voice {voice}")
        buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        pointer = ctypes.c_char_p(ctypes.addressof(buffer))
        out = []
        while pointer.value:
            out.append(self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), 1, 0x02) or b"")
        return b"(" in b"".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--austen", type=Path, required=True, help="music21's trainingData/en.txt")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    import babel

    phonemizer = _Phonemizer()
    sentences = english_sentences(args.austen)
    english_voices = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
    sentences = [s for s in sentences if not any(phonemizer.switches(v, s) for v in english_voices)]
    (args.out / "en_sentences.json").write_text(
        json.dumps(
            {
                "source": "Jane Austen, Lady Susan (written c. 1794, published 1871), via the "
                "Project Gutenberg etext shipped in the music21 10.5.0 wheel as "
                "music21/languageExcerpts/trainingData/en.txt",
                "licence": "public domain (the novel); only the novel's text is kept",
                "sentences": sentences,
            },
            ensure_ascii=False,
            indent=0,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"en: {len(sentences)} sentences")
    for lang in LANGS:
        words = [w for w in words_for(lang) if not phonemizer.switches(lang, w)]
        (args.out / f"words_{lang}.json").write_text(
            json.dumps(
                {
                    "source": f"Unicode CLDR locale '{lang}' via babel {babel.__version__} "
                    "(names of languages, territories, currencies, units, months, days, ...)",
                    "licence": "Unicode License v3 (CLDR data)",
                    "words": words,
                },
                ensure_ascii=False,
                indent=0,
            )
            + "\n",
            encoding="utf-8",
        )
        print(f"{lang}: {len(words)} words")


if __name__ == "__main__":
    main()
