"""The `distilxlsr` command: subcommands only parse arguments (`cli.parser`) and call library
functions (`cli.commands`)."""

from __future__ import annotations

import os
import signal
import sys
import time

from distilxlsr import tune_malloc
from distilxlsr.cli.parser import build_parser
from distilxlsr.errors import RunStopped, UserError

CONFIG_COMMANDS = ("distill", "pretrain-teacher")
"""Commands whose settings are `key=value` arguments (`--key value` is rewritten to them)."""

_OWN_OPTIONS = {"--config", "--help", "-h"}


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
