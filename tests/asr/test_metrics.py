"""CER, WER and PER with per-utterance edit records, on hand-counted examples."""

from __future__ import annotations

import pytest

from distilxlsr.asr.metrics import (
    UtteranceErrors,
    character_errors,
    error_rates,
    normalise_text,
    word_errors,
)


def test_normalisation_lowers_and_drops_punctuation_and_extra_space():
    assert normalise_text("  Don't -- STOP!\t¿Qué?  ") == "dont stop qué"
    assert normalise_text("a|b «c»") == "ab c"  # the word delimiter is never text
    assert normalise_text("e\u0301") == "\u00e9"  # NFC: one character, as the vocabulary sees it


def test_hand_counted_character_and_word_errors():
    refs = ["the cat sat", "a b"]
    hyps = ["the hat sat on", "a b"]
    # words: cat->hat (1 substitution) + "on" (1 insertion) = 2 of 3; second utterance 0 of 2
    assert word_errors(refs, hyps) == [UtteranceErrors(2, 3), UtteranceErrors(0, 2)]
    # characters: c->h (1) + " on" inserted (3) = 4 of 11; "a b" exact, 3 characters
    assert character_errors(refs, hyps) == [UtteranceErrors(4, 11), UtteranceErrors(0, 3)]
    rates = error_rates(refs, hyps, "chars")
    assert rates == pytest.approx({"cer": 4 / 14, "wer": 2 / 5})  # totals, not a mean of rates


def test_scoring_uses_the_normalised_texts():
    assert error_rates(["Hello, World!"], ["hello world"], "chars") == {"cer": 0.0, "wer": 0.0}


def test_an_empty_reference_counts_the_hypothesis_as_insertions():
    records = character_errors(["ab", ""], ["ab", "xy"])
    assert records == [UtteranceErrors(0, 2), UtteranceErrors(2, 0)]
    assert error_rates(["ab", ""], ["ab", "xy"], "chars")["cer"] == pytest.approx(2 / 2)
    with pytest.raises(ValueError, match="no characters"):
        error_rates([""], ["x"], "chars")


def test_phone_error_rate_for_phone_targets():
    refs = [["a", "t͡ʃ", "b"], ["c"]]
    hyps = [["a", "b"], ["c", "c"]]  # one deletion, one insertion: 2 of 4
    assert error_rates(refs, hyps, "phones") == {"per": pytest.approx(0.5)}


def test_mismatched_or_missing_input_is_refused():
    with pytest.raises(ValueError, match="1 references but 2"):
        error_rates(["a"], ["a", "b"], "chars")
    with pytest.raises(ValueError, match="no utterances"):
        error_rates([], [], "chars")
    with pytest.raises(ValueError, match="chars or phones"):
        error_rates(["a"], ["a"], "words")
