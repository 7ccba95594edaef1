"""Interop with the DistilXLSR authors' released students (DistilXLSR53, DistilXLSR128).

The authors' checkpoints are `torch.save`d dicts: `ckpt["Config"]["model"]` holds the config
fields of their fairseq-style model and `ckpt["Student"]` its state dict, with fairseq
wav2vec 2.0 tensor names. This module converts them to and from a plain Hugging Face
`Wav2Vec2Model` directory:

- `safe_load_checkpoint` reads such a file with `torch.load(weights_only=True)`; a file whose
  pickle would run code is refused before anything in it runs.
- `KEY_RULES` is the declarative table of tensor names (fairseq <-> transformers), used in both
  directions; a tensor no rule explains is an error, never silently dropped.
- `official_config_to_hf` / `hf_config_to_official` translate the configs.
- `import_official` / `export_official` convert whole models.

Two tensors have no exact counterpart, and are handled explicitly:
- `post_extract_proj` exists in the authors' model only when the CNN's channels differ from the
  transformer width; transformers always has the projection, so it is the identity otherwise
  (and a model whose projection is not the identity cannot be exported to that layout).
- `mask_emb` always exists in the authors' model; transformers creates `masked_spec_embed` only
  when masking is enabled in the config. Without masking the vector is used by neither model:
  import leaves it out with a warning, and export writes zeros.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import transformers

from distilxlsr.errors import UserError
from distilxlsr.models.interop.configs import (  # noqa: F401 (the package's public names)
    format_conv_layers,
    hf_config_to_official,
    official_config_to_hf,
    parse_conv_layers,
    read_field,
)
from distilxlsr.models.interop.keys import (  # noqa: F401
    KEY_RULES,
    hf_key_to_official,
    hf_state_to_official,
    official_key_to_hf,
    official_state_to_hf,
)
from distilxlsr.models.interop.loading import safe_load_checkpoint  # noqa: F401
from distilxlsr.models.loading import (
    default_feature_extractor,
    feature_extractor,
    load_config,
    load_model,
)

logger = logging.getLogger("distilxlsr.models.interop")

# ---------------------------------------------------------------------------------------------
# Whole models
# ---------------------------------------------------------------------------------------------


# Far beyond any released wav2vec 2.0-family model (XLS-R 2B: 1920 wide, 48 layers).
SIZE_BOUNDS = {
    "hidden_size": 16384,
    "num_hidden_layers": 512,
    "intermediate_size": 65536,
    "num_attention_heads": 1024,
    "num_conv_pos_embeddings": 4096,
}


def _check_size(config, student: dict, path: Path) -> None:
    """Refuse a config whose sizes are absurd or ask for far more weights than the checkpoint
    holds, before anything is allocated."""
    for name, bound in SIZE_BOUNDS.items():
        value = getattr(config, name)
        if not 0 < value <= bound:
            raise UserError(
                f"'{path}' asks for {name}={value}, outside 1..{bound}; it is not a model "
                "distilxlsr can import."
            )
    if any(not 0 < c <= SIZE_BOUNDS["hidden_size"] for c in config.conv_dim):
        raise UserError(f"'{path}' asks for CNN channels {list(config.conv_dim)}; not importable.")
    with torch.device("meta"):
        wanted = sum(p.numel() for p in transformers.Wav2Vec2Model(config).parameters())
    held = sum(t.numel() for t in student.values())
    if wanted > 1.05 * held + 1_000_000:
        raise UserError(
            f"'{path}' describes a model of {wanted:,} parameters but holds {held:,} values; "
            "its config and weights do not belong together."
        )


def import_official(ckpt_path: str | Path, out_dir: str | Path) -> Path:
    """Convert an authors' checkpoint into a Hugging Face model directory `out_dir`
    (config.json, model.safetensors, preprocessor_config.json); returns `out_dir`."""
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output '{out_dir}' is a file; pass a directory for the model.")
    checkpoint = safe_load_checkpoint(ckpt_path)
    cfg = checkpoint["Config"]["model"]
    config = official_config_to_hf(cfg, source=f"'{ckpt_path}' Config.model")
    normalize = read_field(cfg, "normalize", bool, False, f"'{ckpt_path}' Config.model")
    _check_size(config, checkpoint["Student"], ckpt_path)
    with torch.device("meta"):  # shapes only: nothing is allocated before the checks pass
        shapes = transformers.Wav2Vec2Model(config).state_dict()
    state = official_state_to_hf(checkpoint["Student"], config, shapes, str(ckpt_path))
    model = transformers.Wav2Vec2Model(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    default_feature_extractor(config, normalize).save_pretrained(out_dir)
    return out_dir


def export_official(model_dir: str | Path, out_file: str | Path) -> Path:
    """Write a local Hugging Face Wav2Vec2 model directory as an authors'-layout checkpoint:
    `torch.save({"Config": {"model": cfg}, "Student": state_dict}, out_file)`, holding only
    tensors and plain data, so that `weights_only=True` reads it; returns `out_file`."""
    model_dir, out_file = Path(model_dir), Path(out_file)
    if not model_dir.is_dir():
        raise UserError(
            f"model directory '{model_dir}' does not exist; pass a local Hugging Face "
            "wav2vec2 model directory."
        )
    if out_file.is_dir():
        raise UserError(f"output '{out_file}' is a directory; pass a file name such as model.pt.")
    config = load_config(str(model_dir))
    if config.model_type != "wav2vec2":
        raise UserError(
            f"'{model_dir}' holds a '{config.model_type}' model; only wav2vec2 models can be "
            "written in the DistilXLSR authors' layout (use the Hugging Face format instead)."
        )
    normalize = feature_extractor(str(model_dir), config).do_normalize
    cfg = hf_config_to_official(config, normalize=bool(normalize))
    model = load_model(str(model_dir), dtype=torch.float32)
    state = hf_state_to_official(model.state_dict(), model.config, str(model_dir))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"Config": {"model": cfg}, "Student": state}, out_file)
    return out_file
