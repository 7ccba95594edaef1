"""The field's frozen benchmark protocol (`evaluate --mode superb`): the upstream model frozen,
a learned softmax-weighted sum of all its layers, and a small trained downstream — here a
2-layer Transformer encoder, the shape ML-SUPERB gives its ASR downstream — with a CTC head
(docs/design.md, "Evaluation").

Why a Transformer and not SUPERB's 2-layer BiLSTM: ML-SUPERB, the multilingual benchmark the
compression papers users compare against report, uses it, and it is the cheaper of the two on
a CPU at these sizes (no sequential recurrence). No positional encoding is added: the upstream's
features carry position already (its convolutional positional embedding), and log-mel frames,
which carry none, are the floor.

The downstream reads the same standardised features as the probe (`Probe`'s statistics and
layer weights), is trained with Adam (linear warm-up, then constant) on mini-batches of whole
utterances, dropout in the encoder, and decoded greedily in eval mode. It learns far more than a
linear probe (hundreds of thousands of weights), so it is trained for a fixed number of steps,
never to convergence; seeds vary its initialisation and batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distilxlsr.evaluate.ctc import Probe, fit_adam


@dataclass
class SuperbConfig:
    """The downstream and its training (the same for every model, log-mel included)."""

    steps: int = 1000
    """Adam steps of `batch_utterances` utterances."""
    batch_utterances: int = 8
    lr: float = 1e-3
    """Peak learning rate (ML-SUPERB's scale for its downstreams), after `warmup_steps`."""
    warmup_steps: int = 100
    width: int = 128
    """The encoder's width (the features are projected to it). Sized for a CPU: at 256 wide with
    a 1024 feed-forward a step of 8 five-second utterances costs about 20 GFLOP (0.7 s on one
    core, 17 minutes per model and language); at 128/512 a quarter of that."""
    layers: int = 2
    heads: int = 4
    ffn: int = 512
    """Feed-forward width of each encoder layer."""
    dropout: float = 0.1
    seed: int = 0
    """Seed of the initialisation and the batches (each evaluation seed sets it)."""


class SuperbDownstream(Probe):
    """Standardised features, softmax layer weights (the probe's), then a projection, a
    Transformer encoder (pre-norm, padding masked) and a linear CTC head."""

    def __init__(self, num_layers: int, dim: int, vocab_size: int, config: SuperbConfig):
        super().__init__(num_layers, dim, vocab_size)
        self.project = nn.Linear(dim, config.width)
        layer = nn.TransformerEncoderLayer(
            config.width,
            config.heads,
            config.ffn,
            config.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, config.layers, norm=nn.LayerNorm(config.width), enable_nested_tensor=False
        )
        self.head = nn.Linear(config.width, vocab_size)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised (layers, T, D) features -> log-probabilities (B, T, V) and lengths."""
        weights = self.layer_weights()
        mixed = [(weights @ f.reshape(f.shape[0], -1)).view(f.shape[1], f.shape[2]) for f in feats]
        lengths = torch.tensor([m.shape[0] for m in mixed])
        longest = int(lengths.max())
        padded = torch.stack([F.pad(m, (0, 0, 0, longest - m.shape[0])) for m in mixed])
        padding = torch.arange(longest)[None, :] >= lengths[:, None]
        hidden = self.encoder(self.project(padded), src_key_padding_mask=padding)
        return F.log_softmax(self.head(hidden), dim=-1), lengths

    def forward_packed(self, packed):  # the probe's full-batch fit only
        raise NotImplementedError("the SUPERB downstream trains on mini-batches (train_superb)")


def train_superb(
    feats: list[torch.Tensor], labels: list[list[int]], vocab_size: int, config: SuperbConfig
) -> tuple[SuperbDownstream, dict]:
    """Train the downstream on cached (layers, T, D) features; returns it in eval mode and
    {steps, seconds, final_loss}."""
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SuperbDownstream(feats[0].shape[0], feats[0].shape[2], vocab_size, config)
        model.fit_standardisation(feats)
        model.train()
        generator = torch.Generator().manual_seed(config.seed)
        loss = fit_adam(
            model,
            model.standardise(feats),
            labels,
            config.steps,
            config.batch_utterances,
            config.lr,
            config.warmup_steps,
            generator,
        )
    model.eval()
    info = {"steps": config.steps, "seconds": time.perf_counter() - start, "final_loss": loss}
    return model, info
