"""The speakers of the synthetic corpus: languages, tiers, eSpeak NG voices and the speaker grid.

A speaker is a cell of the grid voice x variant x pitch x rate. Corpus v3 (docs/design.md,
"Synthetic corpus") holds test and dev voices out of every training split of every language:

- `train` and `pretrain` use only the 13 numbered variants (+m1..+m8, +f1..+f5), dealt per voice
  as in corpus v2 (rotated by the voice's CRC-32; `train` 2 male + 1 female, `pretrain` 3 + 2), so
  these splits say exactly what they said in v2. The 3 + 2 numbered variants v2 used for dev and
  test are retired: every English split of v2 had them, so no model can be said not to have heard
  them.
- `dev` and `test` use named variants (`DEV_VARIANTS`, `TEST_VARIANTS`: disjoint pools that no
  training split of any language uses), per voice 2 + 2 for dev and 5 + 3 for test, rotated by the
  voice's CRC-32 within each pool.

The speaking rate `HELD_OUT_RATES` occurs only in dev and test. `pretrain` is the teachers'
corpus, kept apart from `train`, on which probes are trained. `held_out_voices()` checks and
states the disjointness (`distilxlsr synth` prints it, the cards say it).

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
VARIANTS = MALE_VARIANTS + FEMALE_VARIANTS  # the numbered variants: training splits only
# (male, female) numbered variants per split, dealt in this order from each voice's rotated
# lists (corpus v2's deal); the `test` and `dev` shares are retired (see the module doc).
VARIANT_SHARES = {"test": (2, 1), "dev": (1, 1), "train": (2, 1), "pretrain": (3, 2)}
RETIRED_SHARES = ("test", "dev")
# Named eSpeak NG variants of the held-out splits, (male, female) pools: ordinary voices only
# (no Klatt-synthesiser, robot, whisper, croak or echo-effect variants), one of each family of
# near-copies (Gene/Gene2, iven..iven4, steph..steph3, Andy/AnxiousAndy).
TEST_VARIANTS = (
    ("Alex", "Andy", "Denis", "Gene", "Jacky", "Mario", "Michael", "ed", "gustave", "iven",
     "paul", "travis"),
    ("Alicia", "Annie", "anika", "belinda", "grandma", "steph"),
)  # fmt: skip
DEV_VARIANTS = (
    ("Lee", "marcelo", "pedro", "quincy", "robert", "zac"),
    ("Andrea", "aunty", "shelby"),
)
# (male, female) named variants per voice in each held-out split.
HELD_OUT_SHARES = {"test": (5, 3), "dev": (2, 2)}
HELD_OUT_POOLS = {"test": TEST_VARIANTS, "dev": DEV_VARIANTS}
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


def _rotated(items: tuple[str, ...], offset: int) -> tuple[str, ...]:
    return items[offset % len(items) :] + items[: offset % len(items)]


@functools.cache
def variant_splits(voice: str) -> dict[str, str]:
    """variant -> split for one voice: the numbered variants of the training splits (in
    `VARIANTS` order), then the named ones of test and dev; each list is rotated by the voice's
    CRC-32 before it is dealt."""
    offset = zlib.crc32(voice.encode("utf-8"))
    males, females = _rotated(MALE_VARIANTS, offset), _rotated(FEMALE_VARIANTS, offset)
    numbered: dict[str, str] = {}
    for split, (n_male, n_female) in VARIANT_SHARES.items():
        numbered |= {v: split for v in males[:n_male]} | {v: split for v in females[:n_female]}
        males, females = males[n_male:], females[n_female:]
    dealt: dict[str, str] = {}
    for split, (n_male, n_female) in HELD_OUT_SHARES.items():
        male_pool, female_pool = HELD_OUT_POOLS[split]
        dealt |= {v: split for v in _rotated(male_pool, offset)[:n_male]}
        dealt |= {v: split for v in _rotated(female_pool, offset)[:n_female]}
    kept = {v: numbered[v] for v in VARIANTS if numbered[v] not in RETIRED_SHARES}
    return kept | dealt  # numbered ones in v2's order, so train and pretrain draw as in v2


def variant_split(voice: str, variant: str) -> str | None:
    """The split whose speakers use this variant of this voice (None: no split uses it)."""
    return variant_splits(voice).get(variant)


def held_out_voices() -> dict:
    """Check that no voice variant of a dev or test speaker, in any language, is used by a
    training split of any language (UserError otherwise), and count the held-out voices
    (voice+variant) of each language: {"shared": 0, "voices": {lang: {split: n}}}."""
    trained = {
        variant
        for voices in VOICES.values()
        for voice in voices
        for variant, split in variant_splits(voice).items()
        if split in TRAINING_SPLITS
    }
    counts: dict[str, dict[str, int]] = {}
    shared: set[str] = set()
    for lang, voices in VOICES.items():
        for split in ("dev", "test"):
            held = {
                (voice, v)
                for voice in voices
                for v, s in variant_splits(voice).items()
                if s == split
            }
            shared |= {v for _, v in held} & trained
            counts.setdefault(lang, {})[split] = len(held)
    if shared:
        raise UserError(
            f"voice variants {', '.join(sorted(shared))} are in a held-out split and in a training "
            "split: the corpus would test on voices its models heard."
        )
    return {"shared": 0, "voices": counts}


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
        for variant, variant_split_ in variant_splits(voice).items()
        if variant_split_ == split
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
