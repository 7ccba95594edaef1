"""N-gram language models for CTC beam search, estimated here and written as ARPA files.

There is no external trainer (no KenLM `lmplz`): `train_ngram` estimates an **interpolated
modified Kneser-Ney** model (Chen and Goodman's three discounts per order, D1 for n-grams seen
once, D2 twice, D3+ three times or more) from token sequences and `NgramModel.write_arpa`
writes it in the ARPA text format that KenLM loads. The tokens are whatever the sentences hold:
characters (`train_char_ngram`, the word delimiter `|` standing for the space as in wav2vec 2.0's
character vocabularies) or words (`train_word_ngram`); both go through the same estimator.

The estimator, for an order N:

- Each sentence is padded as `<s> t1 .. tk </s>` (one `<s>`; its n-grams are every window of
  the padded sequence, up to N tokens long).
- Adjusted counts a(g): at order N the raw counts; at a lower order the number of distinct
  tokens seen before g (the continuation count), except for an n-gram beginning with `<s>`,
  which nothing precedes and which keeps its raw count.
- Discounts per order from the count-of-counts n1..n4 of that order's adjusted counts:
  Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3. Where they are
  undefined (some n_k is 0) or outside 0 < D_k < k, as on a small corpus, the order falls back
  to (0.5, 1.0, 1.5) and `NgramModel.fallback_orders` says which orders did.
- p(w | h) = max(a(hw) - D(a(hw)), 0) / Σ_v a(hv) + γ(h) p(w | h'), where h' drops h's first
  token and γ(h) = (D1 N1(h) + D2 N2(h) + D3+ N3+(h)) / Σ_v a(hv) with N_k(h) the number of
  tokens v whose a(hv) is k (3 or more for N3+): the mass taken off by discounting, spread by
  the lower order. A context never seen backs off entirely: p(w | h) = p(w | h').
- The unigram level interpolates with the uniform distribution over the predicted vocabulary:
  every token seen, `</s>` and `<unk>` (`<s>` is never predicted and gets probability 0, written
  as log10 -99). `<unk>`, never seen, gets γ(ε) / |V|; tokens outside the vocabulary are
  scored as `<unk>`.

Every context's distribution over the predicted vocabulary sums to 1. In the ARPA file each
n-gram seen carries its interpolated log10 probability and each context its log10 γ as backoff
weight, so KenLM's backoff lookup gives the same probabilities as `NgramModel.logprob`.

Counting is in Python dictionaries: fine for the transcripts of a downstream corpus (millions
of characters), not for web-scale text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
SPECIAL = (BOS, EOS, UNK)
WORD_DELIMITER = "|"
"""The token standing for the space between words in a character sequence (wav2vec 2.0's)."""
CHAR_ORDER = 6
"""Default order of a character model: a context of five characters (most of a short word, or the
end of one word and the start of the next). Higher orders on a downstream corpus's transcripts
(thousands of sentences) are mostly n-grams seen once, which Kneser-Ney backs off from anyway,
and they cost file size and decoding time."""
WORD_ORDER = 3
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
"""Discounts (D1, D2, D3+) of an order whose count-of-counts give no valid estimate."""
LOG10_ZERO = -99.0
"""How ARPA files write log10 of probability 0 (the `<s>` unigram)."""

Ngram = tuple[str, ...]


def char_tokens(text: str, delimiter: str = WORD_DELIMITER) -> list[str]:
    """The characters of `text` with each run of whitespace between words written as
    `delimiter` (no delimiter at the ends): "ab  c" -> a b | c."""
    if delimiter in text:
        raise ValueError(f"text {text!r} holds the word delimiter {delimiter!r}")
    tokens: list[str] = []
    for i, word in enumerate(text.split()):
        if i:
            tokens.append(delimiter)
        tokens.extend(word)
    return tokens


def discounts_from_counts(count_of_counts: Sequence[int]) -> tuple[float, float, float] | None:
    """Modified Kneser-Ney's (D1, D2, D3+) from n1..n4, the numbers of n-grams whose (adjusted)
    count is 1, 2, 3 and 4; None where they are undefined or not within 0 < D_k < k."""
    n1, n2, n3, n4 = count_of_counts
    if min(n1, n2, n3, n4) <= 0:
        return None
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < dk < k for k, dk in enumerate(d, start=1)):
        return None
    return d


@dataclass
class NgramModel:
    """A backoff n-gram model in ARPA form: log10 probabilities of the n-grams seen and log10
    backoff weights of the contexts (module doc)."""

    order: int
    logprobs: dict[Ngram, float]
    """log10 p(w | h) of each n-gram h+(w,) listed, of every order."""
    backoffs: dict[Ngram, float]
    """log10 γ(h) of each listed n-gram h that is a context of a longer listed n-gram."""
    discounts: list[tuple[float, float, float]]
    """(D1, D2, D3+) of each order, unigrams first."""
    fallback_orders: list[int] = field(default_factory=list)
    """Orders (1-based) whose discounts are FALLBACK_DISCOUNTS for want of an estimate."""

    @property
    def vocabulary(self) -> list[str]:
        """Every unigram, `<s>` and `<unk>` included, sorted."""
        return sorted(g[0] for g in self.logprobs if len(g) == 1)

    @property
    def predicted(self) -> list[str]:
        """The tokens a context's distribution is over: the vocabulary less `<s>`."""
        return [w for w in self.vocabulary if w != BOS]

    def _known(self, token: str) -> str:
        return token if (token,) in self.logprobs else UNK

    def logprob(self, context: Sequence[str], token: str) -> float:
        """log10 p(token | context) by backoff, as KenLM reads the ARPA file. `context` is the
        tokens before (its last order - 1 count; start it with `<s>` for a sentence's start);
        tokens outside the vocabulary are `<unk>`."""
        w = self._known(token)
        if w == BOS:
            return LOG10_ZERO
        keep = self.order - 1
        h = tuple(self._known(t) for t in context)[-keep:] if keep else ()
        backoff = 0.0
        for start in range(len(h) + 1):
            suffix = h[start:]
            p = self.logprobs.get(suffix + (w,))
            if p is not None:
                return backoff + p
            backoff += self.backoffs.get(suffix, 0.0)
        raise AssertionError(f"{w!r} has no unigram")  # every known token has one

    def sentence_logprob(self, tokens: Sequence[str]) -> float:
        """log10 probability of a whole sentence, `</s>` included (`<s>` as first context)."""
        context = [BOS]
        total = 0.0
        for t in [*tokens, EOS]:
            total += self.logprob(context, t)
            context.append(t)
        return total

    def write_arpa(self, path: str | Path) -> Path:
        """Write the model as an ARPA file (log10 probabilities, backoff weights)."""
        path = Path(path)
        by_order: list[list[Ngram]] = [[] for _ in range(self.order)]
        for g in self.logprobs:
            by_order[len(g) - 1].append(g)
        lines = ["", "\\data\\"]
        lines += [f"ngram {n}={len(grams)}" for n, grams in enumerate(by_order, start=1)]
        for n, grams in enumerate(by_order, start=1):
            lines += ["", f"\\{n}-grams:"]
            for g in sorted(grams):
                line = f"{self.logprobs[g]:.7f}\t{' '.join(g)}"
                if g in self.backoffs:
                    line += f"\t{self.backoffs[g]:.7f}"
                lines.append(line)
        lines += ["", "\\end\\", ""]
        path.write_text("\n".join(lines), encoding="utf-8")
        return path


def _check_tokens(sentence: Sequence[str]) -> None:
    for t in sentence:
        if not t or any(c.isspace() for c in t):
            raise ValueError(f"token {t!r} is empty or holds whitespace (ARPA separates by it)")
        if t in SPECIAL:
            raise ValueError(f"token {t!r} is reserved for the model ({', '.join(SPECIAL)})")


def train_ngram(
    sentences: Iterable[Sequence[str]],
    order: int,
    discounts: Sequence[tuple[float, float, float]] | None = None,
) -> NgramModel:
    """An interpolated modified Kneser-Ney model of `order` over token sequences (module doc).

    `discounts`, one (D1, D2, D3+) per order (unigrams first), replaces the estimates from the
    count-of-counts. An order beyond the longest padded sentence has no n-grams; the model's
    order is then the highest order that has some.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, not {order}")
    if discounts is not None and len(discounts) != order:
        raise ValueError(f"{len(discounts)} discount triples for order {order}")
    raw: list[Counter[Ngram]] = [Counter() for _ in range(order)]
    for sentence in sentences:
        _check_tokens(sentence)
        padded = (BOS, *sentence, EOS)
        for n in range(1, order + 1):
            counter = raw[n - 1]
            for i in range(len(padded) - n + 1):
                counter[padded[i : i + n]] += 1
    if not raw[0]:
        raise ValueError("no sentences to train on")
    while not raw[-1]:
        raw.pop()
    order = len(raw)

    # Adjusted counts: raw at the top order and for n-grams starting with <s>, otherwise the
    # number of distinct tokens seen before the n-gram.
    adjusted: list[dict[Ngram, int]] = [{} for _ in range(order)]
    adjusted[-1] = dict(raw[-1])
    for n in range(order - 1, 0, -1):
        continuation: Counter[Ngram] = Counter(g[1:] for g in raw[n])
        adjusted[n - 1] = {
            g: (c if g[0] == BOS else continuation[g]) for g, c in raw[n - 1].items()
        }
    del adjusted[0][(BOS,)]  # never predicted

    chosen: list[tuple[float, float, float]] = []
    fallback: list[int] = []
    for n in range(1, order + 1):
        if discounts is not None:
            chosen.append(tuple(float(d) for d in discounts[n - 1]))
            continue
        values = Counter(adjusted[n - 1].values())
        d = discounts_from_counts([values[k] for k in (1, 2, 3, 4)])
        if d is None:
            d = FALLBACK_DISCOUNTS
            fallback.append(n)
        chosen.append(d)

    # Per context h of each order: the total adjusted count and the mass γ(h) left to back off.
    gammas: list[dict[Ngram, float]] = []
    totals: list[dict[Ngram, int]] = []
    for n in range(1, order + 1):
        d1, d2, d3 = chosen[n - 1]
        total: Counter[Ngram] = Counter()
        kept: Counter[Ngram] = Counter()
        for g, a in adjusted[n - 1].items():
            total[g[:-1]] += a
            kept[g[:-1]] += d1 if a == 1 else d2 if a == 2 else d3
        totals.append(dict(total))
        gammas.append({h: kept[h] / total[h] for h in total})

    vocabulary = {g[0] for g in adjusted[0]} | {UNK}
    uniform = 1.0 / len(vocabulary)
    # Interpolated probabilities, order by order (each uses the one below).
    probs: dict[Ngram, float] = {}
    for n in range(1, order + 1):
        d1, d2, d3 = chosen[n - 1]
        for g, a in adjusted[n - 1].items():
            h = g[:-1]
            # The suffix of an n-gram seen was seen too, so the lower order lists it.
            lower = uniform if n == 1 else probs[g[1:]]
            discounted = max(a - (d1 if a == 1 else d2 if a == 2 else d3), 0.0) / totals[n - 1][h]
            probs[g] = discounted + gammas[n - 1][h] * lower
    probs[(UNK,)] = gammas[0][()] * uniform

    logprobs = {g: math.log10(p) for g, p in probs.items()}
    logprobs[(BOS,)] = LOG10_ZERO
    backoffs = {
        h: math.log10(gamma) for n in range(2, order + 1) for h, gamma in gammas[n - 1].items()
    }
    return NgramModel(order, logprobs, backoffs, chosen, fallback)


def train_char_ngram(
    texts: Iterable[str], order: int = CHAR_ORDER, delimiter: str = WORD_DELIMITER
) -> NgramModel:
    """A character model of `texts` (already normalised: `asr.metrics.normalise_text`), the
    space between words as the token `delimiter`."""
    return train_ngram((char_tokens(t, delimiter) for t in texts), order)


def train_word_ngram(texts: Iterable[str], order: int = WORD_ORDER) -> NgramModel:
    """A word model of `texts` (already normalised), words split at whitespace."""
    return train_ngram((t.split() for t in texts), order)
