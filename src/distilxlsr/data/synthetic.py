"""A synthetic multilingual speech corpus from eSpeak NG, with exact phone and word alignments.

`synthesize_corpus` writes, for each language, the corpus-directory layout of DESIGN.md:
ROOT/<lang>/cuts_<split>.jsonl.gz with recordings_/supervisions_ beside it, 16 kHz FLAC under
ROOT/<lang>/audio/<split>/, the phone inventory ROOT/<lang>/phones_<split>.json (and
phones.json, the union over the splits present), a cache stamp ROOT/<lang>/synth_<split>.json,
and dataset cards ROOT/<lang>/README.md and ROOT/SYNTHETIC.md.

Engine. libespeak-ng and its data come from the PyPI package `espeakng-loader`, driven through
ctypes in synchronous mode with phoneme events that carry IPA names. The library keeps global
state, is not thread-safe, and its output depends on what it synthesised before (repeating one
call in one process gives different samples), so the main process never loads it: `jobs`
worker processes started afresh with `python -c` (like multiprocessing's spawn, without
re-importing the caller's __main__) never load it either, and fork one child per chunk of `CHUNK`
utterances; the child loads the library, synthesises the chunk in a fixed call order, writes the
FLAC files and exits. Each chunk therefore starts from the same state, and the corpus is a pure
function of (language, split, minutes, seed) whatever the number of jobs. The breath/noise
generator is seeded per utterance with `espeak_ng_SetRandSeed` (exported by the bundled 1.52).

Alignment. A phoneme event's `sample` field is the exact sample index (22,050 Hz) where the
phone starts (`audio_position` is only whole milliseconds); a phone ends where the next event
starts, the last one at the end of the audio. Events with an empty name are pauses (label
`sil`); zero-length events (about 0.6 %, e.g. post-vocalic /l/) and language-switch markers such
as "(en)" are dropped; stress marks are removed; the few ASCII (Kirshenbaum-style) names some
voices emit are mapped to IPA (`to_ipa`); a modifier-only event (the palatal on-glide "ʲ" of
ru/pl) joins the phone before it. eSpeak writes a stop's closure silence *before* the stop's
event, so the start of a stop or affricate is moved back over the run of exact-zero samples that
ends the previous phone (`move_stop_closures`). `alignment["phone"]` tiles the whole recording
(pauses as `sil`); `custom["phones"]` is the same sequence without `sil`. Word boundaries: eSpeak
emits a word event (with the word's character position in the text) before the phones of each
word; every phone belongs to the last word event before it, events are mapped to the
whitespace-separated token of the text that contains their position (so "42", spoken as two
words, stays one word), and a word spans from its first to its last phone. Rates stay within
80-400 words/min: from 450 on eSpeak switches on a speed-up stage that breaks the event timing.

Speakers are cells of a grid voice x variant (+m1..+m8, +f1..+f5) x pitch x rate; a cell's
(variant, pitch) pair decides its split (a Latin square), so train and test speakers are
disjoint by construction and every variant and pitch occurs in both. Texts: English sentences
from Jane Austen's *Lady Susan* (public domain), other languages random sequences of words from
CLDR data plus numbers written as digits (eSpeak speaks them in the language); a text is a test
text iff its CRC-32 is 0 modulo 10, so no test sentence occurs in train (assets/text/README.md).
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import ctypes
import functools
import gzip
import hashlib
import importlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from distilxlsr.errors import UserError

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050  # what espeak_Initialize reports for the bundled voices (checked)
SILENCE = "sil"
GENERATOR_VERSION = 1  # bump whenever the output for the same arguments changes
CHUNK = 12  # utterances per fresh engine process (part of the output's definition)
SPLITS = ("train", "test")
TEST_MODULUS = 10  # a text with crc32 % TEST_MODULUS == 0 is a test text

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

TEXT_DIR = Path(__file__).resolve().parent.parent / "assets" / "text"

# --------------------------------------------------------------------------- speakers and texts


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
    return list(_speakers(check_language(lang), split))


@functools.cache
def _speakers(lang: str, split: str) -> tuple[Speaker, ...]:
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


def text_split(text: str) -> str:
    """`test` for about one text in ten, fixed by the text itself (so test texts are not in train)."""
    return "test" if zlib.crc32(text.encode("utf-8")) % TEST_MODULUS == 0 else "train"


def _asset_path(lang: str) -> Path:
    return TEXT_DIR / ("en_sentences.json" if lang == "en" else f"words_{lang}.json")


@functools.cache
def _text_source(lang: str) -> tuple[str, ...]:
    data = json.loads(_asset_path(lang).read_text(encoding="utf-8"))
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
    pool = _speakers(check_language(lang), split)
    speaker = pool[int(rng.integers(len(pool)))]
    text = make_text(lang, split, rng)
    return {
        "id": f"synth-{lang}-{split}-{index:06d}",
        "lang": lang,
        "text": text,
        "speaker": speaker,
        "rand_seed": int(rng.integers(1, 2**31 - 1)),
    }


# --------------------------------------------------------------------------- phone names

_STRESS = str.maketrans("", "", "ˈˌ")
# eSpeak's ASCII phoneme mnemonics (Kirshenbaum-based) that a few voices pass through as their
# "IPA" names (e.g. Kyrgyz dZ S N X, t[ d[ l-; Russian u"), longest first.
KIRSHENBAUM_TO_IPA = {
    "tS": "tʃ",
    "dZ": "dʒ",
    "n^": "ɲ",
    "l^": "ʎ",
    "l-": "ɫ",  # eSpeak's 'dark' l
    'u"': "ʉ",
    'i"': "ɨ",
    "S": "ʃ",
    "Z": "ʒ",
    "T": "θ",
    "D": "ð",
    "N": "ŋ",
    "X": "χ",
    "Q": "ɣ",
    "C": "ç",
    "J": "ɟ",
    "G": "ɢ",
    "R": "ʁ",
    "H": "ħ",
    "B": "β",
    "I": "ɪ",
    "U": "ʊ",
    "E": "ɛ",
    "O": "ɔ",
    "V": "ʌ",
    "A": "ɑ",
    "Y": "ø",
    "W": "œ",
    "@": "ə",
    "&": "æ",
    "3": "ɜ",
    "0": "ɒ",
    "*": "ɾ",
    "?": "ʔ",
    ":": "ː",
    "[": "\u032a",  # dental (combining bridge below)
    "-": "",  # eSpeak's mark of a reduced vowel (French "ə-", "y-"); after "l-" above
}
_KIRSHENBAUM_KEYS = sorted(KIRSHENBAUM_TO_IPA, key=len, reverse=True)
# Names in plain lowercase ASCII that are not IPA, per language (Kyrgyz writes ö as "oe").
LANGUAGE_FIXES = {"ky": {"oe": "œ", "oeː": "œː"}}
_NOT_IPA = re.compile(r"[A-Z0-9@&*?:\[\]\"^-]")
_LANGUAGE_SWITCH = re.compile(r"^\([a-z-]+\)$")


def to_ipa(name: str, lang: str = "") -> str:
    """A phone symbol from an eSpeak phoneme-event name: stress marks removed, Kirshenbaum-style
    ASCII names mapped to IPA (IPA names pass unchanged); "" for a pause."""
    name = name.translate(_STRESS).strip()
    if _NOT_IPA.search(name):
        out, i = [], 0
        while i < len(name):
            for key in _KIRSHENBAUM_KEYS:
                if name.startswith(key, i):
                    out.append(KIRSHENBAUM_TO_IPA[key])
                    i += len(key)
                    break
            else:
                out.append(name[i])
                i += 1
        name = "".join(out)
    return LANGUAGE_FIXES.get(lang, {}).get(name, name)


# --------------------------------------------------------------------------- alignment

# Phones that start with a closure: plosives and affricates (with any diacritics after them).
_STOP_START = set("pbtdkgɡqɢcɟʔʈɖ")


def is_stop(label: str) -> bool:
    return bool(label) and label != SILENCE and label[0] in _STOP_START


@dataclass
class Segment:
    label: str
    start: int  # sample index
    end: int
    word: int | None = None  # index of the text token it belongs to


def segments_from_events(
    events: Sequence[tuple], num_samples: int, text: str, lang: str = ""
) -> list[Segment]:
    """Phone segments tiling [0, num_samples) from eSpeak events, in the engine's sample rate.

    `events` are (kind, text_position, sample, name) with kind "word" or "phone"; see the module
    docstring for the rules."""
    token_starts = [m.start() for m in re.finditer(r"\S+", text)]
    word: int | None = None
    marks: list[tuple[int, str, int | None]] = []
    for kind, position, sample, name in events:
        if kind == "word":
            word = max(0, bisect.bisect_right(token_starts, position - 1) - 1)
            continue
        if _LANGUAGE_SWITCH.match(name.strip()):
            continue
        label = to_ipa(name, lang) or SILENCE
        marks.append(
            (min(max(int(sample), 0), num_samples), label, None if label == SILENCE else word)
        )
    segments: list[Segment] = []
    if not marks or marks[0][0] > 0:
        segments.append(Segment(SILENCE, 0, marks[0][0] if marks else num_samples))
    for i, (start, label, w) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else num_samples
        segments.append(Segment(label, start, max(start, end), w))
    return _attach_modifiers(_tidy(segments))


def _is_modifier(label: str) -> bool:
    return all(unicodedata.category(ch) in ("Lm", "Mn") for ch in label)


def _attach_modifiers(segments: list[Segment]) -> list[Segment]:
    """A segment that is only a modifier (eSpeak's palatal on-glide "ʲ" in Russian and Polish)
    belongs to the phone before it: "k" + "ʲ" -> "kʲ" over both spans."""
    out: list[Segment] = []
    for s in segments:
        if out and s.label != SILENCE and out[-1].label != SILENCE and _is_modifier(s.label):
            out[-1].label += s.label
            out[-1].end = s.end
        else:
            out.append(s)
    return out


def _tidy(segments: Iterable[Segment]) -> list[Segment]:
    """Drop empty segments and merge neighbouring silences."""
    out: list[Segment] = []
    for s in segments:
        if s.end <= s.start:
            continue
        if out and s.label == SILENCE and out[-1].label == SILENCE:
            out[-1].end = s.end
        else:
            out.append(Segment(s.label, s.start, s.end, s.word))
    return out


def move_stop_closures(
    segments: list[Segment], audio: np.ndarray, min_keep: int = 220
) -> list[Segment]:
    """Give each stop (or affricate) its closure: eSpeak emits the closure's silence before the
    stop's event, as exact-zero samples at the end of the previous phone. Move the boundary back
    over that run of zeros, leaving the previous phone at least `min_keep` samples (10 ms at
    22.05 kHz). A stop after a pause keeps its start (the closure is part of the pause)."""
    out = [Segment(s.label, s.start, s.end, s.word) for s in segments]
    for prev, cur in zip(out, out[1:], strict=False):
        if not is_stop(cur.label) or prev.label == SILENCE:
            continue
        span = audio[prev.start : cur.start]
        nonzero = np.flatnonzero(span)
        zeros = len(span) if len(nonzero) == 0 else len(span) - 1 - int(nonzero[-1])
        new_start = max(prev.start + min_keep, cur.start - zeros)
        if new_start < cur.start:
            prev.end = cur.start = new_start
    return out


def resample_segments(
    segments: list[Segment], rate_in: int, rate_out: int, n_out: int
) -> list[Segment]:
    """The same segments on another sample grid, still tiling [0, n_out)."""
    out = []
    for s in segments:
        start = min(n_out, round(s.start * rate_out / rate_in))
        end = min(n_out, round(s.end * rate_out / rate_in))
        out.append(Segment(s.label, start, end, s.word))
    if out:
        out[-1].end = n_out
    return _tidy(out)


def word_spans(segments: list[Segment], text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) for each text token that has phones, from its first to its last phone."""
    tokens = text.split()
    spans: dict[int, list[int]] = {}
    for s in segments:
        if s.label == SILENCE or s.word is None:
            continue
        span = spans.setdefault(s.word, [s.start, s.end])
        span[1] = s.end
    out = []
    for index, (start, end) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        token = tokens[index] if index < len(tokens) else ""
        word = re.sub(r"^\W+|\W+$", "", token) or token
        out.append((word, start, end))
    return out


# --------------------------------------------------------------------------- the engine


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h (x86_64 / LP64: 40 bytes, id at offset 32)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)
_EVENT_WORD, _EVENT_PHONEME = 1, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA = 0x1, 0x2
_RATE, _PITCH, _RANGE = 1, 3, 4
_CHARS_UTF8 = 1
_POS_CHARACTER = 1


class Engine:
    """libespeak-ng in this process. Load it only in a process made for it (see module doc)."""

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise UserError(
                "the synthetic corpus needs the package espeakng-loader; run `pip install espeakng-loader`."
            ) from exc
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        self.lib = lib
        data = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA
        )
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak_Initialize returned {rate}, expected {ESPEAK_RATE} Hz")
        # espeak_ng_SetRandSeed exists from 1.52 on; without it the noise is not reproducible.
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed is not None:
            self._seed.argtypes = [ctypes.c_long]
        self.version = (lib.espeak_Info(None) or b"?").decode()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple] = []
        self._callback = _SYNTH_CALLBACK(self._on_synth)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
        if events:
            i = 0
            while events[i].type != 0:
                e = events[i]
                if e.type == _EVENT_PHONEME:
                    name = bytes(e.id.string).decode("utf-8", errors="ignore")
                    self._events.append(("phone", e.text_position, e.sample, name))
                elif e.type == _EVENT_WORD:
                    self._events.append(("word", e.text_position, e.sample, ""))
                i += 1
        return 0

    def synthesize(self, text: str, speaker: Speaker, rand_seed: int) -> tuple[np.ndarray, list]:
        """int16 audio at 22,050 Hz and its events; the calls are made in one fixed order."""
        lib = self.lib
        name = f"{speaker.voice}+{speaker.variant}"
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise RuntimeError(f"eSpeak has no voice '{name}'")
        identifier = (lib.espeak_GetCurrentVoice().contents.identifier or b"").decode()
        if not identifier.endswith(f"+{speaker.variant}"):
            raise RuntimeError(f"eSpeak did not load the variant of '{name}' ({identifier})")
        lib.espeak_SetParameter(_RATE, speaker.rate, 0)
        lib.espeak_SetParameter(_PITCH, speaker.pitch, 0)
        lib.espeak_SetParameter(_RANGE, PITCH_RANGE, 0)
        if self._seed is not None:
            self._seed(rand_seed)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events


def render_utterance(engine: Engine, spec: dict, audio_dir: Path) -> dict:
    """Synthesise one utterance, write its 16 kHz FLAC and return its manifest data."""
    audio, events = engine.synthesize(spec["text"], spec["speaker"], spec["rand_seed"])
    segments = segments_from_events(events, len(audio), spec["text"], spec["lang"])
    segments = move_stop_closures(segments, audio)
    wave = soxr.resample(audio.astype(np.float32) / 32768.0, ESPEAK_RATE, SAMPLE_RATE)
    wave = np.clip(wave, -1.0, 32767 / 32768)
    segments = resample_segments(segments, ESPEAK_RATE, SAMPLE_RATE, len(wave))
    path = audio_dir / f"{spec['id']}.flac"
    sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    return {
        "id": spec["id"],
        "path": str(path),
        "num_samples": len(wave),
        "text": spec["text"],
        "speaker": spec["speaker"],
        "phones": [(s.label, s.start, s.end) for s in segments],
        "words": word_spans(segments, spec["text"]),
    }


def _render_chunk(specs: list[dict], audio_dir: str) -> dict:
    engine = Engine()
    directory = Path(audio_dir)
    return {
        "espeak": engine.version,
        "utterances": [render_utterance(engine, s, directory) for s in specs],
    }


def _synthesize_chunk(task: tuple[list[dict], str]) -> dict:
    """Synthesise one chunk in a forked child, so that every chunk starts from a fresh library
    state (this process must never have loaded the library)."""
    specs, audio_dir = task
    if not hasattr(os, "fork"):  # pragma: no cover - the worker then serves one chunk and exits
        return _render_chunk(specs, audio_dir)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = ("ok", _render_chunk(specs, audio_dir))
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                payload = ("error", f"{type(exc).__name__}: {exc}")
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(pickle.dumps(payload))
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"the eSpeak child process died (wait status {status})")
    kind, payload = pickle.loads(data)
    if kind != "ok":
        raise RuntimeError(f"eSpeak synthesis failed: {payload}")
    return payload


def _read_frame(stream) -> object:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    size = int.from_bytes(header, "little")
    return pickle.loads(stream.read(size))


def _write_frame(stream, obj: object) -> None:
    data = pickle.dumps(obj)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def serve_worker() -> None:
    """Entry point of a worker process: chunks in on stdin, results out on stdout."""
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to stderr, not into the protocol
    protocol_in = sys.stdin.buffer
    while True:
        try:
            task = _read_frame(protocol_in)
        except EOFError:
            return
        if task is None:
            return
        try:
            reply = ("ok", _synthesize_chunk(task))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _write_frame(protocol_out, reply)


def _kill(process: subprocess.Popen) -> None:
    """Kill a worker and the chunk process it may have forked."""
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal.SIGKILL)
        else:  # pragma: no cover
            process.kill()


class _Workers:
    """`jobs` worker processes started with `python -c` (like multiprocessing's spawn, without
    re-importing the caller's __main__, so callers need no `if __name__ == "__main__"` guard);
    `submit` returns a future. The workers never load libespeak-ng themselves."""

    def __init__(self, jobs: int):
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._all: list[subprocess.Popen] = []
        for _ in range(jobs):
            self._idle.put(None)  # started on first use
        self._threads = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="synth")

    def _start(self) -> subprocess.Popen:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from distilxlsr.data.synthetic import serve_worker; serve_worker()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=hasattr(os, "killpg"),  # its own group: killed with its children
        )
        self._all.append(process)
        return process

    def _run(self, task) -> dict:
        process = self._idle.get()
        try:
            if process is None or process.poll() is not None:
                process = self._start()
            _write_frame(process.stdin, task)
            try:
                kind, payload = _read_frame(process.stdout)
            except EOFError:
                _kill(process)
                raise RuntimeError("a synth worker process died") from None
            if not hasattr(os, "fork"):  # pragma: no cover - one chunk per process there
                _write_frame(process.stdin, None)
                process = None
        finally:
            self._idle.put(process)
        if kind != "ok":
            raise RuntimeError(payload)
        return payload

    def submit(self, task):
        return self._threads.submit(self._run, task)

    def close(self, wait: bool = True) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=not wait)
        for process in self._all:
            if process.poll() is None:
                if wait:
                    with contextlib.suppress(OSError):
                        _write_frame(process.stdin, None)
                        process.stdin.close()
                    try:
                        process.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        _kill(process)
                else:
                    _kill(process)
            with contextlib.suppress(OSError):
                process.wait()


# --------------------------------------------------------------------------- writing the corpus


def _write_jsonl_gz(path: Path, items: Iterable[dict]) -> None:
    """JSON lines, gzip-compressed without a timestamp (same arguments, same bytes)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        for item in items:
            f.write((json.dumps(item, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, path)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _split_files(lang_dir: Path, split: str) -> list[Path]:
    names = [f"{kind}_{split}.jsonl.gz" for kind in ("recordings", "supervisions", "cuts")]
    return [lang_dir / n for n in names] + [lang_dir / f"phones_{split}.json"]


def cache_key(lang: str, split: str, minutes: float, seed: int, lang_dir: Path) -> str:
    try:
        from importlib.metadata import version

        loader_version = version("espeakng-loader")
    except Exception:  # noqa: BLE001 - unknown version: the key just changes
        loader_version = "unknown"
    args = {
        "generator": GENERATOR_VERSION,
        "chunk": CHUNK,
        "lang": lang,
        "split": split,
        "minutes": float(minutes),
        "seed": int(seed),
        "espeakng_loader": loader_version,
        "text": hashlib.sha256(_asset_path(lang).read_bytes()).hexdigest(),
        "dir": str(lang_dir.resolve()),
    }
    return hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()


def _stamp_path(lang_dir: Path, split: str) -> Path:
    return lang_dir / f"synth_{split}.json"


def is_cached(lang_dir: Path, split: str, key: str) -> bool:
    """Whether ROOT/<lang> holds a complete, unmodified output for this key."""
    try:
        stamp = json.loads(_stamp_path(lang_dir, split).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if stamp.get("key") != key or not stamp.get("files"):
        return False
    for rel, (size, digest) in stamp["files"].items():
        path = lang_dir / rel
        try:
            if path.stat().st_size != size:
                return False
        except OSError:
            return False
        if _file_digest(path) != digest:
            return False
    return True


def _clear_split(lang_dir: Path, split: str) -> Path:
    _stamp_path(lang_dir, split).unlink(missing_ok=True)
    for path in _split_files(lang_dir, split):
        path.unlink(missing_ok=True)
    audio_dir = lang_dir / "audio" / split
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    return audio_dir


_TYPICAL_SECONDS = {"en": 5.0}  # first guess of an utterance's duration (others: 3.5 s)


def _synthesize_split(
    pool,
    lang: str,
    split: str,
    minutes: float,
    seed: int,
    jobs: int,
    lang_dir: Path,
    progress: bool,
) -> dict:
    """Synthesise utterances 0, 1, 2, ... until `minutes` are reached; returns what was kept."""
    from tqdm import tqdm

    audio_dir = _clear_split(lang_dir, split)
    target = minutes * 60.0
    kept: list[dict] = []
    total, durations = 0.0, []
    pending: collections.deque = collections.deque()
    next_chunk = 0
    espeak_version = "?"

    def submit() -> None:
        nonlocal next_chunk
        first = next_chunk * CHUNK
        specs = [utterance_spec(lang, split, seed, i) for i in range(first, first + CHUNK)]
        pending.append((len(specs), pool.submit((specs, str(audio_dir)))))
        next_chunk += 1

    bar = tqdm(
        total=int(np.ceil(target)),
        unit="s",
        desc=f"synth {lang}/{split}",
        disable=not progress,
        leave=True,
    )
    try:
        while total < target:
            estimate = float(np.mean(durations)) if durations else _TYPICAL_SECONDS.get(lang, 3.5)
            in_flight = sum(n for n, _ in pending)
            while len(pending) < 2 * jobs and (
                not pending or total + in_flight * estimate < target
            ):
                submit()
                in_flight += CHUNK
            _, result = pending.popleft()
            chunk = result.result()
            espeak_version = chunk["espeak"]
            for utt in chunk["utterances"]:
                seconds = utt["num_samples"] / SAMPLE_RATE
                if total < target:
                    kept.append(utt)
                    total += seconds
                    bar.update(min(int(total), bar.total) - bar.n)
                    durations.append(seconds)
                else:
                    Path(utt["path"]).unlink(missing_ok=True)
    finally:
        for _, result in pending:  # chunks past the target: wait for them, drop their audio
            with contextlib.suppress(Exception):
                for utt in result.result()["utterances"]:
                    Path(utt["path"]).unlink(missing_ok=True)
        bar.close()
    return {"utterances": kept, "espeak": espeak_version}


def _write_split(lang: str, split: str, lang_dir: Path, result: dict, key: str, args: dict) -> dict:
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.audio import AudioSource
    from lhotse.cut import CutSet
    from lhotse.supervision import AlignmentItem

    def item(symbol: str, start: int, end: int) -> AlignmentItem:
        return AlignmentItem(
            symbol, round(start / SAMPLE_RATE, 7), round((end - start) / SAMPLE_RATE, 7)
        )

    recordings, supervisions = [], []
    inventory: collections.Counter[str] = collections.Counter()
    speaker_ids = set()
    for utt in result["utterances"]:
        n = utt["num_samples"]
        speaker: Speaker = utt["speaker"]
        speaker_ids.add(speaker.id)
        recordings.append(
            Recording(
                id=utt["id"],
                sources=[AudioSource(type="file", channels=[0], source=utt["path"])],
                sampling_rate=SAMPLE_RATE,
                num_samples=n,
                duration=n / SAMPLE_RATE,
            )
        )
        phones = [label for label, _, _ in utt["phones"] if label != SILENCE]
        inventory.update(phones)
        supervisions.append(
            SupervisionSegment(
                id=utt["id"],
                recording_id=utt["id"],
                start=0.0,
                duration=n / SAMPLE_RATE,
                channel=0,
                text=utt["text"],
                language=lang,
                speaker=speaker.id,
                alignment={
                    "phone": [item(*p) for p in utt["phones"]],
                    "word": [item(*w) for w in utt["words"]],
                },
                custom={
                    "phones": phones,
                    "synth": {
                        "voice": speaker.voice,
                        "variant": speaker.variant,
                        "pitch": speaker.pitch,
                        "rate": speaker.rate,
                    },
                },
            )
        )
    recording_set = RecordingSet.from_recordings(recordings)
    supervision_set = SupervisionSet.from_segments(supervisions)
    cuts = CutSet.from_manifests(recordings=recording_set, supervisions=supervision_set)
    rec_path, sup_path, cut_path, phones_path = _split_files(lang_dir, split)
    _write_jsonl_gz(rec_path, recording_set.to_dicts())
    _write_jsonl_gz(sup_path, supervision_set.to_dicts())
    _write_jsonl_gz(cut_path, cuts.to_dicts())
    phone_table = dict(sorted(inventory.items(), key=lambda kv: (-kv[1], kv[0])))
    _write_text(
        phones_path,
        json.dumps(
            {
                "language": lang,
                "split": split,
                "silence": SILENCE,
                "note": "phone -> count in custom['phones'] (IPA from eSpeak NG, stress removed)",
                "phones": phone_table,
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
    )
    files = [Path(u["path"]) for u in result["utterances"]] + [
        rec_path,
        sup_path,
        cut_path,
        phones_path,
    ]
    seconds = sum(u["num_samples"] for u in result["utterances"]) / SAMPLE_RATE
    stats = {
        "utterances": len(result["utterances"]),
        "hours": seconds / 3600,
        "speakers": len(speaker_ids),
        "phones": len(phone_table),
        "espeak": result["espeak"],
    }
    stamp = {
        "key": key,
        "args": args,
        "stats": stats,
        "files": {str(f.relative_to(lang_dir)): [f.stat().st_size, _file_digest(f)] for f in files},
    }
    _write_text(_stamp_path(lang_dir, split), json.dumps(stamp, indent=1) + "\n")
    return stats


def _read_stamps(lang_dir: Path) -> dict[str, dict]:
    stamps = {}
    for split in SPLITS:
        with contextlib.suppress(OSError, ValueError):
            stamps[split] = json.loads(_stamp_path(lang_dir, split).read_text(encoding="utf-8"))
    return stamps


def _text_source_line(lang: str) -> str:
    data = json.loads(_asset_path(lang).read_text(encoding="utf-8"))
    return f"{data['source']} ({data['licence']})"


def _write_cards(root: Path, langs: Iterable[str]) -> None:
    """ROOT/<lang>/README.md for each language written now, and ROOT/SYNTHETIC.md for all."""
    for lang in langs:
        lang_dir = root / lang
        stamps = _read_stamps(lang_dir)
        lines = [
            f"# Synthetic {LANGUAGE_NAMES[lang]} ({lang}) speech",
            "",
            "Made by `distilxlsr synth` (distilxlsr.data.synthetic) with eSpeak NG from the PyPI",
            "package espeakng-loader. 16 kHz FLAC; lhotse manifests with phone and word alignments",
            f"from the engine's phoneme and word events (pauses are `{SILENCE}`).",
            "",
            "| split | utterances | hours | speakers | phones | seed | eSpeak NG |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for split, stamp in stamps.items():
            s = stamp["stats"]
            lines.append(
                f"| {split} | {s['utterances']} | {s['hours']:.3f} | {s['speakers']} | "
                f"{s['phones']} | {stamp['args']['seed']} | {s['espeak']} |"
            )
        lines += [
            "",
            f"Voices: {', '.join(VOICES[lang])}.",
            f"Variants: {', '.join(VARIANTS)}. Pitch: {', '.join(map(str, PITCHES))}.",
            f"Rate: {', '.join(map(str, RATES))} words/min.",
            "A speaker is one voice x variant x pitch x rate; the (variant, pitch) pair decides",
            "the split, so test speakers never occur in train.",
            "",
            f"Text: {_text_source_line(lang)}.",
            "Test texts (CRC-32 = 0 mod 10) never occur in train.",
            "",
        ]
        _write_text(lang_dir / "README.md", "\n".join(lines))
        union: collections.Counter[str] = collections.Counter()
        for split in stamps:
            with contextlib.suppress(OSError, ValueError):
                table = json.loads((lang_dir / f"phones_{split}.json").read_text(encoding="utf-8"))
                union.update(table["phones"])
        _write_text(
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
                f"| {lang_dir.name} | {LANGUAGE_NAMES[lang_dir.name]} | {split} | {s['utterances']} | "
                f"{s['hours']:.3f} | {s['speakers']} | {s['phones']} |"
            )
    card = [
        "# Synthetic speech corpus (eSpeak NG)",
        "",
        "Written by `distilxlsr synth`; each language's README.md has the details.",
        "",
        "| language | name | split | utterances | hours | speakers | phones |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    _write_text(root / "SYNTHETIC.md", "\n".join(card))


def synthesize_corpus(
    out: Path,
    langs: list[str],
    minutes: float,
    split: str,
    seed: int = 0,
    jobs: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Write `minutes` of synthetic speech per language into OUT/<lang>/ (see the module doc) and
    return the cut manifests, one per language. An output already written with the same
    arguments is reused; a partial or modified one is written again."""
    out = Path(out)
    if isinstance(langs, str):
        langs = langs.split(",")
    langs = [check_language(lang.strip()) for lang in langs if lang.strip()]
    if not langs:
        raise UserError(f"no synth language given; pass --langs with some of {', '.join(VOICES)}.")
    if split not in SPLITS:
        raise UserError(
            f"synth split '{split}' is not supported; use --split train or --split test."
        )
    if not minutes > 0:
        raise UserError(f"--minutes must be positive, got {minutes}; e.g. --minutes 5.")
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}.")
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {seed}.")
    jobs = min(jobs, os.cpu_count() or 1)
    if out.exists() and not out.is_dir():
        raise UserError(f"synth output '{out}' is a file; pass a directory with --out.")
    out.mkdir(parents=True, exist_ok=True)
    manifests: list[Path] = []
    pool = None
    try:
        for lang in dict.fromkeys(langs):
            lang_dir = out / lang
            lang_dir.mkdir(exist_ok=True)
            key = cache_key(lang, split, minutes, seed, lang_dir)
            if not is_cached(lang_dir, split, key):
                if pool is None:
                    pool = _Workers(jobs)
                    # lhotse takes seconds to import: do it while the workers synthesise.
                    threading.Thread(
                        target=importlib.import_module, args=("lhotse",), daemon=True
                    ).start()
                result = _synthesize_split(
                    pool, lang, split, minutes, seed, jobs, lang_dir, progress
                )
                args = {"lang": lang, "split": split, "minutes": minutes, "seed": seed}
                _write_split(lang, split, lang_dir, result, key, args)
            manifests.append(_split_files(lang_dir, split)[2])
    except BaseException:
        if pool is not None:
            pool.close(wait=False)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.close()
    _write_cards(out, dict.fromkeys(langs))
    return manifests
