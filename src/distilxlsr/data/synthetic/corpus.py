"""`synthesize_corpus`: the synthetic corpus of data/synthetic/, one language and split at a time.

Utterances 0, 1, 2, ... of a split are synthesised in chunks by the worker pool until the
requested minutes are reached; the kept utterances become the split's lhotse manifests (phone and
word alignments, phone transcript, speaker) and phone inventory, then the cache stamp, and
finally the dataset cards are rewritten.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from distilxlsr.conventions import SAMPLE_RATE, SILENCE
from distilxlsr.data.synthetic.cards import write_cards
from distilxlsr.data.synthetic.files import (
    CHUNK,
    cache_key,
    clear_split,
    file_digest,
    is_cached,
    split_files,
    stamp_path,
    write_jsonl_gz,
    write_text,
)
from distilxlsr.data.synthetic.texts import utterance_spec
from distilxlsr.data.synthetic.voices import (
    EVAL_LANGUAGES,
    SPLITS,
    VOICES,
    Speaker,
    check_language,
    tier_of,
)
from distilxlsr.data.synthetic.workers import Workers
from distilxlsr.errors import UserError

_TYPICAL_SECONDS = {"en": 5.0}
_EMPTY_CHUNKS = 3  # chunks in a row without an utterance: the engine cannot speak the language  # first guess of an utterance's duration (others: 3.5 s)


def synthesize_split(
    pool,
    lang: str,
    split: str,
    minutes: float,
    seed: int,
    jobs: int,
    lang_dir: Path,
    progress: bool,
    spec_of=utterance_spec,
) -> dict:
    """Synthesise utterances 0, 1, 2, ... (each `spec_of(lang, split, seed, index)`) until
    `minutes` are reached; returns what was kept, the engine, and the ids the engine failed on."""
    from tqdm import tqdm

    audio_dir = clear_split(lang_dir, split)
    target = minutes * 60.0
    kept: list[dict] = []
    total, durations = 0.0, []
    pending: collections.deque = collections.deque()
    next_chunk = 0
    engine = "?"
    failed: list[str] = []
    empty = 0  # chunks in a row that gave no utterance

    def submit() -> None:
        nonlocal next_chunk
        first = next_chunk * CHUNK
        specs = [spec_of(lang, split, seed, i) for i in range(first, first + CHUNK)]
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
            engine = chunk["engine"]
            failed.extend(chunk.get("failed", ()))
            empty = 0 if chunk["utterances"] else empty + 1
            if empty == _EMPTY_CHUNKS:
                raise UserError(
                    f"{engine} produced no utterance of {lang}/{split} in {empty} chunks in a "
                    f"row (e.g. {failed[-1] if failed else '?'}): check its voice for {lang}"
                )
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
    # Failures among the utterances the split reached (those past the target would have been
    # dropped anyway); ids sort by their zero-padded index.
    last = kept[-1]["id"] if kept else ""
    return {"utterances": kept, "engine": engine, "failed": [f for f in failed if f < last]}


def write_split(
    lang: str,
    split: str,
    lang_dir: Path,
    result: dict,
    key: str,
    args: dict,
    phones_note: str = "phone -> count in custom['phones'] (IPA from eSpeak NG, stress removed)",
) -> dict:
    """Write a synthesised split's manifests, phone inventory and cache stamp; returns its stats."""
    from lhotse import RecordingSet, SupervisionSet
    from lhotse.cut import CutSet

    recordings, supervisions = [], []
    inventory: collections.Counter[str] = collections.Counter()
    speaker_ids = set()
    for utt in result["utterances"]:
        speaker: Speaker = utt["speaker"]
        speaker_ids.add(speaker.id)
        recordings.append(_recording(utt))
        phones = [label for label, _, _ in utt["phones"] if label != SILENCE]
        inventory.update(phones)
        supervisions.append(_supervision(utt, lang, phones))
    recording_set = RecordingSet.from_recordings(recordings)
    supervision_set = SupervisionSet.from_segments(supervisions)
    cuts = CutSet.from_manifests(recordings=recording_set, supervisions=supervision_set)
    tier = tier_of(lang)
    cuts = CutSet.from_cuts(cut.with_custom("tier", tier) for cut in cuts)
    rec_path, sup_path, cut_path, phones_path = split_files(lang_dir, split)
    write_jsonl_gz(rec_path, recording_set.to_dicts())
    write_jsonl_gz(sup_path, supervision_set.to_dicts())
    write_jsonl_gz(cut_path, cuts.to_dicts())
    phone_table = _write_phones(phones_path, lang, split, inventory, phones_note)
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
        "tier": tier,
        "engine": result["engine"],
        "skipped_by_engine": len(result.get("failed", ())),
    }
    stamp = {
        "key": key,
        "args": args,
        "stats": stats,
        "files": {str(f.relative_to(lang_dir)): [f.stat().st_size, file_digest(f)] for f in files},
    }
    write_text(stamp_path(lang_dir, split), json.dumps(stamp, indent=1) + "\n")
    return stats


def _recording(utt: dict):
    """The lhotse Recording of one synthesised utterance's audio file."""
    from lhotse import Recording
    from lhotse.audio import AudioSource

    n = utt["num_samples"]
    return Recording(
        id=utt["id"],
        sources=[AudioSource(type="file", channels=[0], source=utt["path"])],
        sampling_rate=SAMPLE_RATE,
        num_samples=n,
        duration=n / SAMPLE_RATE,
    )


def _supervision(utt: dict, lang: str, phones: list[str]):
    """The lhotse SupervisionSegment of one synthesised utterance: text, speaker, phone and word
    alignments, and (custom) its phones without silence and its voice's settings."""
    from lhotse import SupervisionSegment
    from lhotse.supervision import AlignmentItem

    def item(symbol: str, start: int, end: int) -> AlignmentItem:
        return AlignmentItem(
            symbol, round(start / SAMPLE_RATE, 7), round((end - start) / SAMPLE_RATE, 7)
        )

    n = utt["num_samples"]
    speaker: Speaker = utt["speaker"]
    return SupervisionSegment(
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


def _write_phones(
    path: Path, lang: str, split: str, inventory: collections.Counter, note: str
) -> dict:
    """Write the split's phone inventory (most frequent first); returns phone -> count."""
    phone_table = dict(sorted(inventory.items(), key=lambda kv: (-kv[1], kv[0])))
    write_text(
        path,
        json.dumps(
            {
                "language": lang,
                "split": split,
                "silence": SILENCE,
                "note": note,
                "phones": phone_table,
            },
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
    )
    return phone_table


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
        raise UserError(f"synth split '{split}' is not supported; use --split {'|'.join(SPLITS)}.")
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
                    pool = Workers(jobs)
                    # lhotse takes seconds to import: do it while the workers synthesise.
                    threading.Thread(
                        target=importlib.import_module, args=("lhotse",), daemon=True
                    ).start()
                result = synthesize_split(
                    pool, lang, split, minutes, seed, jobs, lang_dir, progress
                )
                args = {"lang": lang, "split": split, "minutes": minutes, "seed": seed}
                write_split(lang, split, lang_dir, result, key, args)
            manifests.append(split_files(lang_dir, split)[2])
    except BaseException:
        if pool is not None:
            pool.close(wait=False)
            pool = None
        raise
    finally:
        if pool is not None:
            pool.close()
    write_cards(out, dict.fromkeys(langs))
    return manifests


EVIDENCE_MINUTES = {"train": 5.0, "dev": 2.5, "test": 5.0}
"""Corpus v3's evaluation splits, minutes per language (the evidence experiments' corpus)."""
EVIDENCE_ENGLISH_MINUTES = 20.0
"""Corpus v3's English `train` split (the probe selection's and part 1's distillation data)."""


def synthesize_evidence_corpus(out: Path, jobs: int = 1) -> None:
    """Corpus v3 as the evidence experiments use it (docs/design.md, "Synthetic corpus (v3)"): `train`, `dev`
    and `test` of the 15 evaluation languages (`EVIDENCE_MINUTES`) and English `train`, seed 0.
    Splits already written with these arguments are reused."""
    for split, minutes in EVIDENCE_MINUTES.items():
        synthesize_corpus(out, list(EVAL_LANGUAGES), minutes, split, seed=0, jobs=jobs)
    synthesize_corpus(out, ["en"], EVIDENCE_ENGLISH_MINUTES, "train", seed=0, jobs=jobs)
