"""Teacher pretraining's two tasks for the training loop: masked unit prediction (stage 1, as
HuBERT's first iteration) and multilingual phone CTC (stage 2) (docs/design.md, "Teacher
pretraining")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices

from distilxlsr.conventions import frames_of
from distilxlsr.models.frames import frame_lengths
from distilxlsr.rng import numpy_global_rng
from distilxlsr.training.loop import Task


def span_mask(
    lengths: torch.Tensor, frames: int, prob: float, length: int, seed: list[int]
) -> torch.Tensor:
    """Masked frames (B, frames), spans of `length` as wav2vec 2.0 / HuBERT draw them (HF's
    `_compute_mask_indices`, at least one span per utterance), never on padding; seeded."""
    real = torch.arange(frames)[None, :] < lengths.cpu()[:, None]
    if prob <= 0 or length > frames:
        return torch.zeros_like(real)
    with numpy_global_rng(seed):  # HF draws from numpy's global RNG
        mask = _compute_mask_indices(
            (len(lengths), frames), prob, length, attention_mask=real.long(), min_masks=1
        )
    return torch.from_numpy(mask) & real


class UnitPrediction(nn.Module):
    """Stage 1: predict the k-means unit of every masked frame from the last layer."""

    def __init__(self, encoder: transformers.Wav2Vec2Model, num_units: int, unmasked_weight=0.0):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_units)
        self.unmasked_weight = unmasked_weight

    def forward(self, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        hidden = self.encoder(
            batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask
        ).last_hidden_state
        units = batch["units"]
        frames = hidden.shape[1]  # the units have the same count (± 1 at most): trim or pad
        units = F.pad(units[:, :frames], (0, max(0, frames - units.shape[1])), value=-100)
        valid = units >= 0
        masked = mask & valid
        logits = self.head(hidden[masked]).float()  # only the frames that are scored
        loss = F.cross_entropy(logits, units[masked])
        accuracy = (logits.argmax(-1) == units[masked]).float().mean()
        if self.unmasked_weight > 0:
            unmasked = ~mask & valid
            if unmasked.any():
                rest = F.cross_entropy(self.head(hidden[unmasked]).float(), units[unmasked])
                loss = loss + self.unmasked_weight * rest
        return loss, {"loss": loss.detach(), "accuracy": accuracy.detach()}


class PhoneCTC(nn.Module):
    """Stage 2: multilingual phone CTC through a temporary linear head on the last layer."""

    def __init__(self, encoder: transformers.Wav2Vec2Model, vocab_size: int):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(encoder.config.final_dropout)
        self.head = nn.Linear(encoder.config.hidden_size, vocab_size)

    def forward(self, batch: dict, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
        hidden = self.encoder(
            batch["input_values"], attention_mask=batch["attention_mask"], mask_time_indices=mask
        ).last_hidden_state
        log_probs = self.head(self.dropout(hidden)).float().log_softmax(-1)
        lengths = frame_lengths(self.encoder, batch["attention_mask"])
        keep = batch["label_lengths"] > 0  # crops without a phone inside carry no CTC target
        if not bool(keep.any()):
            loss = log_probs.sum() * 0.0
        else:
            loss = F.ctc_loss(
                log_probs[keep].transpose(0, 1),
                batch["labels"],
                lengths[keep],
                batch["label_lengths"][keep],
                blank=0,
                reduction="mean",
                zero_infinity=True,
            )
        return loss, {"loss": loss.detach()}


class StageTask(Task):
    """One pretraining stage as a task of the training loop: each batch gets the stage's span
    mask, seeded by (seed, stage, step, rank), and goes through the stage's module (encoder and
    head); checkpoints keep the head beside the encoder."""

    progress_keys = ("loss", "accuracy")

    def __init__(
        self,
        number: int,
        module: UnitPrediction | PhoneCTC,
        stage,
        seed: int,
        rank: int,
        pristine_config,
    ):
        self.number = number
        self.key = f"stage{number}"
        name = "masked unit prediction" if number == 1 else "phone CTC"
        self.description = f"stage {number} ({name})"
        self.lr_setting = f"stage{number}.lr"
        self.module = module
        self.model = module.encoder
        self.pristine_config = pristine_config
        self.stage = stage
        self.seed = seed
        self.rank = rank

    def __call__(self, module, batch: dict, step: int):
        lengths = frame_lengths(self.model, batch["attention_mask"])
        frames = frames_of(batch["input_values"].shape[1])
        seed = [self.seed, self.number, step, self.rank]
        mask = span_mask(lengths, frames, self.stage.mask_prob, self.stage.mask_length, seed)
        return module(batch, mask.to(batch["input_values"].device))

    def record(self, means: dict[str, float]) -> dict:
        return {"stage": self.number, **means}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"head.{k}": v for k, v in self.module.head.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        head = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
        if head:
            self.module.head.load_state_dict(head)
