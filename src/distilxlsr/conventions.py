"""Conventions every part of the toolkit shares: one definition each (docs/design.md, "Conventions").

Plain values and one small record; nothing here imports the rest of the package, so every module
may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16_000
"""Samples per second of every waveform a wav2vec 2.0-family model takes."""

XLSR_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
"""Kernel sizes of XLS-R's (and wav2vec 2.0's) seven CNN layers."""
XLSR_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
"""Strides of those layers."""

FRAME_HOP = 320
"""Samples per model frame (20 ms): the product of `XLSR_CONV_STRIDE`."""
FRAME_WINDOW = 400
"""Samples one model frame sees (25 ms): the receptive field of XLS-R's CNN."""

SILENCE = "sil"
"""The silence label the toolkit writes into the manifests it makes."""
SILENCE_LABELS = ("sil", "sp", "spn", "")
"""Alignment labels read as silence by default (MFA/Kaldi conventions plus an empty label)."""

BLANK = "<blank>"
"""The CTC blank symbol: index 0 of every phone vocabulary."""


def frames_of(num_samples: int) -> int:
    """Model frames of `num_samples` samples through XLS-R's CNN (0 for a too-short input)."""
    return max(0, (num_samples - FRAME_WINDOW) // FRAME_HOP + 1)


@dataclass(frozen=True)
class Segment:
    """A piece of a waveform, [start, end) in samples, with its alignment label."""

    start: int
    end: int
    label: str = ""
    silence: bool = False
    """True for pauses (gaps in an alignment count as silence)."""
    word: int | None = None
    """Index of the word (text token) the piece belongs to; None for no word."""
