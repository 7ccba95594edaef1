"""Frame counts after a model's CNN: the one caller of transformers' private length method."""

from __future__ import annotations

import torch


def frame_lengths(model, attention_mask: torch.Tensor) -> torch.Tensor:
    """Real (not padding) frames per utterance of a (batch, samples) attention mask, for any
    wav2vec 2.0-family model (its own kernels and strides; `model` may be a *ForCTC head)."""
    return model._get_feat_extract_output_lengths(attention_mask.sum(-1)).long()
