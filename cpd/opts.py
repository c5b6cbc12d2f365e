"""Command-line flags of the original CPD-Video `opts.py` (names, spellings and defaults), plus clearly marked
additions for the modern stack. argparse abbreviation stays on: the README passes `--result` for `--result_path`."""

from __future__ import annotations

from shared_utils.cli import ArgumentParser, add_fix_flag, add_run_flags, fix_enabled
from shared_utils.width import WIDTH_HELP, positive_float

# Opt-in fixes (`--fix NAME[,NAME]`): without them every phase runs the released recipe (README fixes table).
FIXES = {
    "text_mask": "pass the padding mask to the text encoder (released: none, padding is attended to); "
    "old spelling --text_attention_mask",
    "text_eval": "text encoder in eval mode (no dropout) while frozen in stage I (released: train mode); "
    "old spelling --text_eval_mode",
    "shortcut_grad": "gradients flow through the zero-padding shortcuts A (released: detached); "
    "old spelling --shortcut_grad",
    "center_val": "fine-tuning validation on the middle clip, centre crop (released: one random clip and crop); "
    "old spelling --val_mode center",
}
OLDER_SPELLINGS = {"text_mask": "text_attention_mask", "text_eval": "text_eval_mode", "shortcut_grad": "shortcut_grad"}


def fix_on(args, name: str) -> bool:
    """Whether fix `name` is on: `--fix name`, or the older spelling of the same switch."""
    if name == "center_val" and getattr(args, "val_mode", "random") == "center":
        return True
    return fix_enabled(args, name) or bool(getattr(args, OLDER_SPELLINGS.get(name, ""), False))


def _original_flags(parser: ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--video_path",
        type=str,
        default=None,
        help="root of the videos (ins: flat folder; ucf101/hmdb51: class folders)",
    )
    add("--dataset_file", type=str, default="", help="dataset JSON (Instagram list or UCF101/HMDB51 split file)")
    add("--result_path", type=str, default="results", help="output folder (logs, opts.json, checkpoints, tb, val.json)")
    add("--dataset", type=str, default="ins", help="ins | ucf101 | hmdb51")
    add("--test_subset", type=str, default="val", help="val (the JSON's validation subset) | test")
    add("--n_classes", type=int, default=256, help="size of the ResNet's own fc at construction")
    add("--n_finetune_classes", type=int, default=101, help="classes of the fine-tuning head")
    add("--sample_size", type=int, default=224, help="crop size (H = W)")
    add("--sample_duration", type=int, default=16, help="temporal span in frames at 30 fps; frames = this // stride")
    add("--stride_size", type=int, default=1, help="temporal sampling stride (frames at 30 fps)")
    add("--gpu", type=int, default=None, help="GPU id for a single-process run")
    add("--dist-url", "--dist_url", dest="dist_url", type=str, default="tcp://224.66.41.62:23456")
    add("--world-size", "--world_size", dest="world_size", type=int, default=-1, help="number of nodes")
    add("--rank", type=int, default=-1, help="node rank")
    add(
        "--multiprocessing-distributed",
        "--multiprocessing_distributed",
        dest="multiprocessing_distributed",
        action="store_true",
        help="spawn one DDP process per visible GPU (one process on a CPU-only machine)",
    )
    add(
        "--dist-backend",
        "--dist_backend",
        dest="dist_backend",
        type=str,
        default="nccl",
        help="nccl on GPU; gloo on CPU",
    )
    add("--learning_rate", type=float, default=0.1, help="SGD lr (all non-text groups; all groups in fine-tuning)")
    add("--lr_bert", type=float, default=3e-4, help="text-encoder lr base (set to bert_lr_scale x lr_bert)")
    add("--momentum", type=float, default=0.9)
    add("--weight_decay", type=float, default=1e-3)
    add("--lr_patience", type=int, default=10, help="ReduceLROnPlateau patience (fine-tuning)")
    add("--lr_factor", type=float, default=0.1, help="ReduceLROnPlateau factor (fine-tuning)")
    add("--clip_gradient", type=float, default=20, help="global max-norm gradient clipping")
    add("--batch_size", type=int, default=128, help="GLOBAL batch per node; each process gets batch / processes")
    add("--n_epochs", type=int, default=200, help="last epoch (1-based, inclusive)")
    add("--ft_bert_ep", type=int, default=150, help="text encoder trained only in epochs > ft_bert_ep")
    add("--resume_path", type=str, default="", help="checkpoint to resume (model, optimizer, epoch, ...)")
    add("--pretrain_path", type=str, default=None, help="CPD checkpoint whose visual_encoder.* initialises fine-tuning")
    add("--ft_begin_index", type=int, default=0, help="0 all; k=1..4 layer{k}..layer4 + fc; 5 fc only (linear probe)")
    add("--no_train", action="store_true", help="skip training")
    add("--no_val", action="store_true", help="skip validation")
    add("--test", action="store_true", help="run the multi-view test (ucf101 / hmdb51)")
    add("--no_cuda", action="store_true", help="run on the CPU")
    add("--n_threads", type=int, default=4, help="DataLoader workers per node (divided over processes)")
    add("--checkpoint", type=int, default=2, help="write save_{epoch}.pth every this many epochs")
    add("--model", type=str, default="resnet", help="only resnet")
    add("--model_depth", type=int, default=50, help="10 | 18 | 34 | 50")
    add("--resnet_shortcut", type=str, default="A", help="A (zero-padding) | B (1x1x1 conv, spatial stride only)")
    add("--dp", type=float, default=0.0, help="dropout before the ResNet fc")
    add(
        "--manual_seed",
        "--seed",
        dest="manual_seed",
        type=int,
        default=1,
        help="seed (used here; the original ignored it)",
    )
    add("--phase", type=str, default="finetuning", help="pretraining | finetuning | zeroshot (extension)")
    add("--emb_dim", type=int, default=256, help="joint embedding size")
    add("--print_frq", "--print_freq", dest="print_frq", type=int, default=100, help="log period (iterations)")
    add("--nce_k", type=int, default=16392, help="noise samples per anchor")
    add("--nce_t", type=float, default=0.07, help="temperature")
    add("--nce_m", type=float, default=0.5, help="memory-bank momentum")


def _added_flags(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("additions (not in the original)")
    add = group.add_argument
    add("--text_model", type=str, default="distilbert-base-uncased", help="HF name (local cache only) or local folder")
    add("--tokenizer", type=str, default=None, help="tokenizer folder/name (default: --text_model)")
    add("--max_text_len", type=int, default=64, help="token ids per caption (zero padded / truncated)")
    add("--text_attention_mask", action="store_true", help="= --fix text_mask")
    add("--text_eval_mode", action="store_true", help="= --fix text_eval")
    add("--shortcut_grad", action="store_true", help="= --fix shortcut_grad")
    add("--lr_steps", type=int, nargs="+", default=[100, 201, 250], help="pretraining: lr x 0.1 after these epochs")
    add("--bert_lr_scale", type=float, default=0.1, help="pretraining: text lr = this x lr_bert when unfrozen")
    add("--bert_lr_lead", type=int, default=1, help="pretraining: text lr set this many epochs before ft_bert_ep ends")
    add(
        "--val_mode",
        type=str,
        default="random",
        help="fine-tuning validation clip: random (original) | center (= --fix center_val)",
    )
    add("--num_test_clips", type=int, default=10, help="temporal clips per test video")
    add("--num_test_crops", type=int, default=3, help="spatial crops per test clip")
    add("--zs_template", type=str, default="{}", help="zero-shot prompt; {} = class name in words")
    add(
        "--nproc_per_node",
        type=int,
        default=None,
        help="processes per node under --multiprocessing-distributed (default: visible GPUs, or 1 on the CPU: gloo)",
    )
    # --iters_per_epoch was --max_iters here (a per-epoch cap); --max_iters is now the run's total, as elsewhere
    add_run_flags(group, "amp", "channels_last", "no_tensorboard", "save_every_iters", "iters_per_epoch", "max_iters")
    add("--max_val_iters", type=int, default=0, help="validate on at most N batches (0: all)")
    add("--width_mult", type=positive_float, default=1.0, help=WIDTH_HELP)  # the shared_utils.width convention


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    parser = ArgumentParser("CPD", add_help=add_help, allow_abbrev=True)
    _original_flags(parser)
    _added_flags(parser)
    add_fix_flag(parser, FIXES)
    return parser


def parse_opts(argv=None):
    return get_args_parser().parse_args(argv)
