"""The speakers of the synthetic corpus: languages, eSpeak NG voices and the speaker grid.

A speaker is a cell of the grid voice x variant (+m1..+m8, +f1..+f5) x pitch x rate. A cell's
(variant, pitch) pair decides its split (a Latin square), so train and test speakers are disjoint
by construction and every variant and pitch occurs in both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from distilxlsr.errors import UserError

SPLITS = ("train", "test")

ENGLISH_VOICES = (
    "en-us",
    "en",  # Great Britain
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",  # Caribbean
    "en-us-nyc",
    "en-gb-x-gbclan",  # Lancaster
    "en-gb-x-gbcwmd",  # West Midlands
)
EVAL_LANGUAGES = (
    "el",
    "eu",
    "ia",
    "nl",
    "pl",
    "es",
    "fr",
    "it",
    "ky",
    "ru",
    "sv",
    "tr",
    "tt",
    "sw",
    "ka",
)
VOICES: dict[str, tuple[str, ...]] = {"en": ENGLISH_VOICES} | {
    lang: (lang,) for lang in EVAL_LANGUAGES
}
LANGUAGE_NAMES = {
    "en": "English",
    "el": "Greek",
    "eu": "Basque",
    "ia": "Interlingua",
    "nl": "Dutch",
    "pl": "Polish",
    "es": "Spanish",
    "fr": "French",
    "it": "Italian",
    "ky": "Kyrgyz",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "tt": "Tatar",
    "sw": "Swahili",
    "ka": "Georgian",
}
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5")
PITCHES = (25, 38, 50, 62, 75)  # espeakPITCH, 0-100 (50 = the voice's own)
RATES = (130, 150, 170, 190, 210)  # words per minute; keep within 80-400 (see module doc)
PITCH_RANGE = 50  # espeakRANGE, fixed


@dataclass(frozen=True)
class Speaker:
    voice: str  # eSpeak voice (language or accent), e.g. "en-gb-scotland"
    variant: str  # eSpeak voice variant, e.g. "m3"
    pitch: int
    rate: int

    @property
    def id(self) -> str:
        return f"{self.voice}+{self.variant}-p{self.pitch}-r{self.rate}"

    @property
    def split(self) -> str:
        return speaker_split(self.variant, self.pitch)


def speaker_split(variant: str, pitch: int) -> str:
    """The split a (variant, pitch) voice belongs to: one pitch in five per variant is `test`."""
    v, p = VARIANTS.index(variant), PITCHES.index(pitch)
    return "test" if (v + p) % len(PITCHES) == 0 else "train"


def speakers(lang: str, split: str) -> list[Speaker]:
    """Every speaker of `lang` in `split`, in a fixed order."""
    return list(speaker_pool(check_language(lang), split))


@functools.cache
def speaker_pool(lang: str, split: str) -> tuple[Speaker, ...]:
    return tuple(
        Speaker(voice, variant, pitch, rate)
        for voice in VOICES[lang]
        for variant in VARIANTS
        for pitch in PITCHES
        for rate in RATES
        if speaker_split(variant, pitch) == split
    )


def available_languages() -> list[str]:
    return list(VOICES)


def check_language(lang: str) -> str:
    if lang not in VOICES:
        raise UserError(
            f"unknown synth language '{lang}'; choose from {', '.join(VOICES)} (e.g. --langs en,sw)."
        )
    return lang
