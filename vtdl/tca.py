"""TCA, temporal consistent augmentation = intra-video mixup (spec §3.3), applied to the query clips only.

    x'_i[:, t] = (1 - lam) * x_i[:, t] + lam * x_i[:, m_i]      for every frame t

with one lam ~ U(0, max_lambda) per batch and one frame index m_i ~ U{0..T-1} per clip. The added term is
constant in time, so every temporal difference of x' is (1 - lam) times that of x: the motion is kept while the
static appearance is perturbed. The draw order (lam, then m_0..m_{B-1}) is the original's, so a
numpy.random.RandomState(0) reproduces its lam = 0.0548813504, m = [5, 0, 3, 11] for B = 4, T = 16.
"""

from __future__ import annotations

import numpy as np
import torch


def sample_tca_params(rng, batch: int, frames: int, max_lambda: float = 0.1) -> tuple[float, np.ndarray]:
    """(lam, frame index per clip) from a numpy RandomState (original draw order) or Generator."""
    lam = float(rng.random() * max_lambda)
    draw = rng.randint if hasattr(rng, "randint") else rng.integers
    idx = np.array([int(draw(frames)) for _ in range(batch)], dtype=np.int64)
    return lam, idx


def intra_video_mixup(x: torch.Tensor, lam: float, frame_idx) -> torch.Tensor:
    """x [B, C, T, H, W] -> a new tensor blending every frame with frame frame_idx[i] of the same clip."""
    idx = torch.as_tensor(frame_idx, device=x.device, dtype=torch.long)
    static = x[torch.arange(x.shape[0], device=x.device), :, idx]  # B, C, H, W
    return (1 - lam) * x + lam * static.unsqueeze(2)


def tca(x: torch.Tensor, rng, max_lambda: float = 0.1) -> torch.Tensor:
    """Draw the parameters and apply intra-video mixup to a batch of query clips [B, C, T, H, W]."""
    lam, idx = sample_tca_params(rng, x.shape[0], x.shape[2], max_lambda)
    return intra_video_mixup(x, lam, idx)
