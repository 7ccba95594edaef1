"""One split of a recipe: its utterances processed and its manifests written, streamed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

from lhotse.serialization import SequentialJsonlWriter

from distilxlsr.data.prepare.common import (
    REASONS,
    Job,
    PrepareOptions,
    Utterance,
)
from distilxlsr.data.prepare.utterance import process_stream
from distilxlsr.errors import UserError


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _describe(counts: Counter) -> str:
    return ", ".join(f"{n} {REASONS.get(reason, reason)}" for reason, n in counts.most_common())


def prepare_split(
    items: Callable[[], Iterable[Utterance]],
    out: Path,
    split: str,
    job: Job,
    options: PrepareOptions,
    source: str,
) -> Path:
    """Process one split's utterances and write its manifests; returns the cuts manifest."""
    total = sum(1 for _ in items())
    if total == 0:
        raise UserError(f"{source} holds no utterances for split '{split}'; check the path.")
    lang_dir = out / job.language
    lang_dir.mkdir(parents=True, exist_ok=True)
    finals = {
        kind: lang_dir / f"{kind}_{split}.jsonl.gz"
        for kind in ("recordings", "supervisions", "cuts")
    }
    partials = {kind: lang_dir / f".{kind}_{split}.partial.jsonl.gz" for kind in finals}
    rejected_path = lang_dir / f"rejected_{split}.jsonl"
    tally = _Tally()
    completed = _stream_split(items, split, job, options, total, partials, rejected_path, tally)
    rejected = sum(tally.rejects.values())
    if not completed:
        raise UserError(
            f"{'at least ' if tally.accepted + rejected < total else ''}{rejected} of {total} "
            f"utterances of {job.language}/{split} from {source} were rejected "
            f"({_describe(tally.rejects)}), more than the allowed "
            f"{options.max_reject_share:.0%}; see {rejected_path}, fix the corpus or raise "
            "max_reject_share."
        )
    for kind, path in partials.items():
        path.replace(finals[kind])
    print(_summary(f"{job.language}/{split}", job.sample_rate, tally, rejected_path))
    return finals["cuts"]


@dataclass
class _Tally:
    """What a split's stream came to: rejects by reason, accepted utterances, their audio."""

    rejects: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    """The accepted utterances' repairs ('clamped', 'converted'), counted."""
    accepted: int = 0
    seconds: float = 0.0


def _unique(stream: Iterable[Utterance]) -> Iterator[Utterance]:
    """The utterances, a repeated id (of one with no problem yet) marked as a problem."""
    seen: set[str] = set()
    for item in stream:
        if item.id in seen and item.problem is None:
            item.problem = (
                "duplicate_id",
                f"utterance id '{item.id}' appears twice ({item.audio})",
            )
        seen.add(item.id)
        yield item


def _stream_split(
    items: Callable[[], Iterable[Utterance]],
    split: str,
    job: Job,
    options: PrepareOptions,
    total: int,
    partials: dict[str, Path],
    rejected_path: Path,
    tally: _Tally,
) -> bool:
    """Process the utterances into the partial manifests and the rejects' list, counted in
    `tally`; False, the partial manifests removed, when the rejects passed the allowed share
    (or, raising, when processing failed)."""
    from tqdm import tqdm

    limit = options.max_reject_share * total
    completed = False
    try:
        with ExitStack() as stack:
            writers = {
                kind: stack.enter_context(SequentialJsonlWriter(path))  # opened (and created) now
                for kind, path in partials.items()
            }
            rejected_file = stack.enter_context(open(rejected_path, "w", encoding="utf-8"))
            results = stack.enter_context(
                closing(process_stream(_unique(items()), job, options.jobs))
            )
            bar = stack.enter_context(
                tqdm(
                    total=total,
                    unit="utt",
                    desc=f"prepare {job.language}/{split}",
                    disable=not options.progress,
                )
            )
            for result in results:
                bar.update(1)
                if result.cut is None:
                    tally.rejects[result.reason] += 1
                    bar.set_postfix(rejected=sum(tally.rejects.values()), refresh=False)
                    record = {
                        "id": result.id,
                        "path": result.path,
                        "reason": result.reason,
                        "detail": result.detail,
                    }
                    rejected_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                    if sum(tally.rejects.values()) > limit:
                        break
                    continue
                cut = result.cut  # a dict that embeds the recording and supervision dicts
                writers["recordings"].write(cut["recording"])
                writers["supervisions"].write(cut["supervisions"][0])
                writers["cuts"].write(cut)
                tally.accepted += 1
                tally.seconds += result.seconds
                tally.notes.update(result.notes)
            else:
                completed = True
    finally:
        if not completed:  # aborted, failed or interrupted: no partial manifests left behind
            for path in partials.values():
                path.unlink(missing_ok=True)
    return completed


def _summary(name: str, sample_rate: int, tally: _Tally, rejected_path: Path) -> str:
    """The split's one-line summary: prepared, rejected (by reason) and repaired utterances."""
    rejected = sum(tally.rejects.values())
    summary = (
        f"{name}: prepared {_plural(tally.accepted, 'utterance')} ({tally.seconds / 3600:.2f} h)"
    )
    summary += f"; rejected {rejected}" + (f": {_describe(tally.rejects)}" if rejected else "")
    repaired = []
    notes = tally.notes
    if notes["clamped"]:
        repaired.append(f"{_plural(notes['clamped'], 'alignment')} cut at the audio end")
    if notes["converted"]:
        repaired.append(
            f"{_plural(notes['converted'], 'file')} converted to {sample_rate} Hz mono FLAC"
        )
    if repaired:
        summary += "; " + ", ".join(repaired)
    if rejected:
        summary += f" (listed in {rejected_path})"
    return summary
