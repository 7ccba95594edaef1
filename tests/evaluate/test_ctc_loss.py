"""The probe's compiled CTC loss (evaluate/ctc_loss.py) against torch's: loss and gradient through
log-softmax, on batches with uneven lengths, repeated labels, empty and impossible label sequences,
and at log-probabilities extreme enough to send it to its log-space paths."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distilxlsr.evaluate import ctc_loss as compiled
from distilxlsr.evaluate.ctc_loss import ctc_loss, forward_pass, lattice, torch_ctc_loss


def _both(logits, lengths, labels):
    """(loss, gradient on the logits) of torch's CTC and of ours, through log-softmax; the
    gradient on frames past each utterance's length is left out (torch leaves it undefined)."""
    out = []
    for loss_fn in (torch_ctc_loss, ctc_loss):
        x = logits.detach().clone().requires_grad_(True)
        loss = loss_fn(F.log_softmax(x, -1), lengths, labels)
        loss.backward()
        inside = torch.arange(x.shape[1])[None, :, None] < lengths[:, None, None]
        out.append((loss.detach(), x.grad * inside))
    return out


def _batch(seed: int, scale: float = 1.0, vocab: int = 6):
    g = torch.Generator().manual_seed(seed)
    size = int(torch.randint(1, 9, (), generator=g))
    lengths = torch.randint(1, 40, (size,), generator=g)
    labels = [
        torch.randint(1, vocab, (int(torch.randint(0, 14, (), generator=g)),), generator=g).tolist()
        for _ in range(size)
    ]
    labels[0] = [2, 2, 3, 3, 3][: int(lengths[0])]  # repeats: each needs a blank between
    logits = torch.randn(size, int(lengths.max()), vocab, generator=g, dtype=torch.float64)
    return logits * scale, lengths, labels


@pytest.mark.parametrize("seed", range(12))
def test_loss_and_gradient_equal_torch_s(seed):
    (loss_a, grad_a), (loss_b, grad_b) = _both(*_batch(seed))
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-12, abs=1e-12)
    assert torch.allclose(grad_b, grad_a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [400.0, 3000.0])
def test_extreme_log_probabilities_equal_torch_s_through_the_log_space_path(scale):
    """At these scales the scaled forward pass underflows on every utterance (checked below), so
    the result is the log-space path's."""
    logits, lengths, labels = _batch(3, scale)
    (loss_a, grad_a), (loss_b, grad_b) = _both(logits, lengths, labels)
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-10)
    assert torch.allclose(grad_b, grad_a, rtol=0, atol=1e-9)
    kept = _forward(F.log_softmax(logits, -1).numpy(), lengths, labels)
    assert kept["exact"].sum() >= 1


def test_float32_in_float32_out_and_close_to_torch_s():
    logits, lengths, labels = _batch(5)
    (loss_a, grad_a), (loss_b, grad_b) = _both(logits.float(), lengths, labels)
    assert loss_b.dtype == torch.float32 and grad_b.dtype == torch.float32
    assert loss_b.item() == pytest.approx(loss_a.item(), rel=1e-5)
    assert torch.allclose(grad_b, grad_a, atol=1e-5)


def test_an_impossible_utterance_counts_zero_with_no_gradient():
    logits = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lengths = torch.tensor([3, 5])
    labels = [[1, 1, 2], [3]]  # utterance 0 needs 4 frames: 1, blank, 1, 2
    x = logits.clone().requires_grad_(True)
    loss = ctc_loss(F.log_softmax(x, -1), lengths, labels)
    alone = torch_ctc_loss(F.log_softmax(logits[1:], -1), lengths[1:], labels[1:])
    assert loss.item() == pytest.approx(alone.item() / 2, rel=1e-12)
    loss.backward()
    assert not x.grad[0].any() and x.grad[1].abs().sum() > 0


def test_lattice_states_skips_and_frames_needed():
    lat = lattice([[3, 3, 1], []])
    assert lat["states"].tolist() == [[0, 3, 0, 3, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0]]
    # a jump of two states lands on a label unlike the one two back: onto the second 3, no
    assert lat["skips"][0].tolist() == [False, False, False, False, False, True, False]
    assert lat["needs"].tolist() == [4, 0]


def test_a_backward_pass_whose_scaled_values_vanish_is_redone_in_log_space():
    logits, lengths, labels = _batch(7)
    log_probs = F.log_softmax(logits, -1)
    kept = _forward(log_probs.numpy(), lengths, labels)
    assert not kept["exact"].any()
    scales = np.ones(len(labels))
    expected = compiled._compiled()["backward"](*kept.values(), scales)
    kept["alpha"][:] = 0.0  # every occupation's mass is then zero
    redone = compiled._compiled()["backward"](*kept.values(), scales)
    assert np.allclose(redone, expected, rtol=0, atol=1e-12)
    assert kept["exact"].all()  # alpha now holds log values, and a second backward reads them so
    again = compiled._compiled()["backward"](*kept.values(), scales)
    assert np.allclose(again, expected, rtol=0, atol=1e-12)


def test_mismatched_sizes_are_one_clear_error():
    with pytest.raises(ValueError, match="3 label sequences"):
        ctc_loss(torch.zeros(2, 4, 3), torch.tensor([4, 4]), [[1], [2], [1]])
    with pytest.raises(ValueError, match="a length 5 > 4 frames"):
        ctc_loss(torch.zeros(2, 4, 3), torch.tensor([5, 4]), [[1], [2]])


def _forward(log_probs: np.ndarray, lengths: torch.Tensor, labels):
    return forward_pass(log_probs, lengths.numpy().astype(np.int64), labels)


def test_kernels_compile_where_numba_cannot_cache_them(monkeypatch):
    """A read-only install with no writable user cache: numba refuses `cache=True` when the
    kernel is defined; the kernels are then compiled uncached, with the same results."""
    import numba  # noqa: PLC0415

    real_njit = numba.njit

    def refusing(*args, **options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x'")
        return real_njit(*args, **options)

    logits, lengths, labels = _batch(4)
    expected = _both(logits, lengths, labels)[1]
    monkeypatch.setattr(numba, "njit", refusing)
    monkeypatch.setattr(compiled, "_KERNELS", {})
    (_, _), (loss, grad) = _both(logits, lengths, labels)
    assert loss.item() == pytest.approx(expected[0].item(), rel=1e-12)
    assert torch.allclose(grad, expected[1], rtol=0, atol=1e-12)
