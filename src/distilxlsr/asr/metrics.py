"""Error rates of a recogniser (docs/design.md, "Downstream ASR"): CER and WER through `jiwer`
for character targets, PER for phone targets, each with its per-utterance edit records so that
`evaluate`'s statistics (hierarchical intervals, paired comparisons, Holm) apply unchanged.
The package imports nothing from `evaluate` (which builds on it: docs/design.md, "Package layout and import order").

A rate is the corpus's total edits over its total reference length, never a mean of
per-utterance rates. Texts are compared after `normalise_text`, the same normalisation the
character vocabulary is built with: what the recogniser can spell is what it is scored on.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

WORD_DELIMITER = "|"


def normalise_text(text: str) -> str:
    """Scoring's normalisation: Unicode NFC, lower case, punctuation (every Unicode category
    P*, and the word delimiter `|`) removed, whitespace runs made one space, ends trimmed.
    "Don't -- STOP!" -> "dont stop"."""
    text = unicodedata.normalize("NFC", text).lower()
    kept = "".join(
        " " if c.isspace() else c
        for c in text
        if c != WORD_DELIMITER and not unicodedata.category(c).startswith("P")
    )
    return " ".join(kept.split())


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (substitution = insertion = deletion = 1)."""
    from rapidfuzz.distance import Levenshtein  # noqa: PLC0415

    return Levenshtein.distance(list(reference), list(hypothesis))


@dataclass(frozen=True)
class UtteranceErrors:
    """One utterance's edits (substitutions + deletions + insertions) and reference length, in
    the unit of the rate (characters, words or phones)."""

    edits: int
    length: int


def _edits_per_sentence(output) -> list[int]:
    """Edits of each sentence from a jiwer alignment output."""
    counts = []
    for chunks in output.alignments:
        edits = 0
        for chunk in chunks:
            if chunk.type in ("substitute", "delete"):
                edits += chunk.ref_end_idx - chunk.ref_start_idx
            elif chunk.type == "insert":
                edits += chunk.hyp_end_idx - chunk.hyp_start_idx
        counts.append(edits)
    return counts


def _check(references: Sequence, hypotheses: Sequence) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no utterances to score")


def _rate(records: list[UtteranceErrors], unit: str) -> float:
    total = sum(r.length for r in records)
    if total == 0:
        raise ValueError(f"the references hold no {unit}")
    return sum(r.edits for r in records) / total


def character_errors(references: Sequence[str], hypotheses: Sequence[str]) -> list[UtteranceErrors]:
    """Per-utterance character edits of normalised texts (a space is a character, as in CER)."""
    import jiwer  # noqa: PLC0415

    _check(references, hypotheses)
    refs = [normalise_text(r) for r in references]
    hyps = [normalise_text(h) for h in hypotheses]
    # jiwer refuses an empty reference; such an utterance has as many edits as hypothesis chars.
    scored = [i for i, r in enumerate(refs) if r]
    records = [UtteranceErrors(len(h), 0) for h in hyps]
    if scored:
        output = jiwer.process_characters([refs[i] for i in scored], [hyps[i] for i in scored])
        for i, edits in zip(scored, _edits_per_sentence(output), strict=True):
            records[i] = UtteranceErrors(edits, len(refs[i]))
    return records


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> list[UtteranceErrors]:
    """Per-utterance word edits of normalised texts."""
    import jiwer  # noqa: PLC0415

    _check(references, hypotheses)
    refs = [normalise_text(r) for r in references]
    hyps = [normalise_text(h) for h in hypotheses]
    scored = [i for i, r in enumerate(refs) if r]
    records = [UtteranceErrors(len(h.split()), 0) for h in hyps]
    if scored:
        output = jiwer.process_words([refs[i] for i in scored], [hyps[i] for i in scored])
        for i, edits in zip(scored, _edits_per_sentence(output), strict=True):
            records[i] = UtteranceErrors(edits, len(refs[i].split()))
    return records


def phone_errors(
    references: Sequence[Sequence[str]], hypotheses: Sequence[Sequence[str]]
) -> list[UtteranceErrors]:
    """Per-utterance phone edits (Levenshtein over phone symbols, as `evaluate`'s PER)."""
    _check(references, hypotheses)
    return [
        UtteranceErrors(edit_distance(r, h), len(r))
        for r, h in zip(references, hypotheses, strict=True)
    ]


def error_records(references: Sequence, hypotheses: Sequence, targets: str) -> dict:
    """{metric: per-utterance records}: "cer" and "wer" for `chars`, "per" for `phones`."""
    if targets == "chars":
        return {
            "cer": character_errors(references, hypotheses),
            "wer": word_errors(references, hypotheses),
        }
    if targets == "phones":
        return {"per": phone_errors(references, hypotheses)}
    raise ValueError(f"targets must be chars or phones, not {targets!r}")


def error_rates(references: Sequence, hypotheses: Sequence, targets: str) -> dict[str, float]:
    """{"cer", "wer"} for character targets or {"per"} for phones: total edits over total
    reference length."""
    units = {"cer": "characters", "wer": "words", "per": "phones"}
    return {
        metric: _rate(records, units[metric])
        for metric, records in error_records(references, hypotheses, targets).items()
    }
