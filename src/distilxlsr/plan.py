"""`distilxlsr plan`: per-GPU memory and wall time of a distillation before it runs
(docs/design.md, "Planning a run"; docs/scale.md uses it).

No weight is loaded or allocated: the teacher and its student are built from the teacher's
config under torch's `FakeTensorMode` (tensors with shapes and dtypes, no storage), and the
training loop's own step (`OptimizerStep`: teacher forward, student forward and backward,
clipping, fused AdamW) runs twice on a fake batch while a dispatch mode adds up the bytes of
every storage alive, op by op. The peak of the second step (the optimizer state exists by then)
is the process's peak memory. What the fake run cannot see is modelled explicitly and said so:

- attention runs as a GPU's fused kernel (flash or memory-efficient) runs it: it keeps q, k, v,
  the output and a log-sum-exp per row, never the T x T matrix (`attention="math"`: the CPU's
  unfused attention, which keeps it, for a check against a CPU run);
- every frame of the fake batch is audio (the loss's masked selection is sized as all frames);
- DDP's gradient buckets (one fp32 copy of the trained parameters) and, with `zero1`, the
  optimizer state divided by the processes are added to the one-process figure.

The time comes from the FLOPs of one step (torch's FlopCounterMode on the same fake step, plus
the fused attention's FLOPs) divided by the FLOP rate the GPU benchmark measured on a real card
(`results/bench-gpu.json`), scaled linearly over GPUs; the gradient all-reduce between nodes is
reported beside it, not overlapped.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import unittest.mock
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from distilxlsr.conventions import SAMPLE_RATE
from distilxlsr.errors import UserError

GB = 1e9
BENCH_GPU = Path(__file__).resolve().parents[2] / "results" / "bench-gpu.json"
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


class LiveBytes(TorchDispatchMode):
    """Adds up the bytes of every tensor storage an op creates, and subtracts them when the
    storage is freed (a weak reference's callback): `live` now, `peak` so far.

    Boolean-mask indexing (the loss's selection of real frames) has a data-dependent size that
    fake tensors cannot know: it is sized as if every frame were real, which the planned batch
    is."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes = WeakIdKeyDictionary()
        self.refs: list[weakref.ref] = []
        self.live = 0
        self.peak = 0

    def _freed(self, nbytes: int) -> None:
        self.live -= nbytes

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self.sizes:
            return
        nbytes = storage.nbytes()
        self.sizes[storage] = nbytes
        self.refs.append(weakref.ref(storage, lambda _, n=nbytes: self._freed(n)))
        self.live += nbytes
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        aten = torch.ops.aten
        index = args[1] if len(args) > 1 and isinstance(args[1], list | tuple) else None
        by_mask = (
            bool(index) and isinstance(index[0], torch.Tensor) and index[0].dtype == torch.bool
        )
        if func is aten.index.Tensor and by_mask:
            source, mask = args[0], index[0]
            out = source.new_empty((mask.numel(), *source.shape[mask.dim() :]))
        elif by_mask and func in (aten.index_put_.default, aten._index_put_impl_.default):
            out = args[0]
        elif by_mask and func is aten.index_put.default:
            out = args[0].clone()
        else:
            out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.track(value)
        return out


class _FusedAttention(torch.autograd.Function):
    """Attention as a GPU's fused kernel holds it: the output, and for backward q, k, v, the
    output and one fp32 log-sum-exp per query row (no T x T matrix). Values are not computed
    (the tensors are fake); FLOPs are counted into `FusedAttentionFlops.total`."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        FusedAttentionFlops.add(q, k, backward=False)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        FusedAttentionFlops.add(q, k, backward=True)
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class FusedAttentionFlops:
    """FLOPs of the fused attention calls: 4·B·H·Tq·Tk·D forward (QKᵀ and PV), 2.5x that
    backward (the gradients, and the forward recomputed by flash attention)."""

    total = 0

    @classmethod
    def add(cls, q: torch.Tensor, k: torch.Tensor, backward: bool) -> None:
        b, h, tq, d = q.shape
        forward = 4 * b * h * tq * k.shape[-2] * d
        cls.total += int(forward * (2.5 if backward else 1.0))


def _fused_sdpa(query, key, value, *args, **kwargs):
    return _FusedAttention.apply(query, key, value)


@dataclass
class StepMemory:
    """One process's figures for one batch (bytes and FLOPs)."""

    utterances: int
    seconds: float
    peak: int
    """Peak bytes over both steps (the second's: the optimizer state exists by then)."""
    static: int
    """Bytes before the first step (weights, buffers, the batch)."""
    before_step: int
    """Bytes live when the second step starts (adds the optimizer state)."""
    flops: int


def _teacher_config(teacher: str):
    from distilxlsr.models.loading import load_config
    from distilxlsr.models.presets import SHAPES, shape_config

    config = shape_config(teacher) if teacher in SHAPES else load_config(teacher)
    config.layerdrop = 0.0
    config._attn_implementation = "sdpa"
    return config


def step_memory(
    teacher: str,
    layers: str,
    utterances: int,
    seconds: float,
    precision: str = "bf16",
    teacher_dtype: str = "bf16",
    attention: str = "fused",
    share_cnn: bool = True,
    fake: bool = True,
) -> tuple[StepMemory, dict]:
    """The peak bytes of two training steps of one process on a batch of `utterances` x
    `seconds` of audio (no padding), with nothing allocated; and the models' sizes. `fake=False`
    runs the same steps on real tensors (tests compare the two)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from distilxlsr.models.layers import parse_layer_map

    if attention not in ("fused", "math"):
        raise ValueError(f"attention '{attention}' must be fused or math")
    config = _teacher_config(teacher)
    layer_map = parse_layer_map(layers, config.num_hidden_layers)
    patch = (
        unittest.mock.patch("torch.nn.functional.scaled_dot_product_attention", _fused_sdpa)
        if attention == "fused"
        else contextlib.nullcontext()
    )
    FusedAttentionFlops.total = 0
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()
    # Python's cycle collector frees some storages at moments that depend on the process's
    # history: off during the steps, run at their boundaries, the count is the same every time.
    gc.collect()
    gc.disable()
    try:
        return _steps(
            config, layer_map, utterances, seconds, precision, teacher_dtype, share_cnn,
            fake_mode, patch,
        )  # fmt: skip
    finally:
        gc.enable()


def _steps(
    config, layer_map, utterances, seconds, precision, teacher_dtype, share_cnn, fake_mode, patch
) -> tuple[StepMemory, dict]:
    """`step_memory`'s two steps, with the cycle collector off."""
    from torch.utils.flop_counter import FlopCounterMode

    from distilxlsr.distill.distiller import (
        DTYPES,
        Distiller,
        DistillTask,
        prepare_for_distillation,
    )
    from distilxlsr.distill.recipe import TrainConfig, load_distill_config
    from distilxlsr.models.loading import model_class
    from distilxlsr.models.student import build_student
    from distilxlsr.training.loop import OptimizerStep, PlainProcess
    from distilxlsr.training.optim import Schedule

    cpu = torch.device("cpu")
    with fake_mode, LiveBytes() as live, patch:
        build = model_class(config.model_type)
        model = build(config).eval().requires_grad_(False)
        student = build_student(model, layer_map)
        prepare_for_distillation(student, freeze_cnn=True)
        if teacher_dtype != "fp32":  # (a fake module's weight-norm convolution cannot be cast)
            del model
            default = torch.get_default_dtype()
            torch.set_default_dtype(DTYPES[teacher_dtype])
            try:
                model = build(config).eval().requires_grad_(False)
            finally:
                torch.set_default_dtype(default)
        run = load_distill_config(
            None,
            ["teacher=x", f"teacher_dtype={teacher_dtype}", f"student.share_cnn={share_cnn}"],
        )
        distiller = Distiller(model, student, layer_map, run, cnn_equal=teacher_dtype == "fp32")
        task = DistillTask(distiller, student, student.config)
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        stepper = OptimizerStep(
            task, Schedule(steps=10, lr=1e-5), TrainConfig(), PlainProcess(cpu, autocast)
        )
        stepper.prepare()
        batch = {
            "input_values": torch.zeros(utterances, int(seconds * SAMPLE_RATE)),
            "attention_mask": torch.ones(utterances, int(seconds * SAMPLE_RATE), dtype=torch.bool),
        }
        gc.collect()
        static = live.live
        stepper(lambda: batch, 0)  # creates the optimizer state
        gc.collect()
        counter = FlopCounterMode(display=False)
        before = FusedAttentionFlops.total
        before_step = live.live
        with counter:
            stepper(lambda: batch, 1)
        flops = counter.get_total_flops() + FusedAttentionFlops.total - before
        trained = sum(p.numel() for p in student.parameters() if p.requires_grad)
        sizes = {
            "teacher_parameters": sum(p.numel() for p in model.parameters()),
            "student_parameters": sum(p.numel() for p in student.parameters()),
            "trained_parameters": trained,
            "teacher_layers": config.num_hidden_layers,
            "student_layers": layer_map.student_layers,
            "hidden": config.hidden_size,
        }
    return StepMemory(utterances, seconds, live.peak, static, before_step, flops), sizes


@dataclass
class Plan:
    """`distilxlsr plan`'s answer (GB are 10^9 bytes, as torch.cuda's counters are read)."""

    teacher: str
    layers: str
    gpus: int
    gpu_memory_gb: float
    precision: str
    teacher_dtype: str
    optimizer_sharding: str
    utterance_seconds: float
    sizes: dict
    memory_gb: dict
    """Per GPU at the planned batch: teacher and student weights, optimizer state (after
    sharding), DDP gradient buckets, activations and working memory, total."""
    batch_seconds: float
    """Audio seconds per GPU per step (`train.batch_seconds`)."""
    largest_batch_seconds: float
    """The largest batch (whole utterances) whose total stays under `headroom` of the card."""
    headroom: float
    hours: float
    time: dict
    measured_on: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def measured_gpu(path: Path = BENCH_GPU) -> tuple[float, str]:
    """The bf16 FLOP rate of a distillation step measured by the GPU benchmark, and the card."""
    try:
        bench = json.loads(path.read_text())
        runs = [r for r in bench["gpu"]["runs"] if r["precision"] == "bf16"]
        best = max(runs, key=lambda r: r["flops_per_s"])
        card = bench["machine"]["gpu"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"no GPU measurement to time the run with in '{path}' ({err}).") from None
    return float(
        best["flops_per_s"]
    ), f"{card} ({best['shape']}, {best['batch_audio_seconds']:g} s batches, bf16)"


class _MemoryModel:
    """Per-GPU bytes at a batch of n utterances: the weights, the optimizer state (divided by
    the processes with zero1), DDP's gradient buckets, and activations and working memory
    (gradients included) linear in n, from the fake steps on 1 and 2 utterances."""

    def __init__(self, sizes, small, large, teacher_dtype, gpus, optimizer_sharding):
        trained = sizes["trained_parameters"]
        self.fixed = {
            "teacher_weights": sizes["teacher_parameters"] * DTYPE_BYTES[teacher_dtype],
            "student_weights": sizes["student_parameters"] * 4,
            "optimizer_state": trained * 8 / (gpus if optimizer_sharding == "zero1" else 1),
            "ddp_gradient_buckets": trained * 4 if gpus > 1 else 0,
        }
        one_process = self.fixed["teacher_weights"] + self.fixed["student_weights"] + trained * 8
        self.per_utterance = large.peak - small.peak
        self.base = small.peak - one_process - self.per_utterance

    def __call__(self, utterances: int) -> dict:
        working = self.base + self.per_utterance * utterances
        total = sum(self.fixed.values()) + working
        return self.fixed | {"activations_and_working": working, "total": total}


@functools.lru_cache(maxsize=16)
def _two_batches(
    teacher: str, layers: str, seconds: float, precision: str, teacher_dtype: str, attention: str
) -> tuple[StepMemory, StepMemory, dict]:
    """Fake steps on 1 and 2 utterances (cached: plans that differ in GPUs only share them)."""
    small, sizes = step_memory(teacher, layers, 1, seconds, precision, teacher_dtype, attention)
    large, _ = step_memory(teacher, layers, 2, seconds, precision, teacher_dtype, attention)
    return small, large, sizes


def plan(
    teacher: str,
    layers: str = "jump:2",
    gpus: int = 8,
    gpu_memory_gb: float = 80.0,
    batch_seconds: float | None = 200.0,
    utterance_seconds: float = 15.0,
    steps: int = 200_000,
    precision: str = "bf16",
    teacher_dtype: str = "bf16",
    optimizer_sharding: str = "none",
    hours: float = 960.0,
    network_gbps: float = 100.0,
    gpus_per_node: int = 8,
    headroom: float = 0.9,
    attention: str = "fused",
) -> Plan:
    """Memory per GPU and hours for distilling `teacher` into `layers` on `gpus` GPUs of
    `gpu_memory_gb`, for `steps` steps over `hours` of audio; the batch is `batch_seconds` per GPU
    (the shipped xlsr300m-half recipe's 200 s; None: the largest that fits), made of whole
    utterances of `utterance_seconds` (LibriSpeech cropped to 15 s)."""
    if gpus < 1 or gpu_memory_gb <= 0 or hours <= 0:
        raise UserError("--gpus, --gpu-memory and --hours must be positive.")
    if optimizer_sharding not in ("none", "zero1"):
        raise UserError("--optimizer-sharding must be none or zero1.")
    flops_per_s, card = measured_gpu()
    # Two batch sizes give the activations' slope per utterance; the weights are their own.
    small, large, sizes = _two_batches(
        teacher, layers, utterance_seconds, precision, teacher_dtype, attention
    )
    memory_of = _MemoryModel(sizes, small, large, teacher_dtype, gpus, optimizer_sharding)
    budget = headroom * gpu_memory_gb * GB
    largest = 0
    while memory_of(largest + 1)["total"] <= budget:
        largest += 1
    notes = []
    if largest == 0:
        notes.append(
            f"even one {utterance_seconds:g} s utterance per GPU exceeds {headroom:.0%} of "
            f"{gpu_memory_gb:g} GB: shard the optimizer state (zero1), keep the teacher in bf16, "
            "or use cards with more memory."
        )
    utterances = (
        max(1, round(batch_seconds / utterance_seconds)) if batch_seconds else max(1, largest)
    )
    memory = {k: v / GB for k, v in memory_of(utterances).items()}
    step_flops = small.flops + (large.flops - small.flops) * (utterances - 1)
    time = _time(
        step_flops / flops_per_s,
        step_flops,
        audio_per_step=utterances * utterance_seconds * gpus,
        nodes=math.ceil(gpus / gpus_per_node),
        grad_bytes=sizes["trained_parameters"] * 4,
        network_gbps=network_gbps,
        steps=steps,
        hours=hours,
    )
    if utterances > largest:
        notes.append(
            f"the requested batch ({utterances} x {utterance_seconds:g} s) exceeds {headroom:.0%} "
            f"of the card: about {memory['total']:.1f} GB; the largest that fits is "
            f"{largest * utterance_seconds:g} s."
        )
    if time["allreduce_seconds_between_nodes"] > time["step_seconds_compute"]:
        notes.append(
            "the gradient all-reduce between nodes takes longer than the step's compute at "
            f"{network_gbps:g} Gb/s: use larger batches per GPU (train.grad_accum) or a faster "
            "network."
        )
    return Plan(
        teacher=teacher,
        layers=layers,
        gpus=gpus,
        gpu_memory_gb=gpu_memory_gb,
        precision=precision,
        teacher_dtype=teacher_dtype,
        optimizer_sharding=optimizer_sharding,
        utterance_seconds=utterance_seconds,
        sizes=sizes,
        memory_gb=memory,
        batch_seconds=utterances * utterance_seconds,
        largest_batch_seconds=largest * utterance_seconds,
        headroom=headroom,
        hours=hours,
        time=time,
        measured_on=card,
        notes=notes,
    )


def _time(
    step_seconds: float,
    step_flops: int,
    audio_per_step: float,
    nodes: int,
    grad_bytes: int,
    network_gbps: float,
    steps: int,
    hours: float,
) -> dict:
    """The run's hours at the measured FLOP rate, and the gradient all-reduce between nodes (a
    ring moves 2(N-1)/N of the gradients through each node's link), not overlapped."""
    link = network_gbps / 8 * GB
    allreduce = 2 * (nodes - 1) / nodes * grad_bytes / link if nodes > 1 else 0.0
    return {
        "step_flops": step_flops,
        "step_seconds_compute": step_seconds,
        "allreduce_seconds_between_nodes": allreduce,
        "steps": steps,
        "passes_over_the_audio": steps * audio_per_step / (hours * 3600),
        "pass_hours_compute": hours * 3600 / audio_per_step * step_seconds / 3600,
        "run_hours_compute": steps * step_seconds / 3600,
        "run_hours_with_allreduce": steps * (step_seconds + allreduce) / 3600,
        "network_gbps": network_gbps,
    }


def describe(p: Plan) -> str:
    """The plan as the command prints it."""
    s = p.sizes
    m = p.memory_gb
    t = p.time
    lines = [
        f"teacher {p.teacher}: {s['teacher_layers']} layers, hidden {s['hidden']}, "
        f"{s['teacher_parameters'] / 1e6:,.0f}M parameters ({p.teacher_dtype}); student "
        f"{p.layers}: {s['student_layers']} layers, {s['student_parameters'] / 1e6:,.0f}M "
        f"({s['trained_parameters'] / 1e6:,.0f}M trained, fp32 weights, {p.precision} compute)",
        f"per GPU ({p.gpus} GPUs of {p.gpu_memory_gb:g} GB, optimizer sharding "
        f"{p.optimizer_sharding}), batch {p.batch_seconds:g} s "
        f"({p.batch_seconds / p.utterance_seconds:.0f} x {p.utterance_seconds:g} s):",
        f"  teacher weights       {m['teacher_weights']:7.2f} GB",
        f"  student weights       {m['student_weights']:7.2f} GB",
        f"  optimizer state       {m['optimizer_state']:7.2f} GB",
        f"  DDP gradient buckets  {m['ddp_gradient_buckets']:7.2f} GB",
        f"  activations, grads    {m['activations_and_working']:7.2f} GB",
        f"  total                 {m['total']:7.2f} GB",
        f"largest batch under {p.headroom:.0%} of the card: {p.largest_batch_seconds:g} s per GPU",
        f"time: {t['steps']:,} steps of {t['step_seconds_compute']:.3f} s "
        f"({t['passes_over_the_audio']:.1f} passes over {p.hours:g} h of audio) = "
        f"{t['run_hours_compute']:.1f} h of compute"
        + (
            f"; {t['run_hours_with_allreduce']:.1f} h if the all-reduce between nodes "
            f"({t['allreduce_seconds_between_nodes']:.3f} s per step at {t['network_gbps']:g} "
            "Gb/s) is not overlapped"
            if t["allreduce_seconds_between_nodes"]
            else ""
        ),
        f"one pass over {p.hours:g} h: {t['pass_hours_compute']:.2f} h of compute; loaders must "
        f"deliver {p.batch_seconds / t['step_seconds_compute']:,.0f} audio-s/s per GPU",
        f"  (FLOP rate measured on {p.measured_on}, scaled linearly over GPUs)",
    ]
    lines += [f"note: {n}" for n in p.notes]
    return "\n".join(lines)
