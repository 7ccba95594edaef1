"""`distilxlsr demo`: the pipeline end to end, offline.

Until the shipped multilingual teacher, the eSpeak corpus and the evaluation harness land, this
demo distils a small randomly initialised XLS-R-shaped teacher on a generated toy corpus (tones
with exact phone alignments): it shows every stage working (data, layer jumping, distillation
with resume-able checkpoints, export to a plain Hugging Face model), not cross-lingual quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from distilxlsr.config import DataConfig, DistillConfig, StudentConfig, TrainConfig
from distilxlsr.data.toy import make_toy_corpus
from distilxlsr.distill.train import distill
from distilxlsr.export import export_hf
from distilxlsr.models.presets import tiny_config
from distilxlsr.models.teacher import count_parameters


def make_random_teacher(out: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """A pre-LN wav2vec 2.0 teacher with random weights, saved as an HF directory."""
    config = tiny_config(
        "wav2vec2",
        pre_ln=True,
        hidden=hidden,
        layers=layers,
        heads=4,
        ffn=4 * hidden,
        conv_channels=64,
    )
    torch.manual_seed(seed)
    model = transformers.Wav2Vec2Model(config)
    model.save_pretrained(out)
    transformers.Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=True
    ).save_pretrained(out)
    return out


def run_demo(out: Path, quick: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    hidden, layers, utterances, steps = (32, 4, 12, 20) if quick else (96, 8, 96, 200)
    print(f"[1/4] generating a toy English corpus ({utterances} utterances) in {out / 'data'}")
    manifest = out / "data" / "en" / "cuts_train.jsonl.gz"
    if not manifest.is_file():
        make_toy_corpus(out / "data", "en", "train", num_utterances=utterances, seed=0)
    teacher_dir = out / "teacher"
    print(
        f"[2/4] building a random pre-LN wav2vec 2.0 teacher ({layers} layers, hidden {hidden}) in {teacher_dir}"
    )
    if not (teacher_dir / "model.safetensors").is_file():
        make_random_teacher(teacher_dir, hidden, layers)
    run_dir = out / "run"
    config = DistillConfig(
        teacher=str(teacher_dir),
        out=str(run_dir),
        data=DataConfig(train=str(manifest), max_seconds=3.0, num_workers=0),
        student=StudentConfig(layers="jump:2"),
        train=TrainConfig(
            max_steps=steps,
            lr=5e-4,
            warmup_steps=max(1, steps // 10),
            batch_seconds=12.0,
            checkpoint_every=max(1, steps // 2),
            log_every=max(1, steps // 10),
        ),
    )
    print(f"[3/4] distilling with jump:2 for {steps} steps into {run_dir}")
    distill(config)
    student_dir = out / "student"
    print(f"[4/4] exporting the student to {student_dir}")
    export_hf(run_dir, student_dir)
    student = transformers.AutoModel.from_pretrained(student_dir)
    teacher = transformers.AutoModel.from_pretrained(teacher_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    print()
    print(
        f"teacher parameters: {count_parameters(teacher):,}; student: {count_parameters(student):,} "
        f"({count_parameters(student) / count_parameters(teacher):.1%})"
    )
    print(
        f"distillation loss: {metrics[0]['loss']:.4f} at step {metrics[0]['step']} -> "
        f"{metrics[-1]['loss']:.4f} at step {metrics[-1]['step']}"
    )
    print(f"student (plain transformers model): {student_dir}; run directory: {run_dir}")
