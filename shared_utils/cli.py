"""One-line user errors (exit code 2, no traceback) and an argparse parser that reports the same way."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_USAGE = 2


class UserError(Exception):
    """A problem with the user's flags, paths or data. Reported as one line and exit code 2."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def default_note(action: argparse.Action) -> str:
    """'(required)' or '(default: X)' for an option's help line ('none' for an empty default)."""
    if action.required:
        return "(required)"
    default = action.default
    return "(default: none)" if default is None or default == "" or default == [] else "(default: %(default)s)"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """--help shows every option's default: `(default: X)` is appended unless the help text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS:
            return text
        if "default" in text.lower() or "(required)" in text or isinstance(action, argparse._HelpAction):
            return text
        return f"{text} {default_note(action)}".lstrip()


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: `prog: error: <message> (see --help)` and exit code 2, and --help that shows
    each option's default (DefaultsHelpFormatter) unless another formatter_class is given."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        for action in self._actions:  # options without help text get a line too, so their default is shown
            if not action.help and action.option_strings and action.default is not argparse.SUPPRESS:
                action.help = default_note(action)
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_USAGE)


def run_cli(main: Callable[..., object], *args: object) -> None:
    """Run `main(*args)`, turning a UserError into one stderr line and exit code 2."""
    try:
        main(*args)
    except UserError as err:
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "error"
        sys.stderr.write(f"{prog}: error: {err}\n")
        sys.exit(EXIT_USAGE)


def require_dir(path: str | os.PathLike, what: str) -> str:
    """Return `path` as a string, or fail with a clear line when it is not an existing directory."""
    path = os.fspath(path)
    if not path or not os.path.isdir(path):
        fail(f"{what} not found: '{path}' is not a directory")
    return path


def require_file(path: str | os.PathLike, what: str) -> str:
    """Return `path` as a string, or fail with a clear line when it is not an existing file."""
    path = os.fspath(path)
    if not path or not os.path.isfile(path):
        fail(f"{what} not found: '{path}' is not a file")
    return path


def require_choice(value: str, choices: list[str] | tuple[str, ...], flag: str) -> str:
    if value not in choices:
        fail(f"unknown {flag} '{value}' (choose from: {', '.join(choices)})")
    return value


# ------------------------------------------------------------------------------------------ opt-in fixes
# One convention for all four methods: the defaults run the original code's recipe; every behaviour change that
# could have shaped a reported number is a named fix, switched on with `--fix NAME[,NAME...]` (repeatable;
# `--fix all` turns on every fix of that entry point). Each method README's fixes table lists the names.


def add_fix_flag(parser: argparse.ArgumentParser, fixes: dict[str, str]) -> None:
    """Add `--fix` to `parser`; `fixes` maps each fix name to a one-line description (shown in --help)."""
    names = sorted(fixes)

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",") if part.strip()]
        if chosen == ["all"]:
            return list(names)
        unknown = [name for name in chosen if name not in fixes]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown fix '{unknown[0]}' (choose from: {', '.join(names) or 'none'}, or all)"
            )
        return chosen

    listing = "; ".join(f"{name}: {fixes[name]}" for name in names) or "none"
    parser.add_argument(
        "--fix",
        type=parse,
        action="extend",
        default=[],
        metavar="NAME[,NAME]",
        help=f"opt-in fixes of the original recipe (default: none = the original's behaviour). {listing}",
    )


def fix_enabled(args: argparse.Namespace, name: str) -> bool:
    """Whether the user asked for fix `name` with --fix (absent flag = faithful)."""
    return name in (getattr(args, "fix", None) or [])


# ------------------------------------------------------------------------------------------ run flags
# The flags none of the originals had, defined once with one spelling, default and meaning; each opts.py adds the
# ones its entry point implements, next to its original flags (which stay as the original spelled them).
# Iteration caps: --iters_per_epoch cuts every epoch short (smoke runs); --max_iters stops the whole run after that
# many optimiser steps in total (the global step, resumed runs included), with the latest checkpoint written first.

RUN_FLAGS: dict[str, tuple[tuple[str, ...], dict]] = {
    "output_dir": (
        ("--output_dir",),
        dict(default="", type=str, help="run folder: logs, checkpoints, auto-resume (default: the original's layout)"),
    ),
    "seed": (("--seed",), dict(type=int, help="base seed; each process adds its rank")),
    "amp": (("--amp",), dict(action="store_true", help="bf16 autocast on CUDA (no effect on the CPU)")),
    "channels_last": (
        ("--channels_last",),
        dict(action="store_true", help="channels_last_3d memory format (a CUDA speed-up)"),
    ),
    "no_tensorboard": (("--no_tensorboard",), dict(action="store_true", help="do not write TensorBoard event files")),
    "save_every_iters": (
        ("--save_every_iters",),
        dict(default=0, type=int, help="also write the resumable latest checkpoint every N iterations (0: epoch ends)"),
    ),
    "iters_per_epoch": (
        ("--iters_per_epoch",),
        dict(default=0, type=int, help="cap the iterations of every epoch (0: a full pass; for smoke runs)"),
    ),
    "max_iters": (
        ("--max_iters", "--stop_at_iter"),
        dict(
            default=0,
            type=int,
            dest="max_iters",
            help="stop the run after this many optimiser steps in total (0: no cap); the latest checkpoint is "
            "written first, so a later run resumes exactly",
        ),
    ),
}


def add_run_flags(parser, *names: str, seed_default: int | None = 0) -> None:
    """Add the named RUN_FLAGS to `parser` (a parser or an argument group). seed_default: the seed the original
    hard-coded (the one default that is each method's own)."""
    for name in names:
        flags, kwargs = RUN_FLAGS[name]
        if name == "seed":
            kwargs = {**kwargs, "default": seed_default}
        parser.add_argument(*flags, **kwargs)
