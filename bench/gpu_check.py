"""One-call GPU readiness check (bench/gpu_check.sh): per method, s/iter in fp32, bf16 autocast and bf16 +
channels_last at the paper's per-GPU batch and input size, the achieved TFLOP/s, the loader's clips/s per worker
against the step's clips/s (so: how many DataLoader workers keep the GPU fed), and a 1-GPU DDP smoke run (NCCL
on CUDA, gloo on CPU). Writes everything to one JSON file.

    bench/gpu_check.sh [--device cuda|cpu] [--tiny] [--methods ...] [--out bench/gpu_check.json]

--tiny: toy models and clips (seconds on a CPU), to check the script itself before a GPU is lent.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import statistics
import sys
import tempfile
import time

import cv2
import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench import recipe_bench  # noqa: E402
from bench.train_step import count_flops, time_step  # noqa: E402

METHODS = ("memdpc", "vtdl", "videomoco", "cpd")

# The papers' per-GPU batch and input (README commands, spec §1): MemDPC UCF101 16/GPU 8x5 128 px; VTDL ucf101.sh
# 8 clips (each anchor + positive + negative) 16x224; VideoMoCo 32 frames 112 px, -b 32 over a node whose GPU
# count is not stated (8/GPU assumed for 4 GPUs); CPD 32 clips/GPU at 16 frames 112 px (the setting).
PAPER = {
    "memdpc": (16, {}),
    "vtdl": (8, {"spatial_size": 224, "frames": 16}),
    "videomoco": (8, {"frame_per_clip": 32, "crop_size": 112}),
    "cpd": (32, {"sample_duration": 16, "sample_size": 112}),
}
TINY = {
    "memdpc": (1, {"img_dim": 32, "num_seq": 4, "pred_step": 1}),
    "vtdl": (2, {"spatial_size": 32, "frames": 8}),
    "videomoco": (1, {"arch": "mc3_18", "frame_per_clip": 4, "crop_size": 16, "moco_k": 8, "moco_dim": 16}),
    "cpd": (
        2,
        {"model_depth": 10, "sample_duration": 4, "sample_size": 32, "nce_k": 32, "n_data": 16, "text_model": "tiny"},
    ),
}
VARIANTS = (("fp32", False, False), ("bf16", True, False), ("bf16+channels_last", True, True))


def step_rows(method: str, device: torch.device, tiny: bool, iters: int) -> list[dict]:
    batch, config = (TINY if tiny else PAPER)[method]
    build = importlib.import_module(f"{method}.benchmark").build_train_step
    rows = []
    for name, bf16, channels_last in VARIANTS:
        step, info = build(device, batch, channels_last, **config)
        flops = count_flops(step, device, bf16)
        times = time_step(step, device, bf16, iters, warmup=0 if tiny else 1)
        seconds = statistics.median(times)
        rows.append(
            {
                "precision": name,
                "config": info["config"],
                "batch_per_gpu": batch,
                "s_per_iter": round(seconds, 4),
                "clips_per_s": round(batch / seconds, 2),
                "tflops": round(flops / seconds / 1e12, 3),
                "peak_mem_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                if device.type == "cuda"
                else None,
            }
        )
        print(
            f"{method:10s} {name:20s} {seconds:8.4f} s/iter  {rows[-1]['clips_per_s']:8.2f} clips/s  "
            f"{rows[-1]['tflops']:7.3f} TFLOP/s  (batch {batch}/GPU, {info['config']})",
            flush=True,
        )
        del step, info
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
    return rows


def loader_rate(method: str, tiny: bool, items: int) -> float:
    """clips/s of one loader worker on one core at the method's recipe (bench/recipe_bench.py's project loader,
    the process pinned to one CPU meanwhile)."""
    torch_threads = torch.get_num_threads()
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    recipe_bench.pin_to_one_core()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = recipe_bench.VARIANTS[method](tmp, "tiny" if tiny else "full")["project"]
            project(0)
            start = time.perf_counter()
            for i in range(items):
                project(i + 1)
            return items / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(-1)
        if affinity is not None:
            os.sched_setaffinity(0, affinity)


def ddp_smoke(device: torch.device) -> dict:
    """World size 1 in this process (NCCL on CUDA, gloo on CPU): DDP wraps a small Conv3d net, 3 SGD steps, one
    all_reduce; checks that the process group, the gradient hooks and the collective work."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/store", rank=0, world_size=1)
        try:
            torch.manual_seed(0)
            net = torch.nn.Sequential(torch.nn.Conv3d(3, 8, 3), torch.nn.AdaptiveAvgPool3d(1), torch.nn.Flatten())
            ddp = torch.nn.parallel.DistributedDataParallel(
                net.to(device), device_ids=[device.index or 0] if device.type == "cuda" else None
            )
            optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
            losses = []
            for _ in range(3):
                loss = ddp(torch.randn(2, 3, 4, 16, 16, device=device)).square().mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(round(loss.item(), 6))
            value = torch.ones(1, device=device)
            dist.all_reduce(value)
            ok = value.item() == 1.0 and all(math.isfinite(x) for x in losses)
        finally:
            dist.destroy_process_group()
    result = {"backend": backend, "world_size": 1, "losses": losses, "ok": ok}
    result["wall_s"] = round(time.perf_counter() - start, 2)
    print(f"DDP smoke ({backend}, world 1): ok={ok} losses {losses}  {result['wall_s']} s", flush=True)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the script, measures nothing")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--iters", type=int, default=0, help="timed iterations per variant (default 5; tiny 1)")
    parser.add_argument("--loader_items", type=int, default=0, help="samples timed per loader (default 6; tiny 1)")
    parser.add_argument("--out", default=os.path.join(HERE, "gpu_check.json"))
    args = parser.parse_args(argv)
    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    iters = args.iters or (1 if args.tiny else 5)
    items = args.loader_items or (1 if args.tiny else 6)
    report = {"machine": recipe_bench.machine(), "device": str(device), "tiny": args.tiny, "methods": {}}
    if device.type == "cuda":
        report["machine"]["gpu"] = torch.cuda.get_device_name(0)
        torch.backends.cudnn.benchmark = True
    for method in args.methods:
        rows = step_rows(method, device, args.tiny, iters)
        best = max(rows, key=lambda row: row["clips_per_s"])
        per_worker = loader_rate(method, args.tiny, items)
        workers = math.ceil(best["clips_per_s"] / per_worker)
        report["methods"][method] = {
            "steps": rows,
            "loader_clips_per_s_per_worker": round(per_worker, 2),
            "best_step_clips_per_s": best["clips_per_s"],
            "workers_to_feed_the_step": workers,
        }
        print(
            f"{method:10s} loader {per_worker:.2f} clips/s/worker vs step {best['clips_per_s']:.2f} clips/s "
            f"({best['precision']}) -> {workers} workers keep it fed",
            flush=True,
        )
    report["ddp_smoke"] = ddp_smoke(device)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"-> {args.out}")
    return report


if __name__ == "__main__":
    main()
