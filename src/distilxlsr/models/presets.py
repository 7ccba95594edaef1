"""Model shapes: real XLS-R sizes (for parameter counts and benchmarks with random weights, no
download) and tiny models (for tests and the offline demo)."""

from __future__ import annotations

import transformers
from transformers import PretrainedConfig

from distilxlsr.conventions import XLSR_CONV_KERNEL, XLSR_CONV_STRIDE
from distilxlsr.errors import UserError
from distilxlsr.models.loading import MODEL_CLASSES


def xlsr_config(hidden: int, layers: int, ffn: int, heads: int) -> transformers.Wav2Vec2Config:
    """An XLS-R / XLSR-53 shaped wav2vec 2.0 config (pre-LN, layer-norm CNN with bias)."""
    return transformers.Wav2Vec2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        intermediate_size=ffn,
        num_attention_heads=heads,
        hidden_act="gelu",
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        conv_bias=True,
        conv_dim=(512,) * 7,
        conv_kernel=XLSR_CONV_KERNEL,
        conv_stride=XLSR_CONV_STRIDE,
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        layerdrop=0.1,
        mask_time_prob=0.075,
    )


# name -> (hidden, layers, ffn, heads), from the published XLS-R / XLSR-53 configs.
SHAPES = {
    "xlsr-53": (1024, 24, 4096, 16),
    "xls-r-300m": (1024, 24, 4096, 16),
    "xls-r-1b": (1280, 48, 5120, 16),
    "xls-r-2b": (1920, 48, 7680, 16),
    # The CPU benchmark's mid-size model: XLS-R's CNN, 8 layers of width 512.
    "cpu-mid": (512, 8, 2048, 8),
}


def shape_config(name: str) -> PretrainedConfig:
    """The config of a named real model shape (random weights; nothing is downloaded)."""
    if name not in SHAPES:
        raise UserError(f"unknown model shape '{name}'; known shapes: {', '.join(SHAPES)}.")
    return xlsr_config(*SHAPES[name])


def tiny_config(
    model_type: str = "wav2vec2",
    pre_ln: bool = True,
    hidden: int = 32,
    layers: int = 4,
    heads: int = 2,
    ffn: int = 64,
    conv_channels: int = 32,
    initializer_range: float = 0.1,
) -> PretrainedConfig:
    """A tiny config of any supported family: 3 CNN layers with a total stride of 80 samples
    (5 ms frames instead of the real models' 20 ms), so short test clips give enough frames."""
    if model_type not in MODEL_CLASSES:
        raise UserError(f"unknown model type '{model_type}'.")
    config_class = getattr(transformers, MODEL_CLASSES[model_type]).config_class
    kwargs = dict(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        conv_dim=(conv_channels,) * 3,
        conv_kernel=(10, 8, 8),
        conv_stride=(5, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        conv_bias=True,
        layerdrop=0.0,
        mask_time_prob=0.0,
        # Larger than transformers' 0.02, so that random layers change their input noticeably
        # (as trained ones do) and distillation has something to learn in tests.
        initializer_range=initializer_range,
    )
    if model_type == "data2vec-audio":
        kwargs["conv_pos_kernel_size"] = 5
        kwargs["num_conv_pos_embeddings"] = 5
    else:
        kwargs["do_stable_layer_norm"] = pre_ln
        kwargs["feat_extract_norm"] = "layer" if pre_ln else "group"
    if model_type == "wavlm":
        kwargs["num_buckets"] = 16
        kwargs["max_bucket_distance"] = 64
    return config_class(**kwargs)
