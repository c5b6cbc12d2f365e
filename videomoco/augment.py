"""VideoMoCo's GPU augmentation recipes, applied separately to the query and key batches [B, 3, T, H, W].

Default (`MoCoAugment` of the released code): random grayscale p=0.2 -> colour jitter (0.4, 0.4, 0.4, hue 0.4),
always applied -> horizontal flip p=0.5 -> ImageNet normalisation.
`--aug_plus` (`MoCoAugmentV2`): jitter (0.4, 0.4, 0.4, 0.1) with p=0.8 -> grayscale p=0.2 -> Gaussian blur
(p=0.5, sigma ~ U[0.1, 2], kernel 2*floor(floor(0.1*crop)/2)+1, reflect border) -> flip p=0.5 -> normalise.

The released code ran kornia on the clips flattened to B*T images, so every frame drew its own parameters (and
`--aug_plus` tossed one jitter coin and one blur coin/sigma for the whole batch). `per_frame=True` reproduces
that; the default draws once per clip, so the frames of a clip stay consistent (spec section 11, item 4).
"""

from __future__ import annotations

import kornia
import torch
from torch import nn

from shared_utils.transforms import GPUClipAugment, device_normalize
from videomoco.dataset import gaussian_kernel_side


class VideoMoCoAugment(nn.Module):
    def __init__(self, aug_plus: bool = False, per_frame: bool = False, crop_size: int = 112) -> None:
        super().__init__()
        self.aug_plus, self.per_frame = aug_plus, per_frame
        if not aug_plus:
            self.main = GPUClipAugment(
                grayscale_p=0.2, jitter=(0.4, 0.4, 0.4, 0.4), jitter_p=1.0, flip_p=0.5, per_frame=per_frame
            )
            return
        # released: one coin for the batch, then per-frame factors; clip mode: one coin and factors per clip
        self.jitter = GPUClipAugment(
            jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=1.0 if per_frame else 0.8, mean=None, std=None, per_frame=per_frame
        )
        self.gray = GPUClipAugment(grayscale_p=0.2, mean=None, std=None, per_frame=per_frame)
        self.flip_norm = GPUClipAugment(flip_p=0.5, per_frame=per_frame)
        self.kernel = gaussian_kernel_side(crop_size)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: float [B, 3, T, H, W] in [0, 1] (or the loader's uint8 views) -> augmented, normalised clips."""
        x = device_normalize(x, mean=None)  # uint8 -> x / 255, on the batch's device
        if not self.aug_plus:
            return self.main(x, generator)
        if not self.per_frame or self._coin(generator, x.device) < 0.8:
            x = self.jitter(x, generator)
        x = self.gray(x, generator)
        x = self._blur(x, generator)
        return self.flip_norm(x, generator)

    @staticmethod
    def _coin(generator, device) -> float:
        return float(torch.rand((), generator=generator, device=device))

    def _blur(self, x: torch.Tensor, generator) -> torch.Tensor:
        b, c, t, h, w = x.shape
        n_draws = 1 if self.per_frame else b  # released: one coin and one sigma per batch
        apply = torch.rand(n_draws, generator=generator, device=x.device) < 0.5
        if not apply.any():
            return x
        sigma = 0.1 + 1.9 * torch.rand(n_draws, generator=generator, device=x.device)
        sigma = sigma.expand(b) if n_draws == 1 else sigma
        apply = apply.expand(b) if n_draws == 1 else apply
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        sigmas = sigma.repeat_interleave(t)[:, None].expand(b * t, 2).contiguous()
        blurred = kornia.filters.gaussian_blur2d(frames, (self.kernel, self.kernel), sigmas, border_type="reflect")
        blurred = blurred.view(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return torch.where(apply.view(b, 1, 1, 1, 1), blurred, x).contiguous()
