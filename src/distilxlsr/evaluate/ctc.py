"""CTC phone recognisers on frozen features: the probe (standardised features, softmax layer
weights, linear head). Fine-tuning is the `finetune` job's (asr/finetune.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distilxlsr.evaluate.ctc_loss import ctc_loss, torch_ctc_loss
from distilxlsr.evaluate.per import greedy_decode


@dataclass
class ProbeConfig:
    """The harness's probe, the same for every network (never tuned per model); the log-mel
    floor has its own (`FLOOR_PROBE`). By default it is trained to convergence (`lbfgs`), so
    that a result depends on the features and the data, not on a step count or a seed; the
    settings were chosen on the dev split (docs/design.md, "The probe")."""

    optimizer: str = "lbfgs"
    """`lbfgs`: full-batch L-BFGS on every training utterance of the mean CTC loss plus `l2`
    times the head's squared weights, until converged (`tolerance`) or `steps` iterations
    (`lr`, `batch_utterances` and `warmup_steps` are then unused). `adam`: `steps` mini-batch
    steps of `batch_utterances` at `lr` after a linear warm-up."""
    steps: int = 1500
    """At most this many L-BFGS iterations (`lbfgs`), or exactly this many steps (`adam`)."""
    l2: float = 3e-3
    """L2 penalty on the head's weights, summed (`lbfgs`): without it a linear CTC head fits the
    training utterances almost exactly and fails on new voices."""
    tolerance: float = 1e-5
    """`lbfgs` stops when 20 iterations lower the objective by less than this (relative)."""
    standardise: bool = True
    """Standardise each feature dimension with the training split's mean and std."""
    batch_utterances: int = 8
    """Utterances per step (`adam`)."""
    lr: float = 3e-3
    """Learning rate, constant after the warm-up (`adam`)."""
    warmup_steps: int = 50
    """Linear warm-up steps (`adam`); fixed in steps, so the first n steps of a longer probe are
    an n-step probe."""
    seed: int = 0
    """Seed of the head's initialisation (and of `adam`'s batches)."""


FLOOR_PROBE = ProbeConfig(l2=3e-4)
"""The log-mel floor's probe: as the networks', with the L2 penalty chosen on log-mel (80
standardised bands need less of it than a network's 256 or 1024 dimensions)."""


@dataclass
class PackedFeatures:
    """Many utterances' standardised features as one (layers, frames x D) matrix, with where
    each frame goes in the padded batch (utterance `rows[i]`, position `columns[i]`)."""

    frames: torch.Tensor
    dim: int
    lengths: torch.Tensor
    rows: torch.Tensor
    columns: torch.Tensor


class Probe(nn.Module):
    """Per-dimension standardisation (statistics of the training features), a softmax-weighted
    sum of all layers, then a linear CTC head (SUPERB's recipe)."""

    def __init__(self, num_layers: int, dim: int, vocab_size: int):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.head = nn.Linear(dim, vocab_size)
        self.register_buffer("mean", torch.zeros(num_layers, dim))
        self.register_buffer("scale", torch.ones(num_layers, dim))

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits, dim=0)

    @torch.no_grad()
    def fit_standardisation(self, feats: list[torch.Tensor], eps: float = 1e-8) -> None:
        """Mean and 1/std per (layer, dimension) over every frame of `feats` (the train split)."""
        total = torch.zeros_like(self.mean, dtype=torch.float64)
        squares = torch.zeros_like(total)
        frames = 0
        for f in feats:
            x = f.double()
            total += x.sum(1)
            squares += (x * x).sum(1)
            frames += f.shape[1]
        mean = total / max(1, frames)
        var = (squares / max(1, frames) - mean * mean).clamp_min(0)
        self.mean.copy_(mean.float())
        self.scale.copy_((var + eps).rsqrt().float())  # a constant dimension stays 0

    @torch.no_grad()
    def standardise(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """float32, standardised copies of (layers, T, dim) features."""
        return [(f.float() - self.mean[:, None]) * self.scale[:, None] for f in feats]

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised (layers, T, D) features -> log-probabilities (B, T, V) and lengths.
        Each utterance's layers are mixed before padding: one read of its features per step.
        Padded with F.pad and stacked, whose backward passes are views of the gradient:
        pad_sequence's backward cloned the whole padded gradient once per utterance: the step
        now takes 0.73x its time, with bit-identical probes (benchmarks/probe_step.py)."""
        weights = self.layer_weights()
        mixed = [(weights @ f.reshape(f.shape[0], -1)).view(f.shape[1], f.shape[2]) for f in feats]
        lengths = torch.tensor([m.shape[0] for m in mixed])
        longest = int(lengths.max())
        padded = torch.stack([F.pad(m, (0, 0, 0, longest - m.shape[0])) for m in mixed])
        return F.log_softmax(self.head(padded), dim=-1), lengths

    @staticmethod
    def pack(ready: list[torch.Tensor]) -> PackedFeatures:
        """Standardised (layers, T, D) features of many utterances, once, for `forward_packed`."""
        lengths = torch.tensor([f.shape[1] for f in ready])
        return PackedFeatures(
            frames=torch.cat(ready, dim=1).reshape(ready[0].shape[0], -1),
            dim=ready[0].shape[2],
            lengths=lengths,
            rows=torch.repeat_interleave(torch.arange(len(ready)), lengths),
            columns=torch.cat([torch.arange(int(n)) for n in lengths]),
        )

    def forward_packed(self, packed: PackedFeatures) -> torch.Tensor:
        """`forward`'s log-probabilities (B, T, V) for packed features: every frame mixed by one
        product and the head applied without padding, then scattered into the padded batch (no
        Python loop over utterances: the full-batch fit evaluates it hundreds of times)."""
        mixed = (self.layer_weights() @ packed.frames).view(-1, packed.dim)
        log_probs = F.log_softmax(self.head(mixed), dim=-1)
        shape = (len(packed.lengths), int(packed.lengths.max()), log_probs.shape[-1])
        return log_probs.new_zeros(shape).index_put((packed.rows, packed.columns), log_probs)


def _ctc(log_probs: torch.Tensor, lengths: torch.Tensor, labels: list[list[int]]) -> torch.Tensor:
    """The probe's loss: mean CTC per label (blank 0, an impossible utterance counting 0),
    compiled over each utterance's own lattice on the CPU (evaluate/ctc_loss.py: the full-batch
    objective's evaluation takes 0.45x its time with torch's; benchmarks/probe_ctc.py); torch's
    own on another device."""
    if log_probs.device.type == "cpu":
        return ctc_loss(log_probs, lengths, labels)
    return torch_ctc_loss(log_probs, lengths, labels)


def train_probe(
    feats: list[torch.Tensor],
    labels: list[list[int]],
    vocab_size: int,
    config: ProbeConfig,
    after_step: Callable[[int, Probe], None] | None = None,
) -> tuple[Probe, dict]:
    """Train a probe on cached features; returns it and {steps, seconds, final_loss}. The
    standardised float32 copy of `feats` lives only while the probe trains. `after_step(n,
    probe)` is called after each step n = 1, 2, ... (to score several lengths in one run)."""
    start = time.perf_counter()
    if config.optimizer not in PROBE_OPTIMIZERS:
        raise ValueError(f"probe optimizer '{config.optimizer}' is not one of {PROBE_OPTIMIZERS}")
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        probe = Probe(feats[0].shape[0], feats[0].shape[2], vocab_size)
    if config.standardise:
        probe.fit_standardisation(feats)
    if config.optimizer == "lbfgs":  # packed at once: one standardised copy, not two
        info = _fit_lbfgs(probe, Probe.pack(probe.standardise(feats)), labels, config, after_step)
        return probe, info | {"seconds": time.perf_counter() - start}
    loss = fit_adam(
        probe,
        probe.standardise(feats),
        labels,
        config.steps,
        config.batch_utterances,
        config.lr,
        config.warmup_steps,
        generator,
        after_step,
    )
    info = {"steps": config.steps, "seconds": time.perf_counter() - start, "final_loss": loss}
    return probe, info


def fit_adam(
    model: Probe,
    ready: list[torch.Tensor],
    labels: list[list[int]],
    steps: int,
    batch_utterances: int,
    lr: float,
    warmup_steps: int,
    generator: torch.Generator,
    after_step: Callable[[int, Probe], None] | None = None,
) -> float:
    """`steps` Adam steps of CTC on mini-batches of `batch_utterances` standardised utterances
    drawn by `generator`, the rate rising linearly over `warmup_steps` then constant; returns
    the last step's loss. (The probe's `adam` optimizer and the SUPERB downstream.)"""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    loss = torch.tensor(float("nan"))
    for step in range(1, steps + 1):
        pick = torch.randint(len(ready), (min(batch_utterances, len(ready)),), generator=generator)
        log_probs, lengths = model([ready[i] for i in pick])
        loss = _ctc(log_probs, lengths, [labels[i] for i in pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(step, model)
    return float(loss.detach())


PROBE_OPTIMIZERS = ("adam", "lbfgs")
LBFGS_INNER = 20  # L-BFGS iterations per `step` call (one history, carried across calls)


def _fit_lbfgs(
    probe: Probe, packed: PackedFeatures, labels, config: ProbeConfig, after_step
) -> dict:
    """Full-batch L-BFGS with a strong-Wolfe line search on CTC + l2 * |head weights|^2, until an
    outer round of `LBFGS_INNER` iterations lowers the objective by less than `tolerance`
    (relative), or `config.steps` iterations. Deterministic given the initial probe."""
    optimizer = torch.optim.LBFGS(
        probe.parameters(),
        lr=1.0,
        max_iter=LBFGS_INNER,
        history_size=20,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        log_probs = probe.forward_packed(packed)
        loss = _ctc(log_probs, packed.lengths, labels) + config.l2 * probe.head.weight.pow(2).sum()
        loss.backward()
        return loss

    done, previous, value, converged = 0, math.inf, math.nan, False
    while done < config.steps:
        optimizer.param_groups[0]["max_iter"] = min(LBFGS_INNER, config.steps - done)
        value = float(optimizer.step(objective).detach())
        done += optimizer.param_groups[0]["max_iter"]
        if after_step is not None:
            after_step(done, probe)
        if previous - value <= config.tolerance * max(1.0, abs(value)):
            converged = True
            break
        previous = value
    return {"steps": done, "final_loss": value, "converged": converged}


@torch.no_grad()
def probe_decode(probe: Probe, feats: list[torch.Tensor], batch: int = 16) -> list[list[int]]:
    out = []
    for i in range(0, len(feats), batch):
        out += greedy_decode(*probe(probe.standardise(feats[i : i + batch])))
    return out
