"""MemDPC's augmentation recipes (spec §2.6), built on shared_utils.transforms primitives.

Every op takes a uint8 clip [T, C, H, W] (all frames of all blocks) and a numpy Generator, so a sample's content is a
pure function of its seed. "Consistent" draws are shared by every frame of the clip; "per-frame" ones are not.
Crops larger than the frame are clamped to the frame (the original assumed native 320x240 frames and would pad
with black; our frames may have a short side below 224).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from shared_utils import transforms as T

CROP = 224  # the original crops 224x224 before rescaling to img_dim


class RandomSizedCrop:
    """With probability p: area U(0.5, 1) of the frame, aspect U(3/4, 4/3), w/h swapped with prob 0.5, up to 10
    tries, resized to size x size (bilinear); fallback short side -> size + center crop. Otherwise a plain center
    crop of size x size (clamped to the frame) without rescaling."""

    def __init__(self, size: int = CROP, p: float = 1.0) -> None:
        self.size, self.p = size, p

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        height, width = clip.shape[-2:]
        if rng.random() >= self.p:
            side = min(self.size, height, width)
            return T.center_crop(clip, side)
        for _ in range(10):
            area = rng.uniform(0.5, 1.0) * height * width
            aspect = rng.uniform(3 / 4, 4 / 3)
            w = int(round(math.sqrt(area * aspect)))
            h = int(round(math.sqrt(area / aspect)))
            if rng.random() < 0.5:
                w, h = h, w
            if w <= width and h <= height:
                left = int(rng.integers(0, width - w + 1))
                top = int(rng.integers(0, height - h + 1))
                return T.resized_crop(clip, top, left, h, w, self.size, "bilinear")
        return T.center_crop(T.resize(clip, self.size, "bilinear"), self.size)


class Scale:
    """Every frame to size x size (the original's default interpolation is nearest)."""

    def __init__(self, size: int, interpolation: str = "nearest") -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        if tuple(clip.shape[-2:]) == (self.size, self.size):
            return clip
        return T.resized_crop(clip, 0, 0, clip.shape[-2], clip.shape[-1], self.size, self.interpolation)


class RandomChannelGray:
    """Per frame with probability p: copy ONE randomly chosen colour channel into all three (channel splitting, not
    luminance grayscale)."""

    def __init__(self, p: float = 0.25) -> None:
        self.p = p

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        use = rng.random(clip.shape[0]) < self.p
        channel = rng.integers(0, clip.shape[1], size=clip.shape[0])
        if not use.any():
            return clip
        out = clip.clone()
        for t in np.flatnonzero(use):
            out[t] = clip[t, int(channel[t])].unsqueeze(0).expand_as(clip[t])
        return out


class FixedView:
    """Deterministic test view: optional horizontal flip, then one of five crops (0 center, 1 top-left, 2 top-right,
    3 bottom-left, 4 bottom-right) of size x size (clamped to the frame)."""

    def __init__(self, position: int, flip: bool, size: int = CROP) -> None:
        self.position, self.flip, self.size = position, flip, size

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        if self.flip:
            clip = T.hflip(clip)
        height, width = clip.shape[-2:]
        side = min(self.size, height, width)
        tops = {0: (height - side) // 2, 1: 0, 2: 0, 3: height - side, 4: height - side}
        lefts = {0: (width - side) // 2, 1: 0, 2: width - side, 3: 0, 4: width - side}
        top, left = tops[self.position], lefts[self.position]
        return clip[..., top : top + side, left : left + side]


class FrameColorJitter:
    """The original ColorJitter: applied with probability p (one draw per clip); brightness, contrast and
    saturation factors U(max(0, 1-x), 1+x), hue U(-h, h), the four ops in a random order, all drawn per frame
    (per_frame=True) or once per clip. The ops run on uint8 frames with PIL's arithmetic (torchvision's PIL
    functional ops, which the original called): brightness and contrast as lookup tables, saturation as a blend
    with PIL's luminance, hue through OpenCV's 8-bit HSV (shared_utils.transforms.pil_hue). uint8 in, uint8 out."""

    def __init__(self, b, c, s, h, p: float = 1.0, per_frame: bool = False) -> None:
        self.amounts, self.p, self.per_frame = (b, c, s, h), p, per_frame

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Factors [n, 4] and op orders [n, 4] (one row per frame, or one row repeated)."""
        rows = n if self.per_frame else 1
        b, c, s, h = self.amounts
        low = np.array([max(0, 1 - b), max(0, 1 - c), max(0, 1 - s), -h])
        high = np.array([1 + b, 1 + c, 1 + s, h])
        factors = low + (high - low) * rng.random((rows, 4))
        orders = np.stack([rng.permutation(4) for _ in range(rows)])
        return np.broadcast_to(factors, (n, 4)), np.broadcast_to(orders, (n, 4))

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if rng.random() >= self.p:
            return clip
        if clip.dtype != torch.uint8:
            clip = (clip * 255).round_().clamp_(0, 255).to(torch.uint8)
        factors, orders = self.draw(clip.shape[0], rng)
        active = [op for op, amount in enumerate(self.amounts) if amount > 0]  # a zero amount is no op at all
        frames = T.frames_hwc(clip)
        out = np.empty_like(frames)
        for t in range(frames.shape[0]):
            order = [op for op in orders[t] if op in active]
            out[t] = T.pil_jitter_frame(frames[t], factors[t], order)
        return T.from_frames_hwc(out)


def _finish(img_dim: int, interp: str) -> list:
    return [Scale(img_dim, interp)]


def pretrain_transform(
    img_dim: int, modality: str = "rgb", interp: str = "nearest", blocks: int = 0, defer_normalize: bool = False
) -> T.ClipCompose:
    """Pretraining train AND val: crop -> rescale -> flip -> per-frame channel gray (p .25) -> per-frame colour jitter
    -> normalise. Flow skips the two colour steps (they have no meaning for flow images). blocks > 0: the output
    is laid out [blocks, C, T / blocks, H, W] in the normalising copy. defer_normalize: the clip stays uint8 and
    MemDPC.forward normalises it on the batch's device (shared_utils.transforms.device_normalize)."""
    ops = [RandomSizedCrop(CROP, p=1.0), *_finish(img_dim, interp), T.RandomHorizontalFlip(0.5)]
    if modality == "rgb":
        ops += [RandomChannelGray(0.25), FrameColorJitter(0.5, 0.5, 0.5, 0.25, p=1.0, per_frame=True)]
    return T.ClipCompose([*ops, T.Normalize(blocks=blocks, defer=defer_normalize)])


def finetune_transform(
    img_dim: int, mode: str, modality: str = "rgb", interp: str = "nearest", blocks: int = 0
) -> T.ClipCompose:
    """Evaluation train (crop p=1, jitter 0.5/0.5/0.5/0.25) and val (crop p=0.3, jitter 0.2/0.2/0.2/0.1); the colour
    jitter is clip-consistent with probability 0.3 (RGB only)."""
    crop_p, jitter = (1.0, (0.5, 0.5, 0.5, 0.25)) if mode == "train" else (0.3, (0.2, 0.2, 0.2, 0.1))
    ops = [RandomSizedCrop(CROP, p=crop_p), *_finish(img_dim, interp), T.RandomHorizontalFlip(0.5)]
    if modality == "rgb":
        ops.append(FrameColorJitter(*jitter, p=0.3, per_frame=False))
    return T.ClipCompose([*ops, T.Normalize(blocks=blocks)])


def view_transform(img_dim: int, position: int, flip: bool, interp: str = "nearest") -> T.ClipCompose:
    """Test view: flip -> fixed crop -> rescale -> normalise. Deterministic and normalised (the original forgot the
    normalisation and kept a random colour jitter here; both fixed)."""
    return T.ClipCompose([FixedView(position, flip), *_finish(img_dim, interp), T.Normalize()])


VIEWS = {
    "center": [(0, False)],
    "five": [(0, False), (1, False), (2, False), (3, False), (4, False)],
    "ten": [(p, False) for p in range(5)] + [(p, True) for p in range(5)],
}
