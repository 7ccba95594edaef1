"""Loading speech encoders of the wav2vec 2.0 family, teachers and students alike: from a local
directory, a hub id or `shipped`, with their configs and feature extractors.

Every command loads its models here, but for fine-tuning (evaluate/ctc.py), which reads the
config here and loads the model with a CTC head itself."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import transformers
from transformers import PretrainedConfig, PreTrainedModel

from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.errors import UserError
from distilxlsr.shipped import resolve_model

# model_type in config.json -> the base model class (a *ForCTC / *ForPreTraining checkpoint
# loads into its base model: transformers strips the head and the base-model prefix).
MODEL_CLASSES: dict[str, str] = {
    "wav2vec2": "Wav2Vec2Model",
    "hubert": "HubertModel",
    "wavlm": "WavLMModel",
    "data2vec-audio": "Data2VecAudioModel",
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def model_class(model_type: str) -> type[PreTrainedModel]:
    """The transformers base-model class for a config's `model_type`."""
    if model_type not in MODEL_CLASSES:
        raise UserError(
            f"model type '{model_type}' is not supported; supported types are "
            f"{', '.join(MODEL_CLASSES)} (wav2vec 2.0-family speech encoders)."
        )
    return getattr(transformers, MODEL_CLASSES[model_type])


def _looks_like_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and not name.startswith(".") and name.count("/") <= 1


def load_config(name: str) -> PretrainedConfig:
    """The model config of a local directory, hub id or `shipped`, without loading weights."""
    name = resolve_model(name)
    path = Path(name)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise UserError(
                f"'{path}' has no config.json; pass a Hugging Face model directory "
                "(config.json + model.safetensors)."
            )
        try:
            values = json.loads(config_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"'{config_file}' is not valid JSON ({err}).") from None
        if not isinstance(values, dict):
            raise UserError(
                f"'{config_file}' holds a {type(values).__name__}, not a model config (a JSON "
                "object with model_type and the model's sizes)."
            )
        model_type = values.get("model_type", "")
        cls = model_class(model_type)
        return cls.config_class.from_pretrained(path)
    _check_hub_id(name)
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=not hub_reachable())
    except OSError as err:
        raise _hub_error(name, err) from None
    model_class(config.model_type)
    return config


def _check_hub_id(name: str) -> None:
    if Path(name).exists():
        raise UserError(f"'{name}' is a file, not a model directory; pass a directory.")
    if not _looks_like_hub_id(name):
        raise UserError(
            f"model directory '{name}' does not exist; pass an existing Hugging Face model "
            "directory or a hub id such as facebook/wav2vec2-xls-r-300m."
        )


def _hub_error(name: str, err: Exception) -> UserError:
    if not hub_reachable():
        return UserError(
            f"'{name}' is neither a local directory nor a model in the Hugging Face cache, and "
            f"the hub ({_hub_host()[0]}) cannot be reached from here; check the path, or the "
            "network (HF_HUB_OFFLINE=1 uses the cache alone)."
        )
    return UserError(
        f"'{name}' is neither a local directory nor a model that could be fetched from the "
        f"Hugging Face hub ({type(err).__name__}); check the path, or the network and the hub id."
    )


def _hub_host() -> tuple[str, int]:
    from huggingface_hub import constants  # noqa: PLC0415

    url = urlparse(constants.ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub can be asked at all: False under HF_HUB_OFFLINE, or when its
    host takes no connection within `timeout` seconds (one try; without it, huggingface_hub
    retries for about 30 s before failing). Behind a proxy (HTTPS_PROXY, ALL_PROXY) the hub is
    assumed reachable. Unreachable: models load from the local cache alone."""
    from huggingface_hub import constants  # noqa: PLC0415

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.create_connection(_hub_host(), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_model(name: str, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """Load a wav2vec 2.0-family base model from a local directory, a hub id or `shipped`."""
    name = resolve_model(name)
    config = load_config(name)
    cls = model_class(config.model_type)
    # SDPA attention: the fused kernel on GPU, and no worse than eager on CPU.
    kwargs = {"dtype": dtype, "attn_implementation": "sdpa"}
    if not Path(name).is_dir():
        kwargs["local_files_only"] = not hub_reachable()
    try:
        model = cls.from_pretrained(name, config=config, **kwargs)
    except Exception as err:  # safetensors and torch raise their own types for damaged files
        if Path(name).is_dir():
            raise UserError(
                f"could not load weights from '{name}' ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); the directory needs an intact "
                "model.safetensors (or pytorch_model.bin) next to config.json."
            ) from None
        if isinstance(err, OSError):
            raise _hub_error(name, err) from None
        raise
    return model


def load_teacher(name: str) -> PreTrainedModel:
    """The frozen teacher: eval mode, no gradients."""
    teacher = load_model(name)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def feature_extractor(name: str, config: PretrainedConfig) -> transformers.Wav2Vec2FeatureExtractor:
    """The model's waveform preprocessing (normalisation, attention mask): its own
    preprocessor_config.json where it has one, else the usual settings for its architecture."""
    name = resolve_model(name)
    path = Path(name)
    if (path / "preprocessor_config.json").is_file():
        return transformers.Wav2Vec2FeatureExtractor.from_pretrained(path)
    if not path.exists():
        try:
            return transformers.Wav2Vec2FeatureExtractor.from_pretrained(
                name, local_files_only=not hub_reachable()
            )
        except OSError:
            pass  # hub checkpoints without a preprocessor config: use the defaults below
    return default_feature_extractor(config)


def default_feature_extractor(
    config, normalize: bool = True
) -> transformers.Wav2Vec2FeatureExtractor:
    """The usual preprocessing for the architecture: 16 kHz mono, zero padding, each utterance
    normalised to zero mean and unit variance (unless `normalize` is false), and an attention
    mask unless the CNN uses group norm."""
    return transformers.Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=normalize,
        return_attention_mask=not group_norm_cnn(config),
    )


def group_norm_cnn(config) -> bool:
    """Whether the model's CNN uses group norm (wav2vec 2.0 Base, HuBERT), which normalises each
    channel over all frames of a row, padding included: its features of an utterance then depend
    on what the utterance is batched with, and it takes no attention mask."""
    return getattr(config, "feat_extract_norm", "layer") == "group"


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def card_license(name: str) -> str | None:
    """The `license:` of a local model directory's card (README.md front matter), if any."""
    card = Path(resolve_model(name)) / "README.md"
    if not card.is_file():
        return None
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("---"):
        return None
    for line in text.split("\n---", 1)[0].splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return value.strip()
    return None
