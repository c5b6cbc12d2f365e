"""Run plumbing shared by CPD's pretraining, fine-tuning and zero-shot drivers: argument checks, launch, DDP
wrapping, autocast, checkpoints (original file names and keys, atomic, with exact-resume state) and TSV logs."""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from shared_utils import dist, runtime
from shared_utils.checkpoint import (
    RunState,
    extract_state_dict,
    load_checkpoint,
    load_state_dict_reported,
    require_checkpoint,
    strip_prefix,
)
from shared_utils.cli import fail, require_dir, require_file
from shared_utils.logger import make_tb_writer, write_args_json

PHASES = ("pretraining", "finetuning", "zeroshot")
DATASETS = {"pretraining": ("ins",), "finetuning": ("ucf101", "hmdb51"), "zeroshot": ("ucf101", "hmdb51")}
STOPPED = "stopped at global step {} (--max_iters); the same command without it (or with a larger cap) resumes"
OPTIONAL_KEYS = ("textual_encoder.embeddings.position_ids",)  # present in some transformers versions only


def check_args(args) -> None:
    """One-line errors for flags the original would have crashed on later (or silently misread)."""
    if args.phase not in PHASES:
        fail(f"unknown --phase '{args.phase}' (choose from: {', '.join(PHASES)})")
    if args.dataset not in DATASETS[args.phase]:
        fail(f"--dataset '{args.dataset}' does not fit --phase {args.phase} (use: {', '.join(DATASETS[args.phase])})")
    if args.model != "resnet":
        fail(f"unknown --model '{args.model}' (only resnet)")
    if args.model_depth not in (10, 18, 34, 50):
        fail(f"unsupported --model_depth {args.model_depth} (choose from: 10, 18, 34, 50)")
    if args.resnet_shortcut not in ("A", "B"):
        fail(f"unknown --resnet_shortcut '{args.resnet_shortcut}' (A or B)")
    if args.test_subset != "val":
        fail("--test_subset must be 'val': the split JSONs hold only 'training' and 'validation' subsets")
    if args.sample_duration // args.stride_size < 1:
        fail(f"--sample_duration {args.sample_duration} // --stride_size {args.stride_size} gives no frame")
    if args.val_mode not in ("random", "center"):
        fail(f"unknown --val_mode '{args.val_mode}' (random or center)")
    if not 0 <= args.ft_begin_index <= 5:
        fail(f"--ft_begin_index must be in 0..5, got {args.ft_begin_index}")
    for flag, low in (("batch_size", 1), ("n_threads", 0), ("n_epochs", 0), ("sample_size", 1)):
        if getattr(args, flag) < low:
            fail(f"--{flag} must be >= {low}, got {getattr(args, flag)}")
    if not args.learning_rate > 0:
        fail(f"--learning_rate must be > 0, got {args.learning_rate}")
    needs_data = not (args.no_train and args.no_val and not args.test)
    if needs_data:
        require_dir(args.video_path or "", "--video_path")
        require_file(args.dataset_file or "", "--dataset_file")
        if os.path.getsize(args.dataset_file) == 0:
            fail(f"--dataset_file '{args.dataset_file}' is empty")
    for flag in ("resume_path", "pretrain_path"):
        if getattr(args, flag):
            require_checkpoint(getattr(args, flag), f"--{flag}")


def num_frames(args) -> int:
    return args.sample_duration // args.stride_size


def local_processes() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if dist.get_world_size() > 1 else 1


def per_process(args) -> tuple[int, int]:
    """(batch, workers) per process: the global --batch_size and --n_threads divided over a node's processes."""
    n = local_processes()
    batch = int(args.batch_size / n)
    if batch < 1:
        fail(f"--batch_size {args.batch_size} is smaller than the {n} processes per node")
    return batch, int(math.ceil(args.n_threads / n))


def launch(worker, args) -> None:
    """The original's launch flags: --multiprocessing-distributed spawns one process per GPU of the node
    (--world-size nodes, --rank node rank); torchrun works too; otherwise one process (GPU or CPU, --gpu)."""
    use_cuda = torch.cuda.is_available() and not args.no_cuda
    if args.multiprocessing_distributed and "RANK" not in os.environ:
        nprocs = args.nproc_per_node or (torch.cuda.device_count() if use_cuda else 1)
        nnodes = max(args.world_size, 1)
        url = args.dist_url if args.dist_url.startswith("tcp://") and nnodes > 1 else None
        plan = runtime.LaunchPlan(nprocs, nnodes, max(args.rank, 0), url, use_cuda=use_cuda)
    else:
        gpu_ids = (args.gpu,) if args.gpu is not None and "RANK" not in os.environ else ()
        plan = runtime.LaunchPlan(gpu_ids=gpu_ids, use_cuda=use_cuda)
    runtime.launch(worker, args, plan)


def init_process(args, plan: runtime.LaunchPlan) -> runtime.RunContext:
    return runtime.setup_worker(plan, amp=args.amp, share_threads=False)


def wrap_ddp(model: nn.Module, ctx: runtime.RunContext, ignore: tuple[str, ...] = ()) -> nn.Module:
    """DDP with find_unused_parameters (frozen text encoder, dropped fc); `ignore` buffers (the memory banks)
    are neither broadcast nor synchronised by DDP: every rank applies the same all-gathered updates itself."""
    if not ctx.distributed:
        return model
    if ignore:
        DDP._set_params_and_buffers_to_ignore_for_model(model, list(ignore))
    return runtime.wrap_ddp(model, ctx, find_unused_parameters=True)


# ----------------------------------------------------------------------------------------------- checkpoints


# the original's keys (epoch = the epoch to start from, 1-based; arch; state_dict with 'module.' keys; optimizer)
# and what exact resume needs (iteration in that epoch, global step, scheduler, every rank's RNG, args), in this order
CHECKPOINT_ORDER = ("epoch", "iteration", "global_step", "arch", "phase", "state_dict", "optimizer", "scheduler")


def save_state(
    path: str,
    model: nn.Module,
    optimizer,
    epoch: int,
    iteration: int,
    global_step: int,
    args,
    ctx: runtime.RunContext,
    scheduler=None,
    **extra,
) -> None:
    """The run state in the original layout (CHECKPOINT_ORDER), then `extra` entries (pretraining: n_data).
    Collective: call on every rank; rank 0 writes atomically."""
    parts = {"state_dict": model, "optimizer": optimizer, "scheduler": scheduler}
    absent = {name: None for name, part in parts.items() if part is None}  # stored as None, as the original's
    parts = {name: part for name, part in parts.items() if part is not None}
    counters = {"epoch": int(epoch), "iteration": int(iteration), "global_step": int(global_step)}
    run = RunState(parts, prefixes={"state_dict": "module."}, **counters)
    meta = {"arch": f"resnet-{args.model_depth}", "phase": args.phase}
    run.save(path, args, ctx, order=CHECKPOINT_ORDER, **meta, **absent, **extra)


def load_model_state(path: str, model: nn.Module, name: str = "checkpoint") -> dict:
    """Strict load (any `module.` prefix stripped; a `position_ids` buffer tolerated); returns the checkpoint."""
    ckpt = load_checkpoint(path)
    state = strip_prefix(extract_state_dict(ckpt, ("state_dict", "model")), ("module.",))
    load_state_dict_reported(
        model, state, strict=True, allow_missing=OPTIONAL_KEYS, allow_unexpected=OPTIONAL_KEYS, name=name
    )
    return ckpt


def restore_training(ckpt: dict, optimizer=None, scheduler=None) -> tuple[int, int, int]:
    """Optimizer, scheduler (when the file has them), counters and this rank's RNG (another number of processes:
    the first rank's) from a loaded checkpoint whose model load_model_state restored; returns (epoch, iteration,
    global_step)."""
    parts = {name: part for name, part in (("optimizer", optimizer), ("scheduler", scheduler)) if part is not None}
    run = RunState(parts, optional=set(parts), epoch=1, iteration=0, global_step=0)
    run.load(ckpt, rng_fallback="first")
    return run["epoch"], run["iteration"], run["global_step"]


def resume_file(args) -> str | None:
    """--resume_path, else `checkpoint.pth` in --result_path when a previous run left one (auto-resume)."""
    if args.resume_path:
        return args.resume_path
    latest = os.path.join(args.result_path, "checkpoint.pth")
    return latest if os.path.isfile(latest) and not args.no_train else None


class TSVLogger:
    """The original's tab-separated logs (`train.log.rank0`, ...), appended on rank 0."""

    def __init__(self, path: str, header: list[str]) -> None:
        self.path, self.header = path, header
        if dist.is_main_process() and not os.path.isfile(path):
            with open(path, "w") as handle:
                handle.write("\t".join(header) + "\n")

    def log(self, values: dict) -> None:
        if dist.is_main_process():
            with open(self.path, "a") as handle:
                handle.write("\t".join(str(values[k]) for k in self.header) + "\n")


def build_run_logs(args, rank: int, val_columns: list[str]) -> dict:
    """opts.json, TensorBoard and the original's per-rank TSV logs (pretraining and fine-tuning differ only in the
    validation columns)."""
    write_args_json(args, args.result_path, "opts.json")
    path = lambda name: os.path.join(args.result_path, name)  # noqa: E731
    return {
        "writer": make_tb_writer(path("tb"), not args.no_tensorboard),
        "train": TSVLogger(path(f"train.log.rank{rank}"), ["epoch", "loss", "acc", "lr"]),
        "batch": TSVLogger(path(f"train_batch.log.{rank}"), ["epoch", "batch", "iter", "loss", "acc", "lr"]),
        "val": TSVLogger(path(f"val.log.rank{rank}"), ["epoch", *val_columns]),
    }
