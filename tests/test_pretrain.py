"""`pretrain-teacher` on a tiny model and a two-language toy corpus: k-means units, frame
alignment, the stage-1 objective, a two-stage run with export and card, resume, user errors."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers
from lhotse import CutSet
from safetensors.torch import load_file

from distilxlsr.data.loader import collate
from distilxlsr.data.synthetic import TIERS
from distilxlsr.errors import UserError
from distilxlsr.models.frames import frame_lengths
from distilxlsr.pretraining.encoder import build_encoder
from distilxlsr.pretraining.pretrain import pretrain_teacher
from distilxlsr.pretraining.recipe import TeacherShape, load_pretrain_config
from distilxlsr.pretraining.tasks import UnitPrediction, span_mask
from distilxlsr.pretraining.units import UnitLabeler, cut_phones, kmeans, unit_features
from distilxlsr.training.checkpoint import list_checkpoints
from tests.helpers import TINY_TEACHER

REPO = Path(__file__).resolve().parents[1]
CONFIG = "pretrain-tiny-teacher"
TINY_SHAPE = TeacherShape(
    hidden=32, layers=2, heads=2, ffn=64, conv_channels=16, pos_conv_kernel=16, pos_conv_groups=4
)
TINY = [
    *TINY_TEACHER,
    "loader.num_workers=0",
    "loader.max_seconds=2.0",
    "train.batch_seconds=6.0",
    "train.log_every=2",
    "train.checkpoint_every=3",
]


@pytest.fixture(scope="module")
def corpus(two_language_corpus) -> Path:
    return two_language_corpus


def _waves(corpus: Path, n: int = 4) -> list[np.ndarray]:
    files = sorted((corpus / "en" / "audio" / "train").glob("*.flac"))[:n]
    return [sf.read(f, dtype="float32")[0] for f in files]


def _config(corpus: Path, out: Path, *extra: str):
    return load_pretrain_config(CONFIG, [f"data={corpus}", f"out={out}", *TINY, *extra])


def test_kmeans_lowers_inertia_and_is_seeded():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 3, generator=generator) * 4
    x = centres[torch.randint(5, (600,), generator=generator)]
    x = x + 0.3 * torch.randn(600, 3, generator=generator)
    c1, history = kmeans(x, 5, iterations=15, seed=3)
    c2, _ = kmeans(x, 5, iterations=15, seed=3)
    c3, _ = kmeans(x, 5, iterations=15, seed=4)
    assert torch.equal(c1, c2)
    assert not torch.equal(c1, c3)
    assert all(b <= a + 1e-5 for a, b in zip(history, history[1:], strict=False)), history
    assert history[-1] < 0.6 * history[0]
    assert history[-1] < 0.3  # the noise floor: 3 dimensions * 0.3^2 = 0.27
    with pytest.raises(UserError, match="units.clusters"):
        kmeans(x[:3], 5, iterations=2)


def test_units_align_with_model_frames(corpus):
    encoder = build_encoder(TINY_SHAPE)
    waves = _waves(corpus, 6)
    feats = torch.cat([unit_features()(w)[0].float() for w in waves])
    labeler = UnitLabeler(kmeans(feats, 8, iterations=5)[0])
    batch = collate(waves, normalize=True)
    frames = frame_lengths(encoder, batch["attention_mask"]).tolist()
    with torch.no_grad():
        hidden = encoder(batch["input_values"], attention_mask=batch["attention_mask"])
    assert hidden.last_hidden_state.shape[1] == max(frames)
    for wave, n in zip(waves, frames, strict=True):
        units = labeler(wave)
        assert abs(len(units) - n) <= 1
        assert units.min() >= 0 and units.max() < 8


def test_span_mask_is_seeded_and_never_masks_padding():
    lengths = torch.tensor([100, 60, 30])
    a = span_mask(lengths, 100, 0.65, 10, [0, 1])
    assert torch.equal(a, span_mask(lengths, 100, 0.65, 10, [0, 1]))
    assert not torch.equal(a, span_mask(lengths, 100, 0.65, 10, [0, 2]))
    assert not a[1, 60:].any() and not a[2, 30:].any()
    assert (a.sum(1) > 0).all() and 0.3 < a[0].float().mean() < 0.8
    assert not span_mask(lengths, 100, 0.0, 10, [0]).any()


def test_stage1_loss_falls_on_a_fixed_batch(corpus):
    encoder = build_encoder(TINY_SHAPE, seed=0)
    encoder.config.mask_time_prob = 0.0
    waves = _waves(corpus, 4)
    feats = [unit_features()(w)[0].float() for w in waves]
    labeler = UnitLabeler(kmeans(torch.cat(feats), 8, iterations=10)[0])
    batch = collate(waves, normalize=True)
    batch["units"] = torch.nn.utils.rnn.pad_sequence(
        [labeler(w) for w in waves], batch_first=True, padding_value=-100
    )
    lengths = frame_lengths(encoder, batch["attention_mask"])
    mask = span_mask(lengths, int(lengths.max()), 0.65, 5, [0])
    units = batch["units"][mask & (batch["units"] >= 0)]
    prior = torch.bincount(units, minlength=8).float() / len(units)
    entropy = float(-(prior[prior > 0] * prior[prior > 0].log()).sum())  # best without context
    torch.manual_seed(0)
    task = UnitPrediction(encoder, 8).train()
    optimizer = torch.optim.AdamW(task.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss, stats = task(batch, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(stats) == {"loss", "accuracy"}
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
    assert losses[-1] < 0.7 * entropy, (losses, entropy)


def test_cropped_cut_keeps_the_phones_inside_the_crop(corpus):
    cut = next(iter(CutSet.from_file(corpus / "en" / "cuts_train.jsonl.gz")))
    phones = cut.supervisions[0].custom["phones"]
    index = {p: i for i, p in enumerate(sorted(set(phones)))}
    assert cut_phones(cut, index) == [index[p] for p in phones]
    crop = cut.truncate(offset=0.5, duration=0.5, preserve_id=True)
    inside = [
        index[a.symbol]
        for a in cut.supervisions[0].alignment["phone"]
        if 0.5 <= a.start + a.duration / 2 < 1.0
    ]
    assert inside and cut_phones(crop, index) == inside


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "run"
    model_dir = pretrain_teacher(_config(corpus, out, "stage1.steps=4", "stage2.steps=2"))
    assert model_dir == out / "model"
    return out


def test_two_stage_run_writes_an_hf_teacher_card_and_metrics(first_run):
    model_dir = first_run / "model"
    model = transformers.AutoModel.from_pretrained(model_dir)
    assert type(model) is transformers.Wav2Vec2Model
    assert model.config.do_stable_layer_norm and model.config.feat_extract_norm == "layer"
    assert list(model.config.conv_stride) == [5, 2, 2, 2, 2, 2, 2]
    keys = set(load_file(model_dir / "model.safetensors"))
    assert keys == set(transformers.Wav2Vec2Model(model.config).state_dict())  # no head weights
    extractor = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert extractor["do_normalize"] is True and extractor["return_attention_mask"] is True
    card = (model_dir / "README.md").read_text()
    assert "Stage 1, self-supervised (ran, 4 steps)" in card
    assert "Stage 2, multilingual phone CTC (ran, 2 steps)" in card
    assert "en, sw" in card and "Wall time" in card and "Machine" in card
    assert "## Citation" in card and "eprint        = {2306.01303}" in card
    metrics = [json.loads(x) for x in (first_run / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["stage"]) for m in metrics] == [(2, 1), (4, 1), (6, 2)]
    assert all(np.isfinite(m["loss"]) and m["audio_s_per_s"] > 0 for m in metrics)
    assert "accuracy" in metrics[0]
    vocab = json.loads((first_run / "phones.json").read_text())
    assert vocab[0] == "<blank>" and len(vocab) == 15  # 14 toy phones shared by both languages
    assert [c.name for c in list_checkpoints(first_run)] == ["step-0000004", "step-0000006"]


def test_rerun_with_more_steps_resumes(first_run, corpus, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(first_run, out)
    before = load_file(first_run / "model" / "model.safetensors")
    pretrain_teacher(_config(corpus, out, "stage1.steps=4", "stage2.steps=4"))
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4, 6, 8]
    invocations = [json.loads(x) for x in (out / "invocations.jsonl").read_text().splitlines()]
    assert [i["start_step"] for i in invocations] == [0, 6]
    latest = list_checkpoints(out)[-1]
    assert latest.name == "step-0000008"
    # The optimizer continued: its step count covers both invocations' stage-2 steps.
    training = torch.load(latest / "training_state.pt", weights_only=True)
    assert training["stage"] == 2 and float(training["optimizer"]["state"][0]["step"]) == 4
    after = load_file(out / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (
        "Stage 2, multilingual phone CTC (ran, 4 steps)"
        in (out / "model" / "README.md").read_text()
    )
    # Changing what the model is made of is refused, with the way out in the message.
    with pytest.raises(UserError, match="model.hidden"):
        pretrain_teacher(
            _config(corpus, out, "stage1.steps=4", "stage2.steps=4", "model.hidden=48")
        )
    with pytest.raises(UserError, match="stage1.steps"):
        pretrain_teacher(_config(corpus, out, "stage1.steps=5", "stage2.steps=4"))


def test_user_errors(tmp_path, corpus):
    with pytest.raises(UserError, match="does not exist"):
        pretrain_teacher(_config(tmp_path / "missing", tmp_path / "run"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="data="):
        pretrain_teacher(load_pretrain_config(CONFIG, [f"out={tmp_path / 'run'}"]))
    with pytest.raises(UserError, match="unknown key"):
        load_pretrain_config(CONFIG, ["stage3.steps=1"])
    with pytest.raises(UserError, match="loader.max_seconds"):
        pretrain_teacher(_config(corpus, tmp_path / "run", "train.batch_seconds=1"))


def test_init_from_continues_an_existing_teacher(first_run, corpus, tmp_path):
    start = transformers.Wav2Vec2Model.from_pretrained(first_run / "model").state_dict()
    model_dir = pretrain_teacher(
        _config(
            corpus,
            tmp_path / "more",
            "stage1.steps=0",
            "stage2.steps=1",
            "stage2.lr=1e-4",  # one AdamW step moves each weight by about the lr
            "stage2.freeze_cnn=true",
            f"init_from={first_run / 'model'}",
        )
    )
    after = transformers.Wav2Vec2Model.from_pretrained(model_dir).state_dict()
    fresh = build_encoder(TINY_SHAPE).state_dict()
    key = "encoder.layers.0.attention.q_proj.weight"
    # One small step away from where it started, far from a fresh initialisation.
    assert (after[key] - start[key]).abs().max() < 0.2 * (fresh[key] - start[key]).abs().max()
    torch.testing.assert_close(
        after["feature_extractor.conv_layers.0.conv.weight"],
        start["feature_extractor.conv_layers.0.conv.weight"],
    )  # CNN frozen
    with pytest.raises(UserError, match="does not have the shape"):
        pretrain_teacher(
            _config(
                corpus,
                tmp_path / "bad",
                "model.hidden=48",
                "model.heads=2",
                f"init_from={first_run / 'model'}",
            )
        )


def _run_gpu_script(tmp_path: Path, name: str, budget: int, **extra_env: str):
    env = (
        os.environ
        | extra_env
        | {
            "PYTHON": sys.executable,
            "DATA": str(tmp_path / "data"),
            "ENGLISH_MINUTES": "0.3",
            "LANG_MINUTES": "0.1",
            "RESERVE_SECONDS": "0",
            "UNITS_LAYER": "1",
        }
    )
    tiny = [o for o in TINY if not o.startswith(("loader.num_workers", "train.checkpoint_every"))]
    script = REPO / "experiments" / "pretrain_teacher_gpu.sh"
    return subprocess.run(
        ["bash", str(script), str(tmp_path / name), str(budget), *tiny],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_gpu_script_sizes_both_iterations_to_its_budget(tmp_path):
    """The label-free teacher's recipe at toy size on the CPU: corpus v2's pretrain split of
    English and the label and heard tiers, calibration, then HuBERT's two iterations whose step
    counts come from the budget (the first reuses the calibration's units, the second clusters
    a layer of the first).

    A first run with a 1 s budget makes the corpus, calibrates and refuses to train; what it
    reports spending and its measured step time size the second run's budget (the corpus is
    reused) to leave at least 30 s and 20 steps for training, whatever this machine's speed or
    load: no fixed wall-clock budget to wait out (a fixed 15 s, then 30 s, once failed on a
    loaded machine)."""
    proc = _run_gpu_script(tmp_path, "refused", budget=1)
    assert proc.returncode != 0
    refusal = re.search(r"only (-?\d+) s of the budget left after calibration", proc.stdout)
    assert refusal, proc.stdout[-3000:]
    assert not (tmp_path / "refused").exists()
    spent = 1 - int(refusal.group(1))
    assert spent > 0
    measured = re.search(r"([\d.]+) s/step measured", proc.stdout)
    assert measured, proc.stdout[-3000:]
    training = max(30, math.ceil(20 * 1.35 * float(measured.group(1))))
    data = tmp_path / "data"
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == sorted(
        ["en", *TIERS["label"], *TIERS["heard"]]
    )
    assert not list(data.glob("*/cuts_train.jsonl.gz"))  # the teachers' own split only

    proc = _run_gpu_script(tmp_path, "run", budget=spent + training)
    assert proc.returncode == 0, proc.stdout[-3000:]
    sizing = re.search(r"([\d.]+) s/step measured; (\d+) s left -> (\d+) steps", proc.stdout)
    assert sizing, proc.stdout[-3000:]
    per_step, left, steps = float(sizing.group(1)), int(sizing.group(2)), int(sizing.group(3))
    run = tmp_path / "run"
    first = load_pretrain_config(run / "iteration1" / "config.yaml")
    second = load_pretrain_config(run / "config.yaml")
    # The step counts: what is left over 1.35 x the measured step time, split 50:50.
    assert abs(steps - left / (per_step * 1.35)) <= 0.05 * steps + 1
    assert steps - 1 <= first.stage1.steps + second.stage1.steps <= steps
    assert abs(first.stage1.steps - 0.5 * steps) <= 1 and first.stage1.steps > 0
    assert first.stage2.steps == second.stage2.steps == 0
    # The label-free stage-1 recipe (experiments/label_free_teachers.py's): 10% warm-up each.
    for it in (first, second):
        assert it.stage1.lr == 5e-4 and it.stage1.unmasked_weight == 1.0
        assert it.stage1.warmup_steps == it.stage1.steps // 10 + 1
    assert second.units.source == str(run / "iteration1" / "model") and second.units.layer == 1
    assert (run / "model" / "model.safetensors").is_file()
    card = (run / "model" / "README.md").read_text()
    assert f"stage1.steps={second.stage1.steps}" in card
    assert "**Labels seen:** none" in card and "HuBERT's next iteration" in card
    # k-means: the calibration's (reused by iteration 1) and iteration 2's on the layer
    assert proc.stdout.count("k-means: ") == 2


@pytest.mark.slow
def test_gpu_script_continues_a_teacher_with_the_v3_lever(first_run, tmp_path):
    """RECIPE=continue at toy size: the given teacher's weights trained further on log-mel
    units with the lever's recipe (teacher_levers.py's cont-logmel); STEPS skips the
    calibration and sizing (a card's step counts, rerun)."""
    proc = _run_gpu_script(
        tmp_path, "run", 1, RECIPE="continue", INIT=str(first_run / "model"), STEPS="3"
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "s/step measured" not in proc.stdout  # no calibration
    config = load_pretrain_config(tmp_path / "run" / "config.yaml")
    assert config.init_from == str(first_run / "model") and config.units.source == "logmel"
    assert config.stage1.steps == 3 and config.stage1.warmup_steps == 1
    assert config.stage1.lr == 3e-4 and config.stage1.unmasked_weight == 0.5
    assert config.stage2.steps == 0 and config.split == "pretrain"
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "**Labels seen:** none" in card and "initialised from" in card


def test_speed_perturbation_scales_pitch_and_length_and_stretches_the_units():
    from distilxlsr.pretraining.units import speed_perturb

    rate = 16000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    units = torch.arange(50)  # one unit per 20 ms frame of 1 s
    faster, stretched = speed_perturb(tone, units, 1.25, rate)
    assert len(faster) == pytest.approx(rate / 1.25, abs=2)
    spectrum = np.abs(np.fft.rfft(faster))
    assert np.fft.rfftfreq(len(faster), 1 / rate)[spectrum.argmax()] == pytest.approx(250, abs=3)
    assert len(stretched) == 40
    assert stretched.tolist() == [min(round(j * 1.25), 49) for j in range(40)]
    slower, stretched = speed_perturb(tone, units, 0.8, rate)
    assert len(stretched) == 62 and stretched[-1] == 49 and stretched[1] == 1


def test_speed_range_perturbs_each_utterance_by_its_own_seeded_factor(corpus):
    from distilxlsr.data.corpora import load_cuts
    from distilxlsr.data.loader import BatchRef
    from distilxlsr.pretraining.units import PretrainBatches

    cuts = CutSet.from_cuts(list(load_cuts(corpus / "en"))[:3])
    labeler = UnitLabeler(torch.randn(5, 80), unit_features())
    plain = PretrainBatches(labeler=labeler, seed=0)[BatchRef(0, 0, cuts)]
    perturbed = PretrainBatches(labeler=labeler, speed_range=[0.8, 1.2], seed=0)
    a, b = perturbed[BatchRef(0, 0, cuts)], perturbed[BatchRef(0, 0, cuts)]
    assert a["input_values"].equal(b["input_values"]) and a["units"].equal(b["units"])
    other = perturbed[BatchRef(1, 0, cuts)]["input_values"]  # another epoch, other factors
    assert other.shape != a["input_values"].shape or not other.equal(a["input_values"])
    real = a["attention_mask"].sum(1).float() / plain["attention_mask"].sum(1).float()
    assert ((real > 1 / 1.2 - 0.01) & (real < 1 / 0.8 + 0.01)).all() and not (real == 1).all()
    # The units are the clean audio's, stretched: the same set of units, in the same order.
    for row in range(3):
        clean = plain["units"][row][plain["units"][row] >= 0]
        moved = a["units"][row][a["units"][row] >= 0]
        assert set(moved.tolist()) <= set(clean.tolist())


def test_speed_range_is_checked(tmp_path, corpus):
    with pytest.raises(UserError, match="speed_range"):
        _config(corpus, tmp_path / "r", "stage1.speed_range=[1.2, 0.9]").validate()
    with pytest.raises(UserError, match="static shapes"):
        _config(
            corpus, tmp_path / "r", "stage1.speed_range=[0.9, 1.1]", "loader.static_shapes=true"
        ).validate()


def test_a_speed_perturbed_stage_1_trains_end_to_end(tmp_path, corpus):
    model = pretrain_teacher(
        _config(
            corpus,
            tmp_path / "speed",
            "stage1.steps=2",
            "stage2.steps=0",
            "stage1.speed_range=[0.85, 1.15]",
        )
    )
    assert (model / "model.safetensors").is_file()
    record = [json.loads(line) for line in (tmp_path / "speed" / "metrics.jsonl").open()]
    assert math.isfinite(record[-1]["loss"])
