"""Tensor names: fairseq wav2vec 2.0 <-> transformers (declarative rule table, both directions)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import transformers

from distilxlsr.errors import UserError
from distilxlsr.models.interop.configs import EXTRACTOR_MODES_TO_OFFICIAL

logger = logging.getLogger("distilxlsr.models.interop")


# ---------------------------------------------------------------------------------------------
# Tensor names
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRule:
    """One family of tensor names: `{slot}` placeholders stand for the parts in `SLOTS`.

    `extractor` limits the rule to one CNN norm layout (transformers' `feat_extract_norm`).
    """

    official: str
    hf: str
    extractor: str | None = None


SLOTS = {"conv": r"\d+", "layer": r"\d+", "proj": r"q|k|v|out", "param": r"weight|bias"}

_POS_CONV = "encoder.pos_conv_embed.conv"
KEY_RULES: tuple[KeyRule, ...] = (
    KeyRule("feature_extractor.conv_layers.{conv}.0.{param}",
            "feature_extractor.conv_layers.{conv}.conv.{param}"),
    # extractor_mode=default: one GroupNorm, in the first block only.
    KeyRule("feature_extractor.conv_layers.0.2.{param}",
            "feature_extractor.conv_layers.0.layer_norm.{param}", extractor="group"),
    # extractor_mode=layer_norm: a LayerNorm (between two transposes) in every block.
    KeyRule("feature_extractor.conv_layers.{conv}.2.1.{param}",
            "feature_extractor.conv_layers.{conv}.layer_norm.{param}", extractor="layer"),
    KeyRule("layer_norm.{param}", "feature_projection.layer_norm.{param}"),
    KeyRule("post_extract_proj.{param}", "feature_projection.projection.{param}"),
    KeyRule("mask_emb", "masked_spec_embed"),
    KeyRule("encoder.pos_conv.0.bias", f"{_POS_CONV}.bias"),
    KeyRule("encoder.pos_conv.0.weight_g", f"{_POS_CONV}.parametrizations.weight.original0"),
    KeyRule("encoder.pos_conv.0.weight_v", f"{_POS_CONV}.parametrizations.weight.original1"),
    KeyRule("encoder.layer_norm.{param}", "encoder.layer_norm.{param}"),
    KeyRule("encoder.layers.{layer}.self_attn.{proj}_proj.{param}",
            "encoder.layers.{layer}.attention.{proj}_proj.{param}"),
    KeyRule("encoder.layers.{layer}.self_attn_layer_norm.{param}",
            "encoder.layers.{layer}.layer_norm.{param}"),
    KeyRule("encoder.layers.{layer}.fc1.{param}",
            "encoder.layers.{layer}.feed_forward.intermediate_dense.{param}"),
    KeyRule("encoder.layers.{layer}.fc2.{param}",
            "encoder.layers.{layer}.feed_forward.output_dense.{param}"),
    KeyRule("encoder.layers.{layer}.final_layer_norm.{param}",
            "encoder.layers.{layer}.final_layer_norm.{param}"),
)  # fmt: skip

_MASK_OFFICIAL, _MASK_HF = "mask_emb", "masked_spec_embed"
_PROJ_HF = "feature_projection.projection.{}"


def _template_regex(template: str) -> re.Pattern[str]:
    pieces = re.split(r"\{(\w+)\}", template)
    pattern = "".join(
        re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>{SLOTS[piece]})"
        for i, piece in enumerate(pieces)
    )
    return re.compile(pattern)


_COMPILED = [(rule, _template_regex(rule.official), _template_regex(rule.hf)) for rule in KEY_RULES]


def official_key_to_hf(key: str, extractor: str) -> str | None:
    """The transformers name of fairseq tensor `key` (None: no rule explains it)."""
    for rule, official, _hf in _COMPILED:
        if rule.extractor not in (None, extractor):
            continue
        match = official.fullmatch(key)
        if match:
            return rule.hf.format(**match.groupdict())
    return None


def hf_key_to_official(key: str, extractor: str) -> str | None:
    """The fairseq name of transformers tensor `key` (None: no rule explains it)."""
    for rule, _official, hf in _COMPILED:
        if rule.extractor not in (None, extractor):
            continue
        match = hf.fullmatch(key)
        if match:
            return rule.official.format(**match.groupdict())
    return None


def _listing(keys: list[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def official_state_to_hf(
    state: Mapping[str, torch.Tensor],
    config: transformers.Wav2Vec2Config,
    expected: Mapping[str, torch.Tensor],
    source: str,
) -> dict[str, torch.Tensor]:
    """Rename the authors' state dict for a model with `config` whose own state dict is
    `expected`; unknown, missing, surplus or misshapen tensors are a UserError naming `source`."""
    extractor = config.feat_extract_norm
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        target = official_key_to_hf(key, extractor)
        if target is None:
            unknown.append(key)
        else:
            converted[target] = tensor
    if unknown:
        raise UserError(
            f"'{source}' holds tensors the DistilXLSR layout does not define "
            f"({_listing(unknown)}); it is not a plain DistilXLSR student checkpoint "
            f"(extractor_mode '{EXTRACTOR_MODES_TO_OFFICIAL[extractor]}')."
        )
    if _MASK_HF in converted and _MASK_HF not in expected:
        # The vector only serves masked training, which this config switches off.
        del converted[_MASK_HF]
        logger.warning(
            "%s: mask_emb is left out: the config has mask_prob=0 and mask_channel_prob=0, so "
            "transformers keeps no mask vector (neither model uses it).",
            source,
        )
    if _PROJ_HF.format("weight") not in converted and config.conv_dim[-1] == config.hidden_size:
        # The authors' model has no projection when the widths agree: the identity.
        converted[_PROJ_HF.format("weight")] = torch.eye(config.hidden_size)
        converted[_PROJ_HF.format("bias")] = torch.zeros(config.hidden_size)
    _check_complete(converted, expected, extractor, source)
    return converted


def _check_complete(
    converted: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    extractor: str,
    source: str,
) -> None:
    def official(keys: set[str]) -> list[str]:
        return [hf_key_to_official(k, extractor) or k for k in keys]

    missing = set(expected) - set(converted)
    if missing:
        raise UserError(
            f"'{source}' lacks tensors its config requires ({_listing(official(missing))}); the "
            "file is incomplete or its Config.model does not describe its Student weights."
        )
    surplus = set(converted) - set(expected)
    if surplus:
        raise UserError(
            f"'{source}' holds tensors its config has no place for ({_listing(official(surplus))}); "
            "its Config.model does not describe its Student weights (layer or conv counts)."
        )
    wrong = [
        f"{hf_key_to_official(k, extractor)} {tuple(converted[k].shape)} vs "
        f"{tuple(expected[k].shape)}"
        for k in expected
        if converted[k].shape != expected[k].shape
    ]
    if wrong:
        raise UserError(
            f"'{source}' has tensors whose shapes disagree with its config ({_listing(wrong, 4)}); "
            "its Config.model does not describe its Student weights."
        )


def hf_state_to_official(
    state: Mapping[str, torch.Tensor], config: transformers.Wav2Vec2Config, source: str
) -> dict[str, torch.Tensor]:
    """The authors' state dict (fresh contiguous tensors) for a Wav2Vec2Model's state dict."""
    extractor = config.feat_extract_norm
    converted: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        target = hf_key_to_official(key, extractor)
        if target is None:
            unknown.append(key)
        else:
            converted[target] = tensor.detach().clone().contiguous()
    if unknown:
        raise UserError(
            f"'{source}' has tensors the DistilXLSR layout has no place for "
            f"({_listing(unknown)}); export it in Hugging Face format instead."
        )
    if _MASK_OFFICIAL not in converted:
        # Masking is off in this config; the authors' model always holds the vector.
        converted[_MASK_OFFICIAL] = torch.zeros(config.hidden_size)
    if config.conv_dim[-1] == config.hidden_size:
        weight = converted.pop("post_extract_proj.weight")
        bias = converted.pop("post_extract_proj.bias")
        if not (torch.equal(weight, torch.eye(len(weight))) and not bias.any()):
            raise UserError(
                f"'{source}' has a feature projection that is not the identity, but the authors' "
                "model has none when the CNN width equals the hidden size; export it in Hugging "
                "Face format instead."
            )
    return converted
