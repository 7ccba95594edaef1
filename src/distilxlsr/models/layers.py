"""Layer maps (which teacher layer seeds and supervises each student layer) and layer
representations (what "the output of layer l" means), one definition for teacher and student."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from distilxlsr.errors import UserError
from distilxlsr.models.frames import frame_lengths

LAYER_MAP_FORMS = "jump:K, first:N, random:N or list:i,j,..."


@dataclass(frozen=True)
class LayerMap:
    """How a student with `len(init)` layers relates to a teacher with `teacher_layers` layers.

    Layer numbers are 1-based (docs/design.md, "Layer maps"): layer l's output is h_l, h_0 the transformer input.
    """

    spec: str
    teacher_layers: int
    init: tuple[int | None, ...]
    """Teacher layer copied into each student layer (None: fresh random init)."""
    targets: tuple[int, ...]
    """Teacher layer each student layer is distilled towards."""

    @property
    def student_layers(self) -> int:
        return len(self.init)


def _parse_ints(text: str, spec: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"layer map '{spec}': '{text}' is not a list of integers.") from None


def _check_layer_list(layers: list[int], teacher_layers: int, spec: str) -> None:
    if not layers:
        raise UserError(f"layer map '{spec}' names no layers.")
    bad = [i for i in layers if not 1 <= i <= teacher_layers]
    if bad:
        raise UserError(
            f"layer map '{spec}': layer {bad[0]} is out of range; the teacher has layers "
            f"1..{teacher_layers}."
        )
    if len(set(layers)) != len(layers):
        dup = next(i for i in layers if layers.count(i) > 1)
        raise UserError(f"layer map '{spec}': layer {dup} appears more than once.")
    if layers != sorted(layers):
        raise UserError(f"layer map '{spec}': layers must be increasing.")


def _count(text: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"layer map '{spec}': '{text}' is not an integer.") from None
    if value < 1:
        raise UserError(f"layer map '{spec}': the number must be at least 1.")
    return value


def parse_layer_map(spec: str, teacher_layers: int, targets: str = "auto") -> LayerMap:
    """Parse `jump:K`, `first:N`, `random:N` or `list:i,j,...` against an L-layer teacher."""
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("jump", "first", "random", "list"):
        raise UserError(f"layer map '{spec}' is not one of {LAYER_MAP_FORMS}.")
    L = teacher_layers
    if kind == "jump":
        k = _count(arg, spec)
        if L % k:
            raise UserError(
                f"layer map '{spec}': {k} does not divide the teacher's {L} layers; "
                f"use a divisor of {L} or list:... ."
            )
        init: list[int | None] = [k * i for i in range(1, L // k + 1)]
    elif kind == "list":
        init = _parse_ints(arg, spec)
        _check_layer_list(init, L, spec)
    else:
        n = _count(arg, spec)
        if n > L:
            raise UserError(f"layer map '{spec}': the teacher has only {L} layers.")
        init = list(range(1, n + 1)) if kind == "first" else [None] * n
    n = len(init)
    if targets == "auto":
        if kind in ("jump", "list"):
            target_list = [int(i) for i in init]  # type: ignore[arg-type]
        else:
            # Evenly spaced, ending at the last layer: the same targets as jump:L/N.
            target_list = [round(i * L / n) for i in range(1, n + 1)]
    else:
        t_kind, t_sep, t_arg = targets.partition(":")
        if t_kind != "list" or not t_sep:
            raise UserError(f"student.targets '{targets}' must be 'auto' or list:i,j,... .")
        target_list = _parse_ints(t_arg, targets)
        _check_layer_list(target_list, L, targets)
        if len(target_list) != n:
            raise UserError(
                f"student.targets '{targets}' names {len(target_list)} layers but the student "
                f"'{spec}' has {n}."
            )
    return LayerMap(spec=spec, teacher_layers=L, init=tuple(init), targets=tuple(target_list))


def is_pre_ln(model: PreTrainedModel) -> bool:
    return bool(getattr(model.config, "do_stable_layer_norm", False))


class LayerTap:
    """Runs a speech encoder and returns the representations of chosen layers.

    Representation of layer l (docs/design.md, "Layer representations"): for pre-LN models LN_{l+1}(h_l) with layer l+1's first
    (self-attention) LayerNorm, and the encoder's final LayerNorm for l = L; for post-LN models
    h_l itself. `mode="residual"` gives h_l for every model. Layer 0 is the transformer input.
    """

    def __init__(self, model: PreTrainedModel, mode: str = "auto"):
        if mode not in ("auto", "residual"):
            raise UserError(f"student.representation '{mode}' must be 'auto' or 'residual'.")
        self.model = model
        # What __call__ runs: the model itself, or a wrapper of it (DDP, torch.compile) that
        # must see the forward pass for gradient synchronisation.
        self.forward_module: nn.Module = model
        layers = model.encoder.layers
        self.num_layers = len(layers)
        self.normed = mode == "auto" and is_pre_ln(model)
        # norms[l] turns h_l into the representation of layer l (pre-LN only). Kept here so the
        # model can be truncated after its last needed layer without losing LN_{l+1}.
        self.norms: list[nn.Module | None] = [None] * (self.num_layers + 1)
        if self.normed:
            for l in range(self.num_layers):
                self.norms[l] = layers[l].layer_norm
            self.norms[self.num_layers] = model.encoder.layer_norm
        self._captured: dict[int, torch.Tensor] = {}
        self._wanted: set[int] = set()
        for index, layer in enumerate(layers):
            layer.register_forward_hook(self._output_hook(index + 1))
        layers[0].register_forward_pre_hook(self._input_hook)

    def _output_hook(self, l: int):
        def hook(module, args, output):
            if l in self._wanted:
                self._captured[l] = output[0] if isinstance(output, tuple) else output

        return hook

    def _input_hook(self, module, args):
        if 0 in self._wanted:
            self._captured[0] = args[0]

    def drop_layers_after(self, last: int) -> None:
        """Remove transformer layers above `last` (a frozen teacher needs none of them)."""
        if last < len(self.model.encoder.layers):
            self.model.encoder.layers = self.model.encoder.layers[:last]

    def representation(self, l: int, hidden: torch.Tensor) -> torch.Tensor:
        norm = self.norms[l] if self.normed else None
        return norm(hidden) if norm is not None else hidden

    def __call__(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        layers: list[int] | tuple[int, ...],
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Representations of `layers` (B, T, D each) and the frame mask (B, T; True = real)."""
        present = len(self.model.encoder.layers)
        for l in layers:
            if not 0 <= l <= present:
                raise ValueError(f"layer {l} requested from a model with {present} layers")
        self._wanted = set(layers)
        self._captured = {}
        try:
            self.forward_module(input_values, attention_mask=attention_mask)
            hidden = [self._captured[l] for l in layers]
        finally:
            self._wanted = set()
            self._captured = {}
        reps = [self.representation(l, h) for l, h in zip(layers, hidden, strict=True)]
        frames = reps[0].shape[1]
        if attention_mask is None:
            mask = torch.ones(reps[0].shape[:2], dtype=torch.bool, device=reps[0].device)
        else:
            lengths = frame_lengths(self.model, attention_mask)
            mask = torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
        return reps, mask
