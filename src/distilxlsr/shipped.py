"""The teacher shipped inside the package, by name: `teacher=shipped` (distill),
`--teacher shipped` (init-student), `--model shipped` (evaluate).

Light on purpose (no torch): `import distilxlsr` exposes `shipped_teacher` from here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from distilxlsr.errors import UserError

SHIPPED = "shipped"
"""The name that stands for the shipped teacher wherever a model is given (a local directory
called `shipped` is then written `./shipped`)."""


def shipped_teacher_path() -> Path:
    """Where the shipped teacher lives in the installed package (whether or not it is there)."""
    return Path(str(resources.files("distilxlsr") / "assets" / "teacher"))


def shipped_teacher() -> Path:
    """The small label-free multilingual teacher shipped in the package, replication v3's T1
    (experiments/teacher_levers.py; see its README.md card)."""
    path = shipped_teacher_path()
    if not (path / "model.safetensors").is_file():
        raise UserError(
            f"the shipped teacher is missing from '{path}'; reinstall distilxlsr (the teacher "
            "ships inside the package; from a source checkout, `python "
            "experiments/teacher_levers.py` remakes it and `--ship` puts it there)."
        )
    return path


def resolve_model(name: str) -> str:
    """`shipped` as the shipped teacher's directory; any other model name as it is."""
    return str(shipped_teacher()) if name == SHIPPED else name


def is_shipped(name: str) -> bool:
    """Whether a model name or path is the shipped teacher."""
    if name == SHIPPED:
        return True
    try:
        return Path(name).resolve() == shipped_teacher_path().resolve()
    except (OSError, ValueError):
        return False
