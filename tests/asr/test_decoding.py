"""Decoding: greedy best path, and beam search whose language model changes a decision that a
hand-built example predicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distilxlsr.asr.decoding import BeamSearch, BeamSettings, greedy_transcripts, tune
from distilxlsr.asr.lm import train_char_ngram
from distilxlsr.asr.metrics import error_rates
from distilxlsr.asr.vocab import Vocabulary
from distilxlsr.errors import UserError

VOCAB = Vocabulary(("<pad>", "<unk>", "|", "a", "b", "c"), "chars")


def frames(rows: list[dict[str, float]]) -> np.ndarray:
    """(T, V) log-probabilities: each frame's listed tokens get their probability, the rest
    share what is left."""
    lp = np.empty((len(rows), len(VOCAB)), dtype=np.float32)
    for t, probs in enumerate(rows):
        rest = (1.0 - sum(probs.values())) / (len(VOCAB) - len(probs))
        for i, token in enumerate(VOCAB.tokens):
            lp[t, i] = math.log(probs.get(token, rest))
    return lp


# The acoustics slightly prefer "ac" (c 0.55 against b 0.40 in the third frame).
AMBIGUOUS = frames(
    [{"a": 0.95}, {"<pad>": 0.95}, {"c": 0.55, "b": 0.40}, {"<pad>": 0.95}, {"<pad>": 0.95}]
)


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    # A language that only ever says "ab": after "a", "c" is unseen and "b" near certain.
    model = train_char_ngram(["ab"] * 20 + ["ab ab"] * 10, order=3)
    return model.write_arpa(tmp_path_factory.mktemp("lm") / "chars.arpa")


def test_greedy_takes_each_frames_best_token():
    assert greedy_transcripts(VOCAB, [AMBIGUOUS]) == ["ac"]
    repeated = frames([{"a": 0.9}, {"a": 0.9}, {"<pad>": 0.9}, {"a": 0.9}, {"|": 0.9}, {"b": 0.9}])
    assert greedy_transcripts(VOCAB, [repeated]) == [
        "aa b"
    ]  # repeats merge unless a blank parts them


def test_the_language_model_changes_the_decision_the_example_predicts(lm_path):
    # Acoustic margin: ln(0.55/0.40) = 0.32 nats for "c". The LM's cost of "c" after "a" is
    # several nats (only its <unk>-level backoff mass), so at weight 1 "ab" wins; at weight 0,
    # or without an LM, the beam agrees with the greedy path.
    assert BeamSearch(VOCAB, None)([AMBIGUOUS]) == ["ac"]
    assert BeamSearch(VOCAB, lm_path, BeamSettings(lm_weight=0.0))([AMBIGUOUS]) == ["ac"]
    assert BeamSearch(VOCAB, lm_path, BeamSettings(lm_weight=1.0))([AMBIGUOUS]) == ["ab"]


def test_clear_acoustics_win_over_the_language_model(lm_path):
    clear = frames([{"a": 0.98}, {"<pad>": 0.98}, {"c": 0.98}, {"<pad>": 0.98}])
    assert BeamSearch(VOCAB, lm_path, BeamSettings(lm_weight=0.5))([clear]) == ["ac"]


def test_tuning_on_dev_picks_the_weight_that_lowers_the_error(lm_path):
    def cer(hyps):
        return error_rates(["ab"], hyps, "chars")["cer"]

    result = tune(VOCAB, lm_path, [AMBIGUOUS], cer, lm_weights=(0.0, 1.0), word_bonuses=(0.0,))
    assert [p["cer"] for p in result.grid] == [0.5, 0.0]
    assert result.settings.lm_weight == 1.0


def test_a_missing_or_damaged_language_model_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="not a file"):
        BeamSearch(VOCAB, tmp_path / "none.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("this is not an ARPA file\n")
    with pytest.raises(UserError, match="could not read the language model"):
        BeamSearch(VOCAB, bad)


def test_emissions_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError, match="outputs per frame"):
        BeamSearch(VOCAB, None).ids(np.zeros((3, 4), dtype=np.float32))
    assert BeamSearch(VOCAB, None).ids(np.zeros((0, len(VOCAB)), dtype=np.float32)) == []
