"""Train-step time per method on synthetic tensors (no data loading): seconds per iteration, samples/s, TFLOP/s.

    python bench/train_step.py [--methods memdpc vtdl videomoco cpd] [--device cpu|cuda] [--iters 3] [--out F]

Each method's `<method>.benchmark.build_train_step(device, batch_size, channels_last)` builds its model, optimizer and
loss at the configuration its issue names (see the `config` column) and returns one full iteration (forward, loss,
backward, optimizer step). On CPU the step runs in fp32; on CUDA three variants run: fp32, bf16 autocast, and bf16 +
channels_last_3d. FLOPs come from torch's FlopCounterMode over one step (matmul/conv forward + backward), so TFLOP/s is
the achieved rate for the counted operations.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import platform
import statistics
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from shared_utils.cli import ArgumentParser, run_cli

METHODS = ("memdpc", "vtdl", "videomoco", "cpd")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def count_flops(step, device: torch.device, bf16: bool) -> int:
    with FlopCounterMode(display=False) as counter, _autocast(device, bf16):
        step()
    _sync(device)
    return counter.get_total_flops()


def time_step(step, device: torch.device, bf16: bool, iters: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + iters):
        _sync(device)
        start = time.perf_counter()
        with _autocast(device, bf16):
            loss = step()
        _sync(device)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss {loss.item()} at iteration {i}")
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def variants(device: torch.device) -> list[tuple[str, bool, bool]]:
    """(name, bf16, channels_last)"""
    if device.type != "cuda":
        return [("fp32", False, False)]
    return [("fp32", False, False), ("bf16", True, False), ("bf16+channels_last", True, True)]


def bench_method(method: str, device: torch.device, iters: int, warmup: int) -> list[dict]:
    build = importlib.import_module(f"{method}.benchmark").build_train_step
    rows = []
    for name, bf16, channels_last in variants(device):
        step, info = build(device, channels_last=channels_last)
        flops = count_flops(step, device, bf16)  # also a warm-up iteration
        times = time_step(step, device, bf16, iters, warmup)
        seconds = statistics.median(times)
        rows.append(
            {
                "method": method,
                "config": info["config"],
                "batch_size": info["batch_size"],
                "precision": name,
                "s_per_iter": seconds,
                "runs_s": times,
                "samples_per_s": info["batch_size"] / seconds,
                "gflop_per_iter": flops / 1e9,
                "tflops": flops / seconds / 1e12,
            }
        )
        print(
            f"{method:10s} {name:20s} {seconds:8.3f} s/iter  {rows[-1]['samples_per_s']:7.2f} samples/s  "
            f"{rows[-1]['tflops']:7.4f} TFLOP/s  ({info['config']}, batch {info['batch_size']})",
            flush=True,
        )
        del step, info
    return rows


def machine() -> dict:
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(args) -> list[dict]:
    device = torch.device(args.device)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    rows = []
    for method in args.methods:
        rows += bench_method(method, device, args.iters, args.warmup)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"machine": machine(), "rows": rows}, handle, indent=1)
    return rows


def get_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--iters", type=int, default=3, help="timed iterations (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations after the FLOP-counting one")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--out", default="", help="JSON file for the rows and the machine")
    return parser


if __name__ == "__main__":
    run_cli(main, get_parser().parse_args())
