"""The teacher's model: XLS-R's architecture scaled down (docs/design.md, "Teacher pretraining").

A Hugging Face `Wav2Vec2Model` with a pre-LN transformer (`do_stable_layer_norm`), a layer-norm
CNN with bias and XLS-R's kernels and strides (400-sample receptive field, 320-sample = 20 ms
hop), fewer channels, layers and dimensions. `model.family=hubert`: a `HubertModel` of the same
sizes with HuBERT's own design instead (post-LN transformer, group-norm CNN without bias).
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers

from distilxlsr.conventions import XLSR_CONV_KERNEL, XLSR_CONV_STRIDE
from distilxlsr.models.loading import default_feature_extractor
from distilxlsr.models.presets import xlsr_config
from distilxlsr.pretraining.recipe import TeacherShape

MAX_MODEL_MB = 25.0
"""The most a shipped teacher's model.safetensors may take."""


def teacher_config(shape: TeacherShape) -> transformers.PretrainedConfig:
    """An XLS-R-shaped config (pre-LN, layer-norm CNN with bias, 20 ms frames), scaled down; or
    HuBERT's (post-LN, group-norm CNN without bias) for `family=hubert`."""
    config = xlsr_config(shape.hidden, shape.layers, shape.ffn, shape.heads)
    if shape.family == "hubert":
        fields = config.to_dict()
        for key in ("architectures", "model_type", "transformers_version"):
            fields.pop(key, None)
        config = transformers.HubertConfig(**fields)
        config.update(
            {"do_stable_layer_norm": False, "feat_extract_norm": "group", "conv_bias": False}
        )
    config.update(
        {
            "conv_dim": [shape.conv_channels] * len(XLSR_CONV_KERNEL),
            "conv_kernel": list(XLSR_CONV_KERNEL),
            "conv_stride": list(XLSR_CONV_STRIDE),
            "num_conv_pos_embeddings": shape.pos_conv_kernel,
            "num_conv_pos_embedding_groups": shape.pos_conv_groups,
            "hidden_dropout": shape.dropout,
            "attention_dropout": shape.dropout,
            "activation_dropout": 0.0,
            "feat_proj_dropout": shape.dropout,
            "final_dropout": shape.dropout,
            "layerdrop": 0.0,
        }
    )
    return config


def build_encoder(shape: TeacherShape, seed: int = 0) -> transformers.PreTrainedModel:
    """A freshly initialised teacher (seeded): a `Wav2Vec2Model`, or a `HubertModel`."""
    config = teacher_config(shape)
    model_class = (
        transformers.HubertModel if shape.family == "hubert" else transformers.Wav2Vec2Model
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config)


def export_model(encoder: transformers.PreTrainedModel, pristine, model_dir: Path) -> None:
    """The base model (no heads) as an HF directory with its feature-extractor settings."""
    model_dir.mkdir(parents=True, exist_ok=True)
    trained_config = encoder.config
    encoder.config = pristine
    try:
        encoder.save_pretrained(model_dir, safe_serialization=True)
    finally:
        encoder.config = trained_config
    default_feature_extractor(pristine).save_pretrained(model_dir)
    for path in model_dir.iterdir():  # readable by everyone: the directory may be shipped
        path.chmod(0o644)
