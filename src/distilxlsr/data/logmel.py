"""Log-mel features: the front end of the log-mel baseline (evaluation) and of the k-means
units teacher pretraining predicts (docs/design.md, "Teacher pretraining")."""

from __future__ import annotations

import math

import numpy as np
import torch

from distilxlsr.conventions import FRAME_HOP, FRAME_WINDOW, SAMPLE_RATE


class LogMel:
    """80-band log-mel features with per-utterance mean/variance normalisation, at a given hop."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_mels: int = 80,
        stride: int = FRAME_HOP,
        win: int = FRAME_WINDOW,
    ):
        self.n_mels, self.stride, self.win = n_mels, stride, win
        self.n_fft = 2 ** math.ceil(math.log2(win))
        self.window = torch.hann_window(win)
        self.filters = mel_filterbank(sample_rate, self.n_fft, n_mels)

    def __call__(self, wave: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(wave, dtype=np.float32))
        if len(x) < self.win:
            x = torch.nn.functional.pad(x, (0, self.win - len(x)))
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.stride,
            win_length=self.win,
            window=self.window,
            center=False,
            return_complex=True,
        )
        mel = self.filters @ spec.abs().square()
        feats = torch.log(mel + 1e-6).T  # (frames, n_mels)
        feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-5)
        return feats[None].to(torch.float16)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Triangular filters equally spaced on the mel scale (HTK formula), (n_mels, n_fft//2+1)."""

    def to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(0.0), to_mel(sample_rate / 2), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    filters = np.zeros((n_mels, len(bins)))
    for i in range(n_mels):
        lo, centre, hi = edges[i : i + 3]
        rising = (bins - lo) / (centre - lo)
        falling = (hi - bins) / (hi - centre)
        filters[i] = np.clip(np.minimum(rising, falling), 0.0, None)
    return torch.tensor(filters, dtype=torch.float32)
