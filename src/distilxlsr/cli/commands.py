"""What each subcommand of `distilxlsr` does with its parsed arguments: call the library
functions (imported when the command runs, so that `--help` stays quick)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distilxlsr.errors import UserError


def cmd_init_student(args: argparse.Namespace) -> None:
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


def cmd_config(args: argparse.Namespace) -> None:
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


def cmd_distill(args: argparse.Namespace) -> None:
    from distilxlsr.distill.recipe import load_distill_config
    from distilxlsr.distill.train import distill

    config = load_distill_config(args.config, args.overrides)
    distill(config)


def cmd_export(args: argparse.Namespace) -> None:
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


def cmd_import_official(args: argparse.Namespace) -> None:
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


def cmd_prepare(args: argparse.Namespace) -> None:
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


def cmd_shuffle(args: argparse.Namespace) -> None:
    from distilxlsr.data.shuffle import write_shuffled

    written = write_shuffled(args.cuts, args.mode, args.out, seed=args.seed, limit=args.limit)
    print(f"wrote {len(written)} shuffled utterances (and the originals) to {args.out}")


def cmd_shard(args: argparse.Namespace) -> None:
    from distilxlsr.data.shard_writer import write_shards

    index = write_shards(
        args.data, args.out, args.split, args.shard_size, seed=args.seed, jobs=args.jobs
    )
    print(
        f"wrote {len(index['shards'])} shard(s), {index['num_cuts']} cuts, {index['hours']:.2f} h "
        f"to {args.out}; distil from them with data.train={args.out}"
    )


def cmd_plan(args: argparse.Namespace) -> None:
    from pathlib import Path

    from distilxlsr.plan import describe, plan

    result = plan(
        args.teacher,
        args.layers,
        gpus=args.gpus,
        gpu_memory_gb=args.gpu_memory,
        batch_seconds=args.batch_seconds or None,
        utterance_seconds=args.utterance_seconds,
        steps=args.steps,
        precision="no" if args.precision == "fp32" else args.precision,
        teacher_dtype=args.teacher_dtype,
        optimizer_sharding=args.optimizer_sharding,
        hours=args.hours,
        network_gbps=args.network_gbps,
        gpus_per_node=args.gpus_per_node,
    )
    print(describe(result))
    if args.json:
        Path(args.json).write_text(result.to_json() + "\n")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from distilxlsr.evaluate.harness import run_evaluation
    from distilxlsr.evaluate.recipe import load_evaluation
    from distilxlsr.evaluate.report import report_markdown

    config = load_evaluation(args.config, args.overrides, evaluate_options(args))
    if args.steps is not None:  # the steps of the recogniser the mode trains
        steps = (
            {"finetune": {"full": {"steps": args.steps}}}
            if config.mode == "finetune"
            else {config.mode: {"steps": args.steps}}
        )
        values = evaluate_options(args) | steps
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


def cmd_bench(args: argparse.Namespace) -> None:
    from distilxlsr.bench.suite import run_bench

    sections = [x for x in args.sections.split(",") if x] if args.sections else None
    run_bench(args.out, sections)
    print(f"wrote {args.out}")


def cmd_synth(args: argparse.Namespace) -> None:
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


def cmd_pretrain_teacher(args: argparse.Namespace) -> None:
    from distilxlsr.pretraining.pretrain import pretrain_teacher
    from distilxlsr.pretraining.recipe import load_pretrain_config

    model_dir = pretrain_teacher(load_pretrain_config(args.config, args.overrides))
    print(f"teacher written to {model_dir}")


def cmd_finetune(args: argparse.Namespace) -> None:
    from distilxlsr.asr.finetune import finetune
    from distilxlsr.asr.recipe import load_finetune_config

    model_dir = finetune(load_finetune_config(args.config, args.overrides))
    print(f"recogniser: {model_dir} (distilxlsr transcribe --model {model_dir} AUDIO...)")


def cmd_transcribe(args: argparse.Namespace) -> None:
    from distilxlsr.asr.recogniser import Recogniser, read_audio

    recogniser = Recogniser(args.model, use_lm=not args.no_lm, lm=args.lm)
    skipped = []
    for path in args.audio:
        try:
            wave = read_audio(path)
            recogniser.check(wave, f"'{path}'")
        except UserError as err:  # the other files are still transcribed
            print(f"skipped: {err}", file=sys.stderr)
            skipped.append(path)
            continue
        text = recogniser.transcribe([wave])[0]
        print(f"{path}\t{text if isinstance(text, str) else ' '.join(text)}")
    if skipped:
        raise UserError(f"{len(skipped)} of {len(args.audio)} files skipped (said above).")


def cmd_demo(args: argparse.Namespace) -> None:
    from distilxlsr.demo import run_demo

    run_demo(Path(args.out), quick=args.quick)


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
