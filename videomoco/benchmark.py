"""Seconds per training iteration of VideoMoCo on synthetic tensors (no data loading).

`build_train_step(device, batch_size, channels_last)` is the hook of bench/train_step.py: one pretraining
iteration of train.py at the issue's configuration (R(2+1)D-18, -fpc 8, 112 px, batch 2, the MoCo queue at the
default --moco-k 65536): the GPU augmentation of both views, the D forward (query, momentum key encoder with
shuffle-BN, decayed queue negatives, enqueue), L_D, backward and SGD step of the query encoder. With
adversarial=True the step is the G+D one of the adversarial phase (generator, frame drop, L_G and the released
gradient rule, both optimisers). The CLI times both:

    python -m videomoco.benchmark [-a r2plus1d_18 -fpc 8 -cs 112 -b 2 --moco-k 65536 --iters 5 --device cpu]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from shared_utils import runtime
from shared_utils.cli import ArgumentParser, run_cli
from videomoco import train
from videomoco.augment import VideoMoCoAugment
from videomoco.opts import ARCHS, aug_per_frame, get_args_parser


def build_train_step(
    device: torch.device,
    batch_size: int = 2,
    channels_last: bool = False,
    *,
    adversarial: bool = False,
    arch: str = "r2plus1d_18",
    frame_per_clip: int = 8,
    crop_size: int = 112,
    moco_k: int = 65536,
    moco_dim: int = 128,
) -> tuple[Callable[[], torch.Tensor], dict]:
    """One train.py iteration (train.train_step) on fixed random clips already on `device`; `step()` returns
    L_D detached. The defaults are the issue's configuration; adversarial=True times a G+D step.
    channels_last: as train.py --channels_last (D and both views in channels_last_3d on CUDA; no-op on CPU)."""
    device = torch.device(device)
    argv = ["DATA", "-a", arch, "-fpc", str(frame_per_clip), "-cs", str(crop_size), "-b", str(batch_size)]
    argv += ["--moco-k", str(moco_k), "--moco-dim", str(moco_dim), "--seed", "0"]
    argv += ["--channels_last"] if channels_last else []
    argv += [] if adversarial else ["--no_generator"]
    args = get_args_parser().parse_args(argv)
    if moco_k % batch_size:
        raise ValueError(f"batch {batch_size} must divide the queue size {moco_k}")
    ctx = runtime.local_context(device)  # no --amp: a caller's own autocast stays in force
    torch.manual_seed(0)
    G, _, D_ddp, opt_g, opt_d = train.build_models(args, ctx)
    aug = VideoMoCoAugment(args.aug_plus, aug_per_frame(args), crop_size).to(device)
    shape = (batch_size, 3, frame_per_clip, crop_size, crop_size)  # B, 3, T, H, W in [0, 1] as the loader gives
    batch = (torch.rand(shape, device=device), torch.rand(shape, device=device))
    t = args.temporal_decay

    def step() -> torch.Tensor:
        stats = train.train_step(G, D_ddp, aug, batch, opt_g, opt_d, adversarial, t, args, ctx)
        return torch.tensor(stats["loss_d"])

    step.G, step.D = G, D_ddp  # for tests and inspection
    phase = "G+D adversarial step" if adversarial else "D step (MoCo, decayed queue)"
    config = f"{arch} {frame_per_clip}x{crop_size}px, K={moco_k}, dim {moco_dim}, {phase}"
    return step, {"method": "videomoco", "config": config, "batch_size": batch_size}


def time_step(step: Callable[[], torch.Tensor], iters: int, warmup: int = 1, device=None) -> list[float]:
    """Wall seconds of `iters` calls after `warmup` calls (CUDA synchronised)."""
    sync = torch.cuda.synchronize if device is not None and torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def get_bench_parser() -> ArgumentParser:
    p = ArgumentParser(description="VideoMoCo seconds per training iteration (synthetic tensors)")
    p.add_argument("-a", "--arch", default="r2plus1d_18", choices=ARCHS)
    p.add_argument("-fpc", "--frame_per_clip", default=8, type=int)
    p.add_argument("-cs", "--crop_size", default=112, type=int)
    p.add_argument("-b", "--batch_size", default=2, type=int)
    p.add_argument("--moco-k", "--moco_k", dest="moco_k", default=65536, type=int)
    p.add_argument("--iters", default=5, type=int, help="timed iterations (after one warm-up)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels_last", action="store_true")
    return p


def main(args) -> None:
    for adversarial in (False, True):
        step, info = build_train_step(
            torch.device(args.device),
            args.batch_size,
            args.channels_last,
            adversarial=adversarial,
            arch=args.arch,
            frame_per_clip=args.frame_per_clip,
            crop_size=args.crop_size,
            moco_k=args.moco_k,
        )
        times = time_step(step, args.iters, device=args.device)
        print(
            f"{info['config']}, batch {info['batch_size']}, {args.device}, {torch.get_num_threads()} threads: "
            f"median {statistics.median(times):.3f} s/iter (min {min(times):.3f}, max {max(times):.3f}, n={len(times)})"
        )


if __name__ == "__main__":
    run_cli(main, get_bench_parser().parse_args())
