"""VTDL's launch flags translated into the shared run-time layer: `--device` and `--gpus` (and `--gpu` for
pretraining) -> a `LaunchPlan` (one DDP process per listed device, gloo on CPU; torchrun's variables take
precedence), per-process set-up with seed + rank, and the global batch divided over the processes."""

from __future__ import annotations

import datetime
import os

import torch

from shared_utils import dist, runtime
from shared_utils.cli import fail
from shared_utils.rng import seed_everything
from shared_utils.transforms import device_normalize


def launch_plan(args, gpus: str | None) -> runtime.LaunchPlan:
    """The devices of --device, --gpus (and --gpu for pretraining): one process per listed id."""
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible")
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    ids = dist.parse_gpu_list(gpus) if gpus not in (None, "") else []
    if not ids and getattr(args, "gpu", None) is not None:
        ids = [int(args.gpu)]
    nprocs = max(len(ids), 1)
    if use_cuda and ids:
        count = torch.cuda.device_count()
        if len(ids) > count:
            fail(f"--gpus {gpus}: {len(ids)} devices asked for, {count} visible")
        if max(ids) >= count:
            print(f"note: --gpus {gpus} names devices that are not visible; using devices 0..{len(ids) - 1}")
            ids = list(range(len(ids)))
    elif not use_cuda and nprocs > 1:
        print(f"note: no CUDA; --gpus {gpus} starts {nprocs} CPU processes with the gloo backend")
    if "RANK" in os.environ:
        nprocs = 1
    return runtime.LaunchPlan(nprocs=nprocs, dist_url=args.dist_url, gpu_ids=tuple(ids), use_cuda=use_cuda)


def start(worker, args, gpus: str | None) -> None:
    """One process (in this one) or one spawned DDP process per device."""
    runtime.launch(worker, args, launch_plan(args, gpus))


def setup_process(args, plan: runtime.LaunchPlan) -> runtime.RunContext:
    """Process group (nccl / gloo), device, and seed + rank."""
    ctx = runtime.setup_worker(plan, amp=getattr(args, "amp", False), share_threads=False)
    seed_everything(args.seed, ctx.rank)
    return ctx


def launch_date(plan: runtime.LaunchPlan) -> str:
    """The original's run-folder stamp (month-day-hourminute) of the launch, the same on every spawned rank."""
    return datetime.datetime.fromtimestamp(plan.start_time).strftime("%m-%d-%H%M")


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The global batch (the original's, split by DataParallel) divided over the processes."""
    if batch_size < 1 or batch_size % world_size:
        fail(f"batch size {batch_size} must be a positive multiple of the number of processes ({world_size})")
    return batch_size // world_size


def worker_count(requested: int) -> int:
    return max(0, min(int(requested), os.cpu_count() or 1))


def to_device(x: torch.Tensor, args, ctx: runtime.RunContext) -> torch.Tensor:
    """A batch of clips [B, C, T, H, W] on the device; the training transform's uint8 clips normalised there."""
    x = device_normalize(x.to(ctx.device, non_blocking=True))
    return runtime.to_device(x, ctx, channels_last=getattr(args, "channels_last", False))
