"""Building a student: the teacher's class with fewer transformer layers, initialised by a layer map.

Everything below the transformer layers (CNN feature encoder, feature projection, positional
convolution, final LayerNorm, mask embedding) is copied from the teacher; student layer i copies
teacher layer `layer_map.init[i]` (or keeps its fresh random init). The result is a plain
transformers model that anyone can load without distilxlsr.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from transformers import PreTrainedModel

from distilxlsr.models.layers import LayerMap, parse_layer_map
from distilxlsr.models.loading import count_parameters

_LAYER_KEY = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")


def student_config(teacher_config, num_layers: int):
    """The teacher's config with `num_layers` transformer layers; nothing else changes."""
    config = copy.deepcopy(teacher_config)
    config.num_hidden_layers = num_layers
    return config


def build_student(teacher: PreTrainedModel, layer_map: LayerMap, seed: int = 0) -> PreTrainedModel:
    """A new student of the teacher's class, initialised from the teacher by `layer_map`."""
    if layer_map.teacher_layers != teacher.config.num_hidden_layers:
        raise ValueError("layer map was parsed for a teacher of another depth")
    config = student_config(teacher.config, layer_map.student_layers)
    config.architectures = [type(teacher).__name__]  # the base model, whatever head T had
    # Fresh layers (random:N) draw from a generator seeded here, independent of global state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = type(teacher)(config)
    teacher_state = teacher.state_dict()
    state = student.state_dict()
    new_state = {}
    for key, value in state.items():
        source = _source_key(key, layer_map, teacher_state)
        if source is None:
            new_state[key] = value  # a freshly initialised layer
            continue
        src = teacher_state[source]
        if src.shape != value.shape:
            raise ValueError(
                f"shape mismatch copying {source} -> {key}: {src.shape} vs {value.shape}"
            )
        new_state[key] = src.detach().clone().to(value.dtype)
    student.load_state_dict(new_state, strict=True)
    student.to(next(teacher.parameters()).dtype)
    return student


def _source_key(key: str, layer_map: LayerMap, teacher_state: dict) -> str | None:
    """The teacher tensor that initialises student tensor `key` (None: keep fresh init)."""
    match = _LAYER_KEY.match(key)
    if match is None:
        if key not in teacher_state:
            raise ValueError(f"student tensor {key} has no counterpart in the teacher")
        return key
    index, rest = int(match.group(1)), match.group(2)
    teacher_layer = layer_map.init[index]
    if teacher_layer is None:
        return None
    source = f"encoder.layers.{teacher_layer - 1}.{rest}"
    if source in teacher_state:
        return source
    # Tensors that exist only at one position (WavLM's relative position bias lives in layer 0)
    # come from the teacher's layer at the same position.
    same_position = f"encoder.layers.{index}.{rest}"
    if same_position in teacher_state:
        return same_position
    raise ValueError(f"student tensor {key} has no counterpart in the teacher")


def init_student(
    teacher: PreTrainedModel, layers: str, targets: str = "auto", seed: int = 0
) -> tuple[PreTrainedModel, LayerMap]:
    layer_map = parse_layer_map(layers, teacher.config.num_hidden_layers, targets)
    return build_student(teacher, layer_map, seed=seed), layer_map


STUDENT_INFO = "distilxlsr.json"
"""The file beside a student's weights recording its teacher and layer map."""


@dataclass(frozen=True)
class StudentInfo:
    """A student's provenance: its teacher and layer map (docs/design.md, "Run directory")."""

    teacher: str
    """The teacher as given (a directory or hub id)."""
    layer_map: str
    init: list[int]
    """Teacher layer each student layer was copied from (0: fresh)."""
    targets: list[int]
    """Teacher layer each student layer is distilled towards."""
    teacher_layers: int
    teacher_parameters: int
    student_parameters: int

    @classmethod
    def of(
        cls, layer_map: LayerMap, teacher_name: str, teacher_parameters: int, student
    ) -> StudentInfo:
        return cls(
            teacher=teacher_name,
            layer_map=layer_map.spec,
            init=list(layer_map.init),
            targets=list(layer_map.targets),
            teacher_layers=layer_map.teacher_layers,
            teacher_parameters=teacher_parameters,
            student_parameters=count_parameters(student),
        )

    @property
    def ratio(self) -> float:
        """The student's share of the teacher's parameters."""
        return self.student_parameters / self.teacher_parameters

    def write(self, directory: Path) -> None:
        (Path(directory) / STUDENT_INFO).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, directory: Path) -> StudentInfo | None:
        """The record beside a model, or None for a model without one."""
        path = Path(directory) / STUDENT_INFO
        if not path.is_file():
            return None
        values = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def save_student(
    student: PreTrainedModel,
    layer_map: LayerMap,
    teacher_name: str,
    teacher_parameters: int,
    out: Path,
) -> None:
    """Write the student as an HF directory plus its provenance record."""
    out = Path(out)
    student.save_pretrained(out, safe_serialization=True)
    StudentInfo.of(layer_map, teacher_name, teacher_parameters, student).write(out)
