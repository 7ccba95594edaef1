"""`distilxlsr distill`: a run of the distillation task in the one training loop.

Reads top to bottom: validate the config (`DistillConfig.validate`); load the teacher, build (or resume) the student and
scan the data, all before the run directory is claimed, so a failed start leaves nothing that
blocks the corrected command; then hand the task to `training.loop.Trainer`, which owns the
steps, metrics, checkpoints and resume (docs/design.md, "Training loop").
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError

from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import (
    AudioBatches,
    ShardBatchPlan,
    Transform,
    make_loader,
    scan_cuts,
)
from distilxlsr.data.shuffle import ALIGNED_MODES
from distilxlsr.distill.distiller import (  # noqa: F401 (Distiller: the package's public name)
    Distiller,
    DistillTask,
    cast_teacher,
    prepare_for_distillation,
)
from distilxlsr.distill.recipe import DistillConfig
from distilxlsr.errors import RunStopped, UserError
from distilxlsr.models.layers import LayerMap, parse_layer_map
from distilxlsr.models.loading import (
    card_license,
    count_parameters,
    feature_extractor,
    group_norm_cnn,
    load_teacher,
)
from distilxlsr.models.student import StudentInfo, build_student
from distilxlsr.provenance import student_provenance, write_provenance
from distilxlsr.shipped import resolve_model
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.loop import RunState, Trainer, make_accelerator, plan_batches
from distilxlsr.training.optim import Schedule, lr_factor
from distilxlsr.training.rundir import RunDir, default_command_line

# Settings that may change when a run is resumed; any other difference is an error, because the
# resumed run would silently be a different experiment.
RESUMABLE_CHANGES = {
    "train.max_steps",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "train.max_bad_steps",
    "train.compile",
    "train.extend",
    "train.trackers",
    "data.num_workers",
}


def resolve_transform(config: DistillConfig) -> Transform | None:
    """The per-utterance waveform transform (phoneme shuffling) for `shuffle.mode`."""
    from distilxlsr.data import shuffle  # noqa: PLC0415 (imported late: optional machinery)

    return shuffle.make_transform(config.shuffle, sample_rate=config.data.sample_rate)


def _schedule(config: DistillConfig, saved: dict | None, resumed_at: int | None, trainer):
    """The run's schedule; on a resume with another max_steps, says what happens to the rate."""
    t = config.train
    schedule = Schedule(t.max_steps, t.lr, t.warmup_steps, t.decay, t.min_lr_ratio)
    planned = (saved or {}).get("train", {}).get("max_steps", t.max_steps)
    if resumed_at is None or planned == t.max_steps:
        return schedule
    before = lr_factor(replace(schedule, steps=planned))(resumed_at) * t.lr
    if t.extend == "hold":
        schedule = replace(schedule, hold_from=resumed_at, planned_steps=planned)
        after = before
        how = "held at the rate reached (train.extend=hold)"
    else:
        after = lr_factor(schedule)(resumed_at) * t.lr
        how = "re-planned over the new length (train.extend=replan; hold keeps the rate)"
    trainer.say(
        f"train.max_steps changed from {planned} to {t.max_steps} at step {resumed_at}: the "
        f"learning rate is {how}: {before:.3g} -> {after:.3g}."
    )
    return schedule


def _check_data(config: DistillConfig, stats) -> None:
    if stats.cuts == 0:
        raise UserError(f"'{config.data.train}' holds no usable cut; check data.min_seconds.")
    if config.shuffle.mode in ALIGNED_MODES and stats.unaligned:
        raise UserError(
            f"{stats.unaligned} of {stats.cuts} cuts in '{config.data.train}' have no phone "
            f"alignment (first: {stats.first_unaligned}), which shuffle.mode="
            f"{config.shuffle.mode} needs; prepare the corpus with alignments, or set "
            "shuffle.mode=segment (no alignment needed) or shuffle.mode=none."
        )


@dataclass
class _Models:
    teacher: torch.nn.Module
    student: torch.nn.Module
    layer_map: LayerMap
    pristine_config: object
    """The student's config as checkpoints and exports carry it (training changes a copy)."""
    extractor: object
    info: StudentInfo


def load_models(config: DistillConfig, resume: Path | None) -> _Models:
    """The teacher, and the student built from it (with a resumed run's weights)."""
    teacher = load_teacher(config.teacher)
    layer_map = parse_layer_map(
        config.student.layers, teacher.config.num_hidden_layers, config.student.targets
    )
    student = build_student(teacher, layer_map, seed=config.student.seed)
    pristine_config = copy.deepcopy(student.config)
    if resume is not None:
        ckpt.load_model_state(student, resume)
    elif config.student.init:
        _start_from(student, config.student.init, layer_map)
    prepare_for_distillation(student, config.student.freeze_cnn)
    cast_teacher(teacher, config.resolved_teacher_dtype())
    extractor = feature_extractor(config.teacher, teacher.config)
    # Counted before the Distiller drops teacher layers above the last target.
    info = StudentInfo.of(layer_map, config.teacher, count_parameters(teacher), student)
    return _Models(teacher, student, layer_map, pristine_config, extractor, info)


def _start_from(student, directory: str, layer_map: LayerMap) -> None:
    """Load an `init-student` directory's weights into the student built for this run, after
    checking that it was made for the same teacher depth and layer map."""
    info = StudentInfo.read(Path(directory))
    if not (Path(directory) / "config.json").is_file() or info is None:
        raise UserError(
            f"student.init '{directory}' is not a directory written by `distilxlsr init-student` "
            "(config.json, model.safetensors and distilxlsr.json)."
        )
    ours = (layer_map.teacher_layers, list(layer_map.init), list(layer_map.targets))
    theirs = (info.teacher_layers, list(info.init), list(info.targets))
    if ours != theirs:
        raise UserError(
            f"student.init '{directory}' was built with layer map {info.layer_map} for a "
            f"{info.teacher_layers}-layer teacher (init {info.init}, targets {info.targets}); "
            f"this run has {layer_map.spec} for {layer_map.teacher_layers} layers (init "
            f"{list(layer_map.init)}, targets {list(layer_map.targets)}); make them agree."
        )
    try:
        ckpt.load_model_state(student, Path(directory))
    except (RuntimeError, OSError, SafetensorError) as err:
        raise UserError(
            f"student.init '{directory}' does not fit this teacher's student "
            f"({str(err).splitlines()[0]})."
        ) from None


def _batches(config: DistillConfig, cuts, extractor, transform, accelerator):
    """The data as a function of the position to start from (see `Trainer.fit`), and the
    batch plan."""
    plan = plan_batches(cuts, config.data, config.train, config.data.sample_rate, accelerator)
    dataset = AudioBatches(
        sample_rate=config.data.sample_rate,
        normalize=bool(getattr(extractor, "do_normalize", True)),
        transform=transform,
        transform_p=config.shuffle.p,
        seed=config.train.seed,
    )

    def from_position(position: dict) -> Iterator[dict]:
        plan.set_position(**position)
        loader = make_loader(
            plan,
            dataset,
            num_workers=config.data.num_workers,
            pin_memory=accelerator.device.type == "cuda",
            seed=config.train.seed,
        )
        return iter(loader)

    return from_position, plan


def distill(
    config: DistillConfig, transform: Transform | None = None, command_line: str | None = None
) -> Path:
    """Run (or resume) a distillation; returns the run directory. Raises `RunStopped` (a
    KeyboardInterrupt) when SIGINT or SIGTERM stopped it before `train.max_steps`, after its
    checkpoint: calling it again resumes."""
    config.validate()
    run = RunDir(config.out)
    accelerator = make_accelerator(config.train, run)
    if accelerator.is_main_process:
        run.acquire()  # one live process per run directory
    stopped = None
    try:
        _distill(config, transform, command_line, accelerator, run)
    except RunStopped as err:  # checkpointed; the trackers still end
        stopped = err
    finally:
        if accelerator.is_main_process:
            run.release()
    accelerator.end_training()
    if stopped is not None:
        raise stopped
    return run.path


def _distill(config, transform, command_line, accelerator, run: RunDir) -> None:
    """The run once `distill` holds its directory: check, load, claim, then train."""
    saved = run.check_resumable(config, RESUMABLE_CHANGES)
    resume = run.latest_checkpoint()
    if resume is not None:
        run.check_processes(resume, accelerator.num_processes)

    models = load_models(config, resume)
    teacher_dir, teacher_sha256 = _teacher_weights(config, run, resume)
    cuts = load_cuts(config.data.train, "train")
    stats = scan_cuts(
        cuts, config.data.min_seconds, config.data.train
    )  # every process: the same errors on all
    _check_data(config, stats)
    # What the student will carry, read now from the teacher that is loaded: a damaged teacher
    # record fails here, before the run is claimed.
    provenance = student_provenance(teacher_dir, stats.tiers)
    if transform is None:
        transform = resolve_transform(config)
    batches, plan = _batches(config, cuts, models.extractor, transform, accelerator)

    # Built before the run is claimed: a wrong loss or representation setting fails here.
    distiller = Distiller(models.teacher, models.student, models.layer_map, config)
    state = RunState()
    if resume is not None:
        state = RunState.from_dict(ckpt.read_trainer_state(resume)["run_state"])
    if accelerator.is_main_process:
        _claim(run, config, command_line, state.step, models, provenance, stats, teacher_sha256)
    accelerator.wait_for_everyone()

    distiller.teacher_tap.to(accelerator.device)  # the teacher, and a norm kept above its layers
    task = DistillTask(distiller, models.student, models.pristine_config)
    trainer = Trainer(accelerator, run, config, config.train, state, config.data.sample_rate)
    _say_setup(trainer, config, models, stats, plan, accelerator.num_processes)
    schedule = _schedule(config, saved, state.step if resume is not None else None, trainer)
    try:
        completed = trainer.fit(
            task,
            schedule,
            batches,
            resume=resume,
            rng_seed=config.train.seed * 1000 + accelerator.process_index,
            compile_module=config.train.compile,
            compile_dynamic=False if config.data.static_shapes else None,
        )
    finally:
        trainer.close()
    accelerator.wait_for_everyone()
    if not completed:
        raise RunStopped(trainer.stop_signal, state.step)
    if state.step >= config.train.max_steps:
        trainer.say(
            f"done: {state.step} steps, {state.audio_seconds / 3600:.3f} h of audio, "
            f"{state.bad_steps} skipped steps; run directory {run.path}"
        )


def _teacher_weights(
    config: DistillConfig, run: RunDir, resume: Path | None
) -> tuple[str, str | None]:
    """The teacher's directory and weights' SHA-256, checked against a resumed run's."""
    teacher_dir = resolve_model(config.teacher)  # `shipped`: the package's teacher
    teacher_sha256 = ckpt.weights_sha256(teacher_dir)
    before = run.facts().get("teacher_sha256") if resume is not None else None
    if before and teacher_sha256 and before != teacher_sha256:
        raise UserError(
            f"teacher '{config.teacher}' is not the model this run started from (its weights "
            f"changed since: SHA-256 {teacher_sha256[:12]}..., the run's {before[:12]}...); "
            f"restore that teacher, or distil into a new out= than '{run.path}'."
        )
    return teacher_dir, teacher_sha256


def _claim(run: RunDir, config, command_line, step, models, provenance, stats, teacher_sha256):
    """Claim the run directory (main process): student_init's files and the run's facts."""
    run.claim(config, command_line or default_command_line(), step)
    run.drop_metrics_after(step)
    run.student_init.mkdir(exist_ok=True)
    models.pristine_config.save_pretrained(run.student_init)
    models.extractor.save_pretrained(run.student_init)
    models.info.write(run.student_init)
    write_provenance(run.student_init, provenance)
    run.write_facts(
        {
            "data": config.data.train,
            "languages": {k: round(v, 4) for k, v in stats.languages.items()},
            "cuts": stats.cuts,
            "hours": round(stats.hours, 4),
            "teacher_license": card_license(config.teacher),
            "teacher_sha256": teacher_sha256,
        }
    )


def _say_setup(trainer, config: DistillConfig, models: _Models, stats, plan, num_processes):
    """Say what the run trains on, with what, and how; warn of settings that mislead."""
    info, layer_map = models.info, models.layer_map
    trainer.say(f"train data {config.data.train}: {stats.summary(config.data.min_seconds)}")
    if isinstance(plan, ShardBatchPlan):
        count = len(plan.shard_set.shards)
        trainer.say(
            f"read from {count} shards: each epoch every process takes its own "
            f"{count // num_processes}-{-(-count // num_processes)} of them"
        )
    if config.data.static_shapes:
        trainer.say(plan.stats.summary())
    if len(stats.languages) > 1:
        trainer.say(
            f"warning: the training data hold {len(stats.languages)} languages "
            f"({', '.join(sorted(stats.languages))}); the method distils on English alone, so "
            "that the evaluation languages stay unheard (data.train=ROOT/en takes one language)."
        )
    trainer.say(
        f"teacher {config.teacher}: {layer_map.teacher_layers} layers; student "
        f"{layer_map.spec}: {layer_map.student_layers} layers, {info.student_parameters:,} "
        f"parameters ({info.ratio:.1%} of the teacher's {info.teacher_parameters:,}), "
        f"init {list(layer_map.init)}, targets {list(layer_map.targets)}"
    )
    if config.resolved_teacher_dtype() != "fp32":
        trainer.say(
            f"teacher weights in {config.resolved_teacher_dtype()} (frozen; the student keeps fp32 "
            "weights), its CNN not shared with the student's"
        )
    if group_norm_cnn(models.teacher.config) and not config.data.static_shapes:
        trainer.say(
            "warning: the teacher's CNN uses group norm, which normalises each channel over "
            "all frames of a row, padding included: its features of an utterance then depend "
            "on what it is batched with. data.static_shapes=true crops every row to a fixed "
            "length without padding (as HuBERT and wav2vec 2.0 Base were trained)."
        )
    t = config.train
    trainer.say(
        f"shuffle.mode={config.shuffle.mode} (p={config.shuffle.p:g}); lr {t.lr:g} "
        f"(warm-up {t.warmup_steps or max(1, int(0.05 * t.max_steps))} steps, {t.decay} decay); "
        f"batches of {t.batch_seconds:g} s x {t.grad_accum} micro-batch(es) x "
        f"{num_processes} process(es); {t.max_steps} steps"
    )
    if t.warmup_steps >= t.max_steps:
        trainer.say(
            f"warning: train.warmup_steps={t.warmup_steps} is not below train.max_steps="
            f"{t.max_steps}: the whole run is warm-up, its learning rate peaks at "
            f"{t.lr * t.max_steps / t.warmup_steps:.3g} (train.lr={t.lr:g}) and never decays; "
            "lower train.warmup_steps (0: 5% of the steps)."
        )
