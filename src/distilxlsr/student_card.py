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
from distilxlsr.shipped import SHIPPED, is_shipped

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

PAPER_URL = "https://arxiv.org/abs/2306.01303"
CITATION = """@inproceedings{wang2023distilxlsr,
  title         = {{DistilXLSR}: A Light Weight Cross-Lingual Speech Representation Model},
  author        = {Wang, Haoyu and Wang, Siyuan and Zhang, Wei-Qiang and Bai, Jinfeng},
  booktitle     = {Proc. Interspeech 2023},
  year          = {2023},
  eprint        = {2306.01303},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2306.01303}
}"""
"""The method's paper, as the README and every student card cite it."""


def teacher_name(teacher: str) -> str:
    """`shipped` for the package's own teacher; a hub id as it is; a local directory by its own
    name only."""
    if is_shipped(teacher):
        return SHIPPED
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
    """This student's evaluation (`pick_results`): mode, PER per language and mean with 95%
    intervals, and the evaluation's reference (its teacher) beside it."""
    provenance: str = ""
    """What it heard and which labels trained it, its teacher's included (`describe`)."""
    onnx_files: list = field(default_factory=list)
    """An ONNX export's graph files (model.onnx, model.int8.onnx): the card loads those."""

    @property
    def training_sentence(self) -> str:
        langs = ", ".join(sorted(self.data_languages)) or "its training data"
        if not self.shuffle_mode:
            return "distilled by a run that is not recorded beside this model"
        if self.shuffle_mode == "none":
            how = "without phoneme shuffling"
        elif self.shuffle_mode == "segment":
            how = "with randomly permuted 40-120 ms segments (no alignment)"
        else:
            how = f"with randomly shuffled phonemes ({self.shuffle_mode} level)"
        return f"distilled on {langs} speech {how}"


def _front_matter(f: StudentFacts) -> str:
    meta: dict = {"library_name": "onnx" if f.onnx_files else "transformers", "license": f.license}
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
    kind = f"{f.model_type}, ONNX" if f.onnx_files else f.model_type
    lines = [_front_matter(f), f"# DistilXLSR student ({kind})", ""]
    lines.append(
        f"A student made with distilxlsr following [DistilXLSR]({PAPER_URL}) (Interspeech 2023): "
        f"{f.layers} transformer layers initialised from the teacher by its layer map, "
        f"{f.training_sentence}."
    )
    lines += [
        "",
        *_snippet(f),
        "",
        "| | |",
        "| --- | --- |",
        f"| architecture | {f.architecture}, {f.layers} layers, hidden {f.hidden} |",
    ]
    if f.teacher:
        what = (
            ": the small label-free teacher shipped inside distilxlsr (`teacher=shipped`; its "
            "card is `distilxlsr/assets/teacher/README.md` in the package)"
            if f.teacher == SHIPPED
            else ""
        )
        lines.append(
            f"| teacher | `{f.teacher}`{what} ({f.teacher_layers} layers, "
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
        lines += _evaluation(f.results)
    lines += ["", "## Citation", "", "The method this student was made by:", "", "```bibtex"]
    lines += [CITATION, "```"]
    return "\n".join(lines) + "\n"


def _snippet(f: StudentFacts) -> list[str]:
    if not f.onnx_files:
        return [
            "```python",
            "from transformers import AutoFeatureExtractor, AutoModel",
            "",
            f'model = AutoModel.from_pretrained("{f.folder}")',
            f'extractor = AutoFeatureExtractor.from_pretrained("{f.folder}")',
            "```",
        ]
    return [
        f"Files: {', '.join(_onnx_file(name) for name in f.onnx_files)}, `onnx.json` (inputs, "
        "outputs, layers), `config.json`, "
        "`preprocessor_config.json`. Inputs: `input_values` (batch, samples; 16 kHz, each "
        "utterance normalised to zero mean and unit variance), `attention_mask` (int64); "
        "outputs: `last_hidden_state`, `layer_features` (every layer), `frame_lengths`.",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        "",
        f'session = ort.InferenceSession("{f.folder}/{f.onnx_files[-1]}")',
        "x = ((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).astype(np.float32)[None]",
        "mask = np.ones(x.shape, np.int64)",
        'last, layers, lengths = session.run(None, {"input_values": x, "attention_mask": mask})',
        "```",
    ]


def _onnx_file(name: str) -> str:
    return f"`{name}` (" + ("int8 MatMul weights" if ".int8." in name else "float32") + ")"


def _with_ci(value: float | None, ci) -> str:
    if value is None:
        return ""
    text = f"{100 * value:.1f}"
    if ci and None not in ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return text


def _evaluation(r: dict) -> list[str]:
    """The card's evaluation: this student beside the evaluation's reference (its teacher, when
    the teacher was evaluated first) and floor, per language, with 95% bootstrap intervals."""
    rows = [r] + [m for m in (r.get("reference"), r.get("floor")) if m]
    names = [f"{m['name']}" + (" (this model)" if m is r else "") for m in rows]
    lines = ["", f"## Evaluation ({r['mode']}, phone error rate %)", ""]
    split = f"the `{r['split']}` split" if r.get("split") else "held-out test data"
    lines.append(
        f"Evaluated by `distilxlsr evaluate --mode {r['mode']}` on {split}; 95% bootstrap "
        "intervals over the test utterances in brackets."
    )
    lines += ["", "| language | " + " | ".join(names) + " |"]
    lines.append("| --- |" + " ---: |" * len(rows))
    for lang in sorted(r["per"]):
        cells = [
            _with_ci(m["per"].get(lang), (m.get("per_ci_by_lang") or {}).get(lang)) for m in rows
        ]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    cells = [_with_ci(m["per_mean"], m.get("per_ci")) for m in rows]
    lines.append("| **mean** | " + " | ".join(cells) + " |")
    kept = (r.get("gain_retained") or {}).get("all")
    if kept is not None and r.get("floor"):
        ci = (r.get("gain_retained_ci") or {}).get("all")
        interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and None not in ci else ""
        lines += [
            "",
            f"Gain retained over {r['floor']['name']}: {kept:.2f}{interval} (the share of the "
            f"reference's improvement over {r['floor']['name']} that this model keeps).",
        ]
    return lines


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
    keys = ("name", "per", "per_mean", "per_ci", "per_ci_by_lang")

    def row(model: dict) -> dict:
        named = model.get("name") or Path(str(model.get("path", ""))).name or "model"
        return {k: model.get(k) for k in keys} | {"name": named}

    picked = row(m) | {
        "mode": results.get("mode", "probe"),
        "split": results.get("split"),
        "gain_retained": m.get("gain_retained"),
        "gain_retained_ci": m.get("gain_retained_ci"),
    }
    if m is not models[0]:
        picked["reference"] = row(models[0])
    floor = next((x for x in models if x.get("path") == "logmel"), None)
    if floor is not None and floor is not m:
        picked["floor"] = row(floor)
    return picked
