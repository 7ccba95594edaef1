"""ONNX export: the graph runs in onnxruntime and gives the features PyTorch gives (fp32 tightly,
int8 loosely), on a padded batch of two lengths; one export through the CLI serves every test."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from distilxlsr.cli import main
from distilxlsr.errors import UserError
from distilxlsr.export_onnx import OUTPUT_NAMES, export_onnx, require_onnx
from distilxlsr.models.layers import LayerTap
from distilxlsr.models.loading import load_model
from tests.helpers import tiny_model

LAYERS = 3


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    # A post-LN model would do as well; pre-LN is XLS-R's kind and the one with normed layers.
    tiny_model("wav2vec2", pre_ln=True, layers=LAYERS, seed=3).save_pretrained(root / "model")
    code = main(
        ["export", str(root / "model"), "--out", str(root / "out"), "--format", "onnx"]
        + ["--quantize", "int8"]
    )
    assert code == 0
    return root


def _batch(lengths: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.zeros((len(lengths), max(lengths)), dtype=np.float32)
    mask = np.zeros_like(x, dtype=np.int64)
    for row, n in enumerate(lengths):
        x[row, :n] = rng.standard_normal(n)
        mask[row, :n] = 1
    return x, mask


def _reference(model_dir, x, mask):
    """What `evaluate` probes: LayerTap's representations of layers 0..L, in PyTorch."""
    model = load_model(str(model_dir)).eval()
    tap = LayerTap(model)
    with torch.no_grad():
        reps, frames = tap(torch.from_numpy(x), torch.from_numpy(mask).bool(), range(LAYERS + 1))
        last = model(torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).last_hidden_state
    return torch.stack(reps, 1).numpy(), last.numpy(), frames.sum(-1).numpy()


def _run(path, x, mask):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input_values": x, "attention_mask": mask})


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_directory_layout(exported):
    out = exported / "out"
    names = {p.name for p in out.iterdir()}
    assert {"model.onnx", "model.int8.onnx", "config.json", "onnx.json"} <= names
    meta = json.loads((out / "onnx.json").read_text())
    assert meta["outputs"] == OUTPUT_NAMES and meta["layers"] == LAYERS
    graph = onnx.load(str(out / "model.onnx")).graph
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in graph.input
    }
    # batch and length are symbolic, not the example's sizes
    assert all(isinstance(d, str) for d in dims["input_values"] + dims["attention_mask"])
    # int8: the weight products run as integer MatMuls
    ops = {n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert "MatMulInteger" in ops


@pytest.mark.parametrize("lengths", [[9000, 5400], [3000]])
def test_fp32_matches_pytorch(exported, lengths):
    x, mask = _batch(lengths)
    ref_layers, ref_last, ref_frames = _reference(exported / "model", x, mask)
    last, layers, frames = _run(exported / "out" / "model.onnx", x, mask)
    np.testing.assert_array_equal(frames, ref_frames)
    assert layers.shape == ref_layers.shape and layers.shape[1] == LAYERS + 1
    for i, n in enumerate(frames):  # real frames only: padded frames are unspecified
        assert np.abs(layers[i, :, :n] - ref_layers[i, :, :n]).max() < 1e-4
        assert np.abs(last[i, :n] - ref_last[i, :n]).max() < 1e-4
        np.testing.assert_allclose(last[i, :n], layers[i, LAYERS, :n], atol=1e-6)
        assert _cosines(layers[i, :, :n], ref_layers[i, :, :n]).min() > 0.99999


def test_int8_stays_close(exported):
    x, mask = _batch([9000, 5400], seed=1)
    ref_layers, _, ref_frames = _reference(exported / "model", x, mask)
    _, layers, frames = _run(exported / "out" / "model.int8.onnx", x, mask)
    np.testing.assert_array_equal(frames, ref_frames)
    for i, n in enumerate(frames):
        assert _cosines(layers[i, :, :n], ref_layers[i, :, :n]).mean() > 0.98


def test_user_errors(exported, tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="int4"):
        export_onnx(exported / "model", tmp_path / "m.onnx", quantize="int4")
    with pytest.raises(UserError, match=r"\.onnx"):
        export_onnx(exported / "model", tmp_path / "m.bin")
    model = str(exported / "model")
    assert main(["export", model, "--out", str(tmp_path / "hf"), "--quantize", "int8"]) == 2
    assert "--format onnx" in capsys.readouterr().err
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install 'distilxlsr\[onnx\]'"):
        require_onnx("onnxruntime")
