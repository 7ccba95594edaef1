"""`distilxlsr plan`: per-GPU memory and time of a distillation from fake tensors."""

from __future__ import annotations

import json

import pytest

from distilxlsr.cli import main
from distilxlsr.plan import GB, plan, step_memory


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_fake_steps_allocate_what_real_steps_allocate(teacher_dir, precision):
    """The planner's fake run counts the bytes the same steps on real tensors hold."""
    args = (str(teacher_dir), "jump:2", 2, 1.0, precision, "fp32")
    fake, sizes = step_memory(*args, attention="math")
    real, _ = step_memory(*args, attention="math", fake=False)
    assert fake.static == real.static
    assert fake.before_step == real.before_step
    assert abs(fake.peak - real.peak) <= 0.01 * real.peak
    assert fake.flops == real.flops > 0
    assert sizes["student_layers"] == 2 and sizes["teacher_layers"] == 4


def test_fused_attention_keeps_less_and_batches_cost_more(teacher_dir):
    small, _ = step_memory(str(teacher_dir), "jump:2", 1, 2.0, "no", "fp32")
    large, _ = step_memory(str(teacher_dir), "jump:2", 3, 2.0, "no", "fp32")
    math_, _ = step_memory(str(teacher_dir), "jump:2", 3, 2.0, "no", "fp32", attention="math")
    assert large.peak > small.peak
    assert large.peak < math_.peak  # no T x T matrix kept
    half, _ = step_memory(str(teacher_dir), "jump:2", 1, 2.0, "no", "bf16")
    assert half.static < small.static  # the teacher's weights in 2 bytes


def test_plan_divides_the_optimizer_state_and_finds_the_largest_batch(teacher_dir):
    kwargs = dict(gpus=8, gpu_memory_gb=0.05, utterance_seconds=2.0, steps=1000, hours=1.0)
    plain = plan(str(teacher_dir), **kwargs)
    sharded = plan(str(teacher_dir), optimizer_sharding="zero1", **kwargs)
    m, z = plain.memory_gb, sharded.memory_gb
    trained = plain.sizes["trained_parameters"]
    assert m["optimizer_state"] == pytest.approx(trained * 8 / GB)
    assert z["optimizer_state"] == pytest.approx(m["optimizer_state"] / 8)
    assert m["ddp_gradient_buckets"] == pytest.approx(trained * 4 / GB)
    assert sharded.largest_batch_seconds >= plain.largest_batch_seconds > 0
    one = plan(str(teacher_dir), **(kwargs | {"gpus": 1}))
    assert one.memory_gb["ddp_gradient_buckets"] == 0
    assert one.time["allreduce_seconds_between_nodes"] == 0
    many = plan(str(teacher_dir), **(kwargs | {"gpus": 16}))
    assert many.time["allreduce_seconds_between_nodes"] > 0
    fits = plan(str(teacher_dir), **(kwargs | {"batch_seconds": None}))
    assert fits.batch_seconds == fits.largest_batch_seconds
    assert fits.memory_gb["total"] <= 0.9 * 0.05


def test_plan_cli_prints_and_writes_json(teacher_dir, tmp_path, capsys):
    out = tmp_path / "plan.json"
    args = ["plan", "--teacher", str(teacher_dir), "--gpus", "2", "--gpu-memory", "0.05"]
    args += ["--utterance-seconds", "2", "--batch-seconds", "4", "--json", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "optimizer state" in text and "largest batch" in text and "H100" in text
    assert json.loads(out.read_text())["gpus"] == 2


def test_plan_refuses_an_unknown_teacher(capsys):
    assert main(["plan", "--teacher", "xls-r-9b"]) != 0
    assert "xls-r-9b" in capsys.readouterr().err
