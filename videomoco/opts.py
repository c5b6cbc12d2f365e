"""Command-line flags of VideoMoCo's `train.py` and `eval.py`, with the original spellings and defaults.

The original mixes spellings: `train.py` uses underscores (`--dist_url`, `--batch_size`) but hyphens for the MoCo
flags (`--moco-k`); `eval.py` uses hyphens (`--dist-url`, `--batch-size`). Each flag keeps its original spelling;
the other spelling is accepted as an alias. Flags after the "additions" banners are not in the original.
"""

from __future__ import annotations

from shared_utils.cli import ArgumentParser, add_fix_flag, add_run_flags, fix_enabled
from shared_utils.split_bn import add_bn_splits_flag
from shared_utils.width import add_width_flag

ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18")  # the torchvision video ResNets (fc 512 -> classes)

# Opt-in fixes (`--fix NAME[,NAME]`): without them both scripts run the released recipe (README fixes table).
SHORT_VIDEO_FIX = "pad_short_videos"
TRAIN_FIXES = {
    "pure_g_grad": "G is stepped with grad(L_G) alone (released: grad(L_G + L_D)); old spelling --g_grad pure",
    "paper_decay": "Eq. 6 decay t^i exp(q.k/T), i = queue position (released: exp(t^age q.k/T)); "
    "old spelling --decay_mode paper",
    "drop_highest": "drop the frames with the highest generator scores, the paper's wording (released: lowest); "
    "old spelling --drop_select highest",
    "two_clips": "query and key from two independent clips (released: the same frames)",
    "per_clip_aug": "one draw of the GPU augmentation per clip, its frames stay consistent (released: kornia on "
    "the flattened clips draws per frame, and --aug_plus tosses its jitter/blur coins once per batch)",
    SHORT_VIDEO_FIX: "videos shorter than one clip are padded with their last frame and used (released: "
    "torchvision VideoClips leaves them out)",
}
EVAL_FIXES = {
    "bn_train": "BatchNorm in train mode while fine-tuning (released: eval mode, pretrained statistics)",
    "test_resize": "test frames resized (short side -> crop) before the center crop (released: native frame)",
    SHORT_VIDEO_FIX: TRAIN_FIXES[SHORT_VIDEO_FIX],
}


def fix_on(args, name: str) -> bool:
    """Whether fix `name` is on: `--fix name`, or the older spelling of the same switch."""
    older = {
        "pure_g_grad": getattr(args, "g_grad", "released") == "pure",
        "paper_decay": getattr(args, "decay_mode", "code") == "paper",
        "drop_highest": getattr(args, "drop_select", "lowest") == "highest",
        "two_clips": bool(getattr(args, "two_clips", False)),
        "bn_train": getattr(args, "protocol", "videomoco-eval") == "standard",
        "test_resize": getattr(args, "protocol", "videomoco-eval") == "standard",
    }
    return fix_enabled(args, name) or older.get(name, False)


def aug_per_frame(args) -> bool:
    """The released per-frame augmentation draws, unless `--fix per_clip_aug` (`--aug_per_frame` is the default)."""
    return not fix_on(args, "per_clip_aug")


def _dist_flags(parser, hyphen: bool) -> None:
    """--world_size/--rank/--dist_url/--dist_backend/--multiprocessing_distributed in either spelling."""

    def names(base: str) -> list[str]:
        under, dash = "--" + base, "--" + base.replace("_", "-")
        return [dash, under] if hyphen else [under, dash]

    parser.add_argument(
        *names("world_size"), dest="world_size", default=-1, type=int, help="number of nodes for distributed training"
    )
    parser.add_argument("--rank", default=-1, type=int, help="node rank for distributed training")
    parser.add_argument(
        *names("dist_url"),
        dest="dist_url",
        default="tcp://224.66.41.62:23456",
        type=str,
        help="url used to set up distributed training (host:port of node 0)",
    )
    parser.add_argument(
        *names("dist_backend"),
        dest="dist_backend",
        default="nccl",
        type=str,
        help="distributed backend (nccl on GPUs; gloo is used automatically on CPU)",
    )
    parser.add_argument("--seed", default=None, type=int, help="seed for initializing training")
    parser.add_argument("--gpu", default=None, type=int, help="GPU id to use (single process)")
    parser.add_argument(
        *names("multiprocessing_distributed"),
        dest="multiprocessing_distributed",
        action="store_true",
        help="launch one process per GPU on this node (N processes per node, world size N x nodes); torchrun works too",
    )
    parser.add_argument(
        "--nproc_per_node",
        default=None,
        type=int,
        help="(addition) processes per node under --multiprocessing_distributed; default: number "
        "of visible GPUs, or 1 on a CPU-only machine (gloo)",
    )


def _lr_flags(parser, lr: float, schedule: list[int], wd_names: list[str]) -> None:
    parser.add_argument(
        "--lr", "--learning-rate", dest="lr", default=lr, type=float, metavar="LR", help="initial learning rate"
    )
    parser.add_argument(
        "--lr_decay",
        "--learning-rate_decay",
        dest="lr_decay",
        default=0.1,
        type=float,
        help="learning rate decay factor at each milestone",
    )
    parser.add_argument("--warmup", action="store_true", help="linear warm-up until the first milestone")
    parser.add_argument(
        "--wp_lr",
        "--warmup_learning-rate",
        dest="wp_lr",
        default=0.0025,
        type=float,
        help="warm-up start learning rate",
    )
    parser.add_argument(
        "--schedule", default=schedule, nargs="*", type=int, help="learning rate schedule (when to drop lr by lr_decay)"
    )
    parser.add_argument("--momentum", default=0.9, type=float, metavar="M", help="SGD momentum")
    parser.add_argument(*wd_names, dest="weight_decay", default=1e-4, type=float, metavar="W", help="weight decay")
    parser.add_argument("--cos", action="store_true", help="use cosine lr schedule")


def _modern_flags(parser) -> None:
    add_run_flags(parser, "amp", "channels_last", "no_tensorboard")
    parser.add_argument(
        "--exact_dirs",
        action="store_true",
        help="use --log_dir/--ckp_dir as given instead of appending the original '_bs=.._lr=.._cs=.._fpc=..' suffix",
    )
    add_width_flag(parser)
    add_bn_splits_flag(parser)


def _videomoco_flags(p) -> None:
    """The paper's two parts and the spec's configurable quirks (additions; defaults = released code)."""
    g = p.add_argument_group("VideoMoCo options (additions; defaults reproduce the released code)")
    g.add_argument(
        "--adversarial_start_epoch",
        default=100,
        type=int,
        help="epochs before this one train D alone (no generator, no frame dropping); the README's "
        "100-epoch D initialisation. 0 = adversarial from the start",
    )
    g.add_argument(
        "--no_generator",
        action="store_true",
        help="never use the generator (plain MoCo queries); with --no_temporal_decay: plain MoCo",
    )
    g.add_argument("--no_temporal_decay", action="store_true", help="no decay of queue keys (t = 1)")
    g.add_argument(
        "--no_decay_in_d_only",
        action="store_true",
        help="switch the decay off during the D-only phase (the original does not say)",
    )
    g.add_argument(
        "--decay_mode",
        default="code",
        choices=("code", "paper"),
        help="code: negatives exp(t^age q.k/T), age in iterations (released); paper = --fix paper_decay",
    )
    g.add_argument(
        "--g_grad",
        default="released",
        choices=("released", "pure"),
        help="released: G is stepped with grad(L_G + L_D) as the released code does; pure = --fix pure_g_grad",
    )
    g.add_argument("--drop_ratio", default=0.25, type=float, help="fraction of frames dropped (8 of 32)")
    g.add_argument(
        "--drop_select",
        default="lowest",
        choices=("lowest", "highest"),
        help="drop the frames with the lowest (released code) generator scores; highest = --fix drop_highest",
    )
    g.add_argument("--g_loss_weight", default=100.0, type=float, help="L_G = -w * L1(q_fake, q_real)")
    g.add_argument(
        "--two_clips",
        action="store_true",
        help="same as --fix two_clips (released: query and key share their frames)",
    )
    g.add_argument(
        "--aug_per_frame",
        action="store_true",
        help="older spelling of the default: GPU augmentation parameters drawn per frame, as kornia did on the "
        "flattened clips of the released code (one draw per clip: --fix per_clip_aug)",
    )


def _data_flags(p) -> None:
    """Data layouts and run control (additions)."""
    d = p.add_argument_group("data and run control (additions)")
    d.add_argument(
        "--train_subdir",
        default="train",
        help="videos are read from DATA/<train_subdir>/<class>/ ('.' for DATA itself)",
    )
    d.add_argument("--video_exts", default="mp4", help="comma-separated video extensions (original: mp4)")
    d.add_argument(
        "--train_list",
        default="",
        help="pretrain only on the videos of this list ('Class/file.avi ...' lines, e.g. UCF101's trainlist01.txt)",
    )
    d.add_argument(
        "--data_format",
        default="video",
        choices=("video", "frames"),
        help="video files decoded with PyAV, or frame folders <class>/<video>/image_%%05d.jpg",
    )
    d.add_argument("--frame_template", default="image_{:05d}.jpg", help="frame file names (1-based)")
    d.add_argument(
        "--metadata_cache",
        default="",
        help="video probe cache file (default: videomoco_video_metadata.json in the checkpoint folder; never "
        "written into the dataset folder)",
    )
    d.add_argument("--save_freq", default=10, type=int, help="write checkpoint_%%04d.pth.tar every N epochs")
    add_run_flags(d, "save_every_iters", "max_iters")


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    """Flags of the pretraining script (`train.py`)."""
    p = ArgumentParser(description="VideoMoCo pretraining", add_help=add_help, allow_abbrev=True)
    p.add_argument("data", metavar="DIR", help="path to dataset (videos are read from DIR/train/<class>/)")
    p.add_argument(
        "-a",
        "--arch",
        metavar="ARCH",
        default="r3d_18",
        choices=ARCHS,
        help="model architecture: " + " | ".join(ARCHS) + " (default: r3d_18)",
    )
    p.add_argument(
        "-j",
        "--workers",
        default=32,
        type=int,
        metavar="N",
        help="data loading workers per node (divided among its processes)",
    )
    p.add_argument("--epochs", default=200, type=int, metavar="N", help="number of total epochs to run")
    p.add_argument(
        "--start_epoch",
        "--start-epoch",
        dest="start_epoch",
        default=0,
        type=int,
        metavar="N",
        help="manual epoch number (useful on restarts)",
    )
    p.add_argument(
        "-b",
        "--batch_size",
        "--batch-size",
        dest="batch_size",
        default=256,
        type=int,
        metavar="N",
        help="mini-batch size of one node, divided among its processes; the global batch "
        "(all nodes) must divide --moco-k",
    )
    p.add_argument(
        "-t",
        "--temporal_decay",
        default=0.99999,
        type=float,
        help="temporal decay base t: a queue key of age a is weighted by t^a",
    )
    p.add_argument("-cs", "--crop_size", default=112, type=int, help="crop size of the video clip")
    p.add_argument(
        "-fpc", "--frame_per_clip", default=16, type=int, help="frames per clip (the released generator needs 32)"
    )
    p.add_argument(
        "-sbc", "--step_between_clips", default=1, type=int, help="stride between candidate clip start frames"
    )
    _lr_flags(p, 0.03, [120, 160], ["--wd", "--weight_decay", "--weight-decay"])
    p.add_argument(
        "-p",
        "--print_freq",
        "--print-freq",
        dest="print_freq",
        default=10,
        type=int,
        metavar="N",
        help="print frequency (iterations)",
    )
    p.add_argument("--log_dir", default="logs_moco", type=str, help="TensorBoard directory stem")
    p.add_argument("--ckp_dir", default="checkpoints_moco", type=str, help="checkpoint directory stem")
    p.add_argument(
        "--resume",
        default="",
        type=str,
        metavar="PATH",
        help="path to a D (MoCo) checkpoint; ours also restore G, optimizers, queue ages and RNG",
    )
    p.add_argument("--resumeG", default="", type=str, metavar="PATH", help="path to a G checkpoint")
    _dist_flags(p, hyphen=False)
    p.add_argument("--moco-dim", "--moco_dim", dest="moco_dim", default=128, type=int, help="feature dimension")
    p.add_argument(
        "--moco-k", "--moco_k", dest="moco_k", default=65536, type=int, help="queue size; number of negative keys"
    )
    p.add_argument(
        "--moco-m", "--moco_m", dest="moco_m", default=0.999, type=float, help="moco momentum of updating key encoder"
    )
    p.add_argument("--moco-t", "--moco_t", dest="moco_t", default=0.07, type=float, help="softmax temperature")
    p.add_argument("--mlp", action="store_true", help="use mlp head")
    p.add_argument("--aug_plus", action="store_true", help="use moco v2 data augmentation")
    _videomoco_flags(p)
    _data_flags(p)
    _modern_flags(p)
    add_fix_flag(p, TRAIN_FIXES)
    return p


def _eval_additions(p) -> None:
    """Datasets, splits, layouts and protocol choice of the evaluation (additions)."""
    a = p.add_argument_group("evaluation options (additions)")
    a.add_argument("--dataset", default="ucf101", choices=("ucf101", "hmdb51"), help="evaluation dataset")
    a.add_argument(
        "--split",
        "--fold",
        dest="split",
        default="1",
        choices=("1", "2", "3", "all"),
        help="official split (original: 1); 'all' runs the three and reports the mean",
    )
    a.add_argument(
        "--video_dir", default=None, help="class folders of videos (UCF-101/ or HMDB51's), overriding DATA/data"
    )
    a.add_argument(
        "--split_dir",
        default=None,
        help="official split files (ucfTrainTestlist/ or testTrainMulti_7030_splits/), overriding DATA/anno",
    )
    a.add_argument(
        "--data_format",
        default="video",
        choices=("video", "frames"),
        help="videos decoded with PyAV, or frame folders <Class>/<video stem>/image_%%05d.jpg",
    )
    a.add_argument("--frame_template", default="image_{:05d}.jpg", help="frame file names (1-based)")
    a.add_argument(
        "--metadata_cache",
        default="",
        help="video probe cache file (default: videomoco_video_metadata.json in the checkpoint folder; never "
        "written into the dataset folder)",
    )
    a.add_argument(
        "--protocol",
        default="videomoco-eval",
        choices=("videomoco-eval", "standard"),
        help="videomoco-eval: the released recipe (BN in eval mode while fine-tuning, test crop "
        "without resize); standard = --fix bn_train,test_resize",
    )
    a.add_argument(
        "--train_clips_per_video",
        default=10,
        type=int,
        help="distinct random training clips per video and epoch (original: RandomClipSampler(..., 10))",
    )


def get_eval_args_parser(add_help: bool = True) -> ArgumentParser:
    """Flags of the evaluation script (`eval.py`): fine-tuning + 10-clip video-level test."""
    p = ArgumentParser(
        description="VideoMoCo evaluation: fine-tune and test on UCF101 / HMDB51", add_help=add_help, allow_abbrev=True
    )
    p.add_argument(
        "data",
        metavar="DIR",
        nargs="?",
        default=None,
        help="dataset root holding data/<Class>/*.avi and anno/ (original layout); or use --video_dir and --split_dir",
    )
    p.add_argument(
        "-a",
        "--arch",
        metavar="ARCH",
        default="r3d_18",
        choices=ARCHS,
        help="model architecture: " + " | ".join(ARCHS) + " (default: r3d_18)",
    )
    p.add_argument(
        "--num_class",
        default=None,
        type=int,
        help="classifier outputs (default: 101 for UCF101, 51 for HMDB51, else the classes found)",
    )
    p.add_argument("-j", "--workers", default=32, type=int, metavar="N", help="data loading workers per node")
    p.add_argument("--epochs", default=10, type=int, metavar="N", help="number of fine-tuning epochs")
    p.add_argument(
        "--start-epoch",
        "--start_epoch",
        dest="start_epoch",
        default=0,
        type=int,
        metavar="N",
        help="manual epoch number (useful on restarts)",
    )
    p.add_argument(
        "-b",
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        default=256,
        type=int,
        metavar="N",
        help="training mini-batch size of one node",
    )
    p.add_argument("-cs", "--crop_size", default=224, type=int, help="crop size of the video clip")
    p.add_argument("-fpc", "--frame_per_clip", default=32, type=int, help="frames per clip")
    p.add_argument("-sbc", "--step_between_clips", default=1, type=int, help="stride between clip starts")
    p.add_argument("-cpv", "--clip_per_video", default=10, type=int, help="test clips per video")
    _lr_flags(p, 0.005, [6, 8], ["--wd", "--weight-decay", "--weight_decay"])
    p.add_argument(
        "-p",
        "--print-freq",
        "--print_freq",
        dest="print_freq",
        default=10,
        type=int,
        metavar="N",
        help="print frequency",
    )
    p.add_argument("--log_dir", default="logs_lincls", type=str, help="TensorBoard directory stem")
    p.add_argument("--ckp_dir", default="checkpoints_lincls", type=str, help="checkpoint directory stem")
    p.add_argument("--resume", default="", type=str, metavar="PATH", help="resume a fine-tuning checkpoint")
    p.add_argument("-e", "--evaluate", dest="evaluate", action="store_true", help="only run the test loop")
    _dist_flags(p, hyphen=True)
    p.add_argument("--pretrained", default="", type=str, help="path to a VideoMoCo (D) checkpoint")
    _eval_additions(p)
    _modern_flags(p)
    add_fix_flag(p, EVAL_FIXES)
    return p
