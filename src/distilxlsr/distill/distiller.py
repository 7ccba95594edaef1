"""Distillation as a training task: teacher targets (frozen, no grad), student predictions and
the loss for one batch (docs/design.md, "Layer representations", "Loss" and "Shared CNN")."""

from __future__ import annotations

import torch
from torch import nn

from distilxlsr.config import DistillConfig
from distilxlsr.distill.losses import DistillLoss
from distilxlsr.models.layers import LayerMap, LayerTap
from distilxlsr.training.loop import Task


class SharedCNN:
    """Runs the frozen CNN once per batch for teacher and student.

    The student's CNN is a frozen copy of the teacher's, so its output is the teacher's: the
    teacher's CNN output is captured and replayed in the student, which saves a whole CNN pass
    (about 5 of XLS-R's 35 forward GFLOP per audio-second). Without a captured output (outside
    a distillation step) the student's CNN runs as usual.
    """

    def __init__(self, teacher_cnn: nn.Module, student_cnn: nn.Module):
        self.captured: torch.Tensor | None = None
        self.replay: torch.Tensor | None = None
        self._student_forward = student_cnn.forward
        teacher_cnn.register_forward_hook(self._capture)
        student_cnn.forward = self._forward  # an instance attribute: state_dict keys unchanged

    def _capture(self, module, args, output):
        self.captured = output

    def _forward(self, input_values):
        if self.replay is None:
            return self._student_forward(input_values)
        out, self.replay = self.replay, None
        return out

    def arm(self) -> None:
        """After the teacher's pass: hand its CNN output to the student's next pass (a plain
        copy, since inference tensors cannot enter autograd)."""
        self.replay, self.captured = self.captured.clone(), None

    @staticmethod
    def applicable(teacher, student, freeze_cnn: bool) -> bool:
        if not freeze_cnn:
            return False
        t, s = teacher.feature_extractor.state_dict(), student.feature_extractor.state_dict()
        return t.keys() == s.keys() and all(torch.equal(t[k], s[k]) for k in t)


class Distiller:
    """Teacher targets, student predictions and the loss for one batch."""

    def __init__(self, teacher, student, layer_map: LayerMap, config: DistillConfig):
        mode = config.student.representation
        self.layer_map = layer_map
        self.shared_cnn = None
        if config.student.share_cnn and SharedCNN.applicable(
            teacher, student, config.student.freeze_cnn
        ):
            self.shared_cnn = SharedCNN(teacher.feature_extractor, student.feature_extractor)
        self.teacher_tap = LayerTap(teacher, mode)
        self.teacher_tap.drop_layers_after(max(layer_map.targets))  # layers above feed no target
        self.student_tap = LayerTap(student, mode)
        self.student_layers = list(range(1, layer_map.student_layers + 1))
        self.loss = DistillLoss(
            config.loss.kind,
            config.loss.cos_weight,
            config.loss.layer_weights,
            len(self.student_layers),
        )

    def targets(self, batch: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
        with torch.inference_mode():
            reps, mask = self.teacher_tap(
                batch["input_values"], batch["attention_mask"], self.layer_map.targets
            )
        if self.shared_cnn is not None:
            self.shared_cnn.arm()
        # Inference tensors cannot enter autograd: plain copies (a few MB) can.
        return [r.clone() for r in reps], mask.clone()

    def __call__(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        targets, mask = self.targets(batch)
        preds, _ = self.student_tap(
            batch["input_values"], batch["attention_mask"], self.student_layers
        )
        return self.loss(preds, [t.to(p.dtype) for t, p in zip(targets, preds, strict=True)], mask)


def prepare_for_distillation(student, freeze_cnn: bool) -> None:
    """Training mode with every layer every step and no input masking (the model's config is
    changed in memory only: checkpoints and exports carry the pristine one)."""
    student.config.layerdrop = 0.0
    student.config.apply_spec_augment = False
    if freeze_cnn:
        # What freeze_feature_encoder does (HubertModel lacks that method).
        student.feature_extractor._freeze_parameters()
    for name, param in student.named_parameters():
        if "masked_spec_embed" in name:
            param.requires_grad_(False)  # unused without masking (and DDP rejects unused params)
    student.train()


class DistillTask(Task):
    """The student trained towards the teacher's layers (the task the training loop runs)."""

    key = "distill"
    description = "distill"
    lr_setting = "train.lr"

    def __init__(self, distiller: Distiller, student, pristine_config):
        self.distiller = distiller
        self.module = self.model = student
        self.pristine_config = pristine_config
        self.layer_names = [f"s{i + 1}_t{t}" for i, t in enumerate(distiller.layer_map.targets)]

    def __call__(self, module, batch: dict, step: int):
        self.distiller.student_tap.forward_module = module  # as wrapped for DDP / compiled
        inputs = {"input_values": batch["input_values"], "attention_mask": batch["attention_mask"]}
        loss, terms = self.distiller(inputs)
        metrics = {"loss": loss.detach()}
        metrics |= {name: terms[i] for i, name in enumerate(self.layer_names)}
        return loss, metrics

    def record(self, means: dict[str, float]) -> dict:
        return {"loss": means["loss"], "layers": {n: means[n] for n in self.layer_names}}
