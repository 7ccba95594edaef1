"""Phone error rate; greedy CTC decoding and the edit distance are the recogniser's
(`asr.decoding.greedy`, `asr.metrics.edit_distance`), named here as the evaluation has used
them."""

from __future__ import annotations

from collections.abc import Sequence

from distilxlsr.asr.decoding import greedy as greedy_decode
from distilxlsr.asr.metrics import edit_distance

__all__ = ["edit_distance", "greedy_decode", "phone_error_rate"]


def phone_error_rate(references: list[Sequence[str]], hypotheses: list[Sequence[str]]) -> float:
    """Total edit distance / total reference phones (not a mean of per-utterance rates)."""
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in number")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("no reference phones")
    return sum(edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True)) / total
