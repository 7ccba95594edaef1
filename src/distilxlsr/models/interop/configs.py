"""The authors' model config <-> a transformers Wav2Vec2Config (declarative field table)."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import transformers

from distilxlsr.errors import UserError

ConvLayers = list[tuple[int, int, int]]

# ---------------------------------------------------------------------------------------------
# conv_feature_layers: a Python list expression, evaluated without eval
# ---------------------------------------------------------------------------------------------

_MAX_CONV_LAYERS = 64
_MAX_SPEC_CHARS = 1000


def parse_conv_layers(spec: str) -> ConvLayers:
    """Parse `conv_feature_layers`, e.g. `"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"`.

    Only lists, tuples, integers, `+` and `* n` are understood; anything else (names, calls,
    attributes, other operators) is refused without being evaluated.
    """
    if not isinstance(spec, str) or len(spec) > _MAX_SPEC_CHARS:
        raise UserError(
            f"conv_feature_layers {spec!r:.80} must be a short text such as "
            "'[(512,10,5)] + [(512,3,2)] * 4'; fix the checkpoint config."
        )
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError:
        raise _bad_conv_spec(spec) from None
    value = _literal(tree.body, spec)
    if not isinstance(value, list) or not value:
        raise _bad_conv_spec(spec)
    layers: ConvLayers = []
    for item in value:
        if (
            not isinstance(item, tuple)
            or len(item) != 3
            or not all(isinstance(n, int) and n > 0 for n in item)
        ):
            raise _bad_conv_spec(spec)
        layers.append((item[0], item[1], item[2]))
    return layers


def _bad_conv_spec(spec: str) -> UserError:
    return UserError(
        f"conv_feature_layers {spec!r:.120} is not a list of (channels, kernel, stride) tuples "
        "built only from lists, tuples, integers, + and * n; fix the checkpoint config."
    )


def _literal(node: ast.AST, spec: str) -> Any:
    """Evaluate the few node types a conv spec may use; everything else is refused."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_literal(element, spec) for element in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left, spec), _literal(node.right, spec)
        if isinstance(left, list) and isinstance(right, list):
            return _bounded(left + right, spec)
        raise _bad_conv_spec(spec)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _literal(node.left, spec), _literal(node.right, spec)
        if isinstance(left, int) and isinstance(right, list):
            left, right = right, left
        if isinstance(left, list) and isinstance(right, int) and 0 <= right <= _MAX_CONV_LAYERS:
            return _bounded(left * right, spec)
        raise _bad_conv_spec(spec)
    raise _bad_conv_spec(spec)


def _bounded(items: list, spec: str) -> list:
    if len(items) > _MAX_CONV_LAYERS:
        raise _bad_conv_spec(spec)
    return items


def format_conv_layers(layers: ConvLayers) -> str:
    """The authors' compact text for a conv stack: runs of equal layers become `[(...)] * n`."""
    parts: list[str] = []
    index = 0
    while index < len(layers):
        run = 1
        while index + run < len(layers) and layers[index + run] == layers[index]:
            run += 1
        dim, kernel, stride = layers[index]
        part = f"[({dim},{kernel},{stride})]"
        parts.append(part if run == 1 else f"{part} * {run}")
        index += run
    return " + ".join(parts)


# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigField:
    """One config field with the same meaning on both sides, only renamed."""

    official: str
    hf: str
    kind: type
    default: Any  # the authors' default (None: the field is required)


CONFIG_FIELDS: tuple[ConfigField, ...] = (
    ConfigField("encoder_layers", "num_hidden_layers", int, None),
    ConfigField("encoder_embed_dim", "hidden_size", int, None),
    ConfigField("encoder_ffn_embed_dim", "intermediate_size", int, None),
    ConfigField("encoder_attention_heads", "num_attention_heads", int, None),
    ConfigField("layer_norm_first", "do_stable_layer_norm", bool, False),
    ConfigField("conv_bias", "conv_bias", bool, False),
    ConfigField("conv_pos", "num_conv_pos_embeddings", int, 128),
    ConfigField("conv_pos_groups", "num_conv_pos_embedding_groups", int, 16),
    ConfigField("dropout", "hidden_dropout", float, 0.1),
    ConfigField("attention_dropout", "attention_dropout", float, 0.1),
    ConfigField("activation_dropout", "activation_dropout", float, 0.0),
    ConfigField("dropout_input", "feat_proj_dropout", float, 0.0),
    ConfigField("encoder_layerdrop", "layerdrop", float, 0.0),
    ConfigField("mask_prob", "mask_time_prob", float, 0.65),
    ConfigField("mask_length", "mask_time_length", int, 10),
    ConfigField("mask_channel_prob", "mask_feature_prob", float, 0.0),
    ConfigField("mask_channel_length", "mask_feature_length", int, 10),
)

# fairseq activation_fn -> transformers hidden_act (gelu_accurate is the tanh approximation).
ACTIVATIONS_TO_HF = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_accurate": "gelu_new",
    "gelu_fast": "gelu_new",
    "tanh": "tanh",
    "linear": "linear",
}
ACTIVATIONS_TO_OFFICIAL = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_new": "gelu_accurate",
    "gelu_pytorch_tanh": "gelu_accurate",
    "tanh": "tanh",
    "linear": "linear",
}
EXTRACTOR_MODES_TO_HF = {"default": "group", "layer_norm": "layer"}
EXTRACTOR_MODES_TO_OFFICIAL = {hf: official for official, hf in EXTRACTOR_MODES_TO_HF.items()}

# The authors' model has no setting for these; fairseq's LayerNorm/GroupNorm use eps 1e-5, and
# their time masking always draws at least 2 spans.
_LAYER_NORM_EPS = 1e-5
_MASK_MIN_SPANS = 2


def read_field(cfg: Mapping, name: str, kind: type, default: Any, source: str) -> Any:
    if name not in cfg or cfg[name] is None:
        if default is None:
            raise UserError(
                f"{source} has no '{name}' field; pass a checkpoint of the authors' DistilXLSR "
                "model (its Config.model lists the architecture)."
            )
        return default
    value = cfg[name]
    if kind is float and type(value) is int:
        value = float(value)
    if type(value) is not kind:
        raise UserError(
            f"{source} field '{name}' is {value!r}, not a {kind.__name__}; fix the checkpoint "
            "config."
        )
    return value


def _check_supported(cfg: Mapping, source: str) -> None:
    """Refuse the authors' options that a transformers Wav2Vec2Model cannot express."""
    unsupported = [name for name in ("relative_position_embedding", "gru_rel_pos") if cfg.get(name)]
    if cfg.get("layer_type", "transformer") != "transformer":
        unsupported.append(f"layer_type={cfg['layer_type']}")
    if cfg.get("pos_conv_depth", 1) != 1:
        unsupported.append(f"pos_conv_depth={cfg['pos_conv_depth']}")
    if unsupported:
        raise UserError(
            f"{source} uses {', '.join(unsupported)}, which a transformers Wav2Vec2Model cannot "
            "represent; only plain wav2vec 2.0-style students can be imported."
        )


def official_config_to_hf(
    cfg: Mapping[str, Any], source: str = "the checkpoint's Config.model"
) -> transformers.Wav2Vec2Config:
    """A transformers config for the authors' model config `cfg` (`checkpoint["Config"]["model"]`).

    Fields the authors' model would default are taken at their defaults; the architecture fields
    (layers, widths, heads, conv_feature_layers) are required. `source` names the file in errors.
    """
    _check_supported(cfg, source)
    kwargs = {f.hf: read_field(cfg, f.official, f.kind, f.default, source) for f in CONFIG_FIELDS}
    activation = read_field(cfg, "activation_fn", str, "gelu", source)
    if activation not in ACTIVATIONS_TO_HF:
        raise UserError(
            f"{source} has activation_fn '{activation}'; supported: {', '.join(ACTIVATIONS_TO_HF)}."
        )
    mode = read_field(cfg, "extractor_mode", str, "default", source)
    if mode not in EXTRACTOR_MODES_TO_HF:
        raise UserError(
            f"{source} has extractor_mode '{mode}'; supported: {', '.join(EXTRACTOR_MODES_TO_HF)}."
        )
    if "conv_feature_layers" not in cfg:
        raise UserError(
            f"{source} has no 'conv_feature_layers' field; pass a checkpoint of the authors' "
            "DistilXLSR model."
        )
    conv = parse_conv_layers(cfg["conv_feature_layers"])
    hidden, heads = kwargs["hidden_size"], kwargs["num_attention_heads"]
    if hidden % heads or hidden % kwargs["num_conv_pos_embedding_groups"]:
        raise UserError(
            f"{source} has encoder_embed_dim {hidden}, which its attention heads ({heads}) or "
            "conv_pos_groups do not divide; fix the checkpoint config."
        )
    return transformers.Wav2Vec2Config(
        **kwargs,
        hidden_act=ACTIVATIONS_TO_HF[activation],
        feat_extract_norm=EXTRACTOR_MODES_TO_HF[mode],
        feat_extract_activation="gelu",
        conv_dim=[c[0] for c in conv],
        conv_kernel=[c[1] for c in conv],
        conv_stride=[c[2] for c in conv],
        layer_norm_eps=_LAYER_NORM_EPS,
        mask_time_min_masks=_MASK_MIN_SPANS,
        architectures=["Wav2Vec2Model"],
    )


def hf_config_to_official(
    config: transformers.PretrainedConfig, normalize: bool | None = None
) -> dict[str, Any]:
    """The authors' model config (plain str/int/float/bool values) for a Wav2Vec2 `config`.

    `normalize` is the waveform normalisation of the model's feature extractor (default: on for
    layer-norm CNNs, as the XLS-R family). Raises UserError for what their model cannot express.
    """
    name = f"model config ({getattr(config, 'name_or_path', '') or config.model_type})"
    if config.model_type != "wav2vec2":
        raise UserError(
            f"the {name} is a '{config.model_type}' model; only wav2vec2 models can be written "
            "in the DistilXLSR authors' layout."
        )
    problems = []
    if getattr(config, "add_adapter", False):
        problems.append("add_adapter")
    if config.feat_extract_activation != "gelu":
        problems.append(f"feat_extract_activation={config.feat_extract_activation}")
    if config.hidden_act not in ACTIVATIONS_TO_OFFICIAL:
        problems.append(f"hidden_act={config.hidden_act}")
    if config.feat_extract_norm not in EXTRACTOR_MODES_TO_OFFICIAL:
        problems.append(f"feat_extract_norm={config.feat_extract_norm}")
    if abs(config.layer_norm_eps - _LAYER_NORM_EPS) > 1e-12:
        problems.append(f"layer_norm_eps={config.layer_norm_eps}")
    if problems:
        raise UserError(
            f"the {name} uses {', '.join(problems)}, which the DistilXLSR authors' model cannot "
            "represent; export it in Hugging Face format instead."
        )
    conv = list(zip(config.conv_dim, config.conv_kernel, config.conv_stride, strict=True))
    cfg: dict[str, Any] = {f.official: f.kind(getattr(config, f.hf)) for f in CONFIG_FIELDS}
    layer_norm_cnn = config.feat_extract_norm == "layer"
    cfg.update(
        activation_fn=ACTIVATIONS_TO_OFFICIAL[config.hidden_act],
        extractor_mode=EXTRACTOR_MODES_TO_OFFICIAL[config.feat_extract_norm],
        conv_feature_layers=format_conv_layers([(int(d), int(k), int(s)) for d, k, s in conv]),
        normalize=bool(layer_norm_cnn if normalize is None else normalize),
    )
    return cfg
