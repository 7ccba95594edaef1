"""Reading the authors' checkpoints without running any code they might carry."""

from __future__ import annotations

import collections
import logging
import pickle
import re
import typing
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from distilxlsr.errors import UserError

logger = logging.getLogger("distilxlsr.models.interop")


# ---------------------------------------------------------------------------------------------
# Safe loading
# ---------------------------------------------------------------------------------------------


def _omegaconf_globals() -> list[Any]:
    """The classes an OmegaConf config container pickles, when omegaconf is installed (else
    none: a checkpoint holding such a container is then refused like any other code)."""
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode
    except ImportError:
        return []
    return [
        DictConfig,
        ListConfig,
        ContainerMetadata,
        Metadata,
        AnyNode,
        StringNode,
        IntegerNode,
        FloatNode,
        BooleanNode,
        typing.Any,
        collections.defaultdict,
        dict,
        list,
        int,
        float,
        str,
        bool,
    ]


def _to_plain(value: Any) -> Any:
    """An OmegaConf container as plain dicts and lists (anything else unchanged)."""
    if type(value).__module__.startswith("omegaconf."):
        from omegaconf import OmegaConf

        # resolve=False: interpolations stay text (and fail validation) rather than running
        # resolvers.
        return OmegaConf.to_container(value, resolve=False)
    return value


def _unsafe_globals(path: Path, err: Exception) -> list[str]:
    """The globals the pickle names that weights_only does not allow: all of them for a zip
    checkpoint (found by scanning its opcodes; nothing is unpickled), else the one in `err`."""
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy (non-zip) pickles: only the error message names one
        names = []
    return names or re.findall(r"GLOBAL ([\w.]+) was not an allowed global", str(err))


def _torch_load(path: Path) -> Any:
    """`torch.load` with weights_only=True; every failure becomes a UserError naming `path`."""
    with torch.serialization.safe_globals(_omegaconf_globals()):
        try:
            return torch.load(path, weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as err:
            if "Weights only load failed" not in str(err):
                raise _not_a_checkpoint(path, err) from None
            names = _unsafe_globals(path, err)
            what = (
                f"it references {', '.join(names)}" if names else "PyTorch's safe loader rejects it"
            )
            raise UserError(
                f"'{path}' cannot be loaded without letting it run code ({what}), which "
                "distilxlsr refuses; use a checkpoint that holds only tensors and plain data."
            ) from None
        except OSError as err:
            raise UserError(
                f"'{path}' cannot be read ({err.strerror or err}); check the file."
            ) from None
        except Exception as err:  # a truncated or foreign file fails in many different ways
            raise _not_a_checkpoint(path, err) from None


def _not_a_checkpoint(path: Path, err: Exception) -> UserError:
    return UserError(
        f"'{path}' is not a PyTorch checkpoint ({type(err).__name__}); pass the .pt file of a "
        "DistilXLSR student as released by its authors."
    )


def _check_expansion(path: Path) -> None:
    """PyTorch stores tensors uncompressed; a zip whose entries expand far beyond the file's
    own size is refused before anything is read out of it."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as err:
        raise _not_a_checkpoint(path, err) from None
    size = path.stat().st_size
    if expanded > 2 * size + (16 << 20):
        raise UserError(
            f"'{path}' expands to {expanded:,} bytes from {size:,}; PyTorch checkpoints are "
            "not compressed, so distilxlsr refuses it."
        )


def safe_load_checkpoint(path: str | Path) -> dict:
    """Read an authors' checkpoint without running code from it.

    Returns the checkpoint dict, with `["Config"]["model"]` as a plain dict and `["Student"]` a
    dict of tensors. Raises UserError for a missing file, a file that is not a checkpoint, a
    pickle that needs anything outside the allow-list, or a dict without those entries.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint '{path}' does not exist; pass the path of the .pt file.")
    if path.is_dir():
        raise UserError(f"'{path}' is a directory; pass the checkpoint .pt file itself.")
    _check_expansion(path)
    checkpoint = _torch_load(path)
    if not isinstance(checkpoint, Mapping) or not {"Config", "Student"} <= set(checkpoint):
        raise UserError(
            f"'{path}' is a PyTorch file but not a DistilXLSR student checkpoint (it needs "
            "'Config' and 'Student' entries); pass a checkpoint released by the authors."
        )
    config = _to_plain(checkpoint["Config"])
    model_cfg = _to_plain(config.get("model")) if isinstance(config, Mapping) else None
    if not isinstance(model_cfg, Mapping):
        raise UserError(
            f"'{path}' has no model config under ['Config']['model']; pass a checkpoint "
            "released by the DistilXLSR authors."
        )
    student = checkpoint["Student"]
    if not isinstance(student, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in student.items()
    ):
        raise UserError(
            f"'{path}' has a 'Student' entry that is not a state dict of tensors; pass a "
            "checkpoint released by the DistilXLSR authors."
        )
    result = dict(checkpoint)
    result["Config"] = {**config, "model": dict(model_cfg)}
    result["Student"] = dict(student)
    return result
