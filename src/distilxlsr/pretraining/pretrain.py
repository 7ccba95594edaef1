"""`distilxlsr pretrain-teacher`: make a small multilingual teacher (docs/design.md, "Teacher
pretraining").

Trained on one split (`train`, or corpus v2's `pretrain`) of the chosen languages of a corpus
directory, in two stages that run as tasks of the one training loop:

1. self-supervised, as HuBERT's first iteration: k-means units fitted on log-mel frames of a
   sample of the training audio (at the model's hop, so unit i belongs to model frame i), then
   masked prediction of the units of masked frames; or as its next iteration, with units fitted
   on one layer of an earlier teacher (`units.source`, `units.layer`);
2. optional (`stage2.steps > 0`): multilingual phone CTC through a temporary linear head, one
   phone vocabulary for all languages.

Corpus v2's tiers are enforced: no language of the `unheard` tier is heard, and phone labels
(stage 2) are read only from `label` and `english` languages.

The product is OUT/model: the base `Wav2Vec2Model` or `HubertModel` (heads dropped) with a
preprocessor config
and a model card saying what it heard and which labels it saw. OUT is a run directory
(`training.rundir`) that also holds units.safetensors and phones.json; running the same command
again resumes from the newest checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import transformers
import yaml
from lhotse import CutSet
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from distilxlsr.config import to_dict
from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.data.corpora import load_manifests, select_languages
from distilxlsr.data.loader import make_loader, scan_cuts
from distilxlsr.errors import RunStopped, UserError
from distilxlsr.models.loading import count_parameters, load_model
from distilxlsr.pretraining.encoder import MAX_MODEL_MB, build_encoder, export_model
from distilxlsr.pretraining.recipe import RESUMABLE_CHANGES, PretrainConfig
from distilxlsr.pretraining.tasks import PhoneCTC, StageTask, UnitPrediction
from distilxlsr.pretraining.teacher_card import StageFacts, TeacherFacts, render_card
from distilxlsr.pretraining.units import (
    LayerFeatures,
    PretrainBatches,
    UnitLabeler,
    fit_units,
    phone_vocabulary,
)
from distilxlsr.provenance import (
    LABEL_TIERS,
    Provenance,
    Source,
    check_sources,
    combine,
    outside_label_tiers,
    read_provenance,
    unheard_languages,
    write_provenance,
)
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.loop import Job, RunState, Trainer, plan_batches
from distilxlsr.training.machine import describe_machine
from distilxlsr.training.optim import Schedule
from distilxlsr.training.rundir import RunDir, default_command_line

UNITS_FILE = "units.safetensors"
PHONES_FILE = "phones.json"
MODEL_DIR = "model"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    write(tmp)
    os.replace(tmp, path)


def _resume_point(config: PretrainConfig, run: RunDir, saved: dict | None):
    """(checkpoint, its stage, RunState) of a run directory to resume, or (None, 0, new)."""
    latest = run.latest_checkpoint()
    if latest is None:
        return None, 0, RunState()
    stage = ckpt.load_training_state(latest)["stage"]
    state = RunState.from_dict(ckpt.read_trainer_state(latest)["run_state"])
    saved_steps = (saved or to_dict(config))["stage1"]["steps"]
    if stage == 2 and config.stage1.steps != saved_steps:
        raise UserError(
            f"run directory '{run.path}' is in stage 2 (step {state.step}), which began after "
            f"stage1.steps={saved_steps}; keep that value to resume, or use a new out=DIR."
        )
    if stage == 1 and config.stage1.steps < state.step:
        raise UserError(
            f"run directory '{run.path}' already trained {state.step} steps of stage 1; "
            f"stage1.steps={config.stage1.steps} is fewer: raise it, or use a new out=DIR."
        )
    return latest, stage, state


def check_tiers(tiers: dict[str, str | None], phone_labels: bool) -> None:
    """Corpus v2's protocol: no `unheard` language is ever heard by a teacher, and phone labels
    come from `label` and `english` languages only (languages without a tier are not checked)."""
    unheard = unheard_languages(tiers)
    if unheard:
        raise UserError(
            f"{', '.join(unheard)} belong(s) to the unheard tier, which no teacher may hear; "
            "choose the languages with languages=[english,label,heard] (or codes), or set "
            "tier_protocol=false for a labelled upper bound."
        )
    unlabelled = outside_label_tiers(tiers, tiers)
    if phone_labels and unlabelled:
        raise UserError(
            f"stage 2 would train on the phone labels of {', '.join(unlabelled)} (tier "
            f"{tiers[unlabelled[0]]}); only {' and '.join(LABEL_TIERS)} languages' labels may "
            "train a teacher: set stage2.steps=0 or leave those languages out."
        )


def _initialise_from(encoder: transformers.PreTrainedModel, source: str) -> None:
    start = load_model(source)
    theirs, ours = start.state_dict(), encoder.state_dict()
    mismatched = [k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape]
    if mismatched or theirs.keys() != ours.keys():
        raise UserError(
            f"init_from '{source}' does not have the shape of model.* (first difference: "
            f"{(mismatched or sorted(set(theirs) ^ set(ours)))[0]}); set model.* to match it."
        )
    encoder.load_state_dict(theirs)


class _Pretraining(Job):
    """One run: data, the encoder, stage targets, then the stages in the training loop."""

    # --- stage targets: made once by the main process (kept for resumes), read by all ---

    def _phones(self, cuts: CutSet) -> list[str] | None:
        """The stage-2 vocabulary (checked before the run directory is claimed)."""
        if self.config.stage2.steps == 0:
            return None
        path = self.run.file(PHONES_FILE)
        if path.is_file():
            return json.loads(path.read_text())
        vocab = phone_vocabulary(cuts)
        if len(vocab) < 2:
            raise UserError(
                f"'{self.config.data}' has no phone transcripts (supervision "
                'custom["phones"]), which stage 2 needs; set stage2.steps=0 or use a corpus '
                "written by `distilxlsr synth` / `distilxlsr prepare`."
            )
        return vocab

    def _units(self, cuts: CutSet, total_seconds: float) -> tuple[torch.Tensor, dict] | None:
        """k-means centroids and their facts (main process; None where units exist)."""
        if not self.main or self.run.file(UNITS_FILE).is_file():
            return None
        u, t = self.config.units, self.config.train
        return fit_units(
            cuts,
            u.clusters,
            u.sample_seconds,
            u.iterations,
            t.seed,
            self.config.loader.min_seconds,
            total_seconds,
            self.say,
            self.unit_features,
        )

    def _check_unit_source(self) -> None:
        """Units fitted on an earlier teacher's layer label every batch with that teacher: if
        its weights changed since the fit (say, it was trained further), resuming would train
        towards labels that no longer match the centroids."""
        path = self.run.file(UNITS_FILE)
        if not path.is_file():
            return
        with safe_open(path, "pt") as f:
            fitted = json.loads((f.metadata() or {}).get("info", "{}")).get("source_sha256")
        if fitted is not None and fitted != self.unit_features.weights_sha256():
            raise UserError(
                f"units.source '{self.config.units.source}' is not the model the units in "
                f"'{path}' were fitted on (its weights changed); restore it, or start a new "
                "out=DIR."
            )

    def _write_targets(self, vocab: list[str] | None, units) -> None:
        if vocab is not None and not self.run.file(PHONES_FILE).is_file():
            text = json.dumps(vocab, ensure_ascii=False)
            _atomic_write(self.run.file(PHONES_FILE), lambda p: p.write_text(text))
            self.say(f"phone vocabulary: {len(vocab) - 1} phones + blank")
        if units is not None:
            centroids, info = units
            metadata = {"info": json.dumps(info)}
            _atomic_write(
                self.run.file(UNITS_FILE),
                lambda p: save_file({"centroids": centroids}, p, metadata),
            )

    # --- the whole run ---

    def run_all(self) -> Path:
        config, acc, run = self.config, self.accelerator, self.run
        # a missing or empty data path, or an unknown language, fails here
        selected = select_languages(config.data, config.split, config.languages)
        tiers = {lang: tier for _, lang, tier in selected}
        self.sources = self._sources()
        if config.tier_protocol:
            check_tiers(tiers, config.stage2.steps > 0)
            check_sources(self.sources, any(t is not None for t in tiers.values()))
        cuts = load_manifests([manifest for manifest, *_ in selected])
        stats = scan_cuts(cuts, config.loader.min_seconds, config.data)
        if stats.cuts == 0:
            raise UserError(
                f"'{config.data}' holds no utterance of at least loader.min_seconds="
                f"{config.loader.min_seconds:g} s; check data= and loader.min_seconds."
            )
        languages = sorted(tiers)
        self.data_info = {
            "path": config.data,
            "languages": languages,
            "tiers": {lang: tiers[lang] for lang in languages if tiers[lang]},
            "summary": stats.summary(config.loader.min_seconds),
        }
        self.unit_features = None
        if config.units.source != "logmel" and config.stage1.steps > 0:
            self.unit_features = LayerFeatures(config.units.source, config.units.layer)
            self.unit_features.load()  # a missing model or layer fails before the run starts
            self._check_unit_source()
        saved = run.check_resumable(config, RESUMABLE_CHANGES)
        resume, resume_stage, state = _resume_point(config, run, saved)
        if resume is not None:
            run.check_processes(resume, acc.num_processes)

        encoder = build_encoder(config.model, config.train.seed)
        pristine = copy.deepcopy(encoder.config)  # what checkpoints and the export carry
        # Masks are always passed explicitly; the model must not draw its own on top.
        encoder.config.mask_time_prob = 0.0
        encoder.config.mask_feature_prob = 0.0
        if resume is not None:
            ckpt.load_model_state(encoder, resume)
        elif config.init_from:
            _initialise_from(encoder, config.init_from)
        vocab = self._phones(cuts)
        units = self._units(cuts, stats.hours * 3600) if config.stage1.steps > state.step else None
        if self.main:
            run.claim(config, self.command_line, state.step)
            run.drop_metrics_after(state.step)
            self._write_targets(vocab, units)
        acc.wait_for_everyone()
        self.say(
            f"{config.split} data {config.data} ({', '.join(languages)}): "
            f"{self.data_info['summary']}"
        )
        if config.init_from and resume is None:
            self.say(f"initialised from {config.init_from}")
        self.say(
            f"teacher: {config.model.layers} layers, hidden {config.model.hidden}, "
            f"{count_parameters(encoder):,} parameters"
        )

        trainer = Trainer(acc, run, config, config.train, state, SAMPLE_RATE)
        plan = plan_batches(cuts, config.loader, config.train, SAMPLE_RATE, acc)
        if config.loader.static_shapes:
            self.say(plan.stats.summary())
        finished = True
        try:
            for number in (1, 2):
                if finished and self._stage_left(number, state):
                    stage_resume = resume if resume_stage == number else None
                    finished = self._run_stage(
                        number, trainer, encoder, pristine, plan, stage_resume, vocab
                    )
        finally:
            trainer.close()
        acc.wait_for_everyone()
        model_dir = run.file(MODEL_DIR)
        if finished and self.main:
            state.wall_seconds = trainer.wall_before + trainer.elapsed()
            export_model(encoder, pristine, model_dir)
            provenance = self._provenance()
            write_provenance(model_dir, provenance)
            facts = self._facts(model_dir, encoder, vocab, state, provenance)
            (model_dir / "README.md").write_text(render_card(facts))
            self.say(
                f"done: {state.step} steps; teacher written to {model_dir} ({facts.size_mb:.1f} MB)"
            )
            if facts.size_mb > MAX_MODEL_MB:
                self.say(
                    f"warning: model.safetensors is {facts.size_mb:.1f} MB, more than the "
                    f"{MAX_MODEL_MB:g} MB a shipped teacher may take; lower model.hidden, "
                    "model.ffn or model.layers."
                )
        acc.wait_for_everyone()
        acc.end_training()
        if not finished:  # a signal stopped it, after a checkpoint: the same command resumes
            raise RunStopped(trainer.stop_signal, state.step)
        return model_dir

    def _stage_left(self, number: int, state: RunState) -> bool:
        c = self.config
        last = c.stage1.steps if number == 1 else c.stage1.steps + c.stage2.steps
        return state.step < last

    def _run_stage(self, number, trainer, encoder, pristine, plan, resume, vocab) -> bool:
        config = self.config
        stage = config.stage1 if number == 1 else config.stage2
        if resume is None:
            torch.manual_seed(config.train.seed * 1000 + 100 * number + self.rank)
        common = {"sample_rate": SAMPLE_RATE, "normalize": True, "seed": config.train.seed}
        if number == 1:
            centroids = load_file(self.run.file(UNITS_FILE))["centroids"]
            module = UnitPrediction(encoder, len(centroids), config.stage1.unmasked_weight)
            labeler = UnitLabeler(centroids, self.unit_features)
            dataset = PretrainBatches(
                labeler=labeler, speed_range=config.stage1.speed_range, **common
            )
        else:
            if config.stage2.freeze_cnn:
                encoder.feature_extractor._freeze_parameters()  # HubertModel has no freeze_*
            encoder.masked_spec_embed.requires_grad_(False)  # fine-tuning keeps the mask vector
            module = PhoneCTC(encoder, len(vocab))
            index = {p: i for i, p in enumerate(vocab)}
            dataset = PretrainBatches(phone_index=index, **common)
        task = StageTask(number, module, stage, config.train.seed, self.rank, pristine)
        workers = config.loader.num_workers
        pin = self.accelerator.device.type == "cuda"

        def batches(position: dict):
            plan.set_position(**position)
            loader = make_loader(plan, dataset, workers, pin, seed=config.train.seed + number)
            return iter(loader)

        schedule = Schedule(
            steps=stage.steps,
            lr=stage.lr,
            warmup_steps=stage.warmup_steps,
            decay=config.train.decay,
            min_lr_ratio=config.train.min_lr_ratio,
        )
        first = 0 if number == 1 else config.stage1.steps
        return trainer.fit(
            task, schedule, batches, first_step=first, resume=resume, extra_state={"stage": number}
        )

    def _sources(self) -> list[Source]:
        """The models this run builds on, with what they carry (docs/design.md, "Provenance")."""
        config = self.config
        sources = []
        if config.units.source != "logmel":
            sources.append(
                Source("units source", config.units.source, read_provenance(config.units.source))
            )
        if config.init_from:
            sources.append(
                Source("initialised from", config.init_from, read_provenance(config.init_from))
            )
        return sources

    def _provenance(self) -> Provenance:
        """What the exported teacher heard and which labels trained it, sources included."""
        config = self.config
        languages = self.data_info["languages"]
        heard = {lang: self.data_info["tiers"].get(lang) for lang in languages}
        labels = list(languages) if config.stage2.steps > 0 else []
        return combine(heard, labels, config.tier_protocol, self.sources)

    def _facts(
        self, model_dir: Path, encoder, vocab, state: RunState, provenance: Provenance
    ) -> TeacherFacts:
        config = self.config
        units_info = {}
        if self.run.file(UNITS_FILE).is_file():
            with safe_open(self.run.file(UNITS_FILE), "pt") as f:
                units_info = json.loads((f.metadata() or {}).get("info", "{}"))
        commands = [
            f"{i['command'] or '(called from Python: distilxlsr.pretraining.pretrain.pretrain_teacher)'}"
            f"   # {i['time']}, from step {i['start_step']}"
            for i in self.run.invocations()
        ]

        def stage_facts(number: int, stage) -> StageFacts | None:
            if not stage.steps:
                return None
            final = state.final.get(f"stage{number}", {})
            return StageFacts(stage.steps, stage.lr, stage.mask_prob, stage.mask_length, final)

        return TeacherFacts(
            model_dir_name=model_dir.name,
            parameters=count_parameters(encoder),
            size_mb=(model_dir / "model.safetensors").stat().st_size / 1e6,
            shape=asdict(config.model),
            conv_kernel=list(encoder.config.conv_kernel),
            conv_stride=list(encoder.config.conv_stride),
            commands=commands,
            data_path=self.data_info["path"],
            languages=self.data_info["languages"],
            data_summary=self.data_info["summary"],
            batch_seconds=config.train.batch_seconds,
            max_seconds=config.loader.max_seconds,
            audio_hours=state.audio_seconds / 3600,
            seed=config.train.seed,
            total_steps=state.step,
            wall_seconds=state.wall_seconds,
            train_seconds=state.train_seconds,
            bad_steps=state.bad_steps,
            machine=describe_machine(self.accelerator.num_processes, self.accelerator.device),
            versions=f"torch {torch.__version__}, transformers {transformers.__version__}",
            config_yaml=yaml.safe_dump(to_dict(config), sort_keys=False),
            clusters=config.units.clusters,
            units=units_info,
            unmasked_weight=config.stage1.unmasked_weight,
            stage1=stage_facts(1, config.stage1),
            stage2=stage_facts(2, config.stage2),
            phones=len(vocab) - 1 if vocab else 0,
            freeze_cnn=config.stage2.freeze_cnn,
            family=config.model.family,
            split=config.split,
            tiers=self.data_info["tiers"],
            tier_protocol=config.tier_protocol,
            sources=[(src.role, src.path) for src in self.sources],
            provenance=provenance,
        )


def pretrain_teacher(config: PretrainConfig, command_line: str | None = None) -> Path:
    """Train (or resume) the teacher; returns OUT/model, a plain HF `Wav2Vec2Model` (or
    `HubertModel`) directory.

    `command_line` is recorded in the model card (default: this process's `distilxlsr ...`
    arguments when run from the command line)."""
    config.validate()
    return _Pretraining(config, command_line or default_command_line()).run_locked()
