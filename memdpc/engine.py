"""Run-time pieces shared by main.py (pretraining) and test.py (evaluation): devices and DDP, the LR multiplier,
loaders, experiment folders, checkpoints and exact resume."""

from __future__ import annotations

import datetime
import json
import math
import os
import time

import torch

from memdpc.model import clean_state_dict
from shared_utils import dist, runtime
from shared_utils.checkpoint import (
    CheckpointWriter,
    RunState,
    extract_state_dict,
    load_checkpoint,
    load_state_dict_reported,
    unwrap_model,
)
from shared_utils.cli import fail, fix_enabled, require_choice
from shared_utils.data import EpochSampler, build_loader
from shared_utils.logger import log_run_header

LATEST = "latest.pth.tar"
EPOCH_PATTERN = "epoch{epoch}.pth.tar"
BEST = "model_best.pth.tar"

# --------------------------------------------------------------------------------------------------- devices / DDP


def start_logging(args, plan: runtime.LaunchPlan, exp_dir: str | None) -> None:
    """Run header (command, git SHA, args), then the launcher's notes. `exp_dir` gets args.json now; runs that
    still check their data pass None and call write_args_json once the checks passed (a failed start writes
    nothing)."""
    log_run_header(args, exp_dir)
    for message in plan.notes:
        print(message)


def data_workers(args) -> int:
    """-j capped at the CPU cores (check_common notes the cap)."""
    return min(args.workers, os.cpu_count() or 1)


def check_common(args, datasets: tuple[str, ...]) -> list[str]:
    """Flag values that would otherwise fail late (after building models or reading data); returns notes for the
    run header."""
    from memdpc.backbone import ARCHS

    require_choice(args.net, tuple(ARCHS), "--net")
    require_choice(args.dataset, datasets, "--dataset")
    for flag in ("num_seq", "seq_len", "ds", "batch_size", "img_dim", "epochs"):
        if getattr(args, flag) <= 0:
            fail(f"--{flag} must be positive, got {getattr(args, flag)}")
    cores = os.cpu_count() or 1
    if args.workers > cores:
        return [f"note: -j {args.workers} > {cores} CPU cores; using {cores} data workers"]
    return []


def launch(worker, args, notes: list[str]) -> None:
    """`--gpu 0,1` -> one DDP process per id (nccl); `--gpu cpu` or no CUDA -> one CPU process; torchrun -> as set."""
    gpu_ids = dist.parse_gpu_list(args.gpu)
    if gpu_ids and not torch.cuda.is_available():
        notes = [*notes, f"note: --gpu {args.gpu}: CUDA is not available, running on the CPU in one process"]
        gpu_ids = []
    if gpu_ids and max(gpu_ids) >= torch.cuda.device_count():
        fail(f"--gpu {args.gpu}: only {torch.cuda.device_count()} CUDA device(s) visible")
    plan = runtime.LaunchPlan(
        nprocs=max(len(gpu_ids), 1), gpu_ids=tuple(gpu_ids), use_cuda=bool(gpu_ids), notes=tuple(notes)
    )
    runtime.launch(worker, args, plan)


def setup_worker(args, plan: runtime.LaunchPlan) -> runtime.RunContext:
    """Process group (gloo on CPU), device, cuDNN autotuning, CPU cores shared by the local processes."""
    return runtime.setup_worker(plan, amp=args.amp, respect_omp=False)


def wrap_ddp(model: torch.nn.Module, ctx: runtime.RunContext) -> torch.nn.Module:
    """DDP with default gradient averaging and rank-0 buffer broadcast; no SyncBN (per-GPU BN as the original)."""
    return runtime.wrap_ddp(model, ctx)


def total_batch(args, plan: runtime.LaunchPlan) -> int:
    """The batch over all GPUs, as the original's folder names write it."""
    return args.batch_size * max(len(plan.gpu_ids), dist.get_world_size(), 1)


def to_channels_last(model: torch.nn.Module, args) -> None:
    if args.channels_last:
        model.backbone.to(memory_format=torch.channels_last_3d)
        model.channels_last = True


# --------------------------------------------------------------------------------------------------- schedule


def lr_multiplier(step: int, milestones: list[int], gamma: float = 0.1, every_milestone: bool = False) -> float:
    """The released multiplier (MultiStepLR_Restart_Multiplier with repeat=1): gamma ** (milestones reached) up to the
    largest milestone, gamma ** (len(milestones) - 1) from there on. With the README's two milestones it drops ONCE
    (x0.1 at the first, still x0.1 after the second); a single milestone never lowers it (x1 before and after).
    every_milestone=True (--fix schedule): gamma ** (milestones reached), the intended multi-step decay."""
    if not milestones:
        return 1.0
    if every_milestone:
        return gamma ** len([m for m in milestones if step >= m])
    top = max(milestones)
    if step // top >= 1:
        return gamma ** (len(milestones) - 1)
    return gamma ** len([m for m in milestones if step % top >= m])


def make_scheduler(optimizer, milestones: list[int], args, one_epoch_late: bool = False):
    """LambdaLR over the released multiplier (or --fix schedule). one_epoch_late: the evaluation script steps it after
    each epoch with the epoch index, so the LR of epoch e is lr * mult(e - 1) and a drop lands one epoch late."""
    every = fix_enabled(args, "schedule")
    if one_epoch_late:
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: lr_multiplier(max(e - 1, 0), milestones, every_milestone=every)
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, milestones, every_milestone=every)
    )


# --------------------------------------------------------------------------------------------------- loaders


def make_loader(dataset, args, shuffle: bool, seed: int, drop_last: bool = True, collate_fn=None):
    """EpochSampler (resumable, per rank) + DataLoader; the workers of --workers are shared by the ranks."""
    world = dist.get_world_size()
    if drop_last and len(dataset) < args.batch_size * world:
        drop_last = False  # a tiny validation set still yields one (smaller) batch
    batch = args.batch_size if collate_fn is None else 1
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, drop_last=drop_last, batch_size=batch)
    workers = int(math.ceil(data_workers(args) / world)) if data_workers(args) > 0 else 0
    return build_loader(dataset, batch, sampler, workers, collate_fn=collate_fn, drop_last=drop_last)


def epoch_steps(loader, args) -> int:
    """Iterations in one full epoch (after the --iters_per_epoch cap), also while a resumed epoch skips its start."""
    items = loader.sampler.epoch_length()
    full = items // loader.batch_size if loader.drop_last else -(-items // loader.batch_size)
    return min(full, args.iters_per_epoch) if args.iters_per_epoch > 0 else full


def save_due(args, run: dict) -> bool:
    """--save_every_iters: the resumable latest checkpoint is due after this iteration."""
    return args.save_every_iters > 0 and run["iteration"] % args.save_every_iters == 0


def stop_inside_epoch(args, run: dict, epoch_continues: bool) -> bool:
    """--max_iters (total optimiser steps): mark the run stopped at this step; True when that cuts the epoch short
    (the caller writes the latest checkpoint and skips the epoch end), False when the epoch ends here anyway."""
    if not (args.max_iters and run["iteration"] >= args.max_iters):
        return False
    run["stop"] = "inside" if epoch_continues else "end"
    print(f"stopped at global step {run['iteration']} (--max_iters); the same command without it resumes")
    return epoch_continues


# --------------------------------------------------------------------------------------------------- folders / logs


def text_log_path(img_dir: str) -> str:
    return os.path.join(img_dir, time.strftime("%Y-%m-%d-%H:%M:%S") + ".log")


def write_text_log(path: str, message: str) -> None:
    if dist.is_main_process():
        with open(path, "a") as handle:
            handle.write(message + "\n")


def report_epoch(path: str, epoch: int, epochs: int, train: tuple, val: tuple, seconds: float, digits: int) -> None:
    """Print the epoch's summary line (loss, accuracy of train and val at `digits` decimals, elapsed time) and
    append it to the text log."""
    line = (
        f"Epoch: [{epoch}/{epochs}] Loss {train[0]:.{digits}f} Acc {train[1]:.4f} | "
        f"val Loss {val[0]:.{digits}f} Acc {val[1]:.4f} | {datetime.timedelta(seconds=int(seconds))}"
    )
    print(line)
    write_text_log(path, line)


def _logged_epoch(line: str) -> float:
    """The epoch of one log.txt line; a line cut short by a kill counts as not logged."""
    try:
        return json.loads(line).get("epoch", float("inf")) if line.endswith("\n") else float("inf")
    except json.JSONDecodeError:
        return float("inf")


def trim_json_log(path: str, start_epoch: int) -> None:
    """On resume, drop the JSON lines of epochs the checkpoint does not cover (a run killed between writing an
    epoch's line and its checkpoint re-runs that epoch), so every epoch is logged exactly once."""
    if not dist.is_main_process() or not os.path.isfile(path):
        return
    with open(path) as handle:
        lines = handle.readlines()
    kept = [line for line in lines if _logged_epoch(line) < start_epoch]
    if len(kept) == len(lines):
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.writelines(kept)
    os.replace(tmp, path)


def tb_writers(img_dir: str, enabled: bool):
    from shared_utils.logger import make_tb_writer

    return make_tb_writer(os.path.join(img_dir, "train"), enabled), make_tb_writer(
        os.path.join(img_dir, "val"), enabled
    )


# --------------------------------------------------------------------------------------------------- checkpoints


def checkpoint_writer(model_dir: str) -> CheckpointWriter:
    """epoch<E>.pth.tar (only the newest kept, as the original), model_best.pth.tar, and the resumable latest."""
    return CheckpointWriter(model_dir, latest_name=LATEST, epoch_pattern=EPOCH_PATTERN, best_name=BEST, keep_last=1)


# the original's keys (epoch = the last finished epoch, state_dict, best_acc, optimizer, iteration, backbone) in its
# order, then what exact resume needs
CHECKPOINT_ORDER = ("epoch", "state_dict", "best_acc", "optimizer", "iteration", "backbone", "scheduler")
RESUME_ORDER = ("next_epoch", "epoch_step", "rng", "meters", "args")


def save_run(model, optimizer, scheduler, args, ctx, run: dict, epoch: int, next_epoch: int, **kw) -> None:
    """The run state (RunState) in the original layout; next_epoch and epoch_step = where a resume starts (a
    mid-epoch latest has epoch_step > 0, and its `epoch` is the previous one). Every rank contributes its RNG
    state; rank 0 writes atomically. Epoch ends also write epoch<E>.pth.tar. kw: epoch_step, is_best, meters."""
    epoch_step = int(kw.get("epoch_step", 0))
    counters = {
        "epoch": int(epoch if epoch_step == 0 else epoch - 1),
        "best_acc": float(run["best_acc"]),
        "iteration": int(run["iteration"]),
        "next_epoch": int(next_epoch),
        "epoch_step": epoch_step,
    }
    state = RunState({"state_dict": model, "optimizer": optimizer, "scheduler": scheduler}, **counters)
    state.save(
        run["writer"],
        args,
        ctx,
        epoch=epoch if epoch_step == 0 else None,
        is_best=kw.get("is_best", False),
        order=CHECKPOINT_ORDER + RESUME_ORDER,
        backbone=args.net,
        meters=kw.get("meters") or {},
    )


def load_model_weights(model, path: str, name: str) -> dict:
    """Strict load of a full checkpoint ('module.' stripped, ConvGRU aliases completed); returns the checkpoint."""
    ckpt = load_checkpoint(path)
    state = clean_state_dict(extract_state_dict(ckpt, ("state_dict", "model")))
    load_state_dict_reported(unwrap_model(model), state, strict=True, name=name)
    return ckpt


def place_scheduler(scheduler, optimizer, step: int) -> None:
    """Set a LambdaLR to `step` steps done and the optimizer's LRs accordingly."""
    scheduler.last_epoch = step
    lrs = [base * fn(step) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs


def resume(path: str, model, optimizer, scheduler, args) -> dict:
    """Restore model, optimizer (unless --reset_lr), scheduler, RNG; return {start_epoch, epoch_step, iteration,
    best_acc, meters}. Checkpoints of the original code (no next_epoch) resume AFTER their saved epoch."""
    ckpt = load_model_weights(model, path, f"resume '{os.path.basename(path)}'")
    parts = {} if args.reset_lr else {"optimizer": optimizer, "scheduler": scheduler}
    run = RunState(parts, optional=set(parts), epoch=-1, best_acc=0.0, iteration=0, next_epoch=-1, epoch_step=0)
    run.load(ckpt)
    if ckpt.get("scheduler") is None or args.reset_lr:
        # the original saved no scheduler: place it at the saved iteration instead of restarting it
        place_scheduler(scheduler, optimizer, run["iteration"])
    start = run["next_epoch"] if run["next_epoch"] >= 0 else run["epoch"] + 1
    print(f"=> resumed '{path}': next epoch {start}, step {run['epoch_step']}, iteration {run['iteration']}")
    return {
        "start_epoch": start,
        "epoch_step": run["epoch_step"],
        "iteration": run["iteration"],
        "best_acc": run["best_acc"],
        "meters": ckpt.get("meters") or {},
    }
