"""The distillation loop end to end on tiny teachers and the toy corpus."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from distilxlsr.cli import main
from distilxlsr.data.corpora import load_cuts
from distilxlsr.data.loader import collate
from distilxlsr.distill.recipe import load_distill_config
from distilxlsr.distill.train import Distiller, distill
from distilxlsr.models.layers import parse_layer_map
from distilxlsr.models.loading import load_teacher
from distilxlsr.models.student import build_student
from distilxlsr.training import checkpoint as ckpt
from distilxlsr.training.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parents[2]
TINY = "tiny-cpu"


def _overrides(teacher, corpus, out, **extra):
    values = {
        "teacher": teacher,
        "data.train": corpus / "en",
        "out": out,
        "data.num_workers": 0,
        "data.max_seconds": 2.0,
        "train.batch_seconds": 6.0,
        "train.log_every": 2,
    } | extra
    return [f"{k}={v}" for k, v in values.items()]


@pytest.mark.parametrize("fixture", ["teacher_dir", "postln_teacher_dir"])
def test_loss_falls_on_a_fixed_batch(fixture, request, toy_corpus):
    teacher = load_teacher(str(request.getfixturevalue(fixture)))
    layer_map = parse_layer_map("jump:2", 4)
    student = build_student(teacher, layer_map)
    student.config.layerdrop = 0.0
    config = load_distill_config(None, ["teacher=x"])
    distiller = Distiller(teacher, student, layer_map, config)
    import soundfile as sf

    files = sorted((toy_corpus / "en" / "audio" / "train").glob("*.flac"))[:3]
    batch = collate([sf.read(f, dtype="float32")[0] for f in files], normalize=True)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(30):
        loss, terms = distiller(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert terms.shape == (2,)
    # -log sigmoid(cos) >= -log sigmoid(1): the part above that floor must fall by a third.
    floor = -math.log(1 / (1 + math.exp(-1)))
    assert losses[-1] - floor < 0.67 * (losses[0] - floor), losses


def test_cli_distill_export_roundtrip(tmp_path, teacher_dir, toy_corpus, capsys):
    out = tmp_path / "run"
    args = _overrides(
        teacher_dir, toy_corpus, out, **{"train.max_steps": 6, "train.checkpoint_every": 3}
    )
    assert main(["distill", "--config", TINY, *args]) == 0
    assert [c.name for c in list_checkpoints(out)] == ["step-0000003", "step-0000006"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4, 6]
    assert set(metrics[0]["layers"]) == {"s1_t2", "s2_t4"}
    assert all(m["audio_s_per_s"] > 0 for m in metrics)
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    assert (out / "loss.png").stat().st_size > 1000  # the loss curve, drawn at each checkpoint
    saved = (out / "config.yaml").read_text()
    assert "max_steps: 6" in saved

    assert main(["export", str(out), "--out", str(tmp_path / "student")]) == 0
    student = transformers.AutoModel.from_pretrained(tmp_path / "student").eval()
    assert student.config.num_hidden_layers == 2
    card = (tmp_path / "student" / "README.md").read_text()
    assert "jump:2" in card and "6 steps" in card
    assert (tmp_path / "student" / "preprocessor_config.json").is_file()
    info = json.loads((tmp_path / "student" / "distilxlsr.json").read_text())
    assert info["targets"] == [2, 4] and info["teacher_layers"] == 4
    # The exported weights are the last checkpoint's, and give the same outputs.
    state = load_file(out / "checkpoints" / "step-0000006" / "model.safetensors")
    reference = transformers.Wav2Vec2Model(student.config).eval()
    reference.load_state_dict(state)
    x = torch.randn(1, 3000)
    with torch.no_grad():
        torch.testing.assert_close(student(x).last_hidden_state, reference(x).last_hidden_state)
    # Training changed the student away from its layer-jumped initialisation.
    init = build_student(load_teacher(str(teacher_dir)), parse_layer_map("jump:2", 4)).state_dict()
    key = "encoder.layers.0.attention.q_proj.weight"
    assert not torch.equal(init[key], state[key])


def _final_weights(run: Path) -> dict:
    last = list_checkpoints(run)[-1]
    return load_file(last / "model.safetensors")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _command(teacher, corpus, out, workers, steps=40):
    args = _overrides(
        teacher,
        corpus,
        out,
        **{"train.max_steps": steps, "train.checkpoint_every": 5, "data.num_workers": workers},
    )
    return [sys.executable, "-m", "distilxlsr", "distill", "--config", TINY, *args]


def _run_until(cmd, out: Path, checkpoint: str, sig: int) -> None:
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "checkpoints" / checkpoint).is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_resumes_bit_identical(tmp_path, teacher_dir, toy_corpus, sig):
    straight = tmp_path / "straight"
    subprocess.run(_command(teacher_dir, toy_corpus, straight, 0), check=True, capture_output=True)
    resumed = tmp_path / "resumed"
    # Interrupted while loading with 2 workers, resumed with none: the data must not depend on it.
    _run_until(_command(teacher_dir, toy_corpus, resumed, 2), resumed, "step-0000010", sig)
    done = [c.name for c in list_checkpoints(resumed)]
    assert "step-0000040" not in done, "the run finished before it could be interrupted"
    result = subprocess.run(
        _command(teacher_dir, toy_corpus, resumed, 0), check=True, capture_output=True, text=True
    )
    assert "resuming" in result.stdout
    assert _same(_final_weights(straight), _final_weights(resumed))
    assert (
        list_checkpoints(straight)[-1].name == list_checkpoints(resumed)[-1].name == "step-0000040"
    )


def test_resume_refuses_a_changed_experiment(tmp_path, teacher_dir, toy_corpus):
    out = tmp_path / "run"
    args = _overrides(teacher_dir, toy_corpus, out, **{"train.max_steps": 2})
    assert main(["distill", "--config", TINY, *args]) == 0
    assert main(["distill", "--config", TINY, *args, "train.lr=0.1"]) == 2


def test_resume_refuses_a_teacher_whose_weights_changed(tmp_path, teacher_dir, toy_corpus, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dir, teacher)
    out = tmp_path / "run"
    args = _overrides(teacher, toy_corpus, out, **{"train.max_steps": 2})
    assert main(["distill", "--config", TINY, *args]) == 0
    facts = json.loads((out / "facts.json").read_text())
    assert facts["teacher_sha256"] == ckpt.weights_sha256(teacher)
    # Resuming with the same teacher is fine; a teacher trained further (same path) is not.
    assert main(["distill", "--config", TINY, *args[:-1], "train.max_steps=3"]) == 0
    weights = load_file(teacher / "model.safetensors")
    save_file({k: v + 0.01 for k, v in weights.items()}, teacher / "model.safetensors")
    capsys.readouterr()
    assert main(["distill", "--config", TINY, *args[:-1], "train.max_steps=4"]) == 2
    err = capsys.readouterr().err
    assert f"teacher '{teacher}' is not the model this run started from" in err
    assert f"distil into a new out= than '{out}'" in err


def test_a_group_norm_teacher_without_static_shapes_is_warned_about(
    tmp_path, postln_teacher_dir, teacher_dir, toy_corpus, capsys
):
    warning = "warning: the teacher's CNN uses group norm"
    for teacher, static, warned in [
        (postln_teacher_dir, "false", True),
        (postln_teacher_dir, "true", False),
        (teacher_dir, "false", False),  # a layer-norm CNN normalises each frame alone
    ]:
        out = tmp_path / f"run-{teacher.name}-{static}"
        args = _overrides(teacher, toy_corpus, out, **{"train.max_steps": 1})
        assert main(["distill", "--config", TINY, *args, f"data.static_shapes={static}"]) == 0
        assert (warning in capsys.readouterr().out) is warned


def test_nan_guard_skips_and_aborts(tmp_path, teacher_dir, toy_corpus, capsys):
    out = tmp_path / "run"
    args = _overrides(
        teacher_dir,
        toy_corpus,
        out,
        **{
            "train.max_steps": 50,
            "train.lr": 1e30,
            "train.warmup_steps": 1,
            "train.max_bad_steps": 3,
            "train.grad_clip": 0,
        },
    )
    assert main(["distill", "--config", TINY, *args]) == 2
    err = capsys.readouterr().err
    assert "3 consecutive steps had a non-finite loss or gradient" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "override, message",
    [
        ("teacher=/no/such/teacher", "does not exist"),
        ("data.train=/no/such/data", "does not exist"),
        ("student.layers=jump:3", "does not divide"),
        ("train.decay=sometimes", "train.decay"),
    ],
)
def test_bad_runs_fail_with_one_clear_line(
    tmp_path, teacher_dir, toy_corpus, capsys, override, message
):
    args = _overrides(teacher_dir, toy_corpus, tmp_path / "run", **{"train.max_steps": 2})
    assert main(["distill", "--config", TINY, *args, override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_init_student_cli(tmp_path, teacher_dir, capsys):
    out = tmp_path / "student0"
    assert (
        main(
            ["init-student", "--teacher", str(teacher_dir), "--layers", "jump:2", "--out", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "ratio student/teacher" in printed
    model = transformers.AutoModel.from_pretrained(out)
    assert model.config.num_hidden_layers == 2
    assert (
        main(
            [
                "init-student",
                "--teacher",
                str(teacher_dir),
                "--layers",
                "list:2,2",
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_dry_run_counts_xlsr_300m(capsys):
    assert main(["init-student", "--teacher", "xls-r-300m", "--layers", "jump:2", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # XLS-R 300M's base model has 315.4M parameters; 12 of its 24 layers keep 52%.
    assert "24 layers, 315,438,720 parameters" in lines[0]
    assert "12 layers" in lines[1] and "164,284,032 parameters" in lines[1]
    assert lines[2] == "ratio student/teacher: 0.521"


def _two_processes(teacher, corpus, out, port: int, *extra: str) -> None:
    args = _overrides(teacher, corpus, out, **{"train.max_steps": 4, "train.checkpoint_every": 2})
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(port),
        "-m",
        "distilxlsr",
        "distill",
        "--config",
        TINY,
        *args,
        *extra,
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, env=env)


@pytest.mark.slow
def test_two_process_gloo_run_keeps_ranks_identical(tmp_path, teacher_dir, toy_corpus):
    """Two processes (DDP over gloo) end with the same weights; with the optimizer state
    sharded (`train.optimizer_sharding=zero1`) they end with the same weights as without, and a
    sharded run resumed from its middle checkpoint ends bit-identical."""
    port = 29500 + os.getpid() % 1000
    out = tmp_path / "ddp"
    _two_processes(teacher_dir, toy_corpus, out, port)
    last = out / "checkpoints" / "step-0000004"
    ranks = [torch.load(last / f"rank-{r}.pt", weights_only=True) for r in (0, 1)]
    assert torch.equal(ranks[0]["parameter_fingerprint"], ranks[1]["parameter_fingerprint"])
    init = build_student(load_teacher(str(teacher_dir)), parse_layer_map("jump:2", 4))
    from distilxlsr.training.checkpoint import parameter_fingerprint

    assert not torch.equal(parameter_fingerprint(init), ranks[0]["parameter_fingerprint"])
    assert json.loads((last / "trainer_state.json").read_text())["world_size"] == 2

    zero = tmp_path / "zero1"
    _two_processes(teacher_dir, toy_corpus, zero, port + 1, "train.optimizer_sharding=zero1")
    assert _same(_final_weights(out), _final_weights(zero))
    state = torch.load(
        zero / "checkpoints" / "step-0000004" / "training_state.pt", weights_only=True
    )
    plain = torch.load(last / "training_state.pt", weights_only=True)
    assert len(state["optimizer"]["state"]) == len(plain["optimizer"]["state"])  # all gathered
    resumed = tmp_path / "zero1-resumed"
    shutil.copytree(zero, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-0000004")
    _two_processes(teacher_dir, toy_corpus, resumed, port + 2, "train.optimizer_sharding=zero1")
    assert _same(_final_weights(zero), _final_weights(resumed))


def test_shared_cnn_gives_the_same_loss_and_gradients(teacher_dir, toy_corpus):
    import soundfile as sf

    files = sorted((toy_corpus / "en" / "audio" / "train").glob("*.flac"))[:2]
    batch = collate([sf.read(f, dtype="float32")[0] for f in files], normalize=True)
    results = []
    for share in (False, True):
        teacher = load_teacher(str(teacher_dir))
        layer_map = parse_layer_map("jump:2", 4)
        student = build_student(teacher, layer_map)
        student.freeze_feature_encoder()
        student.eval()  # no dropout: both runs must be comparable
        config = load_distill_config(None, ["teacher=x", f"student.share_cnn={str(share).lower()}"])
        distiller = Distiller(teacher, student, layer_map, config)
        assert distiller.share_cnn == share
        loss, _ = distiller(batch)
        loss.backward()
        grad = student.encoder.layers[0].attention.q_proj.weight.grad.clone()
        results.append((loss.detach(), grad))
        # Outside a step the student's own CNN runs.
        out = student(batch["input_values"][:1]).last_hidden_state
        assert out.shape[0] == 1
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)


def _expected_representations(model, batch, layers):
    """Layer representations (DESIGN.md) from transformers' hidden states, which for pre-LN
    models are the raw residual stream h_0..h_L: pre-LN LN_{l+1}(h_l) (the encoder's final
    LayerNorm for l = L); post-LN h_l."""
    with torch.no_grad():
        states = model(
            batch["input_values"], attention_mask=batch["attention_mask"], output_hidden_states=True
        ).hidden_states
        if not model.config.do_stable_layer_norm:
            return [states[l] for l in layers]
        norms = [layer.layer_norm for layer in model.encoder.layers] + [model.encoder.layer_norm]
        return [norms[l](states[l]) for l in layers]


@pytest.mark.parametrize("pre_ln", [True, False])
@pytest.mark.parametrize(
    "layers, targets, expected_targets",
    [("jump:2", "auto", (2, 4)), ("first:2", "list:1,3", (1, 3))],
)
def test_distiller_pairs_student_layer_i_with_target_i(pre_ln, layers, targets, expected_targets):
    """Student layer i (1-based) against teacher layer targets[i]: every term by hand."""
    from distilxlsr.distill.losses import layer_loss
    from tests.helpers import tiny_model

    teacher = tiny_model("wav2vec2", pre_ln=pre_ln, layers=4)
    layer_map = parse_layer_map(layers, 4, targets)
    assert layer_map.targets == expected_targets
    student = build_student(teacher, layer_map).eval()
    generator = torch.Generator().manual_seed(5)
    batch = collate(
        [torch.randn(n, generator=generator).numpy() for n in (4000, 2800)], normalize=True
    )
    frames = student._get_feature_vector_attention_mask(
        teacher._get_feat_extract_output_lengths(4000), batch["attention_mask"]
    )
    want_t = _expected_representations(teacher, batch, layer_map.targets)
    want_s = _expected_representations(student, batch, [1, 2])
    expected = [layer_loss(s, t, frames) for s, t in zip(want_s, want_t, strict=True)]

    config = load_distill_config(None, ["teacher=x", "loss.layer_weights=[1.0, 3.0]"])
    distiller = Distiller(teacher, student, layer_map, config)
    loss, terms = distiller(batch)
    torch.testing.assert_close(terms, torch.stack(expected).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.detach(), (expected[0] + 3 * expected[1]).detach() / 4)
    # Every student layer, the top one included, is distilled: all its weights get a gradient.
    loss.backward()
    for index, layer in enumerate(student.encoder.layers):
        grads = [p.grad for p in layer.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), f"student layer {index + 1}"


def _teacher_with_training_settings(path):
    """A tiny teacher whose config has layerdrop and SpecAugment on, as released models do."""
    from tests.helpers import tiny_model

    model = tiny_model("wav2vec2", pre_ln=True)
    model.config.update(
        {
            "layerdrop": 0.1,
            "apply_spec_augment": True,
            "mask_time_prob": 0.05,
            "mask_time_length": 3,
            "mask_feature_prob": 0.1,
            "mask_feature_length": 4,
        }
    )
    model.save_pretrained(path)
    return path


def _config_dict(path):
    config = json.loads((path / "config.json").read_text())
    return {k: v for k, v in config.items() if k not in ("transformers_version", "_name_or_path")}


def test_checkpoints_and_exports_carry_the_teachers_config(tmp_path, toy_corpus):
    teacher = _teacher_with_training_settings(tmp_path / "teacher")
    config = load_distill_config(
        TINY, _overrides(teacher, toy_corpus, tmp_path / "r", **{"train.max_steps": 1})
    )
    assert distill(config) == tmp_path / "r"
    assert main(["export", str(tmp_path / "r"), "--out", str(tmp_path / "student")]) == 0
    expected = _config_dict(teacher) | {"num_hidden_layers": 2, "architectures": ["Wav2Vec2Model"]}
    for directory in (
        tmp_path / "r" / "checkpoints" / "step-0000001",
        tmp_path / "r" / "student_init",
        tmp_path / "student",
    ):
        assert _config_dict(directory) == expected, directory


def test_nan_guard_skips_bad_steps_and_counts_them(tmp_path, teacher_dir, toy_corpus):
    """A batch holding one poisoned utterance gives a NaN loss: that step must leave the weights
    (and the optimizer's step count) untouched, the others train as usual."""
    poisoned = sorted(c.id for c in load_cuts(toy_corpus / "en"))[0]
    loads = []

    def poison(audio, cut, rng):
        loads.append(cut.id)
        return np.full_like(audio, np.nan) if cut.id == poisoned else audio

    steps = 8
    out = tmp_path / "run"
    config = load_distill_config(
        TINY,
        _overrides(
            teacher_dir, toy_corpus, out, **{"train.max_steps": steps, "train.checkpoint_every": 8}
        ),
    )
    distill(config, transform=poison)
    bad = loads.count(poisoned)
    assert 1 <= bad < steps
    last = list_checkpoints(out)[-1]
    assert last.name == "step-0000008"
    weights = load_file(last / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    run_state = json.loads((last / "trainer_state.json").read_text())["run_state"]
    assert run_state["bad_steps"] == bad
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["bad_steps"] == bad
    # AdamW took exactly the good steps.
    optimizer = torch.load(last / "training_state.pt", weights_only=True)["optimizer"]
    assert {float(s["step"]) for s in optimizer["state"].values()} == {float(steps - bad)}
    # And they trained: the student moved away from its initialisation.
    init = build_student(load_teacher(str(teacher_dir)), parse_layer_map("jump:2", 4)).state_dict()
    key = "encoder.layers.1.feed_forward.output_dense.weight"
    assert not torch.equal(init[key], weights[key])


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm", "data2vec-audio"])
def test_prepare_for_distillation_freezes_the_cnn_of_every_family(model_type):
    from distilxlsr.distill.distiller import prepare_for_distillation
    from tests.helpers import tiny_model

    student = tiny_model(model_type, pre_ln=model_type != "data2vec-audio")
    prepare_for_distillation(student, freeze_cnn=True)
    assert student.training
    assert not any(p.requires_grad for p in student.feature_extractor.parameters())
    assert all(p.requires_grad for p in student.encoder.parameters())


def test_static_shapes_distil_and_resume_exactly(
    tmp_path, teacher_dir, toy_corpus, monkeypatch, capsys
):
    """`data.static_shapes`: a few steps on the toy corpus where every batch has one of the K
    shapes and full rows, the taps run without a mask, `train.compile` asks torch.compile for
    static graphs, and a run resumed from its middle checkpoint ends bit-identical."""
    import shutil

    from distilxlsr.distill.distiller import DistillTask

    shapes, masks, compiled = [], [], []
    call = DistillTask.__call__

    def recording(self, module, batch, step):
        shapes.append(tuple(batch["input_values"].shape))
        assert bool(batch["attention_mask"].all())
        masks.append(self.distiller.attention_mask(batch))
        return call(self, module, batch, step)

    def fake_compile(module, **kwargs):
        compiled.append(kwargs)
        return module

    monkeypatch.setattr(DistillTask, "__call__", recording)
    monkeypatch.setattr(torch, "compile", fake_compile)
    straight = tmp_path / "straight"
    extra = {
        "data.static_shapes": "true",
        "data.crop_lengths": "[1,2]",
        "train.batch_seconds": 3.0,  # 3 x 1 s or 1 x 2 s
        "train.max_steps": 6,
        "train.checkpoint_every": 3,
        "train.compile": "true",
    }
    args = ["distill", "--config", TINY, *_overrides(teacher_dir, toy_corpus, straight, **extra)]
    assert main(args) == 0
    assert "static shapes 3 x 1 s, 1 x 2 s" in capsys.readouterr().out
    assert set(shapes) == {(3, 16000), (1, 32000)} and len(shapes) == 6
    assert masks == [None] * 6
    assert compiled == [{"dynamic": False}, {"dynamic": False}]  # the student's, the teacher's
    # From the middle checkpoint: the same batches, the same weights.
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-0000006")
    first, shapes[:] = list(shapes), []
    args = ["distill", "--config", TINY, *_overrides(teacher_dir, toy_corpus, resumed, **extra)]
    assert main(args) == 0
    assert shapes == first[3:]
    assert list_checkpoints(resumed)[-1].name == "step-0000006"
    assert _same(_final_weights(straight), _final_weights(resumed))
    # Other crop lengths make another experiment: refused on resume.
    capsys.readouterr()
    other = "data.crop_lengths=[1.5,2]"
    assert main([other if a.startswith("data.crop_lengths=") else a for a in args]) == 2
    assert "data.crop_lengths=[1.0, 2.0], now [1.5, 2.0]" in capsys.readouterr().err


def test_an_unfrozen_cnn_is_the_students_own_and_learns(teacher_dir):
    """student.freeze_cnn=false: the student's CNN is its own (not the teacher's modules, and not
    skipped for the teacher's output, although student.share_cnn is true by default); every
    weight of it gets a gradient, and one optimizer step moves it and leaves the teacher's CNN
    as it was."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    from distilxlsr.distill.distiller import DistillTask
    from distilxlsr.distill.train import load_models
    from distilxlsr.training.loop import OptimizerStep, PlainProcess
    from distilxlsr.training.optim import Schedule

    config = load_distill_config(TINY, [f"teacher={teacher_dir}", "student.freeze_cnn=false"])
    models = load_models(config, None)
    distiller = Distiller(models.teacher, models.student, models.layer_map, config)
    assert config.student.share_cnn and not distiller.share_cnn
    student_cnn = dict(models.student.feature_extractor.named_parameters())
    teacher_cnn = dict(models.teacher.feature_extractor.named_parameters())
    assert student_cnn.keys() == teacher_cnn.keys() and len(student_cnn) > 0
    assert all(p.requires_grad for p in student_cnn.values())
    shared = {p.data_ptr() for p in student_cnn.values()} & {
        p.data_ptr() for p in teacher_cnn.values()
    }
    assert not shared
    student_before = {k: p.detach().clone() for k, p in student_cnn.items()}
    teacher_before = {k: p.detach().clone() for k, p in teacher_cnn.items()}

    task = DistillTask(distiller, models.student, models.pristine_config)
    stepper = OptimizerStep(
        task, Schedule(10, lr=1e-3, warmup_steps=1), config.train, PlainProcess(torch.device("cpu"))
    )
    generator = torch.Generator().manual_seed(5)
    batch = collate([torch.randn(n, generator=generator).numpy() for n in (4000, 3000)], True)
    grads = {}
    hook = register_optimizer_step_pre_hook(
        lambda *_: grads.update({k: p.grad for k, p in student_cnn.items()})
    )
    try:
        result = stepper(lambda: batch, 0)
    finally:
        hook.remove()
    assert not bool(result.bad)
    for name, grad in grads.items():
        assert grad is not None and bool(grad.abs().sum() > 0), name
    for name, p in student_cnn.items():
        assert not torch.equal(p.detach(), student_before[name]), name
    for name, p in teacher_cnn.items():
        assert torch.equal(p.detach(), teacher_before[name]), name


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_a_half_precision_teacher_distils_an_fp32_student(tmp_path, teacher_dir, toy_corpus, dtype):
    """`teacher_dtype`: the frozen teacher's weights in half precision, the student's in fp32;
    its targets are close to the fp32 teacher's, and its CNN is not shared."""
    from distilxlsr.distill.distiller import cast_teacher

    config = load_distill_config(None, [f"teacher={teacher_dir}", f"teacher_dtype={dtype}"])
    teacher = load_teacher(str(teacher_dir)).eval()
    layer_map = parse_layer_map("jump:2", 4)
    student = build_student(teacher, layer_map)
    reference = Distiller(teacher, student, layer_map, config)
    assert reference.share_cnn
    files = sorted((toy_corpus / "en" / "audio" / "train").glob("*.flac"))[:2]
    import soundfile as sf

    batch = collate([sf.read(f, dtype="float32")[0] for f in files], normalize=True)
    expected, _ = reference.targets(batch)
    cast_teacher(teacher, dtype)
    half = Distiller(teacher, student, layer_map, config)
    assert not half.share_cnn
    got, _ = half.targets(batch)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype != torch.float32
        torch.testing.assert_close(a.float(), b, atol=0.15, rtol=0.05)
    loss, _ = half(batch)
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    loss.backward()
    assert all(p.dtype == torch.float32 for p in student.parameters())


def test_an_fp16_teacher_that_overflows_stops_with_one_error(teacher_dir, toy_corpus):
    from distilxlsr.distill.distiller import TeacherOverflow, cast_teacher

    config = load_distill_config(None, [f"teacher={teacher_dir}", "teacher_dtype=fp16"])
    teacher = load_teacher(str(teacher_dir)).eval()
    layer_map = parse_layer_map("jump:2", 4)
    student = build_student(teacher, layer_map)
    cast_teacher(teacher, "fp16")
    with torch.no_grad():
        # Two residual additions of 40,000 leave fp16's range (max 65,504).
        teacher.encoder.layers[0].feed_forward.output_dense.bias.fill_(4e4)
        teacher.encoder.layers[1].feed_forward.output_dense.bias.fill_(4e4)
    distiller = Distiller(teacher, student, layer_map, config)
    batch = collate([np.random.default_rng(0).standard_normal(8000).astype("float32")], True)
    with pytest.raises(TeacherOverflow, match="teacher_dtype=bf16"):
        distiller(batch)


def test_distil_with_a_bf16_teacher_end_to_end(tmp_path, teacher_dir, toy_corpus, capsys):
    out = tmp_path / "run"
    extra = {"teacher_dtype": "bf16", "train.max_steps": 2, "train.checkpoint_every": 2}
    assert (
        main(["distill", "--config", TINY, *_overrides(teacher_dir, toy_corpus, out, **extra)]) == 0
    )
    assert "teacher weights in bf16" in capsys.readouterr().out
    state = _final_weights(out)
    assert all(v.dtype == torch.float32 for v in state.values())


def test_teacher_dtype_auto_is_bf16_only_for_bf16_compute_on_a_gpu(monkeypatch):
    config = load_distill_config(None, ["teacher=x"])
    assert config.teacher_dtype == "auto"
    assert config.resolved_teacher_dtype() == "fp32"  # this machine: no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.resolved_teacher_dtype() == "bf16"  # auto precision: bf16 on a GPU
    gpu_fp32 = load_distill_config(None, ["teacher=x", "train.mixed_precision=no"])
    assert gpu_fp32.resolved_teacher_dtype() == "fp32"
    explicit = load_distill_config(None, ["teacher=x", "teacher_dtype=fp16"])
    assert explicit.resolved_teacher_dtype() == "fp16"
