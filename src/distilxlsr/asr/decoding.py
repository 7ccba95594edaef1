"""Decoding a CTC recogniser's output (docs/design.md, "Downstream ASR"): greedy best path, and
beam search with an n-gram language model through flashlight-text's lexicon-free decoder and its
KenLM binding (no beam search is written here).

Lexicon-free: the decoder proposes tokens, not dictionary words, and the LM scores each token
it emits, so a character LM (`asr.lm.train_char_ngram`) lets it spell words that no training
text holds (corpus v2 and v3 hold test words out of every training text). The score of a path
is its CTC log-probability + `lm_weight` x the LM's natural log-probability + `word_bonus` per
word delimiter emitted. A word LM needs a lexicon decoder and is not wired here; `asr.lm`
writes one for other decoders.

Why flashlight-text: it ships wheels for this Python and numpy 2 with KenLM inside (reading
ARPA files, no `lmplz` or compiler needed), it is the decoder torchaudio and fairseq used, and it
is maintained; pyctcdecode needs a separately built `kenlm` module whose wheels lag, and
sherpa-onnx decodes its own model formats.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from distilxlsr.asr.vocab import Vocabulary
from distilxlsr.errors import UserError

LOG10 = math.log(10.0)


def greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path of each row of `log_probs` (B, T, V) within its length: argmax per frame,
    repeats merged, blanks dropped (the probe's decoding too)."""
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for row, length in zip(best, lengths.tolist(), strict=True):
        ids = row[:length].tolist()
        out.append([t for i, t in enumerate(ids) if t != blank and (i == 0 or t != ids[i - 1])])
    return out


@dataclass(frozen=True)
class BeamSettings:
    """Beam search with a language model; `lm_weight` and `word_bonus` are tuned on dev
    (`tune`)."""

    beam_size: int = 50
    """Hypotheses kept per frame."""
    beam_threshold: float = 25.0
    """Hypotheses scoring this far below the best are dropped."""
    lm_weight: float = 0.5
    """Weight of the LM's natural log-probability against the CTC log-probability."""
    word_bonus: float = 0.0
    """Added per word delimiter emitted (counters the LM's preference for few words)."""


@contextmanager
def _quiet_stderr():
    """KenLM writes a loading bar to the process's stderr (C++): silenced at the descriptor."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _load_kenlm(vocab: Vocabulary, lm: str | Path):
    from flashlight.lib.text.decoder.kenlm import KenLM  # noqa: PLC0415
    from flashlight.lib.text.dictionary import Dictionary  # noqa: PLC0415

    path = Path(lm)
    if not path.is_file():
        raise UserError(f"language model '{lm}' is not a file.")
    try:
        with _quiet_stderr():
            return KenLM(str(path), Dictionary(list(vocab.tokens)))
    except Exception as err:  # KenLM reports a bad file as a RuntimeError
        raise UserError(f"could not read the language model '{lm}' ({err}).") from None


class BeamSearch:
    """CTC beam search over a vocabulary with the ARPA language model at `lm` (None: no LM, the
    beam over the acoustic scores alone)."""

    def __init__(
        self,
        vocab: Vocabulary,
        lm: str | Path | None,
        settings: BeamSettings = BeamSettings(),  # noqa: B008 (frozen)
        _loaded=None,
    ):
        from flashlight.lib.text import decoder as fl  # noqa: PLC0415

        self.vocab, self.lm, self.settings = vocab, lm, settings
        self._language_model = _loaded or (fl.ZeroLM() if lm is None else _load_kenlm(vocab, lm))
        # KenLM scores in log10; lm_weight is per natural log, hence x ln 10.
        options = fl.LexiconFreeDecoderOptions(
            beam_size=settings.beam_size,
            beam_size_token=len(vocab),
            beam_threshold=settings.beam_threshold,
            lm_weight=settings.lm_weight * LOG10 if lm is not None else 0.0,
            sil_score=settings.word_bonus,
            log_add=False,
            criterion_type=fl.CriterionType.CTC,
        )
        delimiter = vocab.delimiter if vocab.delimiter is not None else vocab.blank
        self._decoder = fl.LexiconFreeDecoder(
            options, self._language_model, delimiter, vocab.blank, []
        )

    def retuned(self, settings: BeamSettings) -> BeamSearch:
        """The same vocabulary and (already loaded) LM with other settings."""
        return BeamSearch(self.vocab, self.lm, settings, _loaded=self._language_model)

    def ids(self, log_probs: np.ndarray) -> list[int]:
        """The best path's token ids (repeats merged, blanks dropped) of one utterance's (T, V)
        log-probabilities."""
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        frames, size = emissions.shape
        if size != len(self.vocab):
            raise ValueError(f"{size} outputs per frame but {len(self.vocab)} tokens")
        if frames == 0:
            return []
        best = self._decoder.decode(emissions.ctypes.data, frames, size)[0]
        out, previous = [], None
        for token in best.tokens[1:-1]:  # flashlight pads the path with one token each side
            if token >= 0 and token != previous and token != self.vocab.blank:
                out.append(token)
            previous = token
        return out

    def __call__(self, log_probs: Sequence[np.ndarray]) -> list:
        """Transcripts (text, or phone lists) of several utterances."""
        return [self.vocab.decode(self.ids(lp)) for lp in log_probs]


def greedy_transcripts(vocab: Vocabulary, log_probs: Sequence[np.ndarray]) -> list:
    """Greedy transcripts of utterances given as (T, V) arrays."""
    out = []
    for lp in log_probs:
        ids = lp.argmax(-1).tolist() if len(lp) else []
        collapsed = [
            t for i, t in enumerate(ids) if t != vocab.blank and (i == 0 or t != ids[i - 1])
        ]
        out.append(vocab.decode(collapsed))
    return out


@dataclass
class Tuning:
    """The (lm_weight, word_bonus) grid on dev and the chosen settings."""

    settings: BeamSettings
    metric: str
    grid: list[dict]
    """{"lm_weight", "word_bonus", metric} per point, in the order tried."""


def tune(
    vocab: Vocabulary,
    lm: str | Path,
    log_probs: Sequence[np.ndarray],
    score: Callable[[list], float],
    metric: str = "cer",
    lm_weights: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 1.5),
    word_bonuses: Sequence[float] = (-1.0, 0.0, 1.0, 2.0),
    base: BeamSettings = BeamSettings(),  # noqa: B008 (frozen)
) -> Tuning:
    """LM weight and word bonus chosen on a dev split: the grid point whose transcripts of
    `log_probs` have the lowest `score` (an error rate); ties go to the earlier point."""
    grid, best = [], None
    search = BeamSearch(vocab, lm, base)
    for weight in lm_weights:
        for bonus in word_bonuses:
            settings = replace(base, lm_weight=weight, word_bonus=bonus)
            value = score(search.retuned(settings)(log_probs))
            grid.append({"lm_weight": weight, "word_bonus": bonus, metric: value})
            if best is None or value < best[0]:
                best = (value, settings)
    if best is None:
        raise ValueError("an empty grid")
    return Tuning(best[1], metric, grid)


__all__ = [
    "BeamSearch",
    "BeamSettings",
    "Tuning",
    "greedy",
    "greedy_transcripts",
    "tune",
]
