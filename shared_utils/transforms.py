"""Clip-consistent transform primitives.

CPU form: callables `(clip, rng) -> clip` on one clip [T, C, H, W] (uint8 or float), with every random draw made
once per clip from the explicit numpy generator (or once per frame where a method asks for `per_frame=True`).
GPU form: `GPUClipAugment` on a float batch [B, C, T, H, W] with parameters drawn per clip (or per frame) from a
torch generator on the batch's device, using kornia's colour conversions.
The recipe (which steps, which parameters) belongs to each method; only the primitives live here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import cv2
import kornia
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Clip = torch.Tensor  # [T, C, H, W]
ClipOp = Callable[[Clip, np.random.Generator], Clip]


def _interp(name: str) -> TF.InterpolationMode:
    return {
        "bilinear": TF.InterpolationMode.BILINEAR,
        "nearest": TF.InterpolationMode.NEAREST,
        "bicubic": TF.InterpolationMode.BICUBIC,
    }[name]


# --------------------------------------------------------------------------------------------------- functional


def random_resized_crop_params(
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    rng: np.random.Generator,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) as torchvision's RandomResizedCrop: area fraction ~ U(scale), log-uniform aspect ratio,
    up to `attempts` tries, then a center crop clamped to the ratio range."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _cv2_resized_crop(clip: Clip, top: int, left: int, h: int, w: int, size: Sequence[int], interpolation: str) -> Clip:
    """uint8 crop + resize with OpenCV, frame by frame (several times faster than torch's antialiased resize)."""
    frames = clip.permute(0, 2, 3, 1).numpy()  # T, H, W, C view
    out_h, out_w = size
    if interpolation == "nearest":
        flag = cv2.INTER_NEAREST_EXACT  # PIL's NEAREST samples pixel centres; cv2's INTER_NEAREST is offset by half
    elif interpolation == "bicubic":
        flag = cv2.INTER_CUBIC
    else:
        flag = cv2.INTER_AREA if (out_h < h or out_w < w) else cv2.INTER_LINEAR
    out = np.empty((frames.shape[0], out_h, out_w, frames.shape[3]), dtype=np.uint8)
    for t in range(frames.shape[0]):
        cv2.resize(frames[t, top : top + h, left : left + w], (out_w, out_h), dst=out[t], interpolation=flag)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def resized_crop(
    clip: Clip, top: int, left: int, h: int, w: int, size: int | Sequence[int], interpolation: str = "bilinear"
) -> Clip:
    """Crop the same box from every frame and resize it to `size` (bilinear antialiased when shrinking, as PIL)."""
    size = [size, size] if isinstance(size, int) else list(size)
    if clip.dtype == torch.uint8 and clip.device.type == "cpu" and clip.shape[1] in (1, 3, 4):
        if interpolation == "bilinear":  # torch's uint8 antialiased bilinear equals PIL's BILINEAR resize
            crop = clip[..., top : top + h, left : left + w]
            return torch.nn.functional.interpolate(crop, size=size, mode="bilinear", antialias=True)
        return _cv2_resized_crop(clip, top, left, h, w, size, interpolation)
    return TF.resized_crop(clip, top, left, h, w, size, interpolation=_interp(interpolation), antialias=True)


def center_crop(clip: Clip, size: int | Sequence[int]) -> Clip:
    size = [size, size] if isinstance(size, int) else list(size)
    return TF.center_crop(clip, size)


def resize(clip: Clip, size: int | Sequence[int], interpolation: str = "bilinear") -> Clip:
    """int size: short side -> size (aspect kept); (h, w): exact size."""
    size = [size] if isinstance(size, int) else list(size)
    return TF.resize(clip, size, interpolation=_interp(interpolation), antialias=True)


def hflip(clip: Clip) -> Clip:
    """Mirror every frame. A uint8 CPU clip laid out [T, H, W, C] in memory (what the frame loaders and the cv2
    crop return, viewed as [T, C, H, W]) is flipped with OpenCV, ~2x faster than torch on that strided view."""
    if clip.dtype == torch.uint8 and clip.device.type == "cpu" and clip.dim() == 4 and clip.shape[1] in (1, 3, 4):
        frames = clip.permute(0, 2, 3, 1)
        if frames.is_contiguous():
            source = frames.numpy()
            out = np.empty_like(source)
            for t in range(source.shape[0]):
                out[t] = cv2.flip(source[t], 1).reshape(out[t].shape)  # reshape: cv2 drops a single channel axis
            return torch.from_numpy(out).permute(0, 3, 1, 2)
    return clip.flip(-1)


def _jitter_one(frames: Clip, factors: dict[str, float], order: Sequence[str]) -> Clip:
    for name in order:
        if name == "brightness":
            frames = TF.adjust_brightness(frames, factors[name])
        elif name == "contrast":
            frames = TF.adjust_contrast(frames, factors[name])
        elif name == "saturation":
            frames = TF.adjust_saturation(frames, factors[name])
        elif name == "hue":
            frames = TF.adjust_hue(frames, factors[name])
    return frames


def _jitter_draw(rng: np.random.Generator, b: float, c: float, s: float, h: float, random_order: bool):
    factors = {}
    for name, amount in (("brightness", b), ("contrast", c), ("saturation", s)):
        if amount > 0:
            factors[name] = float(rng.uniform(max(0.0, 1 - amount), 1 + amount))
    if h > 0:
        factors["hue"] = float(rng.uniform(-h, h))
    order = list(factors)
    if random_order:
        order = [order[i] for i in rng.permutation(len(order))]
    return factors, order


def color_jitter(
    clip: Clip,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    rng: np.random.Generator,
    per_frame: bool = False,
    random_order: bool = True,
) -> Clip:
    """torchvision-style colour jitter: factors U(1-x, 1+x) (hue U(-h, h)) applied in a random order, drawn once
    per clip (or once per frame)."""
    if not per_frame:
        factors, order = _jitter_draw(rng, brightness, contrast, saturation, hue, random_order)
        return _jitter_one(clip, factors, order)
    frames = []
    for t in range(clip.shape[0]):
        factors, order = _jitter_draw(rng, brightness, contrast, saturation, hue, random_order)
        frames.append(_jitter_one(clip[t : t + 1], factors, order))
    return torch.cat(frames)


# uint8 colour ops with PIL's semantics (what torchvision's functional ops do on PIL images, which the originals
# used), on one frame [H, W, 3] RGB uint8. PIL blends in float and truncates toward zero; its luminance is
# (19595 R + 38470 G + 7471 B + 2^15) >> 16. Brightness and contrast are 256-entry lookup tables.
_PIL_LUMA = np.array([[19595, 38470, 7471]], dtype=np.float32) / 65536.0
_LEVELS = np.arange(256, dtype=np.float32)
_TRUNC = -0.499  # cv2 rounds on saturation; this offset turns its rounding into PIL's truncation


def _blend_table(base: float, factor: float) -> np.ndarray:
    """PIL Image.blend(constant `base`, image, factor) per level: trunc(base + factor * (v - base)), clipped."""
    return np.clip(np.float32(base) + np.float32(factor) * (_LEVELS - np.float32(base)), 0, 255).astype(np.uint8)


def pil_luma(frame: np.ndarray) -> np.ndarray:
    """convert('L') of an RGB uint8 frame [H, W, 3] -> [H, W] uint8. OpenCV's weights (0.299, 0.587, 0.114 in
    14-bit fixed point) equal PIL's 16-bit ones to 4 decimals; both round."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def pil_luma_mean(frame: np.ndarray) -> float:
    """Mean of pil_luma(frame), from the channel means (the luma is linear up to its rounding)."""
    r, g, b, _ = cv2.mean(frame)
    return float(_PIL_LUMA[0, 0] * r + _PIL_LUMA[0, 1] * g + _PIL_LUMA[0, 2] * b)


def pil_brightness(frame: np.ndarray, factor: float) -> np.ndarray:
    return cv2.LUT(frame, _blend_table(0.0, factor))


def pil_contrast(frame: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the frame's mean luminance, rounded to an integer as PIL's ImageEnhance.Contrast does."""
    mean = int(pil_luma_mean(frame) + 0.5)
    return cv2.LUT(frame, _blend_table(mean, factor))


def pil_saturation(frame: np.ndarray, factor: float) -> np.ndarray:
    gray = cv2.cvtColor(pil_luma(frame), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(frame, factor, gray, 1.0 - factor, _TRUNC)


def pil_hue(frame: np.ndarray, factor: float) -> np.ndarray:
    """Rotate the hue by factor of a full turn. PIL shifts its 8-bit hue (a turn = 255 steps) by
    int(factor * 255) steps; OpenCV's full-range 8-bit HSV has 256 steps a turn, so the same angle is used."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV_FULL)
    steps = int(round(int(factor * 255) * 256 / 255)) % 256
    if steps:
        hue = hsv[..., 0]
        np.add(hue, np.uint8(steps), out=hue)  # wraps around, as PIL's uint8 hue does
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def pil_rotate_crop(
    frame: np.ndarray, angle: float, top: int, left: int, size: int, dst: np.ndarray | None = None
) -> np.ndarray:
    """PIL's frame.rotate(angle) (counter-clockwise about the centre, nearest, same size, black corners) followed
    by the size x size crop at (top, left), as one OpenCV warp that computes only the cropped pixels. PIL maps
    output pixel centres (x + .5, y + .5) through the inverse rotation and floors; OpenCV's nearest rounds, so the
    matrix is shifted by half a pixel. dst: an [size, size, C] uint8 array to write into (no new array)."""
    height, width = frame.shape[:2]
    theta = -math.radians(angle)
    a, b = round(math.cos(theta), 15), round(math.sin(theta), 15)
    d, e = -b, a
    cx, cy = width / 2.0, height / 2.0
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    matrix = np.array(
        [
            [a, b, c + 0.5 * (a + b) - 0.5 + a * left + b * top],
            [d, e, f + 0.5 * (d + e) - 0.5 + d * left + e * top],
        ]
    )
    return cv2.warpAffine(
        frame, matrix, (size, size), dst=dst, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=(0, 0, 0)
    )


def scale_crop_bilinear(frame: np.ndarray, scale_hw: tuple[float, float], top: int, left: int, size: int):
    """F.interpolate(bilinear, align_corners=False, no antialias) of the whole frame by (sy, sx) = in / out,
    then the size x size crop at (top, left), as one OpenCV warp computing only the cropped pixels (edges
    replicated, as interpolate clamps)."""
    sy, sx = scale_hw
    matrix = np.array([[sx, 0.0, (left + 0.5) * sx - 0.5], [0.0, sy, (top + 0.5) * sy - 0.5]])
    return cv2.warpAffine(
        frame, matrix, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


PIL_COLOUR_OPS = (pil_brightness, pil_contrast, pil_saturation, pil_hue)  # op index 0..3: b, c, s, h


def pil_jitter_frame(frame: np.ndarray, factors: Sequence[float], order: Sequence[int]) -> np.ndarray:
    """Apply the colour ops `order` (indices into PIL_COLOUR_OPS) with factors [b, c, s, h] to one frame."""
    for op in order:
        frame = PIL_COLOUR_OPS[op](frame, float(factors[op]))
    return frame


def frames_hwc(clip: Clip) -> np.ndarray:
    """uint8 CPU clip [T, C, H, W] -> numpy [T, H, W, C] (a view when the memory already is frame-major)."""
    return clip.permute(0, 2, 3, 1).contiguous().numpy()


def from_frames_hwc(frames: np.ndarray) -> Clip:
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def grayscale(clip: Clip) -> Clip:
    """Luminance grayscale replicated to 3 channels."""
    return TF.rgb_to_grayscale(clip, num_output_channels=3)


def to_float(clip: Clip) -> Clip:
    """uint8 -> float32 in [0, 1] (float input is returned unchanged)."""
    return clip.float().div_(255.0) if clip.dtype == torch.uint8 else clip


@functools.lru_cache(maxsize=16)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], from_uint8: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with normalize(x) = x * scale - shift, built once per (mean, std, input range)."""
    scale = 1.0 / torch.tensor(std, dtype=torch.float32)
    if from_uint8:
        scale = scale / 255.0
    return scale, torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)


def planar_copy(frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Frame-major uint8 frames [N, H, W, C] (C-contiguous) into planar out [C, N, H, W] (each out[c] contiguous;
    a view of a bigger array is fine), with one OpenCV channel split: ~10x faster than a strided torch copy."""
    channels = frames.shape[-1]
    cv2.split(frames.reshape(-1, 1, channels), [out[c].reshape(-1, 1) for c in range(channels)])
    return out


def cthw_u8(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [T, H, W, C] (C-contiguous) -> a new contiguous uint8 tensor [C, T, H, W]."""
    if frames.shape[-1] not in (3, 4) or not frames.flags.c_contiguous:
        return torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous()
    return torch.from_numpy(planar_copy(frames, np.empty((frames.shape[-1], *frames.shape[:-1]), np.uint8)))


def layout_u8(clip: Clip, to_cthw: bool = False, blocks: int = 0) -> torch.Tensor:
    """A contiguous uint8 copy of clip [T, C, H, W] in normalize's output layout ([T, C, H, W], [C, T, H, W] or
    [blocks, C, T / blocks, H, W]); frame-major memory (what the loaders' decoders and warps give) is split into
    channel planes with OpenCV, other memory is copied by torch."""
    length, channels, height, width = clip.shape
    frames = clip.permute(0, 2, 3, 1)
    if clip.device.type != "cpu" or channels not in (3, 4) or not frames.is_contiguous():
        if blocks:
            return clip.reshape(blocks, length // blocks, channels, height, width).transpose(1, 2).contiguous()
        return (clip.permute(1, 0, 2, 3) if to_cthw else clip).contiguous()
    frames = frames.numpy()
    if to_cthw and not blocks:
        return torch.from_numpy(planar_copy(frames, np.empty((channels, length, height, width), np.uint8)))
    groups = blocks or length  # [blocks, C, T / blocks, H, W], or [T, C, 1, H, W] viewed as [T, C, H, W]
    out = np.empty((groups, channels, length // groups, height, width), np.uint8)
    for g, part in enumerate(np.split(frames, groups)):
        planar_copy(part, out[g])
    return torch.from_numpy(out if blocks else out.reshape(length, channels, height, width))


def normalize(
    clip: Clip,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    to_cthw: bool = False,
    blocks: int = 0,
    defer: bool = False,
) -> torch.Tensor:
    """(x / 255 - mean) / std per channel (uint8 input; float input is taken as already in [0, 1]).

    A contiguous uint8 copy in the output layout (`layout_u8`), one conversion pass into float32, then an in-place
    affine map: [T, C, H, W] in; [T, C, H, W] out, or [C, T, H, W] with to_cthw=True, or [blocks, C, T / blocks,
    H, W] with blocks > 0. defer=True stops after the uint8 copy: the clip leaves the loader as uint8 in the output
    layout (4x fewer bytes to collate, pin and copy) and `device_normalize` finishes it on the batch's device.
    """
    if clip.dtype == torch.uint8:  # the layout change is far cheaper on bytes than while converting to float
        source = layout_u8(clip, to_cthw, blocks)
        if defer:
            return source
    elif blocks:
        source = clip.reshape(blocks, clip.shape[0] // blocks, *clip.shape[1:]).transpose(1, 2)
    else:
        source = clip.permute(1, 0, 2, 3) if to_cthw else clip
    scale, shift = _affine(tuple(mean), tuple(std), clip.dtype == torch.uint8)
    view = (1, -1, 1, 1, 1) if blocks else (-1, 1, 1, 1) if to_cthw else (1, -1, 1, 1)
    out = source.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    return out.mul_(scale.view(view)).sub_(shift.view(view))


def device_normalize(
    x: torch.Tensor,
    mean: Sequence[float] | None = IMAGENET_MEAN,
    std: Sequence[float] | None = IMAGENET_STD,
    channel_dim: int = 1,
) -> torch.Tensor:
    """The second half of a deferred `normalize`, on a batch already on its device: uint8 -> float32
    (x / 255 - mean) / std along `channel_dim` (mean=None: x / 255 only), with the same float operations as the
    CPU path, so both give the same numbers. Float input (a loader that normalised on the CPU) is returned as is."""
    if x.dtype != torch.uint8:
        return x
    out = x.float()  # keeps the memory format (channels_last_3d stays)
    if mean is None:
        return out.div_(255.0)
    scale, shift = _affine(tuple(mean), tuple(std), True)
    view = [1] * x.dim()
    view[channel_dim] = -1
    return out.mul_(scale.to(x.device).view(view)).sub_(shift.to(x.device).view(view))


def to_cthw(clip: Clip) -> torch.Tensor:
    """[T, C, H, W] -> [C, T, H, W] (contiguous), the layout 3D CNNs take."""
    return clip.permute(1, 0, 2, 3).contiguous()


# --------------------------------------------------------------------------------------------------- composable ops


class ClipCompose:
    """Apply ops in order, threading the same rng through them."""

    def __init__(self, ops: Sequence[ClipOp]) -> None:
        self.ops = list(ops)

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        for op in self.ops:
            clip = op(clip, rng)
        return clip

    def __repr__(self) -> str:
        return "ClipCompose(" + ", ".join(type(op).__name__ for op in self.ops) + ")"


class RandomResizedCrop:
    def __init__(self, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation: str = "bilinear") -> None:
        self.size, self.scale, self.ratio, self.interpolation = size, scale, ratio, interpolation

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        top, left, h, w = random_resized_crop_params(clip.shape[-2], clip.shape[-1], self.scale, self.ratio, rng)
        return resized_crop(clip, top, left, h, w, self.size, self.interpolation)


class RandomCrop:
    """Same random size x size window for every frame (no resize)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        height, width = clip.shape[-2:]
        top = int(rng.integers(0, max(height - self.size, 0) + 1))
        left = int(rng.integers(0, max(width - self.size, 0) + 1))
        return clip[..., top : top + self.size, left : left + self.size]


class CenterCrop:
    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, clip: Clip, rng: np.random.Generator | None = None) -> Clip:
        return center_crop(clip, self.size)


class Resize:
    def __init__(self, size: int | Sequence[int], interpolation: str = "bilinear") -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, clip: Clip, rng: np.random.Generator | None = None) -> Clip:
        return resize(clip, self.size, self.interpolation)


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        return hflip(clip) if rng.random() < self.p else clip


class ColorJitter:
    """Applied with probability p (one draw per clip); factors per clip unless per_frame."""

    def __init__(
        self,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        hue=0.0,
        p: float = 1.0,
        per_frame: bool = False,
        random_order: bool = True,
    ) -> None:
        self.b, self.c, self.s, self.h = brightness, contrast, saturation, hue
        self.p, self.per_frame, self.random_order = p, per_frame, random_order

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        if rng.random() >= self.p:
            return clip
        return color_jitter(clip, self.b, self.c, self.s, self.h, rng, self.per_frame, self.random_order)


class RandomGrayscale:
    """Luminance grayscale with probability p, for the whole clip or independently per frame."""

    def __init__(self, p: float = 0.2, per_frame: bool = False) -> None:
        self.p, self.per_frame = p, per_frame

    def __call__(self, clip: Clip, rng: np.random.Generator) -> Clip:
        if not self.per_frame:
            return grayscale(clip) if rng.random() < self.p else clip
        mask = torch.from_numpy(rng.random(clip.shape[0]) < self.p)
        if not mask.any():
            return clip
        out = clip.clone()
        out[mask] = grayscale(clip[mask])
        return out


class ToFloat:
    def __call__(self, clip: Clip, rng: np.random.Generator | None = None) -> Clip:
        return to_float(clip)


class Normalize:
    """ImageNet-style normalisation of a uint8 (or [0, 1] float) clip; to_cthw=True also returns [C, T, H, W],
    blocks > 0 returns [blocks, C, T / blocks, H, W]; defer=True returns the uint8 clip in that layout (the
    training step then calls `device_normalize`)."""

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        to_cthw: bool = False,
        blocks: int = 0,
        defer: bool = False,
    ) -> None:
        self.mean, self.std, self.to_cthw, self.blocks, self.defer = mean, std, to_cthw, blocks, defer

    def __call__(self, clip: Clip, rng: np.random.Generator | None = None) -> torch.Tensor:
        return normalize(clip, self.mean, self.std, self.to_cthw, self.blocks, self.defer)


class ToCTHW:
    def __call__(self, clip: Clip, rng: np.random.Generator | None = None) -> torch.Tensor:
        return to_cthw(clip)


# --------------------------------------------------------------------------------------------------- GPU batched


class GPUClipAugment(nn.Module):
    """Batched augmentation of float clips [B, C, T, H, W] in [0, 1] on their device.

    Steps (each optional): random grayscale (p) -> colour jitter (p, b/c/s/h, fixed order b, c, s, h) ->
    horizontal flip (p) -> normalisation. Parameters are drawn per clip and shared by its T frames, or per frame
    with per_frame=True (what kornia does when clips are flattened to images, as VideoMoCo's original did).
    """

    def __init__(
        self,
        grayscale_p: float = 0.0,
        jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        jitter_p: float = 0.0,
        flip_p: float = 0.0,
        mean: Sequence[float] | None = IMAGENET_MEAN,
        std: Sequence[float] | None = IMAGENET_STD,
        per_frame: bool = False,
    ) -> None:
        super().__init__()
        self.grayscale_p, self.jitter, self.jitter_p, self.flip_p = grayscale_p, tuple(jitter), jitter_p, flip_p
        self.per_frame = per_frame
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1) if mean is not None else torch.empty(0))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1) if std is not None else torch.empty(0))

    def _draw(self, shape: tuple[int, int], generator: torch.Generator | None, device) -> torch.Tensor:
        """Uniform [0,1) draws of shape (B, T) or (B, 1) broadcastable over frames."""
        b, t = shape
        return torch.rand((b, t if self.per_frame else 1), generator=generator, device=device)

    def _uniform(self, shape, low: float, high: float, generator, device) -> torch.Tensor:
        return low + (high - low) * self._draw(shape, generator, device)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        device = x.device
        frames = x.permute(0, 2, 1, 3, 4)  # B, T, C, H, W

        def per_frame(values: torch.Tensor) -> torch.Tensor:
            return values.expand(b, t).reshape(b, t, 1, 1, 1)

        if self.grayscale_p > 0:
            gray = kornia.color.rgb_to_grayscale(frames.reshape(b * t, c, h, w)).view(b, t, 1, h, w)
            use = per_frame(self._draw((b, t), generator, device) < self.grayscale_p)
            frames = torch.where(use, gray.expand_as(frames), frames)
        if self.jitter_p > 0 and any(self.jitter):
            frames = self._jitter(frames, generator, per_frame)
        if self.flip_p > 0:
            use = per_frame(self._draw((b, t), generator, device) < self.flip_p)
            frames = torch.where(use, frames.flip(-1), frames)
        out = frames.permute(0, 2, 1, 3, 4)
        if self.mean.numel():
            out = (out - self.mean) / self.std
        return out.contiguous()

    def _jitter(self, frames: torch.Tensor, generator, per_frame) -> torch.Tensor:
        b, t, c, h, w = frames.shape
        device = frames.device
        apply = per_frame(self._draw((b, t), generator, device) < self.jitter_p)
        bright, contrast, sat, hue = self.jitter
        out = frames
        if bright > 0:
            out = (out * per_frame(self._uniform((b, t), max(0, 1 - bright), 1 + bright, generator, device))).clamp(
                0, 1
            )
        if contrast > 0:
            factor = per_frame(self._uniform((b, t), max(0, 1 - contrast), 1 + contrast, generator, device))
            mean = kornia.color.rgb_to_grayscale(out.reshape(b * t, c, h, w)).view(b, t, 1, h, w)
            mean = mean.mean(dim=(-1, -2, -3), keepdim=True)
            out = (factor * out + (1 - factor) * mean).clamp(0, 1)
        if sat > 0:
            factor = per_frame(self._uniform((b, t), max(0, 1 - sat), 1 + sat, generator, device))
            gray = kornia.color.rgb_to_grayscale(out.reshape(b * t, c, h, w)).view(b, t, 1, h, w)
            out = (factor * out + (1 - factor) * gray).clamp(0, 1)
        if hue > 0:
            shift = per_frame(self._uniform((b, t), -hue, hue, generator, device))
            hsv = kornia.color.rgb_to_hsv(out.reshape(b * t, c, h, w)).view(b, t, c, h, w)
            hue_channel = torch.remainder(hsv[:, :, :1] + shift * 2 * math.pi, 2 * math.pi)
            hsv = torch.cat([hue_channel, hsv[:, :, 1:]], dim=2)
            out = kornia.color.hsv_to_rgb(hsv.reshape(b * t, c, h, w)).view(b, t, c, h, w)
        return torch.where(apply, out, frames)
