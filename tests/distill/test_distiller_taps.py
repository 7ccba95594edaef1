"""The distiller on explicit taps: the loss and gradients of the hook-based taps it replaced, bit
for bit with transformers' CNN layers and to float rounding with the channels-last CNN (the
default), with and without the shared CNN; and `train.compile` compiling both taps."""

from __future__ import annotations

import pytest
import torch

from distilxlsr.data.loader import collate
from distilxlsr.distill.distiller import Distiller, DistillTask, prepare_for_distillation
from distilxlsr.distill.recipe import TrainConfig, load_distill_config
from distilxlsr.models.layers import parse_layer_map
from distilxlsr.models.student import build_student
from distilxlsr.training.loop import OptimizerStep, PlainProcess
from distilxlsr.training.optim import Schedule
from tests.helpers import tiny_model


def _batch():
    generator = torch.Generator().manual_seed(5)
    waves = [torch.randn(n, generator=generator).numpy() for n in (4000, 2800, 3300)]
    return collate(waves, normalize=True)


def _pair(model_type, pre_ln, share, explicit, layers="jump:2", channels_last_cnn=True):
    teacher = tiny_model(model_type, pre_ln=pre_ln).requires_grad_(False)
    layer_map = parse_layer_map(layers, 4)
    student = build_student(teacher, layer_map)
    prepare_for_distillation(student, freeze_cnn=True)  # train mode: dropout on
    config = load_distill_config(None, ["teacher=x", f"student.share_cnn={str(share).lower()}"])
    distiller = Distiller(teacher, student, layer_map, config, explicit=explicit)
    distiller.teacher_tap.channels_last_cnn = channels_last_cnn
    distiller.student_tap.channels_last_cnn = channels_last_cnn
    return student, distiller


def _step(student, distiller, batch, seed=3):
    torch.manual_seed(seed)
    loss, terms = distiller(batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    return loss.detach(), terms, grads, torch.get_rng_state()


@pytest.mark.parametrize(
    "model_type, pre_ln, layers",
    [
        ("wav2vec2", True, "jump:2"),
        ("wav2vec2", False, "jump:2"),
        ("wav2vec2", True, "list:1,3"),  # the teacher cut after layer 3: LN_4 kept by the tap
        ("hubert", False, "jump:2"),
        ("wavlm", True, "jump:2"),
    ],
)
@pytest.mark.parametrize("share", [True, False])
def test_loss_and_gradients_equal_the_hook_taps(model_type, pre_ln, layers, share):
    batch = _batch()
    # The reference: hook-based taps around transformers' own forward, each model's CNN its own.
    student, distiller = _pair(model_type, pre_ln, False, explicit=False, layers=layers)
    assert not distiller.teacher_tap.explicit and not distiller.share_cnn
    want = _step(student, distiller, batch)
    student, distiller = _pair(
        model_type, pre_ln, share, explicit=None, layers=layers, channels_last_cnn=False
    )
    assert distiller.teacher_tap.explicit and distiller.student_tap.explicit
    assert distiller.share_cnn == share
    got = _step(student, distiller, batch)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert got[2].keys() == want[2].keys() and len(got[2]) > 0
    for name in want[2]:
        assert torch.equal(got[2][name], want[2][name]), name
    assert torch.equal(got[3], want[3])  # the same dropout draws
    # The default, channels-last CNN: the same to float rounding, the same draws.
    student, distiller = _pair(model_type, pre_ln, share, explicit=None, layers=layers)
    fast = _step(student, distiller, batch)
    assert torch.allclose(fast[0], want[0], rtol=1e-5) and fast[2].keys() == want[2].keys()
    assert torch.allclose(fast[1], want[1], rtol=1e-4, atol=1e-6)
    for name in want[2]:
        assert torch.allclose(fast[2][name], want[2][name], rtol=1e-3, atol=1e-5), name
    assert torch.equal(fast[3], want[3])
    # The hook taps with the shared CNN (the student's CNN replaced for the call) agree too.
    student, distiller = _pair(model_type, pre_ln, share, explicit=False, layers=layers)
    again = _step(student, distiller, batch)
    assert torch.equal(again[0], want[0])


def test_shared_cnn_skips_the_students_cnn():
    student, distiller = _pair("wav2vec2", True, True, explicit=None)
    runs = []
    student.feature_extractor.register_forward_hook(lambda *a: runs.append("module"))
    student.feature_extractor.conv_layers[0].register_forward_hook(lambda *a: runs.append("conv"))
    distiller(_batch())
    assert runs == []
    # Outside a step the student's own CNN runs.
    student(_batch()["input_values"][:1])
    assert runs == ["conv", "module"]


def test_train_compile_compiles_both_taps_as_whole_graphs(monkeypatch):
    """`train.compile`: the loop compiles the student's tap (the task's module) and the task
    compiles the teacher's; fullgraph=True fails on any graph break. The eager backend keeps it
    cheap and gives the eager step's loss."""
    batch = _batch()
    losses = []
    real_compile = torch.compile
    for compile_module in (False, True):
        torch._dynamo.reset()
        compiled = []

        def fake_compile(module, compiled=compiled, **kwargs):
            compiled.append(module)
            return real_compile(module, fullgraph=True, backend="eager")

        monkeypatch.setattr(torch, "compile", fake_compile)
        student, distiller = _pair("wav2vec2", True, True, explicit=None)
        task = DistillTask(distiller, student, student.config)
        assert task.module is distiller.student_tap and task.model is student
        process = PlainProcess(torch.device("cpu"))
        stepper = OptimizerStep(task, Schedule(steps=10, lr=1e-3), TrainConfig(), process)
        stepper.prepare(compile_module=compile_module)
        torch.manual_seed(0)
        for step in range(2):
            # The second step runs the graphs of the first (a recompilation is an error).
            with torch._dynamo.config.patch(error_on_recompile=step > 0):
                result = stepper(lambda: batch, step)
            losses.append((compile_module, result.metrics["loss"]))
        if compile_module:
            assert compiled == [distiller.student_tap, distiller.teacher_tap]
            assert stepper.module._orig_mod is distiller.student_tap
            assert distiller.teacher_forward._orig_mod is distiller.teacher_tap
            assert distiller.student_forward is stepper.module  # what the task ran
        else:
            assert compiled == []
    eager = [loss for flag, loss in losses if not flag]
    compiled_losses = [loss for flag, loss in losses if flag]
    for a, b in zip(eager, compiled_losses, strict=True):
        torch.testing.assert_close(a, b)


def _static_batch(rows: int, samples: int, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    waves = [torch.randn(samples, generator=generator).numpy() for _ in range(rows)]
    return collate(waves, normalize=True, length=samples)


def test_static_shapes_run_the_taps_without_a_mask_and_the_same_loss():
    """`data.static_shapes`: no row is padded, so both taps get no mask (SDPA keeps its flash
    kernel); the loss is the one computed with the batch's all-true mask."""
    batch = _static_batch(3, 3000)
    losses = {}
    for static in (False, True):
        teacher = tiny_model("wav2vec2", pre_ln=True).requires_grad_(False)
        layer_map = parse_layer_map("jump:2", 4)
        student = build_student(teacher, layer_map)
        prepare_for_distillation(student, freeze_cnn=True)
        student.eval()  # no dropout: the two losses must agree
        overrides = ["teacher=x", f"data.static_shapes={str(static).lower()}"]
        distiller = Distiller(teacher, student, layer_map, load_distill_config(None, overrides))
        masks: list = []
        for tap in (distiller.teacher_tap, distiller.student_tap):
            tap.register_forward_pre_hook(lambda m, args, masks=masks: masks.append(args[1]))
        losses[static] = distiller(batch)[0].detach()
        assert len(masks) == 2
        if static:
            assert masks == [None, None]
        else:
            assert all(m is not None and bool(m.all()) for m in masks)
    torch.testing.assert_close(losses[True], losses[False])


def _graph_recorder(graphs: list):
    def backend(gm, example_inputs):
        graphs.append(
            [tuple(x.shape) if isinstance(x, torch.Tensor) else x for x in example_inputs]
        )
        return gm.forward

    return backend


@pytest.mark.parametrize("dynamic", [False, None])
def test_static_shapes_compile_one_static_graph_per_shape(monkeypatch, dynamic):
    """With static shapes the loop compiles with dynamic=False: each of the K shapes gets its
    own static graph, built once and reused (no recompilation when a shape comes back). The
    default (None) turns the second shape into one dynamic-shape graph: what this avoids."""
    torch._dynamo.reset()
    graphs: list = []
    real_compile = torch.compile

    def fake_compile(module, **kwargs):
        assert kwargs == {"dynamic": dynamic}
        return real_compile(module, fullgraph=True, backend=_graph_recorder(graphs), **kwargs)

    monkeypatch.setattr(torch, "compile", fake_compile)
    student, distiller = _pair("wav2vec2", True, True, explicit=None)
    distiller.unpadded = True
    task = DistillTask(distiller, student, student.config)
    stepper = OptimizerStep(
        task, Schedule(steps=10, lr=1e-3), TrainConfig(), PlainProcess(torch.device("cpu"))
    )
    stepper.prepare(compile_module=True, dynamic=dynamic)
    shapes = [(4, 2000), (2, 4000)]
    for step in range(4):
        rows, samples = shapes[step % 2]
        with torch._dynamo.config.patch(error_on_recompile=step >= 2):
            batch = _static_batch(rows, samples, step)
            stepper(lambda batch=batch: batch, step)
    symbolic = [g for g in graphs if any(isinstance(x, torch.SymInt) for x in g)]
    if dynamic is False:
        assert len(graphs) == 4 and not symbolic  # 2 shapes x (teacher, student), all static
        assert {g[0] for g in graphs if g} >= {(4, 2000), (2, 4000)}
    else:
        assert symbolic  # what dynamic=False prevents
