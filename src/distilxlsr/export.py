"""Export a distilled student as a plain Hugging Face model directory with a model card.
`distilxlsr.export(source, out, results_file=None)` is `export_hf`."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from safetensors import safe_open

from distilxlsr._callable import make_callable
from distilxlsr.errors import UserError
from distilxlsr.models.student import StudentInfo
from distilxlsr.provenance import (
    Provenance,
    describe,
    read_provenance,
    write_provenance,
)
from distilxlsr.student_card import StudentFacts, pick_results, render_student_card, teacher_name
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


def model_provenance(model_dir: str | Path) -> Provenance | None:
    """What a model heard and which labels trained it: the record beside it (a teacher made by
    `pretrain-teacher`, an exported student) or, for a checkpoint of a distillation run, the
    run's (`student_init/provenance.json`, written by `distill`); None when neither exists. A
    damaged record is an error naming the file."""
    recorded = read_provenance(model_dir)
    if recorded is not None:
        return recorded
    run = RunDir.of_checkpoint(model_dir)
    return read_provenance(run.student_init) if run is not None else None


def for_publication(provenance: Provenance) -> Provenance:
    """The record as an export carries it: unknown sources named like the card's teacher (a hub
    id as it is, a local directory by its name only), so no local path leaves the machine."""
    return replace(provenance, unknown=[teacher_name(u) for u in provenance.unknown])


def _facts(model_dir: Path, run: RunDir | None, results: dict | None, folder: str, out=None):
    config = json.loads((model_dir / "config.json").read_text())
    facts = StudentFacts(
        folder=folder,
        model_type=config.get("model_type", "?"),
        architecture=(config.get("architectures") or ["?"])[0],
        layers=config["num_hidden_layers"],
        hidden=config["hidden_size"],
    )
    info = student_info(model_dir, run)
    if info:
        facts.teacher = teacher_name(info.teacher)
        facts.teacher_is_hub_id = facts.teacher == info.teacher and "/" in info.teacher
        facts.teacher_layers, facts.teacher_parameters = (
            info.teacher_layers,
            info.teacher_parameters,
        )
        facts.student_parameters = info.student_parameters
        facts.layer_map, facts.init, facts.targets = info.layer_map, info.init, info.targets
    saved = run.saved_config() if run is not None else None
    if saved is not None:
        facts.shuffle_mode, facts.shuffle_p = saved["shuffle"]["mode"], saved["shuffle"]["p"]
        loss = saved["loss"]
        kind = "L1 + λ·(−log σ(cos))" if loss["kind"] == "l1_cos" else "MSE"
        facts.loss = f"{kind}, λ = {loss['cos_weight']}"
        facts.lr = saved["train"]["lr"]
        recorded = run.facts()
        facts.data_languages = recorded.get("languages", {})
        facts.license = recorded.get("teacher_license") or "other"
        if (model_dir / "trainer_state.json").is_file():
            state = ckpt.read_trainer_state(model_dir)["run_state"]
            facts.steps, facts.bad_steps = state["step"], state["bad_steps"]
            facts.audio_hours = state["audio_seconds"] / 3600
        metrics = run.metrics()
        if metrics:
            facts.final_loss = metrics[-1]["loss"]
    provenance = model_provenance(model_dir)
    if provenance is not None:  # the card names no local path (student_card.py)
        facts.provenance = describe(for_publication(provenance))
    facts.results = pick_results(results, _own_paths(model_dir, run, out))
    return facts


def _own_paths(model_dir: Path, run: RunDir | None, out) -> list[str]:
    """The paths an evaluation may have named this student by: its checkpoint or model
    directory, its run, its export folder."""
    paths = [str(model_dir)] + ([str(run.path)] if run is not None else [])
    return paths + ([str(out)] if out is not None else [])


def model_card(
    model_dir: Path,
    run: RunDir | None,
    results: dict | None,
    out: Path | None = None,
    onnx_files: list[str] | None = None,
) -> str:
    """The card of a student exported to `out` (its name is what the card's snippet loads);
    `onnx_files`: an ONNX export's graph files, which the card's snippet then loads."""
    folder = Path(out).resolve().name if out is not None else model_dir.name
    facts = _facts(model_dir, run, results, folder, out)
    facts.onnx_files = list(onnx_files or [])
    return render_student_card(facts)


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
        replace(info, teacher=teacher_name(info.teacher)).write(out)  # no local path leaves
    provenance = model_provenance(model_dir)
    if provenance is not None:  # so reports and later runs know what the student carries
        write_provenance(out, for_publication(provenance))
    results = None
    if results_file is None and run is not None and run.file("results.json").is_file():
        results_file = run.file("results.json")
    if results_file is not None:
        results = json.loads(Path(results_file).read_text())
        if pick_results(results, _own_paths(model_dir, run, out)) is None:
            _warn(_unmatched_results(results_file, results, model_dir, run, out))
    (out / "README.md").write_text(model_card(model_dir, run, results, out))
    return out


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _unmatched_results(results_file, results: dict, model_dir: Path, run, out) -> str:
    """Why a results file gave the card no evaluation section, and what to do."""
    models = [
        f"{m.get('name', '?')} ({m.get('path', '?')})" for m in (results or {}).get("models", [])
    ]
    return (
        f"warning: {results_file} names no model at this student's paths "
        f"({', '.join(_own_paths(model_dir, run, out))}); it evaluated "
        f"{', '.join(models) or 'no model'}; the card has no evaluation section. Pass the "
        "results of an evaluation of this run, its checkpoint or the export folder "
        "(`distilxlsr evaluate --model student=RUN ...`)."
    )


def push_to_hub(folder: str | Path, repo: str) -> str:
    """Upload an exported folder to a hub repository (created if missing); returns its URL."""
    import huggingface_hub  # noqa: PLC0415 (only this path needs it)

    try:
        api = huggingface_hub.HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder))
    except Exception as err:  # offline, no token, no rights: all end here in one line
        raise UserError(
            f"could not upload '{folder}' to the hub repository '{repo}' "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); "
            "check the network and `huggingface-cli login`, or upload the folder yourself."
        ) from None
    return f"https://huggingface.co/{repo}"


make_callable(__name__, "distilxlsr.export:export_hf")
