"""One VTDL pretraining iteration on synthetic tensors, for bench/train_step.py (no data loading).

The issue's configuration: I3D, 16 frames at 112 px, batch 2, the recommended recipe (`--softmax --moco`, TCA,
temporal negative) with the default queue (K = 16384, UCF101's n_data).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from shared_utils import runtime
from vtdl.opts import get_pretrain_args_parser
from vtdl.train_temporal_dis import build_state, compute_loss


def build_train_step(
    device: torch.device, batch_size: int = 2, channels_last: bool = False, spatial_size: int = 112, frames: int = 16
) -> tuple[Callable[[], torch.Tensor], dict]:
    """`step()` runs forward (query with TCA + temporal negative, key encoder), NCE loss, backward, SGD and the
    momentum update, and returns the detached loss."""
    argv = ["--softmax", "--moco", "--arch", "i3d", "--spatial_size", str(spatial_size), "--data_length", str(frames)]
    args = get_pretrain_args_parser().parse_args(argv + (["--channels_last"] if channels_last else []))
    ctx = runtime.local_context(device)
    torch.manual_seed(0)
    state = build_state(args, ctx, n_data=9537)  # UCF101 split-1 training videos: the queue's index range
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    clip = (batch_size, 3, frames, spatial_size, spatial_size)
    anchor, positive, negative = (
        torch.randn(clip, device=device).contiguous(memory_format=memory_format) for _ in "apn"
    )
    tca_rng = np.random.RandomState(0)

    def step() -> torch.Tensor:
        loss, _ = compute_loss(state["model"], state["criterion"], anchor, positive, negative, tca_rng, args, ctx)
        state["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        state["optimizer"].step()
        state["model"].momentum_update()
        return loss.detach()

    config = f"i3d {frames}x{spatial_size}px, K={args.nce_k}, TCA + temporal negative"
    return step, {"method": "vtdl", "config": config, "batch_size": batch_size, "model": state["model"].encoder_q}
