"""Distributed set-up shared by every launch style.

* `torchrun --nproc_per_node=N main.py ...` sets RANK/WORLD_SIZE/LOCAL_RANK; `init_distributed_mode` reads them.
* The originals' own launch flags (`--gpu 0,1`, `--gpus N`, `--multiprocessing_distributed`) go through `launch`,
  a thin wrapper that spawns one process per device and sets the same environment variables torchrun would,
  so both styles run the same code path.
* Without CUDA the process group uses gloo on the CPU, which is how DDP is tested on CPU-only machines.
Collective helpers are the identity at world size 1.
"""

from __future__ import annotations

import builtins
import datetime
import os
import socket
import sys
from argparse import Namespace
from collections.abc import Callable
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from shared_utils.cli import UserError, fail


def parse_gpu_list(spec: str | None) -> list[int]:
    """'0,1' -> [0, 1]; '', 'cpu' or None -> [] (CPU). Anything else is a user error."""
    if spec is None:
        return []
    spec = str(spec).strip()
    if spec in ("", "cpu", "none"):
        return []
    try:
        ids = [int(tok) for tok in spec.split(",") if tok.strip() != ""]
    except ValueError:
        fail(f"--gpu expects comma-separated device ids such as '0,1' or 'cpu', got '{spec}'")
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        fail(f"--gpu expects distinct non-negative device ids, got '{spec}'")
    return ids


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _address_from_url(dist_url: str | None) -> tuple[str, int]:
    """tcp://host:port -> (host, port); anything else (None, env://) -> localhost and a free port."""
    if dist_url and dist_url.startswith("tcp://"):
        parsed = urlparse(dist_url)
        if parsed.hostname and parsed.port:
            return parsed.hostname, parsed.port
    return os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", 0)) or free_port()


def launch(
    worker: Callable[[Namespace], object],
    args: Namespace,
    nprocs: int,
    dist_url: str | None = None,
    nnodes: int = 1,
    node_rank: int = 0,
) -> None:
    """Run `worker(args)` in `nprocs` local processes with torchrun's environment variables.

    With nprocs <= 1 (and one node), or when already started by torchrun, `worker(args)` runs in this
    process. A worker that exits with a code (e.g. 2 for a user error) makes this process exit with it.
    """
    if "RANK" in os.environ or (nprocs <= 1 and nnodes <= 1):
        worker(args)
        return
    host, port = _address_from_url(dist_url)
    if nnodes == 1 and host in ("localhost", "127.0.0.1") and dist_url is None:
        port = free_port()
    try:
        mp.start_processes(
            _spawned_entry,
            args=(worker, args, nprocs, nnodes, node_rank, host, port),
            nprocs=nprocs,
            start_method="spawn",
        )
    except mp.ProcessExitedException as err:
        sys.exit(err.exit_code if err.exit_code and err.exit_code > 0 else 1)


def _spawned_entry(local_rank, worker, args, nprocs, nnodes, node_rank, host, port) -> None:
    os.environ.update(
        RANK=str(node_rank * nprocs + local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(nprocs * nnodes),
        LOCAL_WORLD_SIZE=str(nprocs),
        MASTER_ADDR=host,
        MASTER_PORT=str(port),
    )
    try:
        worker(args)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)


def init_distributed_mode(args: Namespace, gpu_ids: list[int] | None = None, use_cuda: bool | None = None) -> None:
    """Set args.distributed/rank/world_size/local_rank/gpu/device and start the process group if needed.

    gpu_ids: the devices the user listed (local rank i uses gpu_ids[i]); default: device = local rank.
    use_cuda: force CPU with False; default: CUDA when available.
    """
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    use_cuda = bool(use_cuda and torch.cuda.is_available())

    args.rank, args.world_size, args.local_rank = rank, world_size, local_rank
    args.distributed = world_size > 1
    if use_cuda:
        args.gpu = gpu_ids[local_rank] if gpu_ids and local_rank < len(gpu_ids) else local_rank
        torch.cuda.set_device(args.gpu)
        args.device = torch.device("cuda", args.gpu)
    else:
        args.gpu = None
        args.device = torch.device("cpu")

    if args.distributed and not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        args.dist_backend = backend
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            world_size=world_size,
            rank=rank,
            timeout=datetime.timedelta(minutes=int(os.environ.get("DIST_TIMEOUT_MIN", 30))),
        )
        dist.barrier()
    setup_for_distributed(rank == 0)


def setup_for_distributed(is_master: bool) -> None:
    """Silence print() on non-zero ranks unless called with force=True."""
    builtin_print = getattr(builtins.print, "_original", builtins.print)

    def print_(*args, **kwargs):
        force = kwargs.pop("force", False)
        if is_master or force:
            builtin_print(*args, **kwargs)

    print_._original = builtin_print  # type: ignore[attr-defined]
    builtins.print = print_


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    setup_for_distributed(True)


def is_dist_avail_and_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_dist_avail_and_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if is_dist_avail_and_initialized() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist_avail_and_initialized():
        dist.barrier()


@torch.no_grad()
def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of `tensor` over ranks (a new tensor)."""
    if get_world_size() == 1:
        return tensor.clone()
    out = tensor.clone()
    dist.all_reduce(out)
    return out / get_world_size()


@torch.no_grad()
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if get_world_size() == 1:
        return tensor.clone()
    out = tensor.clone()
    dist.all_reduce(out)
    return out


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0 (no gradient; equal sizes on every rank)."""
    if get_world_size() == 1:
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, with gradients flowing back to each rank."""
    if get_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def all_gather_object(obj: object) -> list[object]:
    if get_world_size() == 1:
        return [obj]
    out: list[object] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def batch_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's shuffle-BN, step 1: gather the batch, permute it across ranks, return this rank's share.

    Returns (shuffled local batch, index to undo the permutation). Identity at world size 1.
    """
    if get_world_size() == 1:
        return x, torch.arange(x.shape[0], device=x.device)
    local_b = x.shape[0]
    x_all = concat_all_gather(x)
    idx_shuffle = torch.randperm(x_all.shape[0], device=x.device)
    dist.broadcast(idx_shuffle, src=0)
    idx_unshuffle = torch.argsort(idx_shuffle)
    rank = get_rank()
    return x_all[idx_shuffle.view(get_world_size(), local_b)[rank]], idx_unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """MoCo's shuffle-BN, step 2: undo `batch_shuffle` on the encoder outputs."""
    if get_world_size() == 1:
        return x
    local_b = x.shape[0]
    x_all = concat_all_gather(x)
    return x_all[idx_unshuffle.view(get_world_size(), local_b)[get_rank()]]
