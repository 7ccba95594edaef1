"""ONNX export against PyTorch on the same utterances: output agreement, probe PER and CPU latency.

The student (a run directory, an HF directory, or by default the shipped teacher's jump:2
student built here) is exported with `export_onnx(..., quantize="int8")`. On one synthetic
language (train and test splits, made here when missing):

- agreement: every layer's features (the `layer_features` output, what the probe reads) and
  `last_hidden_state` of the fp32 and int8 graphs against PyTorch's `LayerTap`, on the real frames
  of the test utterances, batched as the harness batches them: max |difference| and cosine;
- PER: the harness's probe (`train_probe`, `probe_decode`, same config and seed) trained and
  scored on PyTorch, fp32-ONNX and int8-ONNX features; and the PyTorch-trained probe applied
  unchanged to ONNX features (a probe deployed on the exported model);
- latency: one utterance at a time (batch 1), PyTorch / fp32 / int8 in rotating order over
  `--repeats` rounds of the test utterances, torch and onnxruntime limited to `--threads`
  threads; per-call ratios ONNX/PyTorch on the same utterance, medians reported.

    python benchmarks/onnx_export.py --out results/bench-onnx.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from distilxlsr import tune_malloc
from distilxlsr.data.loader import collate
from distilxlsr.evaluate.ctc import ProbeConfig, probe_decode, train_probe
from distilxlsr.evaluate.features import ModelFeatures, resolve_model
from distilxlsr.evaluate.languages import load_language
from distilxlsr.evaluate.per import phone_error_rate
from distilxlsr.evaluate.task import extract_features
from distilxlsr.export_onnx import export_onnx

TEACHER = Path(__file__).resolve().parents[1] / "src/distilxlsr/assets/teacher"


class OnnxFeatures:
    """The harness's feature interface (waves -> (layers, frames, dim) float16 per utterance),
    computed by an onnxruntime session of the exported graph."""

    def __init__(self, path: Path, normalize: bool, threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.normalize = normalize

    def run(self, waves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = collate(waves, self.normalize)
        feeds = {
            "input_values": batch["input_values"].numpy(),
            "attention_mask": batch["attention_mask"].numpy().astype(np.int64),
        }
        return tuple(self.session.run(None, feeds))

    def __call__(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        _, layers, lengths = self.run(waves)
        return [torch.from_numpy(layers[i, :, :n]).half() for i, n in enumerate(lengths)]


def torch_run(features: ModelFeatures, waves: list[np.ndarray]):
    """PyTorch's float32 layer features and frame lengths, as ModelFeatures computes them."""
    batch = collate(waves, features.normalize)
    with torch.inference_mode():
        reps, frames = features.tap(
            batch["input_values"], batch["attention_mask"], list(range(features.num_layers))
        )
    return torch.stack(reps, 1).numpy(), frames.sum(-1).numpy()


def agreement(features: ModelFeatures, onnx_model: OnnxFeatures, waves, batch: int = 8) -> dict:
    max_diff = max_diff_last = 0.0
    cosines, cosines_last = [], []
    for start in range(0, len(waves), batch):
        chunk = waves[start : start + batch]
        ref, ref_lengths = torch_run(features, chunk)
        last, layers, lengths = onnx_model.run(chunk)
        assert (lengths == ref_lengths).all(), "frame lengths differ"
        for i, n in enumerate(lengths):
            a, b = ref[i, :, :n], layers[i, :, :n]
            max_diff = max(max_diff, float(np.abs(a - b).max()))
            max_diff_last = max(max_diff_last, float(np.abs(a[-1] - last[i, :n]).max()))
            cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
            cosines.append(cos)
            cosines_last.append(cos[-1])
    cos_all = np.concatenate([c.reshape(-1) for c in cosines])
    cos_last = np.concatenate(cosines_last)
    per_layer = np.concatenate(cosines, axis=1).mean(axis=1)  # (layers,)
    return {
        "layer_features_max_abs_diff": max_diff,
        "layer_features_mean_cosine": float(cos_all.mean()),
        "layer_features_min_cosine": float(cos_all.min()),
        "mean_cosine_per_layer": [round(float(c), 6) for c in per_layer],
        "last_hidden_state_max_abs_diff": max_diff_last,
        "last_hidden_state_mean_cosine": float(cos_last.mean()),
        "feature_rms": float(np.sqrt(np.mean(np.concatenate([r.reshape(-1) for r in ref]) ** 2))),
    }


def latency(features: ModelFeatures, sessions: dict[str, OnnxFeatures], waves, repeats: int):
    """Median seconds per utterance and median per-call ratio ONNX/PyTorch, batch 1."""
    runners = {"pytorch": lambda w: torch_run(features, [w])}
    runners |= {name: (lambda w, s=s: s.run([w])) for name, s in sessions.items()}
    names = list(runners)
    for w in waves[:3]:  # warm-up: allocators, thread pools
        for name in names:
            runners[name](w)
    times: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names if name != "pytorch"}
    for r in range(repeats):
        for k, w in enumerate(waves):
            order = names[(r + k) % len(names) :] + names[: (r + k) % len(names)]  # rotate
            took = {}
            for name in order:
                start = time.perf_counter()
                runners[name](w)
                took[name] = time.perf_counter() - start
            for name in names:
                times[name].append(took[name])
            for name in ratios:
                ratios[name].append(took[name] / took["pytorch"])
    return {
        "median_ms": {n: round(1000 * statistics.median(t), 2) for n, t in times.items()},
        "median_ratio_onnx_over_pytorch": {
            n: round(statistics.median(x), 3) for n, x in ratios.items()
        },
        "ratio_quartiles": {
            n: [round(float(q), 3) for q in np.percentile(x, [25, 75])] for n, x in ratios.items()
        },
        "calls_per_model": len(times["pytorch"]),
    }


def train_head(data, train_feats, config: ProbeConfig):
    labels = [data.encode(p) for p in data.train.phones]
    return train_probe(train_feats, labels, len(data.vocab), config)[0]


def score(data, head, test_feats) -> float:
    hyp = probe_decode(head, test_feats)
    return phone_error_rate(data.test.phones, [data.decode(h) for h in hyp])


def ensure_inputs(
    work: Path, student: str | None, lang: str, minutes: float, distill_steps: int
) -> tuple[str, Path]:
    """The student and the language directory, made in `work` where missing (cached)."""
    from distilxlsr.data.synthetic import synthesize_corpus

    data = work / "synth"
    if not (data / lang / "cuts_train.jsonl.gz").is_file():
        synthesize_corpus(data, [lang], minutes, "train", seed=0)
    if not (data / lang / "cuts_test.jsonl.gz").is_file():
        synthesize_corpus(data, [lang], minutes / 2, "test", seed=0)
    if student is not None:
        return student, data / lang
    if distill_steps > 0:  # the demo's recipe, briefly: shuffled English, the shipped teacher
        from distilxlsr.demo import demo_distill_config
        from distilxlsr.distill.train import distill
        from distilxlsr.training.rundir import RunDir

        run_dir = work / f"distilled-{distill_steps}"
        if not run_dir.is_dir() or RunDir(run_dir).latest_checkpoint() is None:
            if not (data / "en" / "cuts_train.jsonl.gz").is_file():
                synthesize_corpus(data, ["en"], 4.0, "train", seed=0)
            distill(demo_distill_config(TEACHER, data, run_dir, distill_steps))
        return str(run_dir), data / lang
    from distilxlsr.models.loading import count_parameters, feature_extractor, load_teacher
    from distilxlsr.models.student import init_student, save_student

    student = str(work / "student-jump2")
    if not (Path(student) / "config.json").is_file():
        teacher = load_teacher(str(TEACHER))
        model, layer_map = init_student(teacher, "jump:2")
        save_student(model, layer_map, "assets/teacher", count_parameters(teacher), student)
        feature_extractor(str(TEACHER), teacher.config).save_pretrained(student)
    return student, data / lang


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--student", help="run or HF directory (default: the shipped teacher's jump:2 student)"
    )
    parser.add_argument(
        "--distill-steps",
        type=int,
        default=0,
        help="without --student: distil the jump:2 student this many steps first (0: as initialised)",
    )
    parser.add_argument("--work", default="/tmp/distilxlsr-bench-onnx", help="scratch directory")
    parser.add_argument("--lang", default="sw")
    parser.add_argument("--minutes", type=float, default=2.0, help="train minutes (test: half)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="latency rounds over the test set")
    parser.add_argument("--probe-steps", type=int, default=ProbeConfig().steps)
    parser.add_argument("--out", default="results/bench-onnx.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    started = time.perf_counter()
    student, lang_dir = ensure_inputs(
        work, args.student, args.lang, args.minutes, args.distill_steps
    )
    spec = resolve_model(student)
    start = time.perf_counter()
    fp32_file, int8_file = export_onnx(spec.path, work / "onnx" / "model.onnx", quantize="int8")
    export_seconds = time.perf_counter() - start

    features = ModelFeatures(spec)  # the harness's PyTorch path
    onnx_models = {
        "onnx_fp32": OnnxFeatures(fp32_file, features.normalize, args.threads),
        "onnx_int8": OnnxFeatures(int8_file, features.normalize, args.threads),
    }
    data = load_language(args.lang, lang_dir)
    test_waves = data.test.waves
    result: dict = {
        "command": "python benchmarks/onnx_export.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other busy "
        "processes (latency is noisy; ratios are per call on the same utterance)",
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        "student": {"path": spec.path, "layers": features.num_layers - 1, "dim": features.dim},
        "student_parameters": features.parameters,
        "files_mb": {
            p.name: round(p.stat().st_size / 1e6, 2)
            for p in (Path(spec.path) / "model.safetensors", fp32_file, int8_file)
            if p.is_file()
        },
        "export_seconds": round(export_seconds, 1),
        "data": {
            "language": args.lang,
            "train_utterances": len(data.train.waves),
            "train_seconds": round(data.train.seconds, 1),
            "test_utterances": len(test_waves),
            "test_seconds": round(data.test.seconds, 1),
            "test_phones": sum(len(p) for p in data.test.phones),
        },
        "threads": args.threads,
    }
    result["agreement"] = {n: agreement(features, m, test_waves) for n, m in onnx_models.items()}
    print(json.dumps(result["agreement"], indent=2), flush=True)

    config = ProbeConfig(steps=args.probe_steps)
    feats = {"pytorch": features} | onnx_models
    cached = {
        n: (extract_features(f, data.train.waves), extract_features(f, test_waves))
        for n, f in feats.items()
    }
    heads = {}
    per: dict[str, float] = {}
    for name, (train_feats, test_feats) in cached.items():
        heads[name] = train_head(data, train_feats, config)
        per[name] = score(data, heads[name], test_feats)
    for name in onnx_models:  # the PyTorch-trained probe, unchanged, on ONNX features
        per[f"pytorch_probe_on_{name}"] = score(data, heads["pytorch"], cached[name][1])
    result["per"] = {k: round(v, 4) for k, v in per.items()}
    result["probe"] = {"steps": config.steps, "lr": config.lr, "seed": config.seed}
    print(json.dumps(result["per"], indent=2), flush=True)

    result["latency_batch1"] = latency(features, onnx_models, test_waves, args.repeats)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["latency_batch1"], indent=2))
    print(f"wrote {args.out} in {result['total_seconds']} s")


if __name__ == "__main__":
    tune_malloc()
    main()
