"""The `distilxlsr` command: subcommands only parse arguments and call library functions."""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

from distilxlsr import __version__, tune_malloc
from distilxlsr.errors import RunStopped, UserError


def _cmd_init_student(args: argparse.Namespace) -> None:
    from distilxlsr.models.layers import parse_layer_map
    from distilxlsr.models.loading import count_parameters, load_config, load_teacher, model_class
    from distilxlsr.models.presets import SHAPES, shape_config
    from distilxlsr.models.student import save_student, student_config

    if args.dry_run:
        # Parameter counts from the config alone: build on the meta device (no memory, no weights).
        import torch

        config = shape_config(args.teacher) if args.teacher in SHAPES else load_config(args.teacher)
        layer_map = parse_layer_map(args.layers, config.num_hidden_layers, args.targets)
        cls = model_class(config.model_type)
        with torch.device("meta"):
            teacher_n = count_parameters(cls(config))
            student_n = count_parameters(cls(student_config(config, layer_map.student_layers)))
        _print_counts(args.teacher, layer_map, teacher_n, student_n)
        return
    if args.out is None:
        raise UserError("init-student needs --out DIR (or --dry-run to print parameter counts).")
    teacher = load_teacher(args.teacher)
    from distilxlsr.models.student import init_student

    student, layer_map = init_student(teacher, args.layers, args.targets, seed=args.seed)
    save_student(student, layer_map, args.teacher, count_parameters(teacher), Path(args.out))
    from distilxlsr.models.loading import feature_extractor

    feature_extractor(args.teacher, teacher.config).save_pretrained(args.out)
    _print_counts(args.teacher, layer_map, count_parameters(teacher), count_parameters(student))
    print(f"student written to {args.out}")


def _print_counts(teacher: str, layer_map, teacher_n: int, student_n: int) -> None:
    print(f"teacher {teacher}: {layer_map.teacher_layers} layers, {teacher_n:,} parameters")
    print(
        f"student {layer_map.spec}: {layer_map.student_layers} layers (from teacher layers "
        f"{[i if i is not None else 'random' for i in layer_map.init]}), {student_n:,} parameters"
    )
    print(f"ratio student/teacher: {student_n / teacher_n:.3f}")


def _cmd_config(args: argparse.Namespace) -> None:
    from distilxlsr.config import resolve_config, shipped_configs

    if args.action == "list":
        for name, path in shipped_configs().items():
            print(f"{name:24s} {config_summary(path.read_text())}")
        return
    if not args.name:
        raise UserError(f"config {args.action} needs a config name (`distilxlsr config list`).")
    path = resolve_config(args.name)
    if args.action == "show":
        print(path.read_text(), end="")
        return
    if not args.file:
        raise UserError("config cp needs a destination file, e.g. `config cp tiny-cpu my.yaml`.")
    target = Path(args.file)
    if target.exists():
        raise UserError(f"'{target}' exists; choose another file (nothing was overwritten).")
    target.write_text(path.read_text())
    print(f"copied {args.name} to {target}; edit it and pass --config {target}")


def _cmd_distill(args: argparse.Namespace) -> None:
    from distilxlsr.distill.recipe import load_distill_config
    from distilxlsr.distill.train import distill

    config = load_distill_config(args.config, args.overrides)
    distill(config)


def _cmd_export(args: argparse.Namespace) -> None:
    from distilxlsr.export import export_hf, find_student

    if args.format == "onnx":
        from distilxlsr.export_onnx import export_onnx_dir

        written = export_onnx_dir(args.source, args.out, args.quantize)
        print(
            f"exported {args.source} to {', '.join(str(p) for p in written)} (run with onnxruntime)"
        )
        return
    if args.quantize:
        raise UserError("--quantize applies to --format onnx only.")
    if args.format == "distilxlsr":
        from distilxlsr.models.interop import export_official

        model_dir, _ = find_student(args.source)
        out = export_official(model_dir, args.out)
        print(f"exported {args.source} to {out} in the DistilXLSR authors' checkpoint layout")
        return
    out = export_hf(args.source, args.out, args.results)
    print(f"exported {args.source} to {out} (load it with transformers.AutoModel.from_pretrained)")
    if args.push_to_hub:
        from distilxlsr.export import push_to_hub

        url = push_to_hub(out, args.push_to_hub)
        print(f"uploaded {out} to {url}")


def _cmd_import_official(args: argparse.Namespace) -> None:
    from distilxlsr.models.interop import import_official

    out = import_official(args.checkpoint, args.out)
    print(f"imported {args.checkpoint} to {out} (a Hugging Face Wav2Vec2Model directory)")


def _prepare_options(args: argparse.Namespace):
    from distilxlsr.data.prepare import PrepareOptions

    options = PrepareOptions(
        max_seconds=args.max_seconds,
        max_reject_share=args.max_reject_share,
        jobs=args.jobs,
        strip_stress=not args.no_strip_stress,
        strip_position=not args.no_strip_position,
    )
    if args.silence_labels is not None:
        options.silence_labels = tuple(args.silence_labels.split(","))
    if args.phone_set:
        options.phone_set = frozenset(x for x in args.phone_set.split(",") if x)
    return options


def _cmd_prepare(args: argparse.Namespace) -> None:
    from distilxlsr.data import prepare

    options = _prepare_options(args)
    if args.corpus == "librispeech":
        written = prepare.prepare_librispeech(
            args.source,
            args.alignments,
            args.out,
            ctm=args.ctm,
            parts=args.parts.split(",") if args.parts else None,
            options=options,
        )
    elif args.corpus == "textgrid":
        if not args.lang:
            raise UserError("prepare textgrid needs --lang (the corpus language code).")
        written = prepare.prepare_textgrid(
            args.source,
            args.alignments,
            args.out,
            lang=args.lang,
            split=args.split,
            ctm=args.ctm,
            options=options,
        )
    elif args.corpus == "fairseq":
        written = prepare.prepare_fairseq(args.source, args.out, lang=args.lang, options=options)
    else:
        if not args.lang:
            raise UserError("prepare commonvoice needs --lang (e.g. --lang el).")
        written = prepare.prepare_commonvoice(
            args.source,
            args.out,
            args.lang,
            phones=args.phones,
            voice=args.voice,
            options=options,
        )
    for split, path in written.items():
        print(f"{split}: {path}")


def _cmd_shuffle(args: argparse.Namespace) -> None:
    from distilxlsr.data.shuffle import write_shuffled

    written = write_shuffled(args.cuts, args.mode, args.out, seed=args.seed, limit=args.limit)
    print(f"wrote {len(written)} shuffled utterances (and the originals) to {args.out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from distilxlsr.evaluate.harness import run_evaluation
    from distilxlsr.evaluate.recipe import load_evaluation
    from distilxlsr.evaluate.report import report_markdown

    config = load_evaluation(args.config, args.overrides, evaluate_options(args))
    if args.steps is not None:  # the steps of the recogniser the mode trains
        section = "probe" if config.mode == "probe" else "finetune"
        values = evaluate_options(args) | {section: {"steps": args.steps}}
        config = load_evaluation(args.config, args.overrides, values)
    results = run_evaluation(config)
    print(report_markdown(results))
    out = Path(config.out)
    print(f"results in {out / 'results.json'}, {out / 'results.md'} and {out / 'per.png'}")


def evaluate_options(args: argparse.Namespace) -> dict:
    """`evaluate`'s options as settings of its config (`--steps` aside, which needs the mode):
    the options given, each a shortcut for its key."""
    values: dict = {}
    if args.model:
        values["models"] = list(args.model)
    if args.langs:
        values["langs"] = [x for x in args.langs.split(",") if x]
    if args.seeds is not None:
        values["seeds"] = args.seeds  # `0,1,2`, read as the list it is
    if args.compare is not None:
        values["compare"] = [x.strip() for x in args.compare.split(",")]
    if args.floor_steps is not None:
        values["floor_probe"] = {"steps": args.floor_steps}
    for key in ("data", "out", "mode", "split", "similarity", "bootstrap", "jobs"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return values


def _cmd_bench(args: argparse.Namespace) -> None:
    from distilxlsr.bench.suite import run_bench

    sections = [x for x in args.sections.split(",") if x] if args.sections else None
    run_bench(args.out, sections)
    print(f"wrote {args.out}")


def _cmd_synth(args: argparse.Namespace) -> None:
    from distilxlsr.data.synthetic import held_out_voices, synthesize_corpus

    langs = [x for x in args.langs.split(",") if x]
    if args.split in ("dev", "test"):
        check = held_out_voices()
        counts = [
            f"{lang} {check['voices'][lang][args.split]}"
            for lang in langs
            if lang in check["voices"]
        ]
        print(
            f"{args.split} voices per language: {', '.join(counts)}; voice variants shared with any "
            f"training split of any language: {check['shared']}"
        )
    written = synthesize_corpus(
        Path(args.out), langs, args.minutes, args.split, seed=args.seed, jobs=args.jobs
    )
    for manifest in written:
        print(manifest)


def _cmd_pretrain_teacher(args: argparse.Namespace) -> None:
    from distilxlsr.pretraining.pretrain import pretrain_teacher
    from distilxlsr.pretraining.recipe import load_pretrain_config

    model_dir = pretrain_teacher(load_pretrain_config(args.config, args.overrides))
    print(f"teacher written to {model_dir}")


def _cmd_demo(args: argparse.Namespace) -> None:
    from distilxlsr.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)


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
    p.set_defaults(func=_cmd_init_student)


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
    p.set_defaults(func=_cmd_distill)


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
    p.set_defaults(func=_cmd_prepare)


def _parser_import_official(sub) -> None:
    p = sub.add_parser(
        "import-official", help="convert an authors' DistilXLSR checkpoint to Hugging Face"
    )
    p.add_argument("checkpoint", help="the authors' .pt checkpoint (read safely, nothing executes)")
    p.add_argument("--out", required=True, help="output HF model directory")
    p.set_defaults(func=_cmd_import_official)


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
    p.set_defaults(func=_cmd_export)


def _parser_shuffle(sub) -> None:
    p = sub.add_parser("shuffle", help="write phoneme-shuffled audio to listen to")
    p.add_argument("--cuts", required=True, help="cut manifest or corpus directory (train split)")
    p.add_argument("--mode", default="utterance", help="utterance | word | segment | none")
    p.add_argument("--out", required=True, help="output directory for .wav files")
    p.add_argument("--limit", type=int, default=20, help="number of utterances (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_shuffle)


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
    p.add_argument("--mode", choices=["probe", "finetune"], help="mode (default probe)")
    p.add_argument("--out", help="out: output directory")
    p.add_argument(
        "--seeds", help="seeds: comma-separated, e.g. 0,1,2 (default 0; mean ± std and intervals)"
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        help="probe.steps (--mode probe) or finetune.steps (--mode finetune): training steps "
        "per language",
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
    p.set_defaults(func=_cmd_evaluate)


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
    p.set_defaults(func=_cmd_synth)


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
    p.set_defaults(func=_cmd_pretrain_teacher)


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
    p.set_defaults(func=_cmd_bench)


def _parser_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline offline, on generated data")
    p.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    p.add_argument("--quick", action="store_true", help="toy size, about 20 seconds")
    p.set_defaults(func=_cmd_demo)


def _parser_config(sub) -> None:
    p = sub.add_parser("config", help="list, show or copy the shipped configs")
    p.add_argument("action", choices=["list", "show", "cp"])
    p.add_argument("name", nargs="?", help="a shipped config's name (show, cp)")
    p.add_argument("file", nargs="?", help="where to copy it (cp)")
    p.set_defaults(func=_cmd_config)


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
        _parser_evaluate,
        _parser_synth,
        _parser_pretrain_teacher,
        _parser_bench,
        _parser_demo,
        _parser_config,
    ):
        add(sub)
    return parser


CONFIG_COMMANDS = ("distill", "pretrain-teacher")
"""Commands whose settings are `key=value` arguments (`--key value` is rewritten to them)."""

_OWN_OPTIONS = {"--config", "--help", "-h"}


def config_summary(text: str) -> str:
    """A shipped config's first comment line, with the lines a trailing backslash continues."""
    parts = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        part = line.lstrip("#").strip()
        continued = part.endswith("\\")
        parts.append(part.removesuffix("\\").strip())
        if not continued:
            break
    return " ".join(p for p in parts if p)


def settings_style(argv: list[str]) -> list[str]:
    """`distill --teacher T --train.max_steps 30` (the options style of the other commands) as
    `distill teacher=T train.max_steps=30`: distill and pretrain-teacher take their settings as
    key=value, and say so when a --key has no value."""
    if not argv or argv[0] not in CONFIG_COMMANDS:
        return argv
    out, i = [argv[0]], 1
    while i < len(argv):
        arg = argv[i]
        key, eq, value = arg[2:].partition("=")
        if not arg.startswith("--") or arg == "--" or arg.split("=")[0] in _OWN_OPTIONS:
            out.append(arg)
            if arg in ("--config",) and i + 1 < len(argv):
                out.append(argv[i + 1])
                i += 1
        elif eq:
            out.append(f"{key.replace('-', '_')}={value}")
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append(f"{key.replace('-', '_')}={argv[i + 1]}")
            i += 1
        else:
            raise UserError(
                f"{arg} needs a value; {argv[0]} takes settings as key=value, e.g. "
                f"{key.replace('-', '_')}=VALUE (`distilxlsr {argv[0]} --help` lists them)."
            )
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = settings_style(argv)
    except UserError as err:
        print(f"distilxlsr {argv[0]}: error: {err}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        args.alignments = args.alignments_opt or args.alignments
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tune_malloc()  # the process is ours: keep freed tensor memory (see distilxlsr._malloc)
    import transformers

    transformers.logging.disable_progress_bar()  # "Loading weights" bars on every model load
    start = time.perf_counter()
    try:
        args.func(args)
    except UserError as err:
        print(f"distilxlsr {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RunStopped as err:  # checkpointed: a stopped run is no success (128 + the signal)
        name = signal.Signals(err.signum).name
        print(
            f"distilxlsr {args.command}: stopped by {name} at step {err.step}, before the last "
            f"step; exit status {err.exit_code}",
            file=sys.stderr,
        )
        return err.exit_code
    except KeyboardInterrupt:
        print(f"distilxlsr {args.command}: interrupted", file=sys.stderr)
        return 130
    if args.command == "demo":
        print(f"total time {time.perf_counter() - start:.0f} s")
    return 0
