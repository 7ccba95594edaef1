"""Export a distilled student as a plain Hugging Face model directory with a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors import safe_open

from distilxlsr.errors import UserError
from distilxlsr.models.student import StudentInfo
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.rundir import RunDir


def find_student(source: Path) -> tuple[Path, RunDir | None]:
    """(directory holding config.json + model.safetensors, its run or None)."""
    source = Path(source)
    if not source.exists():
        raise UserError(
            f"'{source}' does not exist; pass a run directory or an HF model directory."
        )
    if RunDir.holds_run(source):
        run = RunDir(source)
        latest = run.latest_checkpoint()
        if latest is None:
            raise UserError(
                f"run directory '{source}' has no intact checkpoint; let `distill` run "
                "until its first checkpoint (train.checkpoint_every)."
            )
        return latest, run
    if (source / "config.json").is_file() and (source / "model.safetensors").is_file():
        run = RunDir.of_checkpoint(source)
        problem = ckpt.check_checkpoint(source) if run is not None else None
        if problem is not None:
            raise UserError(
                f"checkpoint '{source}' is damaged ({problem}); export its run directory "
                f"'{run.path}' to take the newest intact checkpoint."
            )
        _check_weights(source / "model.safetensors")
        return source, run
    raise UserError(
        f"'{source}' is neither a run directory (with checkpoints/) nor a Hugging Face model "
        "directory (config.json + model.safetensors)."
    )


def _check_weights(path: Path) -> None:
    try:
        with safe_open(path, "pt") as f:
            list(f.keys())
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise UserError(f"'{path}' is not a readable safetensors file ({err}).") from None


def student_info(model_dir: Path, run: RunDir | None = None) -> StudentInfo | None:
    """The student's teacher and layer map: recorded beside it, or in its run's student_init
    (a checkpoint's run is found from its path)."""
    info = StudentInfo.read(model_dir)
    run = run or RunDir.of_checkpoint(model_dir)
    if info is None and run is not None:
        info = StudentInfo.read(run.student_init)
    return info


def model_card(model_dir: Path, run: RunDir | None, results: dict | None) -> str:
    config = json.loads((model_dir / "config.json").read_text())
    lines = [
        "---",
        "library_name: transformers",
        "tags: [speech, wav2vec2, distillation, distilxlsr]",
    ]
    lines += ["---", "", f"# DistilXLSR student ({config.get('model_type')})", ""]
    lines.append(
        "A student distilled with [distilxlsr](https://pypi.org/project/distilxlsr/) following "
        "DistilXLSR (Interspeech 2023): half the teacher's transformer layers, initialised by layer "
        "jumping, distilled on English speech with randomly shuffled phonemes."
    )
    lines += [
        "",
        "```python",
        "from transformers import AutoModel",
        f"model = AutoModel.from_pretrained('{model_dir.name}')",
        "```",
        "",
    ]
    lines += ["| | |", "| --- | --- |"]
    lines.append(
        f"| architecture | {config.get('architectures', ['?'])[0]}, {config['num_hidden_layers']} layers, hidden {config['hidden_size']} |"
    )
    info = student_info(model_dir, run)
    if info:
        lines.append(
            f"| teacher | `{info.teacher}` ({info.teacher_layers} layers, {info.teacher_parameters:,} parameters) |"
        )
        lines.append(
            f"| layer map | `{info.layer_map}`: student layers copied from teacher layers {info.init}, distilled towards {info.targets} |"
        )
        lines.append(
            f"| parameters | {info.student_parameters:,} ({info.ratio:.1%} of the teacher) |"
        )
    saved = run.saved_config() if run is not None else None
    if saved is not None:
        run_dir, run = run, saved
        lines.append(f"| data | `{run['data']['train']}` |")
        lines.append(
            f"| phoneme shuffling | mode `{run['shuffle']['mode']}`, p = {run['shuffle']['p']} |"
        )
        loss = run["loss"]
        loss_text = "L1 + λ·(−log σ(cos))" if loss["kind"] == "l1_cos" else "MSE"
        lines.append(f"| loss | {loss_text}, λ = {loss['cos_weight']} |")
        state = (
            ckpt.read_trainer_state(model_dir)["run_state"]
            if (model_dir / "trainer_state.json").is_file()
            else None
        )
        if state:
            lines.append(
                f"| training | {state['step']} steps, {state['audio_seconds'] / 3600:.3f} h of audio, lr {run['train']['lr']}, {state['bad_steps']} skipped steps |"
            )
        metrics = run_dir.metrics()[-1] if run_dir.metrics() else None
        if metrics:
            lines.append(f"| final loss | {metrics['loss']:.4f} (step {metrics['step']}) |")
    if results:
        lines += ["", "## Evaluation", "", "```json", json.dumps(results, indent=2)[:4000], "```"]
    return "\n".join(lines) + "\n"


def export_hf(source: str | Path, out: str | Path, results_file: str | Path | None = None) -> Path:
    """Write `out/` with config.json, model.safetensors, preprocessor_config.json and README.md."""
    model_dir, run = find_student(Path(source))
    out = Path(out)
    if out.resolve() == model_dir.resolve():
        raise UserError(f"--out '{out}' is the source itself; choose another directory.")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(model_dir / name, out / name)
    extractor = None
    for candidate in (model_dir, run.student_init if run else None):
        if candidate is not None and (candidate / "preprocessor_config.json").is_file():
            extractor = candidate / "preprocessor_config.json"
            break
    if extractor is not None:
        shutil.copyfile(extractor, out / "preprocessor_config.json")
    info = student_info(model_dir, run)
    if info is not None:  # so evaluate --similarity finds the layer map of an exported student
        info.write(out)
    results = None
    if results_file is None and run is not None and run.file("results.json").is_file():
        results_file = run.file("results.json")
    if results_file is not None:
        results = json.loads(Path(results_file).read_text())
    (out / "README.md").write_text(model_card(model_dir, run, results))
    return out
