"""One utterance from text to FLAC: the engine's audio and events -> segments -> `SAMPLE_RATE`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.data.synthetic.engine import ESPEAK_RATE, Engine
from distilxlsr.data.synthetic.segments import (
    move_stop_closures,
    resample_segments,
    segments_from_events,
    word_spans,
)


def render_utterance(engine: Engine, spec: dict, audio_dir: Path) -> dict:
    """Synthesise one utterance, write its FLAC (at `SAMPLE_RATE`) and return its manifest data."""
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


def render_chunk(specs: list[dict], audio_dir: str) -> dict:
    engine = Engine()
    directory = Path(audio_dir)
    return {
        "engine": engine.version,
        "utterances": [render_utterance(engine, s, directory) for s in specs],
    }
