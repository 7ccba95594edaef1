"""The `distilxlsr` command's argument parser: one builder per subcommand, the option types,
and the parser that suggests the nearest choice."""

from __future__ import annotations

import argparse
import difflib
import math
import re

import distilxlsr.cli.commands as commands
from distilxlsr import __version__


def _positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _fraction(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} must lie between 0 and 1")
    return value


def _language_code(text: str) -> str:
    """argparse type: a language code, also a directory name (no path separators)."""
    if not re.fullmatch(r"[A-Za-z0-9][\w-]*", text):
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a language code (letters, digits, - and _ only)"
        )
    return text


def _positive_number(text: str) -> float:
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number above 0")
    return value


def _parser_init_student(sub) -> None:
    p = sub.add_parser(
        "init-student",
        help="build a layer-jumped student from a teacher (distill starts from it with "
        "student.init=DIR)",
    )
    p.add_argument(
        "--teacher",
        required=True,
        help="HF model directory, hub id, or a shape name with --dry-run",
    )
    p.add_argument(
        "--layers",
        default="jump:2",
        help="jump:K | first:N | random:N | list:i,j,... (default jump:2)",
    )
    p.add_argument(
        "--targets", default="auto", help="teacher layers distilled towards (default auto)"
    )
    p.add_argument("--out", help="output directory (an HF model directory)")
    p.add_argument("--seed", type=int, default=0, help="seed for random:N layers")
    p.add_argument(
        "--dry-run", action="store_true", help="only print parameter counts, from the config alone"
    )
    p.set_defaults(func=commands.cmd_init_student)


def _parser_distill(sub) -> None:
    from distilxlsr.config import keys_help
    from distilxlsr.distill.recipe import REQUIRED, DistillConfig

    p = sub.add_parser(
        "distill",
        help="distil a student (resumes an existing run directory)",
        epilog=keys_help(DistillConfig, REQUIRED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        help="a shipped config's name (`distilxlsr config list`) or a YAML file holding the "
        "differences from the defaults",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides, e.g. train.max_steps=100 (--train.max_steps 100 works too)",
    )
    p.set_defaults(func=commands.cmd_distill)


def _parser_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare", help="turn a corpus into lhotse manifests (corpus-directory layout)"
    )
    p.add_argument("corpus", choices=["librispeech", "textgrid", "fairseq", "commonvoice"])
    p.add_argument(
        "source",
        help="corpus root (librispeech, fairseq, commonvoice) or audio directory (textgrid)",
    )
    p.add_argument(
        "alignments", nargs="?", help="TextGrid directory (textgrid); or use --alignments"
    )
    p.add_argument("--alignments", dest="alignments_opt", help="MFA TextGrid directory")
    p.add_argument("--ctm", help="Kaldi CTM phone alignments instead of TextGrids")
    p.add_argument("--out", required=True, help="output corpus directory")
    p.add_argument(
        "--lang",
        type=_language_code,
        help="language code (fairseq: default the directory name)",
    )
    p.add_argument("--split", default="train", help="split name (textgrid; default train)")
    p.add_argument(
        "--parts", help="LibriSpeech parts, e.g. train-clean-100,dev-clean (default all)"
    )
    p.add_argument(
        "--phones", help="commonvoice: a clip<TAB>phones file instead of eSpeak phonemization"
    )
    p.add_argument("--voice", help="commonvoice: the eSpeak voice (default from --lang)")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    p.add_argument(
        "--max-seconds", type=_positive_number, default=36.0, help="longer utterances are rejected"
    )
    p.add_argument(
        "--max-reject-share",
        type=_fraction,
        default=0.05,
        help="abort above this share of rejects (0 to 1)",
    )
    p.add_argument("--silence-labels", help="comma-separated silence labels (default: ,sil,sp,spn)")
    p.add_argument("--phone-set", help="comma-separated allowed phones (others are rejected)")
    p.add_argument("--no-strip-stress", action="store_true", help="keep ARPAbet stress digits")
    p.add_argument(
        "--no-strip-position", action="store_true", help="keep Kaldi _B/_I/_E/_S suffixes"
    )
    p.set_defaults(func=commands.cmd_prepare)


def _parser_import_official(sub) -> None:
    p = sub.add_parser(
        "import-official", help="convert an authors' DistilXLSR checkpoint to Hugging Face"
    )
    p.add_argument("checkpoint", help="the authors' .pt checkpoint (read safely, nothing executes)")
    p.add_argument("--out", required=True, help="output HF model directory")
    p.set_defaults(func=commands.cmd_import_official)


def _parser_export(sub) -> None:
    p = sub.add_parser(
        "export", help="write a student as a plain Hugging Face model directory (or ONNX)"
    )
    p.add_argument("source", help="run directory (its newest checkpoint) or HF model directory")
    p.add_argument(
        "--out", required=True, help="output directory (hf, onnx) or .pt file (distilxlsr)"
    )
    p.add_argument(
        "--format",
        default="hf",
        choices=["hf", "distilxlsr", "onnx"],
        help="hf (default), distilxlsr: the authors' fairseq-style checkpoint, or onnx: "
        "OUT/model.onnx for onnxruntime (needs pip install 'distilxlsr[onnx]')",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        help="with --format onnx: also write OUT/model.int8.onnx (dynamic int8 MatMul weights)",
    )
    p.add_argument("--results", help="an evaluation results.json to include in the model card")
    p.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="also upload the exported folder to this Hugging Face hub repository (hf format)",
    )
    p.set_defaults(func=commands.cmd_export)


def _parser_shuffle(sub) -> None:
    p = sub.add_parser("shuffle", help="write phoneme-shuffled audio to listen to")
    p.add_argument("--cuts", required=True, help="cut manifest or corpus directory (train split)")
    p.add_argument("--mode", default="utterance", help="utterance | word | segment | none")
    p.add_argument("--out", required=True, help="output directory for .wav files")
    p.add_argument("--limit", type=int, default=20, help="number of utterances (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_shuffle)


def _parser_shard(sub) -> None:
    p = sub.add_parser(
        "shard",
        help="write a corpus split as lhotse Shar shards that distill reads, each process its own",
    )
    p.add_argument("data", help="a corpus directory ROOT, ROOT/<lang> or a cut manifest")
    p.add_argument("--out", required=True, help="the shard directory (distill: data.train=OUT)")
    p.add_argument("--split", default="train", help="the split to shard (default: train)")
    p.add_argument(
        "--shard-size",
        type=_positive_int,
        default=1000,
        help="cuts per shard (default 1000, about 3.4 h of LibriSpeech); write at least one "
        "shard per training process",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle before sharding")
    p.add_argument("--jobs", type=_positive_int, default=1, help="shards written at once")
    p.set_defaults(func=commands.cmd_shard)


def _parser_plan(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="per-GPU memory, the largest batch and the hours of a distillation, before it runs",
    )
    p.add_argument(
        "--teacher",
        required=True,
        help="a model shape (xls-r-300m, xls-r-1b, xls-r-2b, xlsr-53), a model directory or hub id",
    )
    p.add_argument("--layers", default="jump:2", help="the student's layer map (default jump:2)")
    p.add_argument("--gpus", type=_positive_int, default=8, help="GPUs in all (default 8)")
    p.add_argument("--gpus-per-node", type=_positive_int, default=8)
    p.add_argument(
        "--gpu-memory", type=_positive_number, default=80.0, help="GB per GPU (default 80)"
    )
    p.add_argument(
        "--batch-seconds",
        type=float,
        default=200.0,
        help="audio seconds per GPU per step (default 200, xlsr300m-half's; 0: the largest "
        "that fits)",
    )
    p.add_argument("--utterance-seconds", type=_positive_number, default=15.0)
    p.add_argument("--steps", type=_positive_int, default=200_000)
    p.add_argument("--hours", type=_positive_number, default=960.0, help="hours of audio")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--teacher-dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--optimizer-sharding", default="none", choices=["none", "zero1"])
    p.add_argument(
        "--network-gbps", type=_positive_number, default=100.0, help="between nodes (Gb/s)"
    )
    p.add_argument("--json", help="also write the plan as JSON to this file")
    p.set_defaults(func=commands.cmd_plan)


def _parser_evaluate(sub) -> None:
    def keys() -> str:
        from distilxlsr.config import keys_help
        from distilxlsr.evaluate.recipe import REQUIRED, EvaluationConfig

        return keys_help(EvaluationConfig, REQUIRED)

    p = sub.add_parser(
        "evaluate",
        help="cross-lingual phone recognition (PER) of models",
        description="Every option is a shortcut for a setting (listed below); a --config file\n"
        "holds the settings that differ from the defaults; key=value arguments come last.",
        epilog=keys,  # listed when --help asks (it imports torch)
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        help="a shipped evaluation config's name (`distilxlsr config list`) or a YAML file "
        "holding the differences from the defaults",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value settings, e.g. probe.steps=200 seeds=0,1,2 (applied last)",
    )
    p.add_argument(
        "--model",
        action="append",
        metavar="[NAME=]MODEL",
        help="models: HF dir, hub id, run dir, `logmel` or `untrained:M`, optionally labelled "
        "NAME=MODEL (NAME: letters, digits, _.:+-; the row's name in the results); repeat; the "
        "first is the reference",
    )
    p.add_argument("--data", help="data: corpus directory (ROOT or ROOT/<lang>)")
    p.add_argument(
        "--langs",
        help="langs: comma-separated languages (default: all with a train split and the split "
        "scored)",
    )
    p.add_argument(
        "--mode",
        choices=["probe", "superb", "finetune"],
        help="probe (linear, frozen layers; default), superb (frozen layers into a small "
        "Transformer) or finetune (the whole model)",
    )
    p.add_argument("--out", help="out: output directory")
    p.add_argument(
        "--seeds", help="seeds: comma-separated, e.g. 0,1,2 (default 0; mean ± std and intervals)"
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        help="probe.steps, superb.steps or finetune.full.steps, by the mode: training steps per "
        "language",
    )
    p.add_argument(
        "--floor-steps",
        type=_positive_int,
        help="floor_probe.steps: probe steps of the logmel floor (its own probe, chosen on dev "
        "for log-mel)",
    )
    p.add_argument(
        "--similarity",
        action="store_true",
        default=None,
        help="similarity: per-layer CKA of students vs the first model",
    )
    p.add_argument(
        "--split",
        choices=["test", "dev", "valid"],
        help="split: the split to score on (default: per language the first present of test, "
        "valid, dev); languages without it are skipped, or an error if --langs names them",
    )
    p.add_argument(
        "--compare",
        metavar="A:B[,C:D]",
        help="compare: model pairs (names or labels) whose PER difference is tested (default: "
        "every model against the first); p-values are Holm-corrected over the pairs listed",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        metavar="N",
        help="bootstrap: paired, hierarchical bootstrap resamples (seeds once for every "
        "language, test voices within each language, utterances within each voice) behind the "
        "95%% intervals and p-values (default 1000, at least 100)",
    )
    p.add_argument(
        "--jobs",
        type=_positive_int,
        help="jobs: worker processes on the CPU, one language each at a time (same results; "
        "each loads every model)",
    )
    p.set_defaults(func=commands.cmd_evaluate)


def _parser_synth(sub) -> None:
    p = sub.add_parser(
        "synth", help="synthesize a multilingual corpus with exact phone alignments (eSpeak NG)"
    )
    from distilxlsr.data.synthetic import EVAL_LANGUAGES, SPLITS

    p.add_argument(
        "--langs",
        required=True,
        help="comma-separated languages: en (the distillation language) and the evaluation "
        f"languages {','.join(EVAL_LANGUAGES)}",
    )
    p.add_argument(
        "--minutes", type=_positive_number, required=True, help="minutes of speech per language"
    )
    p.add_argument(
        "--split",
        default="train",
        choices=list(SPLITS),
        help="train (probe training, English distillation), dev (choices), test (reports), "
        "pretrain (teachers' corpus; its own speakers)",
    )
    p.add_argument("--out", required=True, help="corpus directory (ROOT/<lang>/...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    p.set_defaults(func=commands.cmd_synth)


def _parser_pretrain_teacher(sub) -> None:
    from distilxlsr.config import keys_help
    from distilxlsr.pretraining.recipe import REQUIRED as PRETRAIN_REQUIRED
    from distilxlsr.pretraining.recipe import PretrainConfig

    p = sub.add_parser(
        "pretrain-teacher",
        help="pretrain the small multilingual teacher (resumes)",
        epilog=keys_help(PretrainConfig, PRETRAIN_REQUIRED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="a shipped config's name or a YAML file (differences)")
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. data=data/synth out=runs/teacher"
    )
    p.set_defaults(func=commands.cmd_pretrain_teacher)


def _parser_bench(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure throughput, fraction of peak, latency and memory ratios"
    )
    p.add_argument("--out", required=True, help="JSON file for the results")
    p.add_argument(
        "--sections",
        help="comma-separated subset of distill,inference,shuffle,loader,padding,synth "
        "(the default: all of these), gpu, gpu-sweep, gpu-split and gpu-shapes (XLS-R-shaped "
        "sizes; need a GPU; gpu-sweep: batch sizes until out of memory; gpu-split: the step's "
        "time by phase and the CNN alone; gpu-shapes: static vs dynamic batch shapes)",
    )
    p.set_defaults(func=commands.cmd_bench)


def _parser_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline offline, on generated data")
    p.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    p.add_argument("--quick", action="store_true", help="toy size, about 20 seconds")
    p.set_defaults(func=commands.cmd_demo)


def _parser_config(sub) -> None:
    p = sub.add_parser("config", help="list, show or copy the shipped configs")
    p.add_argument("action", choices=["list", "show", "cp"])
    p.add_argument("name", nargs="?", help="a shipped config's name (show, cp)")
    p.add_argument("file", nargs="?", help="where to copy it (cp)")
    p.set_defaults(func=commands.cmd_config)


class _Parser(argparse.ArgumentParser):
    """argparse that suggests the nearest choice for a mistyped subcommand or option value, and
    whose epilog may be a function, called when the help is shown."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()

    def error(self, message: str):
        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2))
            choices = choices or [c.strip() for c in found.group(2).split(",")]
            close = difflib.get_close_matches(found.group(1), choices, n=1)
            if close:
                message += f"; did you mean '{close[0]}'?"
        super().error(message)


def _parser_finetune(sub) -> None:
    from distilxlsr.asr.recipe import REQUIRED as FINETUNE_REQUIRED
    from distilxlsr.asr.recipe import FinetuneConfig
    from distilxlsr.config import keys_help

    p = sub.add_parser(
        "finetune",
        help="fine-tune a model into a speech recogniser for one language (resumes)",
        epilog=keys_help(FinetuneConfig, FINETUNE_REQUIRED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="a shipped config's name or a YAML file (differences)")
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides, e.g. model=runs/student data=data/synth/sw out=runs/asr-sw",
    )
    p.set_defaults(func=commands.cmd_finetune)


def _parser_transcribe(sub) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files with a recogniser made by finetune",
    )
    p.add_argument("--model", required=True, help="the recogniser directory (RUN/model)")
    p.add_argument("audio", nargs="+", help="audio files (any rate; resampled to 16 kHz)")
    p.add_argument(
        "--no-lm", action="store_true", help="greedy decoding, without the language model"
    )
    p.add_argument(
        "--lm", help="another ARPA language model over the recogniser's tokens (its own by default)"
    )
    p.set_defaults(func=commands.cmd_transcribe)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="distilxlsr",
        description="Distil multilingual wav2vec 2.0-family speech models (DistilXLSR).",
    )
    parser.add_argument("--version", action="version", version=f"distilxlsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _parser_init_student,
        _parser_distill,
        _parser_prepare,
        _parser_import_official,
        _parser_export,
        _parser_shuffle,
        _parser_shard,
        _parser_plan,
        _parser_evaluate,
        _parser_synth,
        _parser_pretrain_teacher,
        _parser_finetune,
        _parser_transcribe,
        _parser_bench,
        _parser_demo,
        _parser_config,
    ):
        add(sub)
    return parser
