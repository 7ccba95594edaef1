"""Distillation as a training task: teacher targets (frozen, no grad), student predictions and
the loss for one batch (docs/design.md, "Layer representations", "Loss" and "Shared CNN")."""

from __future__ import annotations

import torch
from torch import nn

from distilxlsr.distill.losses import DistillLoss
from distilxlsr.distill.recipe import DistillConfig
from distilxlsr.errors import UserError
from distilxlsr.models.layers import LayerMap, LayerTap
from distilxlsr.training.loop import Task

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TeacherOverflow(UserError):
    """An fp16 teacher gave a non-finite output."""


def cnn_shareable(teacher, student, freeze_cnn: bool) -> bool:
    """Whether the student's CNN computes the teacher's function: frozen, with equal weights in
    the same dtype (docs/design.md, "Shared CNN")."""
    if not freeze_cnn:
        return False
    t, s = teacher.feature_extractor.state_dict(), student.feature_extractor.state_dict()
    return t.keys() == s.keys() and all(
        t[k].dtype == s[k].dtype and torch.equal(t[k], s[k]) for k in t
    )


def cast_teacher(teacher, dtype: str) -> None:
    """The frozen teacher's weights in `dtype` (`teacher_dtype`), after the student was built
    from its fp32 weights."""
    if dtype != "fp32":
        teacher.to(DTYPES[dtype])


class Distiller:
    """Teacher targets, student predictions and the loss for one batch.

    Both run through a `LayerTap`, the module that computes their layers: the student's is what
    the training loop trains (wrapped for DDP, compiled with `train.compile`), the teacher's
    runs under inference mode (compiled too, by `compile_teacher`). With a shared CNN the
    teacher's CNN output is handed to the student's tap, whose CNN does not run: it saves a
    whole CNN pass (about 5 of XLS-R's 35 forward GFLOP per audio-second).

    With static shapes (`data.static_shapes`) no row is padded: both taps run without an
    attention mask, so SDPA may take its flash kernel, also in a compiled graph (there,
    transformers cannot see that an all-true mask is all true and hands it to SDPA).
    """

    def __init__(
        self,
        teacher,
        student,
        layer_map: LayerMap,
        config: DistillConfig,
        explicit=None,
        cnn_equal: bool | None = None,
    ):
        """`cnn_equal`: whether the student's CNN is known to equal the teacher's (the planner's
        weightless models); None: compared here."""
        mode = config.student.representation
        self.layer_map = layer_map
        if cnn_equal is None:
            cnn_equal = cnn_shareable(teacher, student, config.student.freeze_cnn)
        self.share_cnn = config.student.share_cnn and config.student.freeze_cnn and cnn_equal
        self.unpadded = config.data.static_shapes
        self.teacher_dtype = next(teacher.parameters()).dtype
        self.teacher_tap = LayerTap(teacher, mode, explicit)
        self.teacher_tap.drop_layers_after(max(layer_map.targets))  # layers above feed no target
        self.student_tap = LayerTap(student, mode, explicit)
        # What runs each tap: the tap itself, or a wrapper of it (DDP, torch.compile); the
        # student's is set by the task at every step to the module the loop trains.
        self.teacher_forward: nn.Module = self.teacher_tap
        self.student_forward: nn.Module = self.student_tap
        self.student_layers = list(range(1, layer_map.student_layers + 1))
        self.loss = DistillLoss(
            config.loss.kind,
            config.loss.cos_weight,
            config.loss.layer_weights,
            len(self.student_layers),
        )

    def compile_teacher(self, dynamic: bool | None = None) -> None:
        """torch.compile the teacher's tap (`train.compile`); `dynamic` as torch.compile's."""
        self.teacher_forward = torch.compile(self.teacher_tap, dynamic=dynamic)

    def attention_mask(self, batch: dict) -> torch.Tensor | None:
        """The mask the taps run with: None for static-shape batches (every row is audio)."""
        return None if self.unpadded else batch["attention_mask"]

    def _teacher(self, batch: dict):
        with torch.inference_mode():
            reps, mask, cnn = self.teacher_forward(
                batch["input_values"].to(self.teacher_dtype),
                self.attention_mask(batch),
                self.layer_map.targets,
                return_cnn=True,
            )
        if self.teacher_dtype == torch.float16 and not all(r.isfinite().all() for r in reps):
            raise TeacherOverflow(
                "the fp16 teacher gave a non-finite output (fp16 overflows in some XLS-R "
                "layers); distil with teacher_dtype=bf16 (GPUs with bf16) or fp32."
            )
        # Inference tensors cannot enter autograd: plain copies (a few MB) can.
        cnn = cnn.clone() if self.share_cnn else None
        return [r.clone() for r in reps], mask.clone(), cnn

    def targets(self, batch: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The teacher's representations of the target layers and the frame mask."""
        reps, mask, _ = self._teacher(batch)
        return reps, mask

    def __call__(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        targets, mask, cnn = self._teacher(batch)
        preds, _ = self.student_forward(
            batch["input_values"], self.attention_mask(batch), self.student_layers, cnn
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
        self.module = distiller.student_tap  # trained: its forward computes the student's layers
        self.model = student
        self.pristine_config = pristine_config
        self.layer_names = [f"s{i + 1}_t{t}" for i, t in enumerate(distiller.layer_map.targets)]

    def compile_extra(self, dynamic: bool | None = None) -> None:
        self.distiller.compile_teacher(dynamic)

    def __call__(self, module, batch: dict, step: int):
        self.distiller.student_forward = module  # the student's tap as wrapped (DDP, compiled)
        inputs = {"input_values": batch["input_values"], "attention_mask": batch["attention_mask"]}
        loss, terms = self.distiller(inputs)
        metrics = {"loss": loss.detach()}
        metrics |= {name: terms[i] for i, name in enumerate(self.layer_names)}
        return loss, metrics

    def record(self, means: dict[str, float]) -> dict:
        return {"loss": means["loss"], "layers": {n: means[n] for n in self.layer_names}}
