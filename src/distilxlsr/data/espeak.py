"""libespeak-ng through ctypes: one loader, and in-process phonemization (IPA).

The library and its data come from the PyPI package `espeakng-loader`. `load_library` loads and
initialises it; each user passes its own initialisation flags. The library keeps process-global
state (the voice, its parameters, and for synthesis what it synthesised before), so each process
that loads it uses it for one purpose only:

- `phonemize` / `espeak_voice` (text -> IPA phones, for corpora that come with text only, such
  as Common Voice in `distilxlsr prepare`) load it once per process, with no flags;
- the synthetic corpus (data/synthetic/) loads it with phoneme events in IPA, only in forked
  children that each synthesise one chunk of utterances and exit.
"""

from __future__ import annotations

import ctypes
import re

from distilxlsr.errors import UserError

AUDIO_OUTPUT_SYNCHRONOUS = 2
"""espeak_Initialize's output mode: synthesis returns through the callback, in this thread."""
CHARS_UTF8 = 1
"""Text encoding flag of espeak_Synth and espeak_TextToPhonemes."""


def load_library(options: int = 0) -> tuple[ctypes.CDLL, int]:
    """Load libespeak-ng and initialise it (synchronous output, the package's voice data) with
    `options` (espeakINITIALIZE_* flags); returns the library and the sample rate it reports."""
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UserError(
            "eSpeak NG needs the package espeakng-loader; run `pip install espeakng-loader`."
        ) from exc
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    data = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, options)
    if rate <= 0:
        raise RuntimeError(f"eSpeak NG failed to initialise with data at {data.decode()}")
    return lib, rate


# ---------------------------------------------------------------------------------------------
# Phonemization

_PHONEMES_IPA = 0x02
_SEPARATOR = "_"
_MARKERS = re.compile(r"\([^)]*\)")  # language switches such as "(en)"
_DROP = str.maketrans("", "", "ˈˌ‿-")  # stress marks, links, syllable joins
_phonemizer = None


def _espeak():
    """The library loaded for phonemization in this process (loaded on first use)."""
    global _phonemizer
    if _phonemizer is None:
        lib, _ = load_library()
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        _phonemizer = lib
    return _phonemizer


def espeak_voice(lang: str) -> str | None:
    """The eSpeak NG voice name for a language code such as `sv-SE`, `pt_BR` or `el` (tries the
    code, its lower-case/hyphenated form and its base language); None if there is none."""
    lib = _espeak()
    code = lang.strip().replace("_", "-")
    for candidate in dict.fromkeys([lang, code, code.lower(), code.split("-")[0].lower()]):
        if candidate and lib.espeak_SetVoiceByName(candidate.encode()) == 0:
            return candidate
    return None


def phonemize(text: str, voice: str) -> list[list[str]]:
    """IPA phones of `text`, grouped by word (stress marks dropped; length marks stay on their
    vowel), with eSpeak NG voice `voice` (see `espeak_voice`)."""
    lib = _espeak()
    # The engine's voice is process-global state: set it on every call (cheap).
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ValueError(f"eSpeak NG has no voice '{voice}'")
    buffer = ctypes.create_string_buffer(text.encode("utf-8"))
    pointer = ctypes.c_char_p(ctypes.addressof(buffer))
    mode = _PHONEMES_IPA | (ord(_SEPARATOR) << 8)
    words: list[list[str]] = []
    while pointer.value:
        clause = lib.espeak_TextToPhonemes(ctypes.byref(pointer), CHARS_UTF8, mode)
        if clause is None:
            break
        for word in _MARKERS.sub("", clause.decode("utf-8", errors="replace")).split():
            phones = [p.translate(_DROP) for p in word.split(_SEPARATOR)]
            phones = [p for p in phones if p]
            if phones:
                words.append(phones)
    return words
