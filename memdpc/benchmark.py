"""Seconds per pretraining iteration of MemDPC on synthetic tensors (no data loading).

    python -m memdpc.benchmark [--net resnet18 --img_dim 128 --batch_size 4 --iters 5 --threads 0 --channels_last]

The default configuration is the issue's: R-2D3D-18, 128 px, batch 4, with main.py's defaults num_seq 8, seq_len 5,
pred_step 3, mem_size 1024 (ds 3 only affects which frames are read, not the tensor sizes), Adam lr 1e-3, wd 1e-5.
`build_train_step` is the hook of the lead's bench/train_step.py.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from collections.abc import Callable

import torch

from memdpc.model import MemDPC
from shared_utils.cli import ArgumentParser, run_cli

CONFIG = {"net": "resnet18", "img_dim": 128, "num_seq": 8, "seq_len": 5, "pred_step": 3, "mem_size": 1024}


def build_train_step(
    device: torch.device, batch_size: int = 4, channels_last: bool = False, **overrides
) -> tuple[Callable[[], torch.Tensor], dict]:
    """One full pretraining iteration (forward, dense predictive loss, backward, Adam step) on a fixed random batch;
    batch_size defaults to the issue's 4 (the per-GPU batch of main.py).

    overrides (net, img_dim, num_seq, seq_len, pred_step, mem_size) change the configuration, for tiny tests only.
    Returns (step, info); step() returns the detached loss.
    """
    config = {**CONFIG, **overrides}
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # the model's construction banner
        model = MemDPC(
            config["img_dim"],
            config["num_seq"],
            config["seq_len"],
            config["pred_step"],
            config["net"],
            config["mem_size"],
        )
    model.to(device).train()
    block = torch.randn(
        batch_size, config["num_seq"], 3, config["seq_len"], config["img_dim"], config["img_dim"], device=device
    )  # B, N, C, SL, H, W
    if channels_last:  # main.py --channels_last: the backbone (the 5-D part) in channels_last_3d
        model.backbone.to(memory_format=torch.channels_last_3d)
        model.channels_last = True
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)

    def step() -> torch.Tensor:
        loss = model(block)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    step.model = model  # for tests
    info = {
        "method": "memdpc",
        "config": (
            f"R-2D3D-{config['net'].removeprefix('resnet')} {config['img_dim']}px, N={config['num_seq']} blocks x "
            f"SL={config['seq_len']} frames, pred {config['pred_step']}, mem {config['mem_size']}, "
            f"batch {batch_size}, Adam"
        ),
        "batch_size": batch_size,
    }
    return step, info


def get_args_parser() -> ArgumentParser:
    parser = ArgumentParser(description="MemDPC seconds per pretraining iteration (synthetic input)")
    parser.add_argument("--net", default=CONFIG["net"], type=str)
    parser.add_argument("--img_dim", default=CONFIG["img_dim"], type=int)
    parser.add_argument("--batch_size", default=4, type=int)
    parser.add_argument("--iters", default=5, type=int, help="timed iterations (after one warm-up)")
    parser.add_argument("--threads", default=0, type=int, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", type=str)
    parser.add_argument("--channels_last", action="store_true")
    return parser


def main(args) -> dict:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    step, info = build_train_step(device, args.batch_size, args.channels_last, net=args.net, img_dim=args.img_dim)

    def timed() -> float:
        start = time.perf_counter()
        loss = step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        loss.item()
        return time.perf_counter() - start

    timed()  # warm-up
    times = [timed() for _ in range(args.iters)]
    median = statistics.median(times)
    print(f"{info['config']} on {device} ({torch.get_num_threads()} threads): median {median:.3f} s/iter "
          f"(runs: {', '.join(f'{t:.3f}' for t in times)})")  # fmt: skip
    return {**info, "median_s": median, "times_s": times}


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
