"""The probe's CTC loss, compiled with numba over each utterance's own lattice (docs/design.md,
"The probe's CTC loss").

`torch.nn.functional.ctc_loss` on the CPU took 60% of each evaluation of the probe's
full-batch objective (every training utterance of a language; benchmarks/probe_ctc.py). Here:

- each utterance is computed over its own frames and lattice states only (no padding to the
  longest utterance and label sequence), in float64, on one thread (deterministic);
- in probability space, each frame's forward variables (alpha) rescaled to sum to one and the
  logarithms of the scales summed: one multiply-add per lattice cell, against two log-sum-exps;
  the backward variables (beta) likewise, each state's occupation being alpha * beta normalised
  over the frame's states (every path is in one state at each frame);
- an utterance whose scaled values underflow (a frame or its end with no mass left, though its
  labels fit its frames: only at extreme log-probabilities) is computed again in log space.

The result is `F.ctc_loss(..., blank=0, reduction="mean", zero_infinity=True)` to float
rounding. The gradient returned for the log-probabilities is the exact one: minus each symbol's
occupation. torch's adds exp(log_probs), which log-softmax's backward removes (its rows sum to
one), so a log-softmax before the loss receives the same gradient either way."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_KERNELS: dict = {}


def _compiled() -> dict:
    """The numba kernels, compiled on first use (and cached on disk beside this module)."""
    if not _KERNELS:
        _KERNELS.update(_build())
    return _KERNELS


def _build() -> dict:  # noqa: C901, PLR0915  (the kernels are one unit: they share helpers)
    import numba  # noqa: PLC0415

    def jit(func=None, **options):
        """numba.njit, cached on disk where numba finds a writable place (beside this module or
        in the user's cache); else compiled in each process."""
        if func is None:
            return lambda f: jit(f, **options)
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(**options)(func)

    @jit(inline="always")
    def log_add(x, y):
        if x == -np.inf:
            return y
        if y == -np.inf:
            return x
        if x > y:
            return x + math.log1p(math.exp(y - x))
        return y + math.log1p(math.exp(x - y))

    @jit
    def forward_scaled(b, probs, frames, width, states, skips, alpha, base):
        """Scaled alphas of utterance b into alpha[base:]; its log-likelihood, or NaN if the
        scaled values underflowed (-inf when its end cannot be reached)."""
        total = 0.0
        for s in range(width):
            alpha[base + s] = probs[b, 0, states[b, s]] if s < 2 else 0.0
        for t in range(frames):
            row = base + t * width
            if t > 0:
                previous = row - width
                for s in range(width):
                    a = alpha[previous + s]
                    if s >= 1:
                        a += alpha[previous + s - 1]
                    if s >= 2 and skips[b, s]:
                        a += alpha[previous + s - 2]
                    alpha[row + s] = a * probs[b, t, states[b, s]]
            scale = 0.0
            for s in range(width):
                scale += alpha[row + s]
            if scale == 0.0:
                return np.nan
            for s in range(width):
                alpha[row + s] /= scale
            total += math.log(scale)
        last = base + (frames - 1) * width
        end = alpha[last + width - 1] + (alpha[last + width - 2] if width > 1 else 0.0)
        if end == 0.0:
            return np.nan
        return total + math.log(end)

    @jit
    def forward_log(b, log_probs, frames, width, states, skips, alpha, base):
        """Log-space alphas of utterance b into alpha[base:]; its log-likelihood."""
        for s in range(width):
            alpha[base + s] = log_probs[b, 0, states[b, s]] if s < 2 else -np.inf
        for t in range(1, frames):
            row, previous = base + t * width, base + (t - 1) * width
            for s in range(width):
                a = alpha[previous + s]
                if s >= 1:
                    a = log_add(a, alpha[previous + s - 1])
                if s >= 2 and skips[b, s]:
                    a = log_add(a, alpha[previous + s - 2])
                alpha[row + s] = a + log_probs[b, t, states[b, s]]
        last = base + (frames - 1) * width
        end = alpha[last + width - 1]
        if width > 1:
            end = log_add(end, alpha[last + width - 2])
        return end

    @jit
    def backward_scaled(b, probs, frames, width, states, skips, alpha, base, scale, grad):
        """Adds utterance b's gradient (times `scale`) to grad; False if the scaled values
        underflowed (grad untouched)."""
        following = np.empty(width)  # beta(t + 1) * emission(t + 1)
        beta = np.empty(width)
        occupation = np.empty((frames, width))
        for t in range(frames - 1, -1, -1):
            for s in range(width):
                if t == frames - 1:
                    beta[s] = 1.0 if s >= width - 2 else 0.0
                else:
                    v = following[s]
                    if s + 1 < width:
                        v += following[s + 1]
                    if s + 2 < width and skips[b, s + 2]:
                        v += following[s + 2]
                    beta[s] = v
            norm, mass = 0.0, 0.0
            for s in range(width):
                norm += beta[s]
                occupation[t, s] = alpha[base + t * width + s] * beta[s]
                mass += occupation[t, s]
            if mass == 0.0 or norm == 0.0:
                return False
            for s in range(width):
                occupation[t, s] /= mass
                following[s] = beta[s] / norm * probs[b, t, states[b, s]]
        for t in range(frames):
            for s in range(width):
                grad[b, t, states[b, s]] -= scale * occupation[t, s]
        return True

    @jit
    def backward_log(b, log_probs, frames, width, states, skips, alpha, base, ll, scale, grad):
        """Adds utterance b's gradient (times `scale`) to grad from log-space alphas."""
        following = np.full(width, -np.inf)
        here = np.full(width, -np.inf)
        for t in range(frames - 1, -1, -1):
            for s in range(width):
                if t == frames - 1:
                    v = 0.0 if s >= width - 2 else -np.inf
                else:
                    v = following[s]
                    if s + 1 < width:
                        v = log_add(v, following[s + 1])
                    if s + 2 < width and skips[b, s + 2]:
                        v = log_add(v, following[s + 2])
                # beta holds the emissions after frame t; alpha holds frame t's
                occupied = alpha[base + t * width + s] + v - ll
                if occupied > -np.inf:
                    grad[b, t, states[b, s]] -= scale * math.exp(occupied)
                here[s] = v + log_probs[b, t, states[b, s]]
            following, here = here, following

    @jit
    def forward(log_probs, probs, lengths, states, counts, skips, fits, offsets, alpha, ll, exact):
        for b in range(log_probs.shape[0]):
            frames, width, base = lengths[b], 2 * counts[b] + 1, offsets[b]
            if frames == 0 or not fits[b]:
                ll[b] = -np.inf
                continue
            ll[b] = forward_scaled(b, probs, frames, width, states, skips, alpha, base)
            exact[b] = math.isnan(ll[b])
            if exact[b]:
                ll[b] = forward_log(b, log_probs, frames, width, states, skips, alpha, base)

    @jit
    def backward(
        log_probs, probs, lengths, states, counts, skips, offsets, alpha, ll, exact, scales
    ):
        grad = np.zeros(log_probs.shape, dtype=np.float64)
        for b in range(log_probs.shape[0]):
            frames, width, base = lengths[b], 2 * counts[b] + 1, offsets[b]
            if ll[b] == -np.inf or scales[b] == 0.0:
                continue
            args = (b, probs, frames, width, states, skips, alpha, base, scales[b], grad)
            if not exact[b] and backward_scaled(*args):
                continue
            if not exact[b]:  # the scaled backward underflowed: both passes in log space
                forward_log(b, log_probs, frames, width, states, skips, alpha, base)
                exact[b] = True  # alpha now holds log values (a second backward reads them so)
            backward_log(
                b, log_probs, frames, width, states, skips, alpha, base, ll[b], scales[b], grad
            )
        return grad

    return {"forward": forward, "backward": backward}


def lattice(labels: list[list[int]], blank: int = 0) -> dict[str, np.ndarray]:
    """Each utterance's CTC lattice: `states`, its labels with a blank before, between and after
    them (utterances, 2 * longest + 1; padded with blanks); `counts`, the label counts;
    `skips`, where a path may jump two states (onto a label unlike the one two states back);
    `needs`, the fewest frames that can carry the labels (one more per repeated label)."""
    counts = np.array([len(seq) for seq in labels], dtype=np.int64)
    width = 2 * max((len(seq) for seq in labels), default=0) + 1
    states = np.full((len(labels), width), blank, dtype=np.int64)
    for row, seq in enumerate(labels):
        states[row, 1 : 2 * len(seq) : 2] = seq
    skips = np.zeros(states.shape, dtype=np.bool_)
    skips[:, 2:] = (states[:, 2:] != blank) & (states[:, 2:] != states[:, :-2])
    repeats = np.array([sum(a == b for a, b in zip(s, s[1:], strict=False)) for s in labels])
    return {"states": states, "counts": counts, "skips": skips, "needs": counts + repeats}


def forward_pass(
    log_probs: np.ndarray, frames: np.ndarray, labels: list[list[int]], blank: int = 0
) -> dict[str, np.ndarray]:
    """The forward kernel on float64 (utterances, frames, symbols) log-probabilities: the arrays
    the backward kernel takes, in its order (the log-likelihoods are `ll`, -inf for an utterance
    whose labels do not fit its frames; `exact` marks those computed in log space)."""
    lat = lattice(labels, blank)
    sizes = frames * (2 * lat["counts"] + 1)
    kept = {
        "log_probs": log_probs,
        "probs": np.exp(log_probs),
        "lengths": frames,
        "states": lat["states"],
        "counts": lat["counts"],
        "skips": lat["skips"],
        "offsets": np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
        "alpha": np.empty(int(sizes.sum()), dtype=np.float64),
        "ll": np.empty(len(labels), dtype=np.float64),
        "exact": np.zeros(len(labels), dtype=np.bool_),
    }
    fits = (frames >= lat["needs"]) & (frames > 0)
    _compiled()["forward"](
        *(kept[k] for k in ("log_probs", "probs", "lengths", "states", "counts", "skips")),
        fits,
        *(kept[k] for k in ("offsets", "alpha", "ll", "exact")),
    )
    return kept


class _CTC(torch.autograd.Function):
    @staticmethod
    def forward(ctx, log_probs, lengths, labels, blank):
        values = log_probs.detach().to(torch.float64).contiguous().numpy()
        frames = lengths.to(torch.long).numpy().astype(np.int64)
        ctx.kept = forward_pass(values, frames, labels, blank)
        ctx.dtype = log_probs.dtype
        return torch.from_numpy(-ctx.kept["ll"]).to(log_probs.dtype)

    @staticmethod
    def backward(ctx, grad_loss):
        scales = grad_loss.detach().to(torch.float64).contiguous().numpy()
        grad = _compiled()["backward"](*ctx.kept.values(), scales)
        return torch.from_numpy(grad).to(ctx.dtype), None, None, None


def ctc_loss(
    log_probs: torch.Tensor, lengths: torch.Tensor, labels: list[list[int]], blank: int = 0
) -> torch.Tensor:
    """Mean over utterances of each one's CTC loss divided by its label count (counted as 1
    when empty); an utterance too short for its labels counts 0, with no gradient:
    `F.ctc_loss(log_probs.transpose(0, 1), ..., blank, reduction="mean", zero_infinity=True)`.
    `log_probs` is (utterances, frames, symbols) on the CPU, padded past `lengths`."""
    if log_probs.shape[0] != len(labels) or lengths.shape[0] != len(labels):
        raise ValueError(
            f"ctc_loss: {log_probs.shape[0]} utterances of log-probabilities, "
            f"{lengths.shape[0]} lengths and {len(labels)} label sequences"
        )
    if int(lengths.max()) > log_probs.shape[1]:
        raise ValueError(f"ctc_loss: a length {int(lengths.max())} > {log_probs.shape[1]} frames")
    per_utterance = _CTC.apply(log_probs, lengths, labels, blank)
    per_utterance = torch.where(torch.isfinite(per_utterance), per_utterance, 0.0)
    counts = torch.tensor([max(1, len(seq)) for seq in labels], dtype=per_utterance.dtype)
    return (per_utterance / counts).mean()


def torch_ctc_loss(
    log_probs: torch.Tensor, lengths: torch.Tensor, labels: list[list[int]], blank: int = 0
) -> torch.Tensor:
    """`ctc_loss` by torch's `F.ctc_loss` (any device; the reference the compiled one equals)."""
    targets = torch.tensor([t for seq in labels for t in seq], dtype=torch.long)
    counts = torch.tensor([len(seq) for seq in labels])
    return F.ctc_loss(
        log_probs.transpose(0, 1), targets, lengths, counts, blank=blank, zero_infinity=True
    )
