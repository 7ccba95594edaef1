"""The speakers of the synthetic corpus: languages, tiers, eSpeak NG voices and the speaker grid.

A speaker is a cell of the grid voice x variant (+m1..+m8, +f1..+f5) x pitch x rate. Corpus v2
(docs/design.md, "Synthetic corpus") holds speakers out by whole voice variant: each voice's
variants are dealt to the four splits (`test` 2 male + 1 female, `dev` 1 + 1, `train` 2 + 1,
`pretrain` 3 + 2), rotated per voice, so no variant of a dev or test speaker is ever heard in
`train` or `pretrain` of that language. The speaking rate `HELD_OUT_RATES` occurs only in dev and
test. `pretrain` is the teachers' corpus, kept apart from `train`, on which probes are trained.

Tiers say what a teacher may use: `label` languages' phone labels, `heard` languages' audio
without labels, `unheard` languages never (docs/design.md, "Language tiers").
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from distilxlsr.errors import UserError

SPLITS = ("train", "dev", "test", "pretrain")
TRAINING_SPLITS = (
    "train",
    "pretrain",
)  # the splits whose speakers and words a model may learn from

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
TIERS: dict[str, tuple[str, ...]] = {
    "label": ("es", "fr", "ru", "nl", "tr"),
    "heard": ("it", "pl", "sv", "ky", "el"),
    "unheard": ("eu", "ka", "sw", "tt", "ia"),
}
ENGLISH_TIER = "english"  # the distillation language: heard by teachers and students alike
MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
VARIANTS = MALE_VARIANTS + FEMALE_VARIANTS
# (male, female) variants per split, dealt in this order from each voice's rotated lists.
VARIANT_SHARES = {"test": (2, 1), "dev": (1, 1), "train": (2, 1), "pretrain": (3, 2)}
PITCHES = (25, 38, 50, 62, 75)  # espeakPITCH, 0-100 (50 = the voice's own)
RATES = (130, 150, 170, 190, 210)  # words per minute; keep within 80-400 (see module doc)
HELD_OUT_RATES = (170,)  # only in dev and test
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
        return variant_split(self.voice, self.variant)


def tier_of(lang: str) -> str | None:
    """The language's tier (`label`, `heard`, `unheard`; English is `english`)."""
    if lang == "en":
        return ENGLISH_TIER
    return next((tier for tier, langs in TIERS.items() if lang in langs), None)


@functools.cache
def variant_splits(voice: str) -> dict[str, str]:
    """variant -> split for one voice: male and female variants rotated by the voice's CRC-32,
    then dealt to the splits by `VARIANT_SHARES`."""
    offset = zlib.crc32(voice.encode("utf-8"))
    males = MALE_VARIANTS[offset % 8 :] + MALE_VARIANTS[: offset % 8]
    females = FEMALE_VARIANTS[offset % 5 :] + FEMALE_VARIANTS[: offset % 5]
    dealt: dict[str, str] = {}
    for split, (n_male, n_female) in VARIANT_SHARES.items():
        dealt |= {v: split for v in males[:n_male]} | {v: split for v in females[:n_female]}
        males, females = males[n_male:], females[n_female:]
    return dealt


def variant_split(voice: str, variant: str) -> str:
    """The split whose speakers use this variant of this voice."""
    return variant_splits(voice)[variant]


def split_rates(split: str) -> tuple[int, ...]:
    """Speaking rates of a split: dev and test have every rate, the training splits lack
    `HELD_OUT_RATES`."""
    if split in TRAINING_SPLITS:
        return tuple(r for r in RATES if r not in HELD_OUT_RATES)
    return RATES


def speakers(lang: str, split: str) -> list[Speaker]:
    """Every speaker of `lang` in `split`, in a fixed order."""
    return list(speaker_pool(check_language(lang), split))


@functools.cache
def speaker_pool(lang: str, split: str) -> tuple[Speaker, ...]:
    return tuple(
        Speaker(voice, variant, pitch, rate)
        for voice in VOICES[lang]
        for variant in VARIANTS
        if variant_split(voice, variant) == split
        for pitch in PITCHES
        for rate in split_rates(split)
    )


def available_languages() -> list[str]:
    return list(VOICES)


def check_language(lang: str) -> str:
    if lang not in VOICES:
        raise UserError(
            f"unknown synth language '{lang}'; choose from {', '.join(VOICES)} (e.g. --langs en,sw)."
        )
    return lang
