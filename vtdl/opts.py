"""Command-line flags of the original VTDL code, with its spellings and defaults, plus the re-implementation's
additions (grouped at the end of each parser).

* `get_pretrain_args_parser()`: `train_temporal_dis.py` (spec §1.1, the original parse_option()).
* `get_args_parser()`: `option.py`, shared by `main.py`, `test.py` and `feature_extractor.py` (spec §1.2).

Flags the original parsed but never used are kept so old commands still run; their help says so.
Batch sizes are GLOBAL (all processes together), as with the original's DataParallel.
"""

from __future__ import annotations

import argparse

from shared_utils.cli import ArgumentParser, add_fix_flag, add_run_flags, fix_enabled
from shared_utils.split_bn import add_bn_splits_flag
from shared_utils.width import add_width_flag

PT_LOSSES = [
    "triplet",
    "flip",
    "flip_cls",
    "temporal_consistency",
    "net_mixup",
    "mutual_loss",
    "instance_discriminative",
    "DPC",
    "TSC",
    "TemporalDis",
]
ARCHS = ["i3d", "r3d", "r2p1d", "c3d"]
ORIGINAL_START_RANGE = 32  # the original sampler's new_length default: starts reserve 32*stride frames

JITTER_FIX = {
    "composed_jitter": "colour jitter applies all four adjustments in random order (the original's broken "
    "composition applies exactly one of the four)",
}
PRETRAIN_FIXES = {
    **JITTER_FIX,
    "start_range": "draw clip starts from 1..N-data_length*stride+1, i.e. reserve one clip (the original "
    "reserved 32*stride = 128 frames: the anchor is frame 1 for every video of at most 128 frames)",
}
FINETUNE_FIXES = {
    **JITTER_FIX,
    "center_val_clip": "validate on the centre clip of each video (the original drew a random start every epoch)",
    "report_last": "report the final epoch and write no _best file (the original kept the best epoch, chosen on "
    "the val list = the test split, and reported its accuracy)",
}


def jitter_mode(args: argparse.Namespace) -> str:
    """'original' (exactly one of the four adjustments) or, with --fix composed_jitter, 'composed'."""
    return "composed" if fix_enabled(args, "composed_jitter") else "original"


def start_range_len(args: argparse.Namespace) -> int:
    """Frames (in units of stride) reserved when drawing pretraining starts: --start_range_len if given, else the
    original's 32, or the clip length with --fix start_range."""
    if args.start_range_len is not None:
        return args.start_range_len
    return args.data_length if fix_enabled(args, "start_range") else ORIGINAL_START_RANGE


def val_clip_mode(args: argparse.Namespace) -> str:
    """'random' (the original's validation start) or, with --fix center_val_clip, 'center'."""
    return "center" if fix_enabled(args, "center_val_clip") else "random"


def _common_new_flags(parser, pretrain: bool) -> None:
    """Flags the original did not have (paths, launch, determinism, fixes switchable back to the original)."""
    g = parser.add_argument_group("re-implementation")
    add_run_flags(g, "output_dir")  # default: a date-stamped folder in the original layout
    g.add_argument(
        "--frame_root",
        default="",
        help="look frames up as <frame_root>/<basename of the list path>, "
        "the original's layout (its roots were hard-coded); default: list paths as written",
    )
    g.add_argument(
        "--image_tmpl",
        default=None,
        help="1-based frame file template, e.g. 'image_{:05d}.jpg' "
        "(process_data), 'img_{:05d}.jpg' (original HMDB51), 'frame{:06d}.jpg' (original UCF101); "
        "default: detected from the first video",
    )
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when available")
    g.add_argument("--dist_url", "--dist-url", default=None, help="tcp://host:port for --gpus launches")
    # the fine-tune original called torch.manual_seed(1); --max_iters was --stop_at_iter here (still accepted);
    # main.py (fine-tuning) reads --max_iters and --save_every_iters, test.py and feature_extractor.py ignore them
    add_run_flags(g, "seed", seed_default=0 if pretrain else 1)
    add_run_flags(g, "channels_last", "no_tensorboard", "iters_per_epoch", "save_every_iters", "max_iters")
    g.add_argument(
        "--r2p1d_layers",
        default="2,2,2,2",
        help="R(2+1)D blocks per stage; the original pretrained 1,1,1,1 and fine-tuned 2,2,2,2 (spec §13.15)",
    )
    add_width_flag(g)


def get_pretrain_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser(
        description="VTDL temporal discriminative pretraining (train_temporal_dis.py)", add_help=add_help
    )
    p.add_argument("--print_freq", type=int, default=10, help="print frequency (iterations)")
    p.add_argument("--tb_freq", type=int, default=500, help="unused by the original")
    p.add_argument("--save_freq", type=int, default=3, help="write ckpt_epoch_{epoch}.pth every N epochs")
    p.add_argument(
        "--batch_size",
        type=int,
        default=128,
        help="global batch (clips; each has anchor/positive/temporal negative); smaller last batches are skipped",
    )
    p.add_argument(
        "--num_workers", type=int, default=18, help="loader workers per process (the original ignored it and used 4)"
    )
    p.add_argument("--epochs", type=int, default=240, help="epochs 1..epochs")
    p.add_argument("--learning_rate", type=float, default=0.003)
    p.add_argument("--lr_decay_epochs", type=str, default="120,160,200", help="comma list of epochs")
    p.add_argument("--lr_decay_rate", type=float, default=0.1)
    p.add_argument("--beta1", type=float, default=0.5, help="unused (no Adam)")
    p.add_argument("--beta2", type=float, default=0.999, help="unused (no Adam)")
    p.add_argument("--weight_decay", type=float, default=1e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--crop", type=float, default=0.2, help="unused by the original")
    p.add_argument("--dataset", type=str, default="hmdb51", choices=["hmdb51", "ucf101", "kinetics"])
    p.add_argument("--resume", default="", type=str, help="pretraining checkpoint to resume from")
    add_bn_splits_flag(p)
    p.add_argument(
        "--aug",
        type=str,
        default="CJ",
        choices=["NULL", "CJ"],
        help="CJ: the basic spatial "
        "augmentation (rotation, crop, colour jitter); NULL: none (resize + centre crop; the "
        "original only put this in the run-folder name)",
    )
    p.add_argument("--warm", action="store_true", help="only renames the run folder (no warm-up, as original)")
    add_run_flags(p, "amp")  # the original's --amp (apex), now torch.autocast
    p.add_argument("--opt_level", type=str, default="O2", choices=["O1", "O2"], help="kept for old commands")
    p.add_argument("--model", type=str, default="resnet50", help="unused by the original")
    p.add_argument("--arch", type=str, default="i3d", choices=ARCHS)
    p.add_argument(
        "--softmax", action="store_true", help="softmax cross-entropy (all scripts); without it the NCE criterion"
    )
    p.add_argument("--nce_k", type=int, default=16384, help="queue length K")
    p.add_argument("--nce_t", type=float, default=0.07, help="temperature T")
    p.add_argument("--nce_m", type=float, default=0.5, help="unused by the original")
    p.add_argument("--moco", action="store_true", help="MoCo key encoder (always on, as in every script)")
    p.add_argument("--alpha", type=float, default=0.999, help="EMA coefficient of the key encoder")
    p.add_argument("--gpu", default=None, type=int, help="single-process CUDA device id")
    p.add_argument("--train_list", type=str, default="../datasets/lists/ucf101/ucf101_rgb_train_split_1.txt")
    p.add_argument(
        "--val_list",
        type=str,
        default="../datasets/lists/ucf101/ucf101_rgb_val_split_1.txt",
        help="unused for pretraining (checked only when given explicitly)",
    )
    g = p.add_argument_group("VTDL method switches (README ablation rows) and fixes")
    g.add_argument("--no_tca", action="store_true", help="skip TCA (intra-video mixup) on the query")
    g.add_argument("--no_temporal_negative", action="store_true", help="drop the same-video temporal negative")
    g.add_argument("--tca_lambda", type=float, default=0.1, help="TCA mixing weight lambda ~ U(0, this)")
    g.add_argument(
        "--start_range_len",
        type=int,
        default=None,
        help="clip starts are drawn from 1..N-start_range_len*stride+1; default: the original's 32 "
        "(--fix start_range: the clip length --data_length)",
    )
    g.add_argument("--data_length", type=int, default=16, help="frames per clip (hard-wired 16 in the original)")
    g.add_argument("--stride", type=int, default=4, help="frame step inside a clip (hard-wired 4)")
    g.add_argument("--spatial_size", type=int, default=224, help="crop size (hard-wired 224); resize = size*8/7")
    g.add_argument("--root", default="", help="prefix joined to list paths (Kinetics: the video root)")
    g.add_argument("--experiments_root", default="../experiments", help="parent of the original run layout")
    g.add_argument(
        "--gpus",
        default=None,
        help="device ids, one DDP process each (e.g. '0,1'); on CPU the number of ids is the number of gloo processes",
    )
    _common_new_flags(p, pretrain=True)
    add_fix_flag(p, PRETRAIN_FIXES)
    return p


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser(description="VTDL fine-tuning / test / feature extraction (option.py)", add_help=add_help)
    p.add_argument("--mode", type=str, default=None, help="rgb (flow was broken in the original)")
    p.add_argument("--method", type=str, default=None, choices=["pt", "ft", "pt_and_ft"])
    p.add_argument("--eval_indict", type=str, default="acc", choices=["acc", "loss", "feature_extract"])
    p.add_argument("--pt_loss", type=str, default="flip", choices=PT_LOSSES, help="older pretext tasks (not ported)")
    p.add_argument("--nce", type=int, default=0, help="older pretext tasks only")
    p.add_argument("--save_model", type=str, default="checkpoints/", help="unused by the original")
    p.add_argument("--data", type=str, default=None, help="unused by the original")
    p.add_argument(
        "--dataset", type=str, default="ucf101", choices=["ucf101", "hmdb51", "kinetics", "something_something_v1"]
    )
    p.add_argument("--root", type=str, default="", help="prefix joined to list paths")
    p.add_argument("--arch", type=str, default="i3d", choices=ARCHS)
    p.add_argument("--logits_channel", type=int, default=1024, help="set from the arch (i3d 1024, others 512)")
    p.add_argument("--train_list", type=str, default="data/kinetics_rgb_train_list.txt")
    p.add_argument("--val_list", type=str, default="data/kinetics_rgb_val_list.txt")
    p.add_argument("--cluster_list", type=str, default="", help="unused by the original")
    p.add_argument("--cluster_train", type=int, default=0, help="unused by the original")
    p.add_argument("--snapshot_pref", type=str, default="", help="unused by the original")
    p.add_argument("--flow_prefix", type=str, default="", help="flow image prefix (flow is not supported)")
    p.add_argument("--logs_path", type=str, default="../experiments/logs/hmdb51_self_supervised")
    p.add_argument("--stride", type=int, default=1, help="frame step inside a clip")
    p.add_argument("--weights", type=str, default="", help="checkpoint to initialise from")
    p.add_argument("--spatial_size", type=str, default="224", help="crop size ('224' or '112'; resize = size*8/7)")
    p.add_argument("--data_length", type=str, default="64", help="frames per clip")
    p.add_argument("--clips", type=str, default="4", help="unused by the original")
    p.add_argument("--mutual_learning", type=int, default=0, help="older pretext tasks only")
    p.add_argument("--mutual_num", type=int, default=2, help="older pretext tasks only")
    p.add_argument("--dropout", "--do", type=float, default=0.64, help="dropout before the I3D classifier")
    p.add_argument("--mixup", type=int, default=0, help="unused by the original")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight_decay", "--wd", type=float, default=1e-8)
    p.add_argument("--lr", "--learning-rate", type=float, default=0.001)
    p.add_argument(
        "--lr_steps",
        type=float,
        nargs="+",
        default=[10, 20, 25, 30, 35, 40],
        help="epochs at which the LR is multiplied by 0.3",
    )
    p.add_argument("--optim", type=str, default="sgd", choices=["sgd", "adam"])
    p.add_argument("--print-freq", "-p", "--print_freq", dest="print_freq", type=int, default=100)
    p.add_argument("--eval-freq", "-ef", "--eval_freq", dest="eval_freq", type=int, default=1)
    p.add_argument("--epochs", type=int, default=45)
    p.add_argument(
        "-b", "--batch_size", "--batch-size", dest="batch_size", type=int, default=5, help="global batch size"
    )
    p.add_argument("--gpus", type=str, default="0", help="device ids, one DDP process each (e.g. '0,1')")
    p.add_argument("--workers", type=int, default=4, help="loader workers per process")
    p.add_argument("--resume", type=str, default="", help="fine-tune checkpoint to resume from")
    p.add_argument("-e", "--evaluate", action="store_true", help="unused by the original")
    p.add_argument("--start-epoch", "--start_epoch", dest="start_epoch", type=int, default=0)
    p.add_argument("--test_clips", type=int, default=10, help="test.py: clips per video (the original ignored it)")
    p.add_argument("--clip_size", type=int, default=16, help="test.py: frames per test window")
    g = p.add_argument_group("defects fixed by default, switchable back to the original")
    g.add_argument("--raw_logits_nll", action="store_true", help="original bug: NLL on raw R(2+1)D/C3D logits")
    g.add_argument(
        "--eval_protocol",
        default="clips",
        choices=["clips", "original"],
        help="test.py: clips = "
        "--test_clips uniform clips, mean softmax (what the README promised); original = full video, "
        "windows at 0 and 10 only, each divided by the window count (spec §9)",
    )
    g.add_argument("--feature_split", default="val", choices=["val", "train"], help="feature_extractor.py list")
    g.add_argument("--feature_path", default="", help="feature_extractor.py output .npy (labels/ids beside it)")
    add_run_flags(g, "amp")
    _common_new_flags(p, pretrain=False)
    add_fix_flag(p, FINETUNE_FIXES)
    return p
