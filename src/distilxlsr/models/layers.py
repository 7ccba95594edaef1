"""Layer maps (which teacher layer seeds and supervises each student layer) and layer
representations (what "the output of layer l" means), one definition for teacher and student."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from distilxlsr.errors import UserError
from distilxlsr.models.frames import frame_lengths

LAYER_MAP_FORMS = "jump:K, first:N, random:N or list:i,j,..."
LAYER_MAP_KINDS = ("jump", "first", "random", "list")
REPRESENTATIONS = ("auto", "residual")
"""What "the output of layer l" means (`student.representation`; `LayerTap`)."""


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


def _parse_ints(text: str, spec: str, what: str = "layer map") -> list[int]:
    """The integers of "i,j,..."; `what` names the option in the error (a layer map or
    student.targets)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} '{spec}': '{text}' is not a list of integers.") from None


def _check_layer_list(
    layers: list[int], teacher_layers: int, spec: str, what: str = "layer map"
) -> None:
    if not layers:
        raise UserError(f"{what} '{spec}' names no layers.")
    bad = [i for i in layers if not 1 <= i <= teacher_layers]
    if bad:
        raise UserError(
            f"{what} '{spec}': layer {bad[0]} is out of range; the teacher has layers "
            f"1..{teacher_layers}."
        )
    if len(set(layers)) != len(layers):
        dup = next(i for i in layers if layers.count(i) > 1)
        raise UserError(f"{what} '{spec}': layer {dup} appears more than once.")
    if layers != sorted(layers):
        raise UserError(f"{what} '{spec}': layers must be increasing.")


def _count(text: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"layer map '{spec}': '{text}' is not an integer.") from None
    if value < 1:
        raise UserError(f"layer map '{spec}': the number must be at least 1.")
    return value


def _layer_map_kind(spec: str) -> tuple[str, str]:
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in LAYER_MAP_KINDS:
        raise UserError(f"layer map '{spec}' is not one of {LAYER_MAP_FORMS}.")
    return kind, arg


def _targets_list(targets: str) -> str:
    t_kind, t_sep, t_arg = targets.partition(":")
    if t_kind != "list" or not t_sep:
        raise UserError(f"student.targets '{targets}' must be 'auto' or list:i,j,... .")
    return t_arg


def check_layer_map_syntax(spec: str) -> None:
    """A layer map's syntax, whatever the teacher (`parse_layer_map` checks it against one)."""
    kind, arg = _layer_map_kind(spec)
    if kind == "list":
        _check_layer_numbers(_parse_ints(arg, spec), spec)
    else:
        _count(arg, spec)


def check_targets_syntax(targets: str) -> None:
    """`student.targets`' syntax: `auto` or `list:i,j,...`, whatever the teacher."""
    if targets == "auto":
        return
    layers = _parse_ints(_targets_list(targets), targets, "student.targets")
    _check_layer_numbers(layers, targets, "student.targets")


def _check_layer_numbers(layers: list[int], spec: str, what: str = "layer map") -> None:
    """A list of layers as far as no teacher is needed: some, from 1, increasing, each once."""
    if any(i < 1 for i in layers):
        raise UserError(f"{what} '{spec}': layers are numbered from 1.")
    _check_layer_list(layers, max(layers, default=0), spec, what)


def parse_layer_map(spec: str, teacher_layers: int, targets: str = "auto") -> LayerMap:
    """Parse `jump:K`, `first:N`, `random:N` or `list:i,j,...` against an L-layer teacher."""
    kind, arg = _layer_map_kind(spec)
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
        target_list = _parse_ints(_targets_list(targets), targets, "student.targets")
        _check_layer_list(target_list, L, targets, "student.targets")
        if len(target_list) != n:
            raise UserError(
                f"student.targets '{targets}' names {len(target_list)} layers but the student "
                f"'{spec}' has {n}."
            )
    return LayerMap(spec=spec, teacher_layers=L, init=tuple(init), targets=tuple(target_list))


def is_pre_ln(model: PreTrainedModel) -> bool:
    return bool(getattr(model.config, "do_stable_layer_norm", False))


@dataclass(frozen=True)
class _Encoder:
    """What the explicit forward must know of an encoder class (transformers' own forward)."""

    pre_ln: bool
    """Stable-LayerNorm encoder: no LayerNorm before layer 1, the final one after layer L."""
    wavlm: bool
    """Layers take and return a relative position bias, read the frame mask itself (no
    prepared attention mask), and layer 1 is never dropped by layerdrop."""


def _known_encoders() -> dict[type, _Encoder]:
    from transformers.models.data2vec import modeling_data2vec_audio as d2v
    from transformers.models.hubert import modeling_hubert as hubert
    from transformers.models.wav2vec2 import modeling_wav2vec2 as w2v
    from transformers.models.wavlm import modeling_wavlm as wavlm

    return {
        w2v.Wav2Vec2Encoder: _Encoder(pre_ln=False, wavlm=False),
        w2v.Wav2Vec2EncoderStableLayerNorm: _Encoder(pre_ln=True, wavlm=False),
        hubert.HubertEncoder: _Encoder(pre_ln=False, wavlm=False),
        hubert.HubertEncoderStableLayerNorm: _Encoder(pre_ln=True, wavlm=False),
        d2v.Data2VecAudioEncoder: _Encoder(pre_ln=False, wavlm=False),
        wavlm.WavLMEncoder: _Encoder(pre_ln=False, wavlm=True),
        wavlm.WavLMEncoderStableLayerNorm: _Encoder(pre_ln=True, wavlm=True),
    }


def explicit_encoder(model: PreTrainedModel) -> _Encoder | None:
    """How to run `model`'s encoder piece by piece; None for an encoder class the explicit
    forward does not know (LayerTap then captures layers with hooks)."""
    return _known_encoders().get(type(model.encoder))


def _dropped(encoder: nn.Module, kind: _Encoder, index: int) -> bool:
    """transformers' LayerDrop, the same draw for the same layers: whether layer `index`
    (0-based) is skipped in this pass (never under DeepSpeed ZeRO-3 or FSDP, which run it)."""
    if not (encoder.training and encoder.config.layerdrop > 0.0):
        return False
    if kind.wavlm and index == 0:
        return False
    if not torch.rand([]) < encoder.config.layerdrop:
        return False
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
    from transformers.integrations.fsdp import is_fsdp_managed_module

    return not (is_deepspeed_zero3_enabled() or is_fsdp_managed_module(encoder))


_LAYER_NORM_CONV_LAYERS = frozenset(
    {
        "Wav2Vec2LayerNormConvLayer",
        "HubertLayerNormConvLayer",
        "WavLMLayerNormConvLayer",
        "Data2VecAudioConvLayer",
    }
)
"""transformers' CNN layers that are conv -> LayerNorm over channels -> activation (XLS-R's CNN,
`feat_extract_norm="layer"`), which run_cnn runs channels-last."""


def _is_layer_norm_conv(layer: nn.Module) -> bool:
    return (
        type(layer).__name__ in _LAYER_NORM_CONV_LAYERS
        and isinstance(getattr(layer, "conv", None), nn.Conv1d)
        and isinstance(getattr(layer, "layer_norm", None), nn.LayerNorm)
        and layer.conv.padding == (0,)
    )


def _layer_norm_conv_channels_last(layer: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """One layer-norm CNN layer on (B, C, 1, T) in channels-last memory (physically B, T, C):
    the convolution reads and writes that layout and the LayerNorm over channels normalises its
    contiguous last dimension, so neither is preceded by a transposing copy. transformers' layer
    transposes (B, C, T) to (B, T, C) for the LayerNorm and back for the next convolution, and
    each transpose costs a copy of the layer's output: on the CPU, 45% of the CNN's time
    (docs/design.md, "Layer representations")."""
    conv, norm = layer.conv, layer.layer_norm
    hidden = F.conv2d(
        hidden,
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, conv.stride[0]),
        dilation=(1, conv.dilation[0]),
        groups=conv.groups,
    ).contiguous(memory_format=torch.channels_last)
    normed = F.layer_norm(
        hidden.permute(0, 2, 3, 1), norm.normalized_shape, norm.weight, norm.bias, norm.eps
    )
    return layer.activation(normed.permute(0, 3, 1, 2))


def run_cnn(
    extractor: nn.Module, input_values: torch.Tensor, channels_last: bool = True
) -> torch.Tensor:
    """The CNN feature encoder's forward: (B, samples) -> (B, C, T). In training with a trainable
    CNN transformers marks the waveform as requiring grad, for gradient checkpointing's sake (a
    setattr that torch.compile cannot capture); without checkpointing the conv layers run
    directly, with the same values and parameter gradients. A layer-norm CNN (XLS-R's) runs
    channels-last (_layer_norm_conv_channels_last): its output is (B, C, T) with the channels
    innermost in memory, so the (B, T, C) view the feature projection reads is contiguous; the
    values equal transformers' to float rounding (`channels_last=False`: transformers' layers,
    bit for bit)."""
    layers = extractor.conv_layers
    if any(layer.gradient_checkpointing for layer in layers):
        return extractor(input_values)
    if channels_last and all(_is_layer_norm_conv(layer) for layer in layers):
        hidden = input_values[:, None, None, :]
        for layer in layers:
            hidden = _layer_norm_conv_channels_last(layer, hidden)
        return hidden.squeeze(2)
    hidden = input_values[:, None]
    for layer in layers:
        hidden = layer(hidden)
    return hidden


class LayerTap(nn.Module):
    """Runs a speech encoder and returns the representations of chosen layers.

    Representation of layer l (docs/design.md, "Layer representations"): for pre-LN models LN_{l+1}(h_l) with layer l+1's first
    (self-attention) LayerNorm, and the encoder's final LayerNorm for l = L; for post-LN models
    h_l itself. `mode="residual"` gives h_l for every model. Layer 0 is the transformer input.

    The tap is the module to wrap (DDP) or compile: its forward runs the model's pieces
    explicitly (CNN, feature projection, positional convolution, the layers one by one up to
    the highest requested one) as transformers' forward runs them, with no hooks, so
    `torch.compile(tap, fullgraph=True)` captures it whole. An encoder class it does not know
    runs through the model's own forward with forward hooks instead (`explicit=False` forces
    that path for every model: the reference the explicit one is tested against). The explicit
    path runs a layer-norm CNN channels-last (run_cnn), equal to transformers' CNN to float
    rounding; `channels_last_cnn=False` runs transformers' CNN layers, bit for bit.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        mode: str = "auto",
        explicit: bool | None = None,
        channels_last_cnn: bool = True,
    ):
        if mode not in REPRESENTATIONS:
            raise UserError(f"student.representation '{mode}' must be 'auto' or 'residual'.")
        super().__init__()
        self.model = model
        self.training = model.training  # the tap has no mode of its own: the model's is used
        encoder = explicit_encoder(model)
        if explicit and encoder is None:
            raise ValueError(f"no explicit forward for {type(model.encoder).__name__}")
        self.kind = encoder if explicit is not False else None
        self.channels_last_cnn = channels_last_cnn
        layers = model.encoder.layers
        self.num_layers = len(layers)
        self.normed = mode == "auto" and is_pre_ln(model)
        # norms[l] turns h_l into the representation of layer l (pre-LN only). A plain list (not
        # registered twice): kept here so the model can be truncated after its last needed
        # layer without losing LN_{l+1}.
        self.norms: list[nn.Module | None] = [None] * (self.num_layers + 1)
        if self.normed:
            for l in range(self.num_layers):
                self.norms[l] = layers[l].layer_norm
            self.norms[self.num_layers] = model.encoder.layer_norm

    @property
    def explicit(self) -> bool:
        return self.kind is not None

    def drop_layers_after(self, last: int) -> None:
        """Remove transformer layers above `last` (a frozen teacher needs none of them)."""
        if last < len(self.model.encoder.layers):
            self.model.encoder.layers = self.model.encoder.layers[:last]
            if self.norms[last] is not None:
                # LN_{last+1} left the model with its layer: registered here, so that moving
                # the tap (`tap.to(device)`) moves it too.
                self.top_norm = self.norms[last]

    def representation(self, l: int, hidden: torch.Tensor) -> torch.Tensor:
        norm = self.norms[l] if self.normed else None
        return norm(hidden) if norm is not None else hidden

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        layers: list[int] | tuple[int, ...],
        cnn_features: torch.Tensor | None = None,
        return_cnn: bool = False,
    ):
        """Representations of `layers` (B, T, D each) and the frame mask (B, T; True = real).

        `cnn_features`: the CNN's output for `input_values` (B, C, T), computed elsewhere (the
        shared CNN): the model's CNN does not run. `return_cnn=True` adds the CNN output as a
        third value.
        """
        present = len(self.model.encoder.layers)
        for l in layers:
            if not 0 <= l <= present:
                raise ValueError(f"layer {l} requested from a model with {present} layers")
        if self.kind is not None:
            hidden, cnn = self._explicit(input_values, attention_mask, layers, cnn_features)
        else:
            hidden, cnn = self._hooked(input_values, attention_mask, layers, cnn_features)
        reps = [self.representation(l, h) for l, h in zip(layers, hidden, strict=True)]
        frames = reps[0].shape[1]
        if attention_mask is None:
            mask = torch.ones(reps[0].shape[:2], dtype=torch.bool, device=reps[0].device)
        else:
            lengths = frame_lengths(self.model, attention_mask)
            mask = torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
        return (reps, mask, cnn) if return_cnn else (reps, mask)

    def _explicit(self, input_values, attention_mask, layers, cnn_features):
        """h_l for `layers` as transformers' model and encoder forward compute them."""
        model, encoder, kind = self.model, self.model.encoder, self.kind
        hubert = model.config.model_type == "hubert"  # its model forward differs in two calls
        cnn = (
            run_cnn(model.feature_extractor, input_values, self.channels_last_cnn)
            if cnn_features is None
            else cnn_features
        )
        extract = cnn.transpose(1, 2)
        frame_mask = None
        if attention_mask is not None:
            extra = {} if hubert else {"add_adapter": False}
            frame_mask = model._get_feature_vector_attention_mask(
                extract.shape[1], attention_mask, **extra
            )
        hidden = model.feature_projection(extract)
        if isinstance(hidden, tuple):  # (projected, normed CNN features)
            hidden = hidden[0]
        if hubert:
            hidden = model._mask_hidden_states(hidden)
        else:
            hidden = model._mask_hidden_states(hidden, attention_mask=frame_mask)
        # The encoder's forward. Padded frames are zeroed (transformers assigns in place).
        if frame_mask is not None:
            hidden = hidden.masked_fill(~frame_mask[..., None], 0.0)
        if kind.wavlm:
            attention = frame_mask  # WavLM's attention reads the frame mask itself
        else:
            from transformers.masking_utils import create_bidirectional_mask

            attention = create_bidirectional_mask(
                config=encoder.config, inputs_embeds=hidden, attention_mask=frame_mask
            )
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not kind.pre_ln:
            hidden = encoder.layer_norm(hidden)
        hidden = encoder.dropout(hidden)
        captured = {0: hidden}
        position_bias = None
        for i in range(max(layers)):  # the layers above the highest requested one never run
            layer = encoder.layers[i]
            if _dropped(encoder, kind, i):
                if i + 1 in layers:
                    raise RuntimeError(
                        f"layer {i + 1} was dropped by layerdrop: it has no output this pass "
                        "(set layerdrop=0 to tap every layer)"
                    )
                continue
            if kind.wavlm:
                index = {} if kind.pre_ln else {"index": i}
                hidden, position_bias = layer(
                    hidden, attention_mask=attention, position_bias=position_bias, **index
                )
            else:
                hidden = layer(hidden, attention_mask=attention)
            captured[i + 1] = hidden
        return [captured[l] for l in layers], cnn

    def _hooked(self, input_values, attention_mask, layers, cnn_features):
        """h_l for `layers` captured by forward hooks while the model's own forward runs."""
        captured: dict = {}
        wanted = set(layers)
        model = self.model
        extractor = model.feature_extractor

        def output_hook(l):
            def hook(module, args, output):
                if l in wanted:
                    captured[l] = output[0] if isinstance(output, tuple) else output

            return hook

        def input_hook(module, args):
            if 0 in wanted:
                captured[0] = args[0]

        def cnn_hook(module, args, output):
            captured["cnn"] = output

        handles = [
            layer.register_forward_hook(output_hook(i + 1))
            for i, layer in enumerate(model.encoder.layers)
        ]
        handles.append(model.encoder.layers[0].register_forward_pre_hook(input_hook))
        handles.append(extractor.register_forward_hook(cnn_hook))
        if cnn_features is not None:
            extractor.forward = lambda values: cnn_features  # an instance attribute, removed below
        try:
            model(input_values, attention_mask=attention_mask)
            hidden = [captured[l] for l in layers]
        finally:
            for handle in handles:
                handle.remove()
            if cnn_features is not None:
                del extractor.forward
        return hidden, captured["cnn"]
