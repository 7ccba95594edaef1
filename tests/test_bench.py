import json

import pytest
import transformers

from distilxlsr import bench
from distilxlsr.cli import main
from distilxlsr.models import presets


@pytest.fixture
def tiny_shape(monkeypatch):
    monkeypatch.setitem(presets.SHAPES, "test-tiny", (32, 4, 64, 2))
    return "test-tiny"


def test_distill_throughput_counts_flops_and_shared_cnn_saves_them(tiny_shape):
    shared = bench.distill_throughput(
        tiny_shape, utterances=1, seconds=1.0, steps=1, share_cnn=True
    )
    unshared = bench.distill_throughput(
        tiny_shape, utterances=1, seconds=1.0, steps=1, share_cnn=False
    )
    assert shared["audio_s_per_s"] > 0 and shared["flops_per_step"] > 0
    # The student's CNN pass is gone: fewer FLOPs per step, by about one CNN forward.
    assert shared["flops_per_step"] < 0.9 * unshared["flops_per_step"]


def test_distill_throughput_with_hook_or_explicit_taps(tiny_shape):
    """The GPU suite's reference run (hook taps) computes what the explicit taps do."""
    runs = {
        taps: bench.distill_throughput(tiny_shape, utterances=1, seconds=0.5, steps=1, taps=taps)
        for taps in ("hooks", "explicit")
    }
    assert runs["hooks"]["taps"] == "hooks" and runs["explicit"]["taps"] == "explicit"
    assert runs["hooks"]["flops_per_step"] == runs["explicit"]["flops_per_step"] > 0
    with pytest.raises(ValueError, match="explicit or hooks"):
        bench.distill_throughput(tiny_shape, utterances=1, seconds=0.5, steps=1, taps="other")


def test_inference_ratio(monkeypatch):
    """The student's peak memory is below the teacher's by at least the weights of the layers
    it lacks (memory, not time, is asserted; latency is measured with no minimum duration)."""
    monkeypatch.setitem(presets.SHAPES, "test-layers", (256, 8, 1024, 4))
    result = bench.inference_ratio("test-layers", utterances=1, seconds=0.5, min_seconds=0.0)
    assert result["shape"] == "test-layers" and result["batch_audio_seconds"] == 0.5
    for name in ("teacher", "student"):
        assert result[f"{name}_latency_s"] > 0 and result[f"{name}_peak_memory_bytes"] > 0
    assert result["latency_ratio"] == result["student_latency_s"] / result["teacher_latency_s"]
    assert (
        result["memory_ratio"]
        == result["student_peak_memory_bytes"] / result["teacher_peak_memory_bytes"]
    )
    # The student lacks 4 of the teacher's 8 layers: their weights' bytes show in the saving. The
    # peaks are sampled resident memory, which the allocator blurs (0.63x to 1x of the dropped
    # bytes seen on a 2-core machine), so the bound leaves room.
    teacher = transformers.Wav2Vec2Model(presets.shape_config("test-layers"))
    dropped = sum(p.numel() * p.element_size() for p in teacher.encoder.layers[4:].parameters())
    saved = result["teacher_peak_memory_bytes"] - result["student_peak_memory_bytes"]
    assert saved >= 0.4 * dropped, (saved, dropped, result)


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--out", str(out), "--sections", "shuffle,padding"]) == 0
    results = json.loads(out.read_text())
    assert results["shuffle"]["x_realtime_per_core"] > 0
    assert 0.5 < results["padding_efficiency"] <= 1.0
    assert results["machine"]["cores"] >= 1
    assert "padding efficiency" in capsys.readouterr().out


def test_librispeech_like_durations():
    d = bench.librispeech_like_durations(20000)
    assert 11.5 < d.mean() < 13.0 and d.min() >= 1.0 and d.max() <= 35.0
