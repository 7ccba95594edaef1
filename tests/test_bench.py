import json

import pytest
import torch
import transformers

from distilxlsr.bench import common, cpu, suite
from distilxlsr.bench import shapes as bench_shapes
from distilxlsr.cli import main
from distilxlsr.models import presets


@pytest.fixture
def tiny_shape(monkeypatch):
    monkeypatch.setitem(presets.SHAPES, "test-tiny", (32, 4, 64, 2))
    return "test-tiny"


def test_distill_throughput_counts_flops_and_shared_cnn_saves_them(tiny_shape):
    shared = common.distill_throughput(
        tiny_shape, utterances=1, seconds=1.0, steps=1, share_cnn=True
    )
    unshared = common.distill_throughput(
        tiny_shape, utterances=1, seconds=1.0, steps=1, share_cnn=False
    )
    assert shared["audio_s_per_s"] > 0 and shared["flops_per_step"] > 0
    # The student's CNN pass is gone: fewer FLOPs per step, by about one CNN forward.
    assert shared["flops_per_step"] < 0.9 * unshared["flops_per_step"]


def test_distill_throughput_with_hook_or_explicit_taps(tiny_shape):
    """The GPU suite's reference run (hook taps) computes what the explicit taps do."""
    runs = {
        taps: common.distill_throughput(tiny_shape, utterances=1, seconds=0.5, steps=1, taps=taps)
        for taps in ("hooks", "explicit")
    }
    assert runs["hooks"]["taps"] == "hooks" and runs["explicit"]["taps"] == "explicit"
    assert runs["hooks"]["flops_per_step"] == runs["explicit"]["flops_per_step"] > 0
    with pytest.raises(ValueError, match="explicit or hooks"):
        common.distill_throughput(tiny_shape, utterances=1, seconds=0.5, steps=1, taps="other")


@pytest.mark.slow
def test_inference_ratio(monkeypatch):
    """The student's peak memory is below the teacher's by at least the weights of the layers
    it lacks (memory, not time, is asserted; latency is measured with no minimum duration)."""
    monkeypatch.setitem(presets.SHAPES, "test-layers", (256, 8, 1024, 4))
    result = cpu.inference_ratio("test-layers", utterances=1, seconds=0.5, min_seconds=0.0)
    assert result["shape"] == "test-layers" and result["batch_audio_seconds"] == 0.5
    for name in ("teacher", "student"):
        assert result[f"{name}_latency_s"] > 0 and result[f"{name}_peak_memory_bytes"] > 0
    assert result["latency_ratio"] == result["student_latency_s"] / result["teacher_latency_s"]
    assert (
        result["memory_ratio"]
        == result["student_peak_memory_bytes"] / result["teacher_peak_memory_bytes"]
    )
    # The student lacks 4 of the teacher's 8 layers: their weights' bytes show in the saving of
    # the tensors' peak (exact). The sampled resident memory is reported too; the allocator blurs
    # it (0.3x to 1x of the dropped bytes seen on a 2-core machine), so it is not asserted.
    teacher = transformers.Wav2Vec2Model(presets.shape_config("test-layers"))
    dropped = sum(p.numel() * p.element_size() for p in teacher.encoder.layers[4:].parameters())
    saved = result["teacher_peak_tensor_bytes"] - result["student_peak_tensor_bytes"]
    assert saved >= dropped, (saved, dropped, result)


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--out", str(out), "--sections", "shuffle,padding"]) == 0
    results = json.loads(out.read_text())
    assert results["shuffle"]["x_realtime_per_core"] > 0
    assert 0.5 < results["padding_efficiency"] <= 1.0
    assert results["padding"]["static_shapes"]["crop_lengths"] == [3.0, 6.0, 9.0, 12.0, 15.0]
    assert results["machine"]["cores"] >= 1
    out = capsys.readouterr().out
    assert "padding efficiency" in out and "static shapes: audio kept" in out


def test_librispeech_like_durations():
    d = common.librispeech_like_durations(20000)
    assert 11.5 < d.mean() < 13.0 and d.min() >= 1.0 and d.max() <= 35.0


def test_the_loaders_batch_sequences_for_the_shapes_benchmark():
    static = bench_shapes.plan_rows(True, batch_seconds=30.0, count=12, n=400)
    dynamic = bench_shapes.plan_rows(False, batch_seconds=30.0, count=12, n=400)
    assert len(static) == len(dynamic) == 12
    lengths = {3: 10, 6: 5, 9: 3, 12: 2, 15: 2}  # seconds: utterances per 30 s batch
    for rows in static:
        assert len(set(rows)) == 1 and lengths[rows[0] // 16000] == len(rows)
    assert len({(len(r), r[0]) for r in static}) > 1
    assert any(len(set(rows)) > 1 for rows in dynamic)  # padded rows
    assert all(max(rows) <= 15 * 16000 and sum(rows) <= 30 * 16000 for rows in dynamic)


def test_shapes_throughput_counts_real_audio_only(tiny_shape):
    static = bench_shapes.shapes_throughput(
        tiny_shape, [[8000, 8000], [16000], [8000, 8000]], True, "fp32", "cpu"
    )
    assert static["distinct_shapes"] == static["warmup_batches"] == 2
    assert static["real_sample_share"] == 1.0 and static["audio_seconds"] == 3.0
    assert static["audio_s_per_s"] > 0 and static["graphs_compiled_while_timed"] == 0
    dynamic = bench_shapes.shapes_throughput(
        tiny_shape, [[8000, 4000], [16000, 12000]], False, "fp32", "cpu", warmup=1
    )
    assert dynamic["real_sample_share"] == pytest.approx(40000 / 48000)
    assert dynamic["audio_seconds"] == 2.5 and dynamic["warmup_batches"] == 1


def test_static_yield_of_the_default_lengths():
    result = bench_shapes.static_yield(n=4000)
    assert result["crop_lengths"] == [3.0, 6.0, 9.0, 12.0, 15.0]
    assert result["per_batch"] == [66, 33, 22, 16, 13]
    assert 0.85 < result["audio_kept"] < 0.95 and 0.02 < result["cuts_skipped_short"] < 0.1


def test_batch_sweep_measures_each_size_and_stops_at_out_of_memory(tiny_shape, monkeypatch):
    from distilxlsr.bench import gpu as bench_gpu

    sweep = bench_gpu.batch_sweep(tiny_shape, sizes=(1, 2), seconds=0.5, steps=1, device="cpu")
    assert [r["utterances"] for r in sweep["runs"]] == [1, 2]
    assert [r["batch_audio_seconds"] for r in sweep["runs"]] == [0.5, 1.0]
    assert sweep["best_audio_s_per_s"] == max(r["audio_s_per_s"] for r in sweep["runs"])
    assert all(r["fraction_of_peak"] > 0 for r in sweep["runs"])
    # The first size that does not fit ends the sweep: recorded, never raised.
    real = bench_gpu.distill_throughput

    def fits_one(shape, layers, utterances, *args):
        if utterances > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(shape, layers, utterances, *args)

    monkeypatch.setattr(bench_gpu, "distill_throughput", fits_one)
    sweep = bench_gpu.batch_sweep(tiny_shape, sizes=(1, 2, 4), seconds=0.5, steps=1, device="cpu")
    assert [r.get("oom", False) for r in sweep["runs"]] == [False, True]
    assert sweep["best_utterances"] == 1
    # Any other error is the caller's to see.
    monkeypatch.setattr(bench_gpu, "distill_throughput", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bench_gpu.batch_sweep(tiny_shape, sizes=(1,), seconds=0.5, steps=1, device="cpu")


def test_step_split_phases_add_up_to_the_step_and_count_its_flops(tiny_shape):
    from distilxlsr.bench import gpu as bench_gpu

    split = bench_gpu.step_split(tiny_shape, utterances=1, seconds=1.0, steps=1, device="cpu")
    phases = split["phases"]
    assert list(phases) == list(bench_gpu.PHASES)
    assert sum(p["share"] for p in phases.values()) == pytest.approx(1.0)
    assert split["bound_by"] == max(phases, key=lambda n: phases[n]["seconds"])
    # The FLOPs of the phases are those of one whole distillation step (shared CNN, explicit
    # taps), counted the same way: nothing is left out of the split, nothing counted twice.
    whole = common.distill_throughput(tiny_shape, utterances=1, seconds=1.0, steps=1)
    assert sum(p["flops"] for p in phases.values()) == whole["flops_per_step"]
    # The backward (input and weight gradients) costs more than the student's forward.
    assert phases["backward"]["flops"] > 1.5 * phases["student_forward"]["flops"]
    assert phases["teacher_cnn"]["flops"] > 0 and phases["teacher_layers"]["flops"] > 0
    # cuDNN's autotuner is the GPU's only
    assert set(split["cnn"]) == {"fp32", "bf16", "bf16_transformers_layers"}


def test_unknown_bench_section_is_one_clear_error(tmp_path):
    from distilxlsr.errors import UserError

    with pytest.raises(UserError, match="'gpu-split'"):
        suite.run_bench(tmp_path / "b.json", ["gpu-splt"])


def test_ratio_pairs_and_emit(tmp_path, capsys):
    assert common.ratio_pairs([1.0, 3.0, 2.0], [2.0, 2.0, 2.0]) == {
        "median": 1.0,
        "min": 0.5,
        "max": 1.5,
    }
    with pytest.raises(ValueError):
        common.ratio_pairs([1.0], [1.0, 2.0])  # unpaired timings
    common.emit({"a": 1}, tmp_path / "out.json")
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    assert json.loads((tmp_path / "out.json").read_text()) == {"a": 1}
    common.emit({"b": 2}, None)
    assert json.loads(capsys.readouterr().out) == {"b": 2}
