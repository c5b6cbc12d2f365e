"""Launch and per-process set-up shared by VTDL's entry points: device choice, `--gpus` spawning (one DDP process
per listed device, gloo on CPU) or torchrun, autocast, per-rank batch and worker counts."""

from __future__ import annotations

import contextlib
import os

import torch

from shared_utils import dist
from shared_utils.cli import fail
from shared_utils.rng import seed_everything
from shared_utils.transforms import device_normalize


def resolve_devices(args, gpus: str | None) -> None:
    """Set args.gpu_ids / args.use_cuda / args.nprocs from --device, --gpus (and --gpu for pretraining)."""
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
    args.gpu_ids, args.use_cuda, args.nprocs = ids, use_cuda, nprocs


def start(worker, args) -> None:
    """One process (in this one) or args.nprocs spawned DDP processes; torchrun's variables take precedence."""
    if "RANK" in os.environ:
        args.nprocs = 1
    dist.launch(worker, args, args.nprocs, dist_url=args.dist_url)


def setup_process(args) -> None:
    """Process group (nccl / gloo), device, and seed + rank."""
    dist.init_distributed_mode(args, gpu_ids=args.gpu_ids or None, use_cuda=args.use_cuda)
    seed_everything(args.seed, args.rank)
    if args.use_cuda:
        torch.backends.cudnn.benchmark = True


def autocast(args):
    """bf16 autocast on CUDA with --amp (no loss scaling needed); a no-op elsewhere."""
    if getattr(args, "amp", False) and args.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The global batch (the original's, split by DataParallel) divided over the processes."""
    if batch_size < 1 or batch_size % world_size:
        fail(f"batch size {batch_size} must be a positive multiple of the number of processes ({world_size})")
    return batch_size // world_size


def worker_count(requested: int) -> int:
    return max(0, min(int(requested), os.cpu_count() or 1))


def to_device(x: torch.Tensor, args) -> torch.Tensor:
    """A batch of clips [B, C, T, H, W] on the device; the training transform's uint8 clips normalised there."""
    x = device_normalize(x.to(args.device, non_blocking=True))
    if getattr(args, "channels_last", False) and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x
