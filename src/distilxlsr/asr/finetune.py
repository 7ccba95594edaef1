"""`distilxlsr finetune`: a pretrained model (teacher or student) fine-tuned with CTC into a speech
recogniser for one language, on the one training loop (docs/design.md, "Downstream ASR").

Two stages of one run: the new CTC head alone on the frozen model, then the transformer too
(the CNN frozen throughout). Checkpoints, exact resume, trackers, progress and the run lock
are the training loop's. The run ends with OUT/model: a Hugging Face `*ForCTC` model with its
processor (feature extractor, tokenizer, vocab.json), its provenance and a card, which
`transformers.pipeline("automatic-speech-recognition", model=OUT/model)` loads.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from lhotse import CutSet

from distilxlsr.asr.decoding import BeamSearch
from distilxlsr.asr.recipe import RESUMABLE_CHANGES, FinetuneConfig
from distilxlsr.asr.recogniser import (
    LM_FILE,
    DecodingChoice,
    ctc_class,
    log_probs,
    quiet_load_report,
    transcribable,
)
from distilxlsr.asr.vocab import Vocabulary
from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.data.corpora import cuts_file, load_cuts
from distilxlsr.data.loader import AudioBatches, load_mono, make_loader
from distilxlsr.errors import RunStopped, UserError
from distilxlsr.models.loading import feature_extractor, load_config
from distilxlsr.provenance import PROVENANCE_FILE, Provenance, read_provenance
from distilxlsr.rng import numpy_global_rng
from distilxlsr.shipped import SHIPPED, shipped_teacher
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.loop import Job, RunState, Task, Trainer, plan_batches
from distilxlsr.training.optim import Schedule
from distilxlsr.training.rundir import RunDir, default_command_line

MODEL_DIR = "model"
VOCAB_DIR = "vocabulary"
RESULTS_FILE = "results.json"
STAGES = {1: "frozen", 2: "full"}


def base_model_path(arg: str) -> str:
    """A model argument as a loadable path: `shipped`, a run directory (its newest
    checkpoint), a model directory or a hub id."""
    if arg == SHIPPED:
        return str(shipped_teacher())
    path = Path(arg)
    if path.is_dir() and RunDir.holds_run(path):
        latest = RunDir(path).latest_checkpoint()
        if latest is None:
            raise UserError(f"run directory '{arg}' has no complete checkpoint yet.")
        return str(latest)
    return arg


def transcript(cut, targets: str) -> str | list[str]:
    """A cut's transcript: its supervisions' text joined by spaces, or their phones."""
    if targets == "phones":
        return [p for s in cut.supervisions for p in (s.custom or {}).get("phones", [])]
    return " ".join((s.text or "").strip() for s in cut.supervisions).strip()


@dataclass
class Selection:
    """The training utterances and what was left out (counted and reported)."""

    cuts: CutSet
    kept: int
    seconds: float
    untranscribed: int
    too_long: int
    too_short: int

    def summary(self) -> str:
        skipped = [
            f"{n} {why}"
            for n, why in (
                (self.untranscribed, "without a transcript"),
                (self.too_long, "longer than loader.max_seconds"),
                (self.too_short, "shorter than loader.min_seconds"),
            )
            if n
        ]
        text = f"{self.kept} utterances, {self.seconds / 60:.1f} min"
        return text + (f" (skipped: {', '.join(skipped)})" if skipped else "")


def select_training_cuts(data: str, split: str, targets: str, loader, vocab=None) -> Selection:
    """The split's cuts with a non-empty transcript that fit between the loader's bounds."""
    if cuts_file(Path(data), split) is None:
        raise UserError(f"'{data}' has no {split} split (cuts_{split}.jsonl.gz).")
    kept, seconds = [], 0.0
    untranscribed = too_long = too_short = 0
    for cut in load_cuts(data, split):
        text = transcript(cut, targets)
        symbols = vocab.encode(text) if vocab is not None else text
        if not symbols or (isinstance(text, str) and not text.strip()):
            untranscribed += 1
        elif cut.duration > loader.max_seconds:
            too_long += 1
        elif cut.duration < loader.min_seconds:
            too_short += 1
        else:
            kept.append(cut)
            seconds += cut.duration
    if not kept:
        raise UserError(
            f"'{data}' ({split}) has no utterance to fine-tune on: {untranscribed} without a "
            f"transcript, {too_long} too long, {too_short} too short."
        )
    return Selection(CutSet.from_cuts(kept), len(kept), seconds, untranscribed, too_long, too_short)


class TranscriptBatches(AudioBatches):
    """`AudioBatches` with CTC targets: `labels` (B, longest; -100 after each transcript)."""

    def __init__(self, vocab: Vocabulary, targets: str, **kwargs):
        super().__init__(**kwargs)
        self.vocab = vocab
        self.targets = targets

    def __getitem__(self, ref) -> dict:
        batch = super().__getitem__(ref)
        ids = [self.vocab.encode(transcript(cut, self.targets)) for cut in ref.cuts]
        labels = torch.full((len(ids), max(len(x) for x in ids)), -100, dtype=torch.long)
        for row, seq in enumerate(ids):
            labels[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        return batch | {"labels": labels}


class CTCFineTuning(Task):
    """One stage of fine-tuning: the CTC model's loss on a batch. SpecAugment's masks come from
    numpy's global RNG (transformers): seeded by (seed, stage, step, rank, micro-batch), so that
    a resumed run draws the masks an uninterrupted one draws."""

    progress_keys = ("loss",)

    def __init__(self, number: int, model, pristine, seed: int, rank: int, head_lr=None):
        self.number = number
        self.key = STAGES[number]
        self.description = f"stage {number} ({'head alone' if number == 1 else 'whole model'})"
        self.lr_setting = f"{STAGES[number]}.lr"
        self.module = self.model = model
        self.pristine_config = pristine
        self.seed, self.rank = seed, rank
        self.head_lr = head_lr
        self._position = (-1, 0)

    def parameter_groups(self) -> list[dict] | None:
        """The body at the stage's rate, the head at `head_lr` (stage 2)."""
        if self.head_lr is None:
            return None
        head = [p for p in self.model.lm_head.parameters() if p.requires_grad]
        ids = {id(p) for p in head}
        body = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": body}, {"params": head, "lr": self.head_lr}]

    def __call__(self, module, batch: dict, step: int):
        last_step, micro = self._position
        micro = micro + 1 if last_step == step else 0
        self._position = (step, micro)
        with numpy_global_rng([self.seed, self.number, step, self.rank, micro]):
            out = module(
                batch["input_values"],
                attention_mask=batch["attention_mask"],
                labels=batch["labels"],
            )
        return out.loss, {"loss": out.loss.detach()}


def build_ctc_model(base_path: str, vocab: Vocabulary, config: FinetuneConfig, seed: int):
    """The base model with a new CTC head of the vocabulary's size (seeded), SpecAugment sized
    to the model's width, layerdrop off, the CNN frozen."""
    base_config = load_config(base_path)
    ctc_config = copy.deepcopy(base_config)
    m = config.masking
    ctc_config.update(
        {
            "vocab_size": len(vocab),
            "pad_token_id": vocab.blank,  # Hugging Face's CTC blank is the pad token
            "ctc_loss_reduction": "mean",
            "ctc_zero_infinity": True,
            "apply_spec_augment": m.time_prob > 0 or m.feature_prob > 0,
            "mask_time_prob": m.time_prob,
            "mask_time_length": m.time_length,
            "mask_feature_prob": m.feature_prob,
            "mask_feature_length": max(1, round(m.feature_length * base_config.hidden_size / 1024)),
            "layerdrop": 0.0,
        }
    )
    try:
        with quiet_load_report(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ctc_class(ctc_config.model_type).from_pretrained(base_path, config=ctc_config)
    except OSError as err:
        raise UserError(f"could not load the model '{base_path}' ({err}).") from None
    model.freeze_feature_encoder()
    return model, copy.deepcopy(ctc_config)


def set_stage(model, number: int) -> None:
    """Stage 1: only the head learns; stage 2: everything but the CNN and the mask vector."""
    base = model.base_model
    for name, p in model.named_parameters():
        if name.startswith("lm_head"):
            p.requires_grad_(True)
        else:
            p.requires_grad_(number == 2)
    base.feature_extractor._freeze_parameters()
    if getattr(base, "masked_spec_embed", None) is not None:
        base.masked_spec_embed.requires_grad_(False)


def stage_schedule(config: FinetuneConfig, number: int) -> Schedule:
    if number == 1:
        f = config.frozen
        return Schedule(
            steps=f.steps, lr=f.lr, warmup_steps=max(1, f.warmup_steps), decay="constant"
        )
    f = config.full
    return Schedule(
        steps=f.steps,
        lr=f.lr,
        warmup_steps=max(1, int(f.warmup_fraction * f.steps)),
        decay="tristage",
        hold_steps=int(f.hold_fraction * f.steps),
        min_lr_ratio=f.final_lr_scale,
    )


class _FineTuning(Job):
    """One run: data and vocabulary, the CTC model, the two stages, the recogniser."""

    def _vocabulary(self) -> Vocabulary:
        """Built from the training transcripts once and kept in the run (the same on resume)."""
        c = self.config
        saved = self.run.file(VOCAB_DIR)
        if (saved / "vocab.json").is_file():
            return Vocabulary.load(saved, c.targets)
        cuts = load_cuts(c.data, c.split)
        if c.targets == "phones":
            return Vocabulary.from_phones([transcript(cut, "phones") for cut in cuts])
        return Vocabulary.from_transcripts([transcript(cut, "chars") for cut in cuts])

    def run_all(self) -> Path:
        c, acc, run = self.config, self.accelerator, self.run
        base_path = base_model_path(c.model)
        vocab = self._vocabulary()
        selection = select_training_cuts(c.data, c.split, c.targets, c.loader, vocab)
        saved = run.check_resumable(c, RESUMABLE_CHANGES)
        latest = run.latest_checkpoint() if saved is not None else None
        state, resume_stage = RunState(), 0
        if latest is not None:
            run.check_processes(latest, acc.num_processes)
            state = RunState.from_dict(ckpt.read_trainer_state(latest)["run_state"])
            resume_stage = ckpt.load_training_state(latest)["stage"]
            if resume_stage == 2 and c.frozen.steps > state.step:
                raise UserError(
                    f"run directory '{run.path}' is in stage 2; keep frozen.steps to resume."
                )
        model, pristine = build_ctc_model(base_path, vocab, c, c.train.seed)
        if latest is not None:
            ckpt.load_model_state(model, latest)
        extractor = feature_extractor(base_path, load_config(base_path))
        if self.main:
            run.claim(c, self.command_line, state.step)
            run.drop_metrics_after(state.step)
            self.run.file(VOCAB_DIR).mkdir(exist_ok=True)
            vocab.save(self.run.file(VOCAB_DIR))
        acc.wait_for_everyone()
        self.say(f"fine-tuning {c.model} on {c.data} ({c.split}): {selection.summary()}")
        self.say(f"vocabulary: {len(vocab)} {c.targets} tokens (blank and <unk> included)")
        trainer = Trainer(acc, run, c, c.train, state, SAMPLE_RATE)
        plan = plan_batches(selection.cuts, c.loader, c.train, SAMPLE_RATE, acc)
        dataset = TranscriptBatches(
            vocab, c.targets, sample_rate=SAMPLE_RATE, normalize=extractor.do_normalize
        )
        finished = True
        try:
            for number in (1, 2):
                last = c.frozen.steps + (c.full.steps if number == 2 else 0)
                if finished and state.step < last:
                    resume = latest if resume_stage == number else None
                    finished = self._stage(number, trainer, model, pristine, plan, dataset, resume)
        finally:
            trainer.close()
        acc.wait_for_everyone()
        out = run.file(MODEL_DIR)
        if finished and self.main:
            self._export(model, pristine, vocab, extractor, selection, state, base_path, out)
        acc.wait_for_everyone()
        acc.end_training()
        if not finished:
            raise RunStopped(trainer.stop_signal, state.step)
        return out

    def _stage(self, number, trainer, model, pristine, plan, dataset, resume) -> bool:
        c = self.config
        set_stage(model, number)
        if resume is None:
            torch.manual_seed(c.train.seed * 1000 + 100 * number + self.rank)
        task = CTCFineTuning(
            number,
            model,
            pristine,
            c.train.seed,
            self.rank,
            head_lr=c.full.head_lr if number == 2 else None,
        )
        pin = self.accelerator.device.type == "cuda"

        def batches(position: dict):
            plan.set_position(**position)
            loader = make_loader(plan, dataset, c.loader.num_workers, pin, seed=c.train.seed)
            return iter(loader)

        first = 0 if number == 1 else c.frozen.steps
        return trainer.fit(
            task,
            stage_schedule(c, number),
            batches,
            first_step=first,
            resume=resume,
            extra_state={"stage": number},
        )

    def _export(self, model, pristine, vocab, extractor, selection, state, base_path, out):
        """OUT/model: weights, processor, LM and decoding choice, provenance and card;
        OUT/results.json."""
        from distilxlsr.asr.card import render_recogniser_card  # noqa: PLC0415

        c = self.config
        out.mkdir(parents=True, exist_ok=True)
        model.eval()
        ckpt.save_model(model, pristine, out)
        extractor.save_pretrained(out)
        vocab.tokenizer(out)
        provenance = recogniser_provenance(base_path, c.data, c.targets)
        (out / PROVENANCE_FILE).write_text(provenance.to_json())
        lm = self._write_lm(vocab, selection, out) if c.decoding.lm else None
        scores = self._score_eval_split(model, vocab, extractor.do_normalize, lm, out)
        facts = {
            "base_model": display_name(c.model),
            "data": display_name(c.data),
            "split": c.split,
            "targets": c.targets,
            "training": selection.summary(),
            "steps": {"frozen": c.frozen.steps, "full": c.full.steps},
            "train_seconds": round(state.train_seconds, 1),
            "audio_hours": round(state.audio_seconds / 3600, 3),
            "vocabulary": len(vocab),
            "lm": {"file": LM_FILE, "order": lm.order} if lm is not None else None,
            "eval": scores,
            "command": self.command_line,
        }
        self.run.file(RESULTS_FILE).write_text(json.dumps(facts, indent=1) + "\n")
        (out / "README.md").write_text(render_recogniser_card(facts, provenance))
        shown = "; ".join(
            f"{how} " + ", ".join(f"{k.upper()} {v:.1%}" for k, v in rates.items())
            for how, rates in scores.items()
            if how in ("greedy", "lm")
        )
        self.say(
            f"done: {state.step} steps; recogniser written to {out}"
            + (f" ({scores['split']}: {shown})" if shown else "")
        )

    def _write_lm(self, vocab: Vocabulary, selection: Selection, out: Path):
        """An n-gram of the kept training transcripts' tokens, as OUT/model/lm.arpa."""
        from distilxlsr.asr.lm import train_ngram  # noqa: PLC0415

        c = self.config
        sentences = [vocab.symbols(transcript(cut, c.targets)) for cut in selection.cuts]
        model = train_ngram(sentences, c.decoding.order)
        model.write_arpa(out / LM_FILE)
        return model

    def _score_eval_split(self, model, vocab, normalize: bool, lm, out: Path) -> dict:
        """Greedy and LM error rates on `eval_split` (CER/WER, or PER), the LM's weight and word
        bonus chosen there (written to decoding.json); {} without the split."""
        from distilxlsr.asr.decoding import BeamSettings, greedy_transcripts, tune  # noqa: PLC0415
        from distilxlsr.asr.metrics import error_rates  # noqa: PLC0415

        c = self.config
        d = c.decoding
        choice = DecodingChoice(c.targets, LM_FILE if lm else None, BeamSettings(d.beam_size))
        if not c.eval_split or cuts_file(Path(c.data), c.eval_split) is None:
            if c.eval_split:
                self.say(f"note: no {c.eval_split} split in {c.data}; no error rate measured.")
            choice.save(out)
            return {}
        cuts, waves, skipped = [], [], 0
        for cut in load_cuts(c.data, c.eval_split):
            wave = load_mono(cut, SAMPLE_RATE)
            if transcript(cut, c.targets) and transcribable(model, wave):
                cuts.append(cut)
                waves.append(wave)
            else:
                skipped += 1
        if skipped:
            self.say(
                f"{c.eval_split}: {skipped} utterances skipped (no transcript, too short "
                "for the model, or not finite audio)"
            )
        if not cuts:
            choice.save(out)
            return {}
        refs = [transcript(cut, c.targets) for cut in cuts]
        lps = log_probs(model, waves, normalize)
        metric = "cer" if c.targets == "chars" else "per"
        scores = {
            "split": c.eval_split,
            "utterances": len(cuts),
            "skipped": skipped,
            "greedy": error_rates(refs, greedy_transcripts(vocab, lps), c.targets),
        }
        if lm is not None:
            tuning = tune(
                vocab,
                out / LM_FILE,
                lps,
                lambda hyps: error_rates(refs, hyps, c.targets)[metric],
                metric,
                d.lm_weights,
                d.word_bonuses if c.targets == "chars" else [0.0],
                BeamSettings(d.beam_size),
            )
            choice.settings, choice.tuned_on, choice.grid = (
                tuning.settings,
                c.eval_split,
                tuning.grid,
            )
            hyps = BeamSearch(vocab, out / LM_FILE, tuning.settings)(lps)
            scores["lm"] = error_rates(refs, hyps, c.targets)
            scores["lm_settings"] = {
                "lm_weight": tuning.settings.lm_weight,
                "word_bonus": tuning.settings.word_bonus,
            }
        choice.save(out)
        return scores


def display_name(arg: str) -> str:
    """A model or data argument as a card shows it: a local path by its last component (no
    absolute path leaves the machine in an exported file), anything else (a hub id, `shipped`)
    as given."""
    path = Path(arg)
    return path.name if path.is_absolute() or path.exists() else arg


def recogniser_provenance(base_path: str, data: str, targets: str) -> Provenance:
    """What the base model heard and read, plus the fine-tuning language: heard, and its
    transcripts read as labels."""
    base = read_provenance(base_path) if Path(base_path).is_dir() else None
    if base is None:
        base = Provenance(unknown=[display_name(base_path)])
    lang = Path(data).name
    tier = None
    for cut in load_cuts(data, "train"):
        tier = (cut.custom or {}).get("tier")
        break
    heard = dict(base.heard) | {lang: tier}
    labels = sorted(set(base.labels) | {lang})
    return Provenance(heard, labels, base.tier_protocol, list(base.unknown))


def finetune(config: FinetuneConfig, command_line: str | None = None) -> Path:
    """Fine-tune (or resume); returns OUT/model, a loadable Hugging Face CTC recogniser."""
    config.validate()
    return _FineTuning(config, command_line or default_command_line()).run_locked()
