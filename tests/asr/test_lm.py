import math
from collections import Counter

import pytest

from distilxlsr.asr.lm import (
    BOS,
    EOS,
    FALLBACK_DISCOUNTS,
    LOG10_ZERO,
    UNK,
    char_tokens,
    discounts_from_counts,
    train_char_ngram,
    train_ngram,
    train_word_ngram,
)

D = (0.5, 1.0, 1.5)  # D1, D2, D3+ of both orders of the hand-computed model


@pytest.fixture(scope="module")
def hand_model():
    # <s> a b </s> (three times), <s> b </s>, <s> c a </s>. Bigram (top order, raw) counts:
    #   <s> a: 3, <s> b: 1, <s> c: 1 | a b: 3, a </s>: 1 | b </s>: 4 | c a: 1
    # Unigram adjusted counts = distinct tokens before (not the raw 4, 4, 1, 5):
    #   a: {<s>, c} 2, b: {a, <s>} 2, c: {<s>} 1, </s>: {b, a} 2; total 7
    return train_ngram([["a", "b"]] * 3 + [["b"], ["c", "a"]], order=2, discounts=[D, D])


# Unigrams over V = {a, b, c, </s>, <unk>} (|V| = 5). Mass kept back: 1 + 1 + 0.5 + 1 = 3.5, so
# γ() = 3.5 / 7 = 1/2 and each token gets (a - D) / 7 + 1/2 · 1/5:
P_A = P_B = P_EOS = (2 - 1) / 7 + 1 / 10  # 17/70
P_C = (1 - 0.5) / 7 + 1 / 10  # 12/70
P_UNK = 1 / 10  # 7/70; the five sum to 70/70
# Context <s>: a 3, b 1, c 1 (total 5), kept back 1.5 + 0.5 + 0.5 = 2.5, γ(<s>) = 1/2.
# Context a: b 3, </s> 1 (total 4), kept back 1.5 + 0.5 = 2, γ(a) = 1/2.
# Context b: </s> 4 (total 4), kept back 1.5, γ(b) = 3/8.
# Context c: a 1 (total 1), kept back 0.5, γ(c) = 1/2.
HAND = [
    ([], "a", P_A),
    ([], "c", P_C),
    ([], EOS, P_EOS),
    ([], UNK, P_UNK),
    ([], "zebra", P_UNK),  # outside the vocabulary: <unk>
    ([BOS], "a", (3 - 1.5) / 5 + P_A / 2),  # 59/140
    ([BOS], "b", (1 - 0.5) / 5 + P_B / 2),  # 31/140
    ([BOS], EOS, P_EOS / 2),  # not seen after <s>: backs off, 17/140
    (["a"], "b", (3 - 1.5) / 4 + P_B / 2),  # 139/280
    (["a"], EOS, (1 - 0.5) / 4 + P_EOS / 2),  # 69/280
    (["a"], "a", P_A / 2),  # 17/140
    (["b"], EOS, (4 - 1.5) / 4 + 3 / 8 * P_EOS),  # 401/560
    (["b"], "c", 3 / 8 * P_C),  # 9/140
    (["c"], "a", (1 - 0.5) / 1 + P_A / 2),  # 87/140
    ([EOS], "a", P_A),  # </s> is no context: the unigram
    (["b", "a"], "b", (3 - 1.5) / 4 + P_B / 2),  # only the last token counts at order 2
]


@pytest.mark.parametrize("context, token, p", HAND)
def test_hand_computed_bigram_model(hand_model, context, token, p):
    assert hand_model.logprob(context, token) == pytest.approx(math.log10(p), abs=1e-6)


def test_hand_model_lists_what_was_seen(hand_model):
    assert hand_model.vocabulary == sorted([BOS, EOS, UNK, "a", "b", "c"])
    assert hand_model.logprobs[(BOS,)] == LOG10_ZERO
    assert hand_model.backoffs == pytest.approx(
        {(BOS,): math.log10(1 / 2), ("a",): math.log10(1 / 2), ("b",): math.log10(3 / 8)}
        | {("c",): math.log10(1 / 2)}
    )
    assert sorted(g for g in hand_model.logprobs if len(g) == 2) == sorted(
        [(BOS, "a"), (BOS, "b"), (BOS, "c"), ("a", "b"), ("a", EOS), ("b", EOS), ("c", "a")]
    )


def _corpus():
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "at", "hat", "tan"]
    sentences = []
    for i in range(60):  # deterministic, varied lengths
        sentences.append(" ".join(words[(i * k + k * k) % len(words)] for k in range(1 + i % 6)))
    return sentences


@pytest.fixture(scope="module")
def char_model():
    return train_char_ngram(_corpus(), order=4)


def test_every_context_sums_to_one(char_model):
    contexts = [list(g) for g in char_model.logprobs if len(g) < char_model.order]
    contexts += [[], [BOS], ["q", "x"], ["t", "q", "a"], [BOS, "z", "|"], ["a", "t", EOS]]
    predicted = char_model.predicted
    assert BOS not in predicted and UNK in predicted and EOS in predicted
    for context in contexts:
        total = sum(10 ** char_model.logprob(context, w) for w in predicted)
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_kenlm_reads_the_arpa_and_scores_as_logprob(char_model, tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    path = char_model.write_arpa(tmp_path / "chars.arpa")
    header = path.read_text(encoding="utf-8").split("\n\n")[0].strip().splitlines()
    counts = Counter(len(g) for g in char_model.logprobs)
    assert header == ["\\data\\"] + [f"ngram {n}={counts[n]}" for n in (1, 2, 3, 4)]
    tokens = char_model.vocabulary + ["q"]  # q: never seen, <unk> to both
    index = Dictionary(tokens)
    kenlm = KenLM(str(path), index)
    for text in ["the cat", "a mat on the dog", "tac", "qq at", "t"]:
        sequence = char_tokens(text)
        state, total = kenlm.start(False), 0.0
        for t in sequence:
            state, score = kenlm.score(state, index.get_index(t))
            total += score
        state, score = kenlm.finish(state)
        total += score
        assert total == pytest.approx(char_model.sentence_logprob(sequence), abs=1e-4), text


def test_discounts_from_count_of_counts():
    # n1..n4 = 4, 2, 2, 2: Y = 4 / (4 + 4) = 1/2, D1 = 1 - 2·½·2/4 = 0.5,
    # D2 = 2 - 3·½·2/2 = 0.5, D3+ = 3 - 4·½·2/2 = 1.0
    assert discounts_from_counts([4, 2, 2, 2]) == pytest.approx((0.5, 0.5, 1.0))
    assert discounts_from_counts([4, 2, 0, 2]) is None  # undefined
    # n = 10, 1, 10, 1: Y = 10/12, D2 = 2 - 3·(10/12)·10 < 0
    assert discounts_from_counts([10, 1, 10, 1]) is None


def test_estimated_discounts_and_fallback():
    # Bigram counts: q r s once (<s> q, q r, r s, s </s>: four 1s), t twice (<s> t, t </s>: two
    # 2s), u three times (two 3s), v four times (two 4s): n = 4, 2, 2, 2 as above. The unigram
    # continuation counts (q, r, s, t, u, v: 1 each; </s>: 4) have no n2: the fallback.
    model = train_ngram([["q", "r", "s"]] + [["t"]] * 2 + [["u"]] * 3 + [["v"]] * 4, order=2)
    assert model.discounts[1] == pytest.approx((0.5, 0.5, 1.0))
    assert model.discounts[0] == FALLBACK_DISCOUNTS
    assert model.fallback_orders == [1]


def test_char_and_word_models_share_the_estimator():
    assert char_tokens("ab  c\td") == ["a", "b", "|", "c", "|", "d"]
    chars = train_char_ngram(["ab c", "c"], order=3)
    assert chars.logprobs == train_ngram([["a", "b", "|", "c"], ["c"]], order=3).logprobs
    words = train_word_ngram(["the cat", "the  dog"], order=2)
    assert words.logprobs == train_ngram([["the", "cat"], ["the", "dog"]], order=2).logprobs
    assert words.logprob(["the"], "cat") > words.logprob(["cat"], "the")


def test_order_beyond_the_longest_sentence_is_trimmed():
    model = train_ngram([["a"]], order=5)  # <s> a </s>: nothing longer than 3
    assert model.order == 3
    assert model.logprob([BOS, "a"], EOS) == pytest.approx(model.logprobs[(BOS, "a", EOS)])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="word delimiter"):
        char_tokens("a|b")
    with pytest.raises(ValueError, match="reserved"):
        train_ngram([["a", EOS]], order=2)
    with pytest.raises(ValueError, match="whitespace"):
        train_ngram([["a b"]], order=2)
    with pytest.raises(ValueError, match="no sentences"):
        train_ngram([], order=2)
