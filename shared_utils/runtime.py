"""The run-time layer of every entry point: launch, per-process set-up and the immutable run context.

* `torchrun --nproc_per_node=N main.py ...` sets RANK/WORLD_SIZE/LOCAL_RANK; `setup_worker` reads them.
* The originals' own launch flags (`--gpu 0,1`, `--gpus N`, `--multiprocessing_distributed`) are translated by each
  method into a `LaunchPlan`; `launch` spawns one process per device and sets the same environment variables
  torchrun would, so both styles run the same code path.
* Without CUDA the process group uses gloo on the CPU, which is how DDP is tested on CPU-only machines.

`args` keeps what the user typed: the device, ranks, world size and AMP state live in the `RunContext` that
`setup_worker` returns, and the code that needs them takes the context as a parameter.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlparse

import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from shared_utils.cli import UserError
from shared_utils.dist import free_port, setup_for_distributed


@dataclass(frozen=True)
class LaunchPlan:
    """How to start the run, translated from each method's launch flags (the parent process builds it).

    nprocs/nnodes/node_rank: processes on this node, nodes, this node's rank; dist_url: tcp://host:port of a
    multi-node run (None: a free local port); gpu_ids: the device of each local rank (empty: device = local rank);
    use_cuda: False forces the CPU, None takes CUDA when available; notes: lines the worker prints after its run
    header (the parent's decisions, e.g. a CPU fallback); start_time: when the launch was planned (the same on every
    spawned rank), for run folders named by date.
    """

    nprocs: int = 1
    nnodes: int = 1
    node_rank: int = 0
    dist_url: str | None = None
    gpu_ids: tuple[int, ...] = ()
    use_cuda: bool | None = None
    notes: tuple[str, ...] = ()
    start_time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RunContext:
    """What one process of the run is: device, ranks, world size and the AMP dtype (None: no autocast)."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    gpu: int | None = None
    backend: str | None = None
    amp_dtype: torch.dtype | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def use_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def amp(self) -> bool:
        return self.amp_dtype is not None

    def autocast(self):
        """Autocast to `amp_dtype` behind --amp; no context at all otherwise (a caller's own autocast stays)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def as_dict(self) -> dict:
        """Plain values for a checkpoint's `args` payload (the run the weights came from)."""
        out = {
            "rank": self.rank,
            "world_size": self.world_size,
            "local_rank": self.local_rank,
            "distributed": self.distributed,
            "gpu": self.gpu,
            "device": str(self.device),
        }
        if self.backend:
            out["dist_backend"] = self.backend
        return out


def local_context(device: torch.device | str = "cpu", amp: bool = False) -> RunContext:
    """A single-process context without a process group (benchmarks, tests, tools that train nothing)."""
    device = torch.device(device)
    return RunContext(device=device, amp_dtype=amp_dtype(amp, device))


def amp_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA behind --amp (no loss scaling needed); none on the CPU."""
    return torch.bfloat16 if amp and device.type == "cuda" else None


# --------------------------------------------------------------------------------------------------- launch


def _address_from_url(dist_url: str | None) -> tuple[str, int]:
    """tcp://host:port -> (host, port); anything else (None, env://) -> localhost and a free port."""
    if dist_url and dist_url.startswith("tcp://"):
        parsed = urlparse(dist_url)
        if parsed.hostname and parsed.port:
            return parsed.hostname, parsed.port
    return os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", 0)) or free_port()


def launch(worker: Callable[[Namespace, LaunchPlan], object], args: Namespace, plan: LaunchPlan | None = None) -> None:
    """Run `worker(args, plan)` in `plan.nprocs` local processes with torchrun's environment variables.

    With one process (and one node), or when already started by torchrun, `worker` runs in this process. A worker
    that exits with a code (e.g. 2 for a user error) makes this process exit with it.
    """
    plan = plan or LaunchPlan()
    if "RANK" in os.environ or (plan.nprocs <= 1 and plan.nnodes <= 1):
        worker(args, plan)
        return
    host, port = _address_from_url(plan.dist_url)
    if plan.nnodes == 1 and host in ("localhost", "127.0.0.1") and plan.dist_url is None:
        port = free_port()
    try:
        mp.start_processes(
            _spawned_entry, args=(worker, args, plan, host, port), nprocs=plan.nprocs, start_method="spawn"
        )
    except mp.ProcessExitedException as err:
        sys.exit(err.exit_code if err.exit_code and err.exit_code > 0 else 1)


def _spawned_entry(local_rank: int, worker, args: Namespace, plan: LaunchPlan, host: str, port: int) -> None:
    os.environ.update(
        RANK=str(plan.node_rank * plan.nprocs + local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(plan.nprocs * plan.nnodes),
        LOCAL_WORLD_SIZE=str(plan.nprocs),
        MASTER_ADDR=host,
        MASTER_PORT=str(port),
    )
    try:
        worker(args, plan)
    except UserError as err:
        sys.stderr.write(f"error: {err}\n")
        sys.exit(2)


# --------------------------------------------------------------------------------------------------- worker set-up


def setup_worker(
    plan: LaunchPlan | None = None,
    amp: bool = False,
    cudnn_benchmark: bool = True,
    share_threads: bool = True,
    respect_omp: bool = True,
) -> RunContext:
    """Read the torchrun variables, pick the device, start the process group (nccl on CUDA, gloo on CPU), silence
    print() on non-zero ranks, and return the run context.

    cudnn_benchmark: turn on cuDNN autotuning on CUDA; share_threads, respect_omp: split the CPU cores between
    this node's processes (see `share_cpu_threads`).
    """
    plan = plan or LaunchPlan()
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    use_cuda = torch.cuda.is_available() if plan.use_cuda is None else plan.use_cuda
    use_cuda = bool(use_cuda and torch.cuda.is_available())
    gpu = None
    device = torch.device("cpu")
    if use_cuda:
        gpu = plan.gpu_ids[local_rank] if local_rank < len(plan.gpu_ids) else local_rank
        torch.cuda.set_device(gpu)
        device = torch.device("cuda", gpu)
    backend = None
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not tdist.is_initialized():
            tdist.init_process_group(
                backend=backend,
                init_method="env://",
                world_size=world_size,
                rank=rank,
                timeout=datetime.timedelta(minutes=int(os.environ.get("DIST_TIMEOUT_MIN", 30))),
            )
            tdist.barrier()
    setup_for_distributed(rank == 0)
    ctx = RunContext(device, rank, local_rank, world_size, local_world, gpu, backend, amp_dtype(amp, device))
    if use_cuda and cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if share_threads:
        share_cpu_threads(ctx, respect_omp)
    return ctx


def share_cpu_threads(ctx: RunContext, respect_omp: bool = True) -> None:
    """Several CPU processes on one node split the cores between them (as torchrun's OMP_NUM_THREADS=1 does)
    instead of each spinning a full thread pool; with respect_omp, not when the user set OMP_NUM_THREADS.
    (The thread count changes the float summation order, so each method keeps the policy its numbers came from.)"""
    if ctx.use_cuda or ctx.local_world_size <= 1 or (respect_omp and "OMP_NUM_THREADS" in os.environ):
        return
    torch.set_num_threads(max(1, min(torch.get_num_threads(), (os.cpu_count() or 1) // ctx.local_world_size)))


def wrap_ddp(model: torch.nn.Module, ctx: RunContext, **ddp_kwargs) -> torch.nn.Module:
    """DistributedDataParallel on this process's device (the model itself at world size 1)."""
    if not ctx.distributed:
        return model
    device_ids = [ctx.gpu] if ctx.gpu is not None else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)


def to_device(x: torch.Tensor, ctx: RunContext, channels_last: bool = False) -> torch.Tensor:
    """Move a batch to the run's device (asynchronously), 5-D clips in channels_last_3d if asked."""
    x = x.to(ctx.device, non_blocking=True)
    if channels_last and x.dim() == 5:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x
