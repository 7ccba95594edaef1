"""Phone error rate and greedy CTC decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rapidfuzz.distance import Levenshtein


def greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks. `log_probs`: (B, T, V)."""
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for row, length in zip(best, lengths.tolist(), strict=True):
        ids = row[:length].tolist()
        out.append([t for i, t in enumerate(ids) if t != blank and (i == 0 or t != ids[i - 1])])
    return out


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (substitution = insertion = deletion = 1)."""
    return Levenshtein.distance(list(reference), list(hypothesis))


def phone_error_rate(references: list[Sequence[str]], hypotheses: list[Sequence[str]]) -> float:
    """Total edit distance / total reference phones (not a mean of per-utterance rates)."""
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in number")
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("no reference phones")
    return sum(edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True)) / total
