import pytest
import torch

from distilxlsr.evaluate.per import edit_distance, greedy_decode, phone_error_rate


@pytest.mark.parametrize(
    "ref, hyp, distance",
    [
        (["a", "b", "c"], ["a", "b", "c"], 0),
        (["a", "b", "c"], ["a", "x", "c"], 1),  # substitution
        (["a", "b", "c"], ["a", "b", "x", "c"], 1),  # insertion
        (["a", "b", "c"], ["a", "c"], 1),  # deletion
        (["a", "b", "c"], [], 3),  # empty hypothesis
        (["ts", "a"], ["t", "s", "a"], 2),  # multi-character phones are single tokens
    ],
)
def test_edit_distance_by_hand(ref, hyp, distance):
    assert edit_distance(ref, hyp) == distance


def test_per_is_total_errors_over_total_reference_phones():
    refs = [["a", "b", "c", "d"], ["e"]]
    hyps = [["a", "b", "c", "d"], ["x", "y"]]  # 0 errors over 4, then 2 errors over 1
    assert phone_error_rate(refs, hyps) == pytest.approx(2 / 5)  # not the mean of 0 and 2


def test_greedy_decode_merges_repeats_and_drops_blanks():
    # frames: a a _ a b b _ _ (then padding that must be ignored)
    ids = [1, 1, 0, 1, 2, 2, 0, 0, 2, 2]
    log_probs = torch.nn.functional.one_hot(torch.tensor([ids]), 3).float()
    assert greedy_decode(log_probs, torch.tensor([8])) == [[1, 1, 2]]


def test_a_single_reference_phone_is_enough():
    assert phone_error_rate([["a"]], [["b", "a"]]) == 1.0
    assert phone_error_rate([["a"], []], [["a"], ["x"]]) == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError) as err:
        phone_error_rate([["a"]], [])
    assert str(err.value) == "references and hypotheses differ in number"
    with pytest.raises(ValueError) as err:
        phone_error_rate([[], []], [["a"], []])
    assert str(err.value) == "no reference phones"


def test_greedy_decode_needs_one_length_per_row():
    log_probs = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError):
        greedy_decode(log_probs, torch.tensor([3]))
