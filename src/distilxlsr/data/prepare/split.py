"""One split of a recipe: its utterances processed and its manifests written, streamed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
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
    limit = options.max_reject_share * total
    rejects: Counter = Counter()
    notes: Counter = Counter()
    accepted, seconds = 0, 0.0
    seen: set[str] = set()

    from tqdm import tqdm

    def unique(stream: Iterable[Utterance]) -> Iterator[Utterance]:
        for item in stream:
            if item.id in seen and item.problem is None:
                item.problem = (
                    "duplicate_id",
                    f"utterance id '{item.id}' appears twice ({item.audio})",
                )
            seen.add(item.id)
            yield item

    completed = False
    try:
        with ExitStack() as stack:
            writers = {
                kind: stack.enter_context(SequentialJsonlWriter(path))  # opened (and created) now
                for kind, path in partials.items()
            }
            rejected_file = stack.enter_context(open(rejected_path, "w", encoding="utf-8"))
            results = stack.enter_context(
                closing(process_stream(unique(items()), job, options.jobs))
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
                    rejects[result.reason] += 1
                    bar.set_postfix(rejected=sum(rejects.values()), refresh=False)
                    record = {
                        "id": result.id,
                        "path": result.path,
                        "reason": result.reason,
                        "detail": result.detail,
                    }
                    rejected_file.write(json.dumps(record, ensure_ascii=False) + "\n")
                    if sum(rejects.values()) > limit:
                        break
                    continue
                cut = result.cut  # a dict that embeds the recording and supervision dicts
                writers["recordings"].write(cut["recording"])
                writers["supervisions"].write(cut["supervisions"][0])
                writers["cuts"].write(cut)
                accepted += 1
                seconds += result.seconds
                notes.update(result.notes)
            else:
                completed = True
    finally:
        if not completed:  # aborted, failed or interrupted: no partial manifests left behind
            for path in partials.values():
                path.unlink(missing_ok=True)
    rejected = sum(rejects.values())
    if not completed:
        raise UserError(
            f"{'at least ' if accepted + rejected < total else ''}{rejected} of {total} utterances "
            f"of {job.language}/{split} from {source} were rejected ({_describe(rejects)}), more "
            f"than the allowed {options.max_reject_share:.0%}; see {rejected_path}, fix the corpus "
            "or raise max_reject_share."
        )
    for kind, path in partials.items():
        path.replace(finals[kind])
    summary = f"{job.language}/{split}: prepared {_plural(accepted, 'utterance')} ({seconds / 3600:.2f} h)"
    summary += f"; rejected {rejected}" + (f": {_describe(rejects)}" if rejected else "")
    repaired = []
    if notes["clamped"]:
        repaired.append(f"{_plural(notes['clamped'], 'alignment')} cut at the audio end")
    if notes["converted"]:
        repaired.append(
            f"{_plural(notes['converted'], 'file')} converted to {job.sample_rate} Hz mono FLAC"
        )
    if repaired:
        summary += "; " + ", ".join(repaired)
    if rejected:
        summary += f" (listed in {rejected_path})"
    print(summary)
    return finals["cuts"]
