"""A distilled student's model card: Hugging Face metadata and a table of what actually ran.

`StudentFacts` is gathered from the run (config, provenance, checkpoint state, data summary,
evaluation results); `render_student_card` only formats it. Nothing here names a local path:
a teacher given as a directory is named by the directory's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from distilxlsr.data.shuffle import ALIGNED_MODES

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def teacher_name(teacher: str) -> str:
    """A hub id as it is; a local directory by its own name only."""
    if HUB_ID.match(teacher) and not Path(teacher).exists():
        return teacher
    return Path(teacher.rstrip("/")).name or teacher


@dataclass
class StudentFacts:
    folder: str
    """The export folder's name (what `from_pretrained` is given in the snippet)."""
    model_type: str
    architecture: str
    layers: int
    hidden: int
    teacher: str = ""
    teacher_is_hub_id: bool = False
    teacher_layers: int = 0
    teacher_parameters: int = 0
    student_parameters: int = 0
    layer_map: str = ""
    init: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    license: str = "other"
    shuffle_mode: str = ""
    shuffle_p: float = 1.0
    data_languages: dict = field(default_factory=dict)
    """Hours of training audio per language."""
    loss: str = ""
    steps: int = 0
    audio_hours: float = 0.0
    lr: float = 0.0
    bad_steps: int = 0
    final_loss: float | None = None
    results: dict | None = None
    """This student's evaluation: mode, PER per language and mean."""
    provenance: str = ""
    """What it heard and which labels trained it, its teacher's included (`describe`)."""

    @property
    def training_sentence(self) -> str:
        langs = ", ".join(sorted(self.data_languages)) or "its training data"
        if self.shuffle_mode in ("", "none"):
            how = "without phoneme shuffling"
        elif self.shuffle_mode == "segment":
            how = "with randomly permuted 40-120 ms segments (no alignment)"
        else:
            how = f"with randomly shuffled phonemes ({self.shuffle_mode} level)"
        return f"distilled on {langs} speech {how}"


def _front_matter(f: StudentFacts) -> str:
    meta: dict = {"library_name": "transformers", "license": f.license}
    if f.teacher_is_hub_id:
        meta["base_model"] = f.teacher
    languages = sorted(set(f.data_languages) | set((f.results or {}).get("per", {})))
    languages = [lang for lang in languages if lang != "?"]
    if languages:
        meta["language"] = languages
    meta["pipeline_tag"] = "feature-extraction"
    meta["tags"] = ["speech", f.model_type, "distillation", "distilxlsr"]
    if f.results:
        metrics = [
            {"type": "per", "name": f"PER {lang} ({f.results['mode']})", "value": round(100 * v, 2)}
            for lang, v in sorted(f.results["per"].items())
        ]
        meta["model-index"] = [
            {
                "name": f.folder,
                "results": [
                    {
                        "task": {
                            "type": "automatic-speech-recognition",
                            "name": "phone recognition",
                        },
                        "metrics": metrics,
                    }
                ],
            }
        ]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def render_student_card(f: StudentFacts) -> str:
    lines = [_front_matter(f), f"# DistilXLSR student ({f.model_type})", ""]
    lines.append(
        "A student made with distilxlsr following DistilXLSR (Interspeech 2023): "
        f"{f.layers} transformer layers initialised from the teacher by its layer map, "
        f"{f.training_sentence}."
    )
    lines += [
        "",
        "```python",
        "from transformers import AutoFeatureExtractor, AutoModel",
        "",
        f'model = AutoModel.from_pretrained("{f.folder}")',
        f'extractor = AutoFeatureExtractor.from_pretrained("{f.folder}")',
        "```",
        "",
        "| | |",
        "| --- | --- |",
        f"| architecture | {f.architecture}, {f.layers} layers, hidden {f.hidden} |",
    ]
    if f.teacher:
        lines.append(
            f"| teacher | `{f.teacher}` ({f.teacher_layers} layers, "
            f"{f.teacher_parameters:,} parameters) |"
        )
        lines.append(
            f"| layer map | `{f.layer_map}`: student layers copied from teacher layers "
            f"{f.init}, distilled towards {f.targets} |"
        )
        ratio = f.student_parameters / max(1, f.teacher_parameters)
        lines.append(f"| parameters | {f.student_parameters:,} ({ratio:.1%} of the teacher) |")
    if f.provenance:
        lines.append(f"| heard, and labels (its teacher's included) | {f.provenance} |")
    if f.data_languages:
        hours = ", ".join(f"{k} {v:.2f} h" for k, v in sorted(f.data_languages.items()))
        lines.append(f"| training data | {hours} |")
    if f.shuffle_mode:
        lines.append(f"| phoneme shuffling | mode `{f.shuffle_mode}`, p = {f.shuffle_p:g} |")
    if f.shuffle_mode in ALIGNED_MODES:
        lines.append(
            "| alignments read | the training data's phone alignments, only to place the "
            "shuffle's cuts (never a training target) |"
        )
    if f.loss:
        lines.append(f"| loss | {f.loss} |")
    if f.steps:
        lines.append(
            f"| training | {f.steps} steps, {f.audio_hours:.3f} h of audio, peak lr {f.lr:g}, "
            f"{f.bad_steps} skipped steps |"
        )
    if f.final_loss is not None:
        lines.append(f"| final loss | {f.final_loss:.4f} |")
    if f.license == "other":
        lines += ["", "License: the teacher's; check it before publishing this model."]
    if f.results:
        lines += ["", f"## Evaluation ({f.results['mode']}, phone error rate %)", ""]
        langs = sorted(f.results["per"])
        lines.append("| " + " | ".join([*langs, "mean"]) + " |")
        lines.append("|" + " --- |" * (len(langs) + 1))
        values = [f"{100 * f.results['per'][lang]:.1f}" for lang in langs]
        lines.append("| " + " | ".join([*values, f"{100 * f.results['per_mean']:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def pick_results(results: dict | None, paths: list[str]) -> dict | None:
    """This student's entry of an evaluation's results.json: the model whose path is one of
    `paths`, else the only model besides the reference."""
    if not results or not results.get("models"):
        return None
    models = results["models"]
    resolved = {str(Path(p).resolve()) for p in paths}
    chosen = [m for m in models if str(Path(m.get("path", "")).resolve()) in resolved]
    if not chosen and len(models) == 2:
        chosen = models[1:]
    if not chosen:
        return None
    m = chosen[0]
    return {"mode": results.get("mode", "probe"), "per": m["per"], "per_mean": m["per_mean"]}
