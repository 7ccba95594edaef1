"""A synthetic multilingual speech corpus from eSpeak NG, with exact phone and word alignments.

`synthesize_corpus` writes, for each language, the corpus-directory layout of docs/design.md
("Corpus directory"): ROOT/<lang>/cuts_<split>.jsonl.gz with recordings_/supervisions_ beside
it, 16 kHz FLAC under ROOT/<lang>/audio/<split>/, the phone inventory
ROOT/<lang>/phones_<split>.json (and phones.json, the union over the splits present), a cache
stamp ROOT/<lang>/synth_<split>.json, and dataset cards ROOT/<lang>/README.md and
ROOT/SYNTHETIC.md. `alignment["phone"]` tiles the
whole recording (pauses as `sil`); `custom["phones"]` is the same sequence without `sil`.

The corpus is a pure function of (language, split, minutes, seed), whatever the number of jobs.
Rates stay within 80-400 words/min: from 450 on eSpeak switches on a speed-up stage that breaks
the event timing.

Modules, in the order the data flows:

- `voices`: languages and tiers, eSpeak NG voices, the speaker grid and its split by variant;
- `texts`: what each utterance says, split by word (and who says it: `utterance_spec`);
- `engine`: the ctypes binding that synthesises one text with phoneme and word events;
- `ipa` and `segments`: event names -> IPA, events -> phone and word segments;
- `render`: one utterance from text to 16 kHz FLAC and its alignment;
- `workers`: the process pool (a fresh engine process for every chunk of utterances);
- `files`, `cards`, `corpus`: the language directory's files and cache stamp, the dataset cards,
  and `synthesize_corpus`, which writes the manifests;
- `festival`: the same layout from Festival's recorded voices (English, Italian, Russian), the
  second synthesiser results are checked on (`synthesize_festival_corpus`).
"""

from distilxlsr.conventions import SAMPLE_RATE, SILENCE, Segment
from distilxlsr.data.synthetic.corpus import synthesize_corpus, synthesize_evidence_corpus
from distilxlsr.data.synthetic.engine import ESPEAK_RATE, Engine
from distilxlsr.data.synthetic.files import CHUNK, GENERATOR_VERSION, cache_key, is_cached
from distilxlsr.data.synthetic.ipa import KIRSHENBAUM_TO_IPA, LANGUAGE_FIXES, to_ipa
from distilxlsr.data.synthetic.render import render_utterance
from distilxlsr.data.synthetic.segments import (
    is_stop,
    move_stop_closures,
    resample_segments,
    segments_from_events,
    word_spans,
)
from distilxlsr.data.synthetic.texts import (
    TEXT_DIR,
    make_text,
    text_split,
    utterance_spec,
    word_split,
)
from distilxlsr.data.synthetic.voices import (
    ENGLISH_VOICES,
    EVAL_LANGUAGES,
    HELD_OUT_RATES,
    LANGUAGE_NAMES,
    PITCH_RANGE,
    PITCHES,
    RATES,
    SPLITS,
    TIERS,
    VARIANTS,
    VOICES,
    Speaker,
    available_languages,
    check_language,
    held_out_voices,
    speakers,
    tier_of,
    variant_split,
)
from distilxlsr.data.synthetic.workers import serve_worker

__all__ = [
    "CHUNK",
    "ENGLISH_VOICES",
    "ESPEAK_RATE",
    "EVAL_LANGUAGES",
    "HELD_OUT_RATES",
    "GENERATOR_VERSION",
    "KIRSHENBAUM_TO_IPA",
    "LANGUAGE_FIXES",
    "LANGUAGE_NAMES",
    "PITCHES",
    "PITCH_RANGE",
    "RATES",
    "SAMPLE_RATE",
    "SILENCE",
    "SPLITS",
    "TIERS",
    "TEXT_DIR",
    "VARIANTS",
    "VOICES",
    "Engine",
    "Segment",
    "Speaker",
    "available_languages",
    "cache_key",
    "check_language",
    "held_out_voices",
    "is_cached",
    "is_stop",
    "make_text",
    "move_stop_closures",
    "render_utterance",
    "resample_segments",
    "segments_from_events",
    "serve_worker",
    "speakers",
    "synthesize_corpus",
    "synthesize_evidence_corpus",
    "text_split",
    "tier_of",
    "to_ipa",
    "utterance_spec",
    "variant_split",
    "word_split",
    "word_spans",
]
