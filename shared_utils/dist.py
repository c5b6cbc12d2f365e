"""Collectives and rank helpers (identity at world size 1), print silencing on non-zero ranks, `--gpu` lists.

Launch and process-group set-up live in `shared_utils.runtime`.
"""

from __future__ import annotations

import builtins
import socket

import torch
import torch.distributed as dist

from shared_utils.cli import fail


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
