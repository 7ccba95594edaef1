"""The ctypes binding for synthesis: libespeak-ng speaking one text with phoneme and word events.

The engine runs in synchronous mode with phoneme events that carry IPA names. The library keeps
global state, is not thread-safe, and its output depends on what it synthesised before (repeating
one call in one process gives different samples): build an `Engine` only in a process made for
it (data/synthetic/workers.py forks one per chunk of utterances). The breath/noise generator is
seeded per utterance with `espeak_ng_SetRandSeed` (exported by the bundled 1.52).
"""

from __future__ import annotations

import ctypes

import numpy as np

from distilxlsr.data.espeak import CHARS_UTF8, load_library
from distilxlsr.data.synthetic.voices import PITCH_RANGE, Speaker

ESPEAK_RATE = 22050  # what espeak_Initialize reports for the bundled voices (checked)


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
_INIT_PHONEME_EVENTS, _INIT_PHONEME_IPA = 0x1, 0x2
_RATE, _PITCH, _RANGE = 1, 3, 4
_POS_CHARACTER = 1


class Engine:
    """libespeak-ng in this process. Load it only in a process made for it (see module doc)."""

    def __init__(self):
        lib, rate = load_library(_INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA)
        if rate != ESPEAK_RATE:
            raise RuntimeError(f"espeak_Initialize returned {rate}, expected {ESPEAK_RATE} Hz")
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
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for {text!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events
