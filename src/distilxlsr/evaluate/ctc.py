"""CTC phone recognisers: the probe (frozen, standardised features, softmax layer weights, linear head) and
fine-tuning (CNN frozen; head first, then the transformer; tri-stage LR; SpecAugment)."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from distilxlsr.data.loader import collate
from distilxlsr.evaluate.per import greedy_decode
from distilxlsr.models.frames import frame_lengths
from distilxlsr.rng import numpy_global_rng


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


@contextmanager
def _quiet_load_report():
    """Without transformers' load report, whose "MISSING lm_head" table says only what
    fine-tuning intends: the CTC head is new (the base model's weights load as for the probe;
    an error in them still raises)."""
    import transformers  # noqa: PLC0415

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


@dataclass
class FinetuneConfig:
    """The paper's fine-tuning recipe, scaled down."""

    steps: int = 400
    batch_utterances: int = 8
    lr: float = 1e-4
    head_only_fraction: float = 0.15
    """First part of training: only the CTC head learns (the transformer stays frozen)."""
    stages: list[float] = field(default_factory=lambda: [0.1, 0.4, 0.5])
    """Tri-stage LR: warm-up, hold, exponential decay (fractions of the steps)."""
    mask_time_prob: float = 0.55
    mask_time_length: int = 10
    mask_feature_prob: float = 0.25
    mask_feature_length: int = 64
    """For a 1024-wide model; scaled to the model's width."""
    seed: int = 0


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
    targets = torch.tensor([t for seq in labels for t in seq], dtype=torch.long)
    target_lengths = torch.tensor([len(seq) for seq in labels])
    return F.ctc_loss(
        log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=0, zero_infinity=True
    )


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
    ready = probe.standardise(feats)
    optimizer = torch.optim.Adam(probe.parameters(), lr=config.lr)
    warmup = max(1, config.warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    loss = torch.tensor(float("nan"))
    for step in range(1, config.steps + 1):
        pick = torch.randint(
            len(ready), (min(config.batch_utterances, len(ready)),), generator=generator
        )
        log_probs, lengths = probe([ready[i] for i in pick])
        loss = _ctc(log_probs, lengths, [labels[i] for i in pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if after_step is not None:
            after_step(step, probe)
    info = {
        "steps": config.steps,
        "seconds": time.perf_counter() - start,
        "final_loss": float(loss.detach()),
    }
    return probe, info


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


def tri_stage(step: int, total: int, stages: list[float], final_scale: float = 0.05) -> float:
    """LR factor: linear warm-up, hold, then exponential decay to `final_scale`."""
    warm, hold = int(stages[0] * total), int(stages[1] * total)
    decay = max(1, total - warm - hold)
    if step < warm:
        return (step + 1) / max(1, warm)
    if step < warm + hold:
        return 1.0
    return math.exp(math.log(final_scale) * min(1.0, (step - warm - hold) / decay))


class FrozenCNNOutputs(nn.Module):
    """Stands in for a frozen layer-norm CNN during fine-tuning: its output for each training
    utterance, computed once (each utterance alone), handed back zero-padded for the batch that
    `select` names. A layer-norm CNN treats every frame alone and its valid frames never reach
    the padding, so these are the values it computes inside any padded batch, to float rounding
    (the frames past an utterance's end, which differ, are zeroed by the encoder before anything
    reads them). On the CPU a step takes 0.90x the time (the shipped teacher on Swahili, one
    thread, the one pass over the training utterances included: `benchmarks/finetune_step.py`).
    A group-norm CNN normalises over the padding too: it is never replaced. The outputs stay in
    CPU memory, 4 bytes per channel and frame: for XLS-R (512 channels, 50 frames a second)
    100 kB per second of training audio, 370 MB per hour."""

    def __init__(self, extractor: nn.Module, inputs: list[torch.Tensor]):
        super().__init__()
        with torch.no_grad():
            self.outputs = [extractor(x[None])[0].cpu() for x in inputs]  # (C, T) each
        self.batch: list[torch.Tensor] = []

    def select(self, rows: list[int]) -> None:
        self.batch = [self.outputs[i] for i in rows]

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        frames = max(o.shape[1] for o in self.batch)
        out = input_values.new_zeros(len(self.batch), self.batch[0].shape[0], frames)
        for row, o in enumerate(self.batch):
            out[row, :, : o.shape[1]] = o
        return out


@contextmanager
def _reused_cnn_outputs(base: nn.Module, waves, normalize: bool, device: str, reuse: bool):
    """The `FrozenCNNOutputs` standing in for `base`'s CNN while fine-tuning (None when `reuse`
    is false: the CNN runs at every step); the model gets its own CNN back afterwards, to decode
    new audio."""
    if not reuse:
        yield None
        return
    cnn = base.feature_extractor
    inputs = [collate([w], normalize)["input_values"][0].to(device) for w in waves]
    base.feature_extractor = FrozenCNNOutputs(cnn, inputs)
    try:
        yield base.feature_extractor
    finally:
        base.feature_extractor = cnn


def finetune(
    model_path: str,
    waves: list[np.ndarray],
    labels: list[list[int]],
    vocab_size: int,
    config: FinetuneConfig,
    normalize: bool,
    device: str = "cpu",
    reuse_cnn_outputs: bool = True,
):
    """Fine-tune a pretrained model with a CTC head; returns (model, info).

    `reuse_cnn_outputs`: a frozen layer-norm CNN runs once per training utterance, not at every
    step (`FrozenCNNOutputs`; the same values to float rounding); False runs it every step."""
    from distilxlsr.evaluate.features import hf_ctc_class  # noqa: PLC0415
    from distilxlsr.models.loading import group_norm_cnn, load_config  # noqa: PLC0415

    start = time.perf_counter()
    base_config = load_config(model_path)
    config_ = copy.deepcopy(base_config)
    width_scale = config_.hidden_size / 1024
    config_.update(
        {
            "vocab_size": vocab_size,
            "pad_token_id": 0,  # the CTC blank
            "ctc_loss_reduction": "mean",
            "ctc_zero_infinity": True,
            "apply_spec_augment": True,
            "mask_time_prob": config.mask_time_prob,
            "mask_time_length": config.mask_time_length,
            "mask_feature_prob": config.mask_feature_prob,
            "mask_feature_length": max(1, round(config.mask_feature_length * width_scale)),
            "layerdrop": 0.0,
        }
    )
    with torch.random.fork_rng(devices=[]), _quiet_load_report():
        torch.manual_seed(config.seed)
        model = hf_ctc_class(config_.model_type).from_pretrained(model_path, config=config_)
    model.freeze_feature_encoder()
    model.to(device).train()
    base = model.base_model
    body = [p for n, p in base.named_parameters() if not n.startswith("feature_extractor")]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: tri_stage(s, config.steps, config.stages)
    )
    generator = torch.Generator().manual_seed(config.seed)
    head_only = int(config.head_only_fraction * config.steps)
    loss = torch.tensor(float("nan"))
    reuse = reuse_cnn_outputs and config.steps > 0 and not group_norm_cnn(model.config)
    # SpecAugment's masks come from numpy's global RNG (transformers): seeded too, so that a
    # fine-tuning run is a function of config.seed alone.
    with (
        _reused_cnn_outputs(base, waves, normalize, device, reuse) as frozen,
        torch.random.fork_rng(devices=[]),
        numpy_global_rng(config.seed),
    ):
        torch.manual_seed(config.seed)
        for step in range(config.steps):
            for p in body:
                p.requires_grad_(step >= head_only)
            pick = torch.randint(
                len(waves), (min(config.batch_utterances, len(waves)),), generator=generator
            )
            if frozen is not None:
                frozen.select(pick.tolist())
            batch = collate([waves[i] for i in pick], normalize)
            target = [labels[i] for i in pick]
            padded = torch.full((len(target), max(len(t) for t in target)), -100, dtype=torch.long)
            for row, seq in enumerate(target):
                padded[row, : len(seq)] = torch.tensor(seq)
            out = model(
                batch["input_values"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                labels=padded.to(device),
            )
            loss = out.loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            scheduler.step()
    model.eval()
    info = {
        "steps": config.steps,
        "seconds": time.perf_counter() - start,
        "final_loss": float(loss.detach()),
    }
    return model, info


@torch.no_grad()
def finetune_decode(
    model, waves: list[np.ndarray], normalize: bool, device: str = "cpu", batch: int = 8
):
    out = []
    for i in range(0, len(waves), batch):
        data = collate(waves[i : i + batch], normalize)
        mask = data["attention_mask"].to(device)
        logits = model(data["input_values"].to(device), attention_mask=mask).logits
        lengths = frame_lengths(model, mask)
        out += greedy_decode(F.log_softmax(logits, -1), lengths)
    return out
