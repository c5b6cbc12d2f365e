"""Command-line flags of the original MemDPC scripts (memdpc/main.py and eval/test.py), same names and defaults.

Flags below the "extensions" banner are new. The defaults run the released recipe; every change of it that could
move a reported number is a named opt-in fix, `--fix NAME[,NAME]` (memdpc/README.md, "Opt-in fixes").
"""

from __future__ import annotations

import argparse
import os

from shared_utils.cli import ArgumentParser, add_fix_flag, add_run_flags, fix_enabled
from shared_utils.width import add_width_flag

# Where the README's data preparation writes the lists (`write_splits --out data/lists` from the repository root,
# the same folder VTDL's scripts read): anchored at the repository, so `cd memdpc && python main.py` and
# `cd memdpc/eval && python test.py` both find them.
DEFAULT_CSV_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "lists")

SCHEDULE_FIX = {
    "schedule": "multiply the LR by 0.1 at EVERY milestone (the released multiplier drops once and stays at 0.1)",
}
SCALE_FIX = {
    "bilinear_scale": "rescale the 224 crop to --img_dim with bilinear interpolation (the original: nearest)",
}
PRETRAIN_FIXES = {**SCHEDULE_FIX, **SCALE_FIX}
EVAL_FIXES = {
    **SCHEDULE_FIX,
    **SCALE_FIX,
    "ft_lr": "--train_what ft: backbone and GRUs at lr/10, as the original intended (its name match found "
    "nothing, so everything trained at --lr)",
    "lc_relu_order": "LC: ReLU after the temporal pooling, as pretraining feeds the GRU (the original "
    "classifier applies it before)",
}


def scale_interpolation(args: argparse.Namespace) -> str:
    """Interpolation of the 224 -> img_dim rescale: the original's nearest, or bilinear with --fix bilinear_scale."""
    return "bilinear" if fix_enabled(args, "bilinear_scale") else "nearest"


def _common(parser: ArgumentParser) -> None:
    parser.add_argument("--net", default="resnet18", type=str, help="backbone: resnet18, resnet34 or resnet50")
    parser.add_argument("--seq_len", default=5, type=int, help="number of frames in each video block")
    parser.add_argument("--num_seq", default=8, type=int, help="number of video blocks")
    parser.add_argument("--ds", default=3, type=int, help="frame down sampling rate (temporal stride)")
    parser.add_argument("--batch_size", default=4, type=int, help="PER-GPU batch size (total = this x #GPUs)")
    parser.add_argument("--lr", default=1e-3, type=float, help="learning rate (Adam)")
    parser.add_argument("--resume", default="", type=str, help="path of a checkpoint to resume from")
    parser.add_argument("--epochs", default=10, type=int, help="number of total epochs to run")
    parser.add_argument(
        "--start-epoch",
        "--start_epoch",
        dest="start_epoch",
        default=0,
        type=int,
        help="manual epoch number (useful on restarts; overwritten by --resume)",
    )
    parser.add_argument(
        "--gpu",
        default="0,1",
        type=str,
        help="GPU ids, e.g. '0,1' (one DDP process per id); 'cpu' or '' runs on the CPU",
    )
    parser.add_argument("--print_freq", default=5, type=int, help="print / log 'local' scalars every N iterations")
    parser.add_argument("--reset_lr", action="store_true", help="with --resume: do not restore the optimizer state")
    parser.add_argument("--prefix", default="tmp", type=str, help="experiment root is log_<prefix>/")
    parser.add_argument("--img_dim", default=128, type=int, help="final square input side")
    parser.add_argument("--seed", default=0, type=int, help="random seed")
    parser.add_argument("-j", "--workers", default=16, type=int, help="data loading workers (shared by all ranks)")


def _extensions(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("extensions (not in the original)")
    group.add_argument(
        "--csv_root",
        default=DEFAULT_CSV_ROOT,
        type=str,
        help="folder holding <dataset>/{train,test}_split0N.csv and <dataset>/ClassInd.txt "
        "(process_data.write_splits --out); default: <repo>/data/lists, where the README's data preparation "
        "writes them; a relative path is taken from the current directory",
    )
    group.add_argument(
        "--modality",
        default="rgb",
        choices=["rgb", "flow"],
        help="rgb: image_%%05d.jpg frames; flow: the 3-channel flow_%%05d.jpg files (n-1 per video)",
    )
    group.add_argument(
        "--flow_root",
        default="",
        type=str,
        help="flow tree <flow_root>/<Class>/<video>/flow_%%05d.jpg (default: a 'flow' folder next to the frame tree)",
    )
    # --output_dir default: log_<prefix>/<name built from the flags>, as the original
    add_run_flags(group, "output_dir", "amp", "channels_last", "save_every_iters", "iters_per_epoch", "max_iters")
    add_run_flags(group, "no_tensorboard")
    add_width_flag(group)


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    """Pretraining flags (memdpc/main.py)."""
    parser = ArgumentParser(description="MemDPC pretraining", add_help=add_help, allow_abbrev=True)
    _common(parser)
    parser.add_argument("--model", default="memdpc", type=str, help="only 'memdpc'")
    parser.add_argument("--dataset", default="ucf101", type=str, help="ucf101, hmdb51 or k400 (also sets LR steps)")
    parser.add_argument("--pred_step", default=3, type=int, help="number of future blocks predicted")
    parser.add_argument("--mem_size", default=1024, type=int, help="number of memory slots")
    parser.add_argument("--wd", default=1e-5, type=float, help="weight decay (coupled, Adam)")
    parser.add_argument(
        "--pretrain",
        default="",
        type=str,
        help="initialise from a checkpoint (non-strict, reported); the original parsed but ignored it",
    )
    _extensions(parser)
    add_fix_flag(parser, PRETRAIN_FIXES)
    parser.add_argument("--split", default=1, type=int, help="(extension) official split whose train list is used")
    parser.add_argument(
        "--cross_gpu_negatives",
        action="store_true",
        help="(extension) use every GPU's targets as negatives; the paper uses the per-GPU batch only",
    )
    return parser


def get_eval_args_parser(add_help: bool = True) -> ArgumentParser:
    """Finetuning / linear probe / multi-crop test flags (test.py, the original eval/test.py)."""
    parser = ArgumentParser(
        description="MemDPC evaluation: finetune, linear probe, multi-crop test, fusion",
        add_help=add_help,
        allow_abbrev=True,
    )
    _common(parser)
    parser.add_argument("--model", default="lc", type=str, help="only 'lc'")
    parser.add_argument("--dataset", default="ucf101", type=str, help="ucf101 or hmdb51")
    parser.add_argument("--split", default=1, type=int, help="official split (1-3)")
    parser.add_argument("--num_class", default=101, type=int, help="overwritten: 101 for ucf101, 51 for hmdb51")
    parser.add_argument("--dropout", default=0.9, type=float, help="dropout before the last linear layer")
    parser.add_argument(
        "--schedule",
        default=[],
        nargs="*",
        type=int,
        help="epochs at which the LR is multiplied by 0.1 (default: ucf101 300 400, hmdb51 150 250)",
    )
    parser.add_argument("--wd", default=1e-3, type=float, help="weight decay (coupled, Adam)")
    parser.add_argument("--pretrain", default="random", type=str, help="self-supervised checkpoint, or 'random'")
    parser.add_argument("--test", default="", type=str, help="classifier checkpoint (or 'random') to test, then exit")
    parser.add_argument("--center_crop", action="store_true", help="test with the center crop")
    parser.add_argument("--five_crop", action="store_true", help="test with five crops")
    parser.add_argument("--ten_crop", action="store_true", help="test with five crops x horizontal flip")
    parser.add_argument(
        "--train_what",
        default="last",
        type=str,
        help="ft: finetune everything; last: linear probe on frozen features; else: all, one LR",
    )
    _extensions(parser)
    group = parser.add_argument_group("evaluation extensions")
    group.add_argument(
        "--fuse",
        nargs=2,
        default=None,
        metavar=("A.json", "B.json"),
        help="two-stream late fusion: average the per-video probabilities of two test JSONs, then exit",
    )
    group.add_argument("--fuse_out", default="", type=str, help="where --fuse writes the fused JSON")
    group.add_argument(
        "--drop_short",
        action="store_true",
        help="test: drop videos shorter than one clip, as the released code (default: pad them by "
        "repeating the last frame, the paper's protocol)",
    )
    group.add_argument("--test_batch", default=16, type=int, help="clips per forward pass in the test phase")
    add_fix_flag(parser, EVAL_FIXES)
    return parser
