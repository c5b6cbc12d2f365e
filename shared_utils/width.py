"""One convention for demo-sized backbones: `--width_mult W` scales every conv/BN stage's channel count.

W = 1.0 (the default) builds the original architecture exactly (same keys, shapes and construction order); smaller
values make CPU-sized models for the demo. Heads take the backbone's (scaled) feature size, so they follow. The
value is a user flag, so it is saved in each checkpoint's args and the feature hooks rebuild the same width.
"""

from __future__ import annotations

import argparse

from shared_utils.cli import fail

WIDTH_HELP = "channel width multiplier of the backbone (demo-sized models; 1.0 = the original architecture)"


def add_width_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add `--width_mult` (float, default 1.0) to `parser` (or an argument group)."""
    parser.add_argument("--width_mult", default=1.0, type=positive_float, help=WIDTH_HELP)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
    return value


def scaled(channels: int, width_mult: float = 1.0) -> int:
    """`channels` x `width_mult`, rounded, at least 1; exactly `channels` at 1.0."""
    return max(1, int(round(channels * width_mult)))


def saved_width(checkpoint: dict) -> float:
    """The --width_mult a checkpoint was trained with (1.0 when its args lack it, e.g. the authors' releases)."""
    saved = checkpoint.get("args") or {}
    if isinstance(saved, argparse.Namespace):
        saved = vars(saved)
    return float(saved.get("width_mult", 1.0)) if isinstance(saved, dict) else 1.0


def check_saved_width(checkpoint: dict, width_mult: float, what: str) -> None:
    """Fail with one clear line when `checkpoint` was trained at another --width_mult than the one asked for."""
    saved = saved_width(checkpoint)
    if saved != float(width_mult):
        fail(f"{what} was trained with --width_mult {saved:g}, not {float(width_mult):g}: pass --width_mult {saved:g}")
