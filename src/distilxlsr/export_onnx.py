"""Export a wav2vec 2.0-family model (a distilled student) to ONNX, optionally with int8 weights.

The graph (docs/design.md, "Layer representations"; the features `evaluate` probes):

- inputs: `input_values` (batch, samples) float32, waveforms normalised per utterance as the
  model's preprocessor_config.json says (zero mean, unit variance over the real samples), zero
  padded; `attention_mask` (batch, samples) int64, 1 on real samples.
- outputs: `last_hidden_state` (batch, frames, hidden), the base model's output;
  `layer_features` (batch, layers + 1, frames, hidden), the representation of every layer
  0..L as `LayerTap` defines it (so `layer_features[:, L]` equals `last_hidden_state`);
  `frame_lengths` (batch,) int64, the real frames of each utterance (later frames are padding).

Batch and length are dynamic. `quantize="int8"` adds a copy whose MatMul/Gemm weights are int8
(onnxruntime dynamic quantization: activations are quantized per call); the CNN feature encoder
and the positional convolution stay float32.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.errors import UserError
from distilxlsr.models.layers import LayerTap
from distilxlsr.models.loading import load_model

INPUT_NAMES = ["input_values", "attention_mask"]
OUTPUT_NAMES = ["last_hidden_state", "layer_features", "frame_lengths"]
QUANTIZE_MODES = ("int8",)
OPSET = 18
_INSTALL = "pip install 'distilxlsr[onnx]'"
# Above this many bytes of weights the graph's tensors go to a `.data` file beside it
# (a protobuf file cannot exceed 2 GiB).
_EXTERNAL_DATA_BYTES = 1_800_000_000


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's notices about its own internals (missing torchvision, empty
    attributes) for the duration of an export; errors still show."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def require_onnx(*modules: str) -> None:
    """A UserError naming the extra to install when an ONNX package is missing."""
    for name in modules:
        if importlib.util.find_spec(name) is None:
            raise UserError(f"ONNX export needs the package '{name}'; install it with {_INSTALL}.")


class LayerFeatures(nn.Module):
    """The exported forward: (input_values, attention_mask) -> the three outputs above."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.tap = LayerTap(model)
        self.layers = list(range(self.tap.num_layers + 1))

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor):
        reps, frames = self.tap(input_values, attention_mask != 0, self.layers)
        return reps[-1], torch.stack(reps, dim=1), frames.sum(-1)


def _bake_weight_norm(model: nn.Module) -> None:
    """Replace weight-norm parametrizations (the positional convolution) by their weights, so the
    graph holds one constant instead of recomputing the norm on every call."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def prepare_model(model_dir: str | Path) -> LayerFeatures:
    """The model of `model_dir` in eval mode, wrapped as the exported forward."""
    model = load_model(str(model_dir))
    # The masking of padded frames must be in the graph: eager attention exports the same on
    # every opset and runtime (SDPA's boolean-mask path is traced into the same ops anyway).
    model.set_attn_implementation("eager")
    model.eval().requires_grad_(False)
    _bake_weight_norm(model)
    return LayerFeatures(model).eval()


def _example_inputs(sample_rate: int = SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """Two utterances of different lengths, so padding and the mask are traced."""
    lengths = [sample_rate, sample_rate * 3 // 4]
    x = torch.randn(len(lengths), max(lengths))
    mask = torch.zeros_like(x, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        x[row, n:] = 0
    return x, mask


def export_onnx(
    model_dir: str | Path, out_file: str | Path, quantize: str | None = None
) -> list[Path]:
    """Write `out_file` (float32 ONNX) and, with `quantize="int8"`, `<stem>.int8.onnx` beside it;
    returns the written model files."""
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise UserError(f"--quantize '{quantize}' is not supported; use int8.")
    require_onnx("onnx", "onnxscript", *(["onnxruntime"] if quantize else []))
    import onnx

    out_file = Path(out_file)
    if out_file.suffix != ".onnx":
        raise UserError(f"ONNX output '{out_file}' must end in .onnx.")
    wrapper = prepare_model(model_dir)
    weight_bytes = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    external = weight_bytes > _EXTERNAL_DATA_BYTES
    out_file.parent.mkdir(parents=True, exist_ok=True)
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=800)
    dynamic = {"input_values": {0: batch, 1: samples}, "attention_mask": {0: batch, 1: samples}}
    with _quiet():
        program = torch.onnx.export(
            wrapper,
            _example_inputs(),
            dynamo=True,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    _drop_source_paths(program.model)
    program.save(str(out_file), external_data=external)
    onnx.checker.check_model(str(out_file), full_check=True)
    written = [out_file]
    if quantize == "int8":
        written.append(quantize_int8(out_file, out_file.with_suffix(".int8.onnx"), external))
    return written


def _drop_source_paths(model) -> None:
    """The exporter records each node's Python stack trace as metadata: source files under
    absolute paths of this machine. An exported file names no local path, so they go (the
    graph is unchanged)."""
    import onnx_ir as ir

    for graph in (model.graph, *model.functions.values()):
        for node in ir.traversal.RecursiveGraphIterator(graph):
            node.metadata_props.pop("pkg.torch.onnx.stack_trace", None)


def quantize_int8(src: Path, dst: Path, external: bool = False) -> Path:
    """Dynamic int8 quantization of the MatMul/Gemm weights, per output channel. The attention
    products (activation x activation) and the convolutions stay float32."""
    require_onnx("onnx", "onnxruntime")
    import onnx
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        # onnxruntime's recommended pre-processing (ONNX shape inference, basic graph clean-up);
        # its symbolic shape inference cannot follow the masking of padded frames (NonZero),
        # and the MatMuls it would find are the same 6 per layer + 1 without it.
        prepared = Path(tmp) / "prepared.onnx"
        with _quiet():
            quant_pre_process(
                src, prepared, skip_symbolic_shape=True, save_as_external_data=external
            )
            quantize_dynamic(
                prepared,
                dst,
                op_types_to_quantize=["MatMul", "Gemm"],
                weight_type=QuantType.QInt8,
                per_channel=True,
                use_external_data_format=external,
            )
    onnx.checker.check_model(str(dst), full_check=False)
    return dst


def export_onnx_dir(source: str | Path, out: str | Path, quantize: str | None = None) -> list[Path]:
    """`distilxlsr export --format onnx`: OUT/model.onnx (+ model.int8.onnx), with the model's
    config.json and preprocessor_config.json, a short onnx.json describing the graph, and a
    model card (README.md) that loads it with onnxruntime."""
    from distilxlsr.export import find_student

    model_dir, run = find_student(Path(source))
    out = Path(out)
    if out.suffix == ".onnx":
        raise UserError(f"--out '{out}' must be a directory; the model is written as model.onnx.")
    written = export_onnx(model_dir, out / "model.onnx", quantize)
    shutil.copyfile(model_dir / "config.json", out / "config.json")
    for candidate in (model_dir, run.student_init if run else None):
        if candidate is not None and (candidate / "preprocessor_config.json").is_file():
            shutil.copyfile(
                candidate / "preprocessor_config.json", out / "preprocessor_config.json"
            )
            break
    config = json.loads((model_dir / "config.json").read_text())
    meta = {
        "inputs": INPUT_NAMES,
        "outputs": OUTPUT_NAMES,
        "layers": config["num_hidden_layers"],
        "opset": OPSET,
        "files": [p.name for p in written],
        "quantization": quantize or "none",
    }
    (out / "onnx.json").write_text(json.dumps(meta, indent=2) + "\n")
    from distilxlsr.export import model_card

    card = model_card(model_dir, run, None, out, onnx_files=[p.name for p in written])
    (out / "README.md").write_text(card)
    return written
