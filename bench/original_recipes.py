"""Each paper's own pretraining data recipe, re-implemented from its spec (/work/shared/specs, augmentation
sections) the way the original code runs it: the same decode library, the same ops in the same order, the same
per-clip or per-frame draws, on python `random` / numpy's global RNG like the originals. These are the benchmark
baselines of bench/recipe_bench.py and the references of the statistics tests; nothing in training uses them.

  memdpc     PIL open + convert per frame; RandomSizedCrop(224, area U(.5, 1), aspect U(3/4, 4/3), w/h swap, PIL
             BILINEAR) -> Scale(img_dim, PIL NEAREST) -> clip flip p .5 -> per-frame channel gray p .25 -> per-frame
             ColorJitter(.5, .5, .5, .25) through torchvision's PIL ops in a per-frame random order -> ToTensor +
             Normalize per frame -> [num_seq, 3, seq_len, S, S]   (spec memdpc §2.6)
  vtdl       PIL per frame, the anchor frames loaded twice (anchor, positive) and the negative's; per clip:
             RandomRotation(U(-10, 10), PIL nearest) -> Resize(256) (skipped at short side 256) -> RandomCrop(224)
             -> ColorJitter of which only one of the four ops survives -> ClipToTensor -> Normalize (spec vtdl §2.4)
  videomoco  PyAV decode (torchvision's read_video path: seek, decode, frame.to_rgb().to_ndarray()) of fpc
             consecutive frames, uint8 [T, H, W, 3] -> float [3, T, H, W] / 255 -> two independent random resized
             crops (scale .2-1, aspect 3/4-4/3, F.interpolate bilinear) -> two views (spec videomoco §2.1;
             the colour/flip augmentation runs on the GPU batch in both implementations)
  cpd        PyAV decode (thread_type AUTO, seek, every frame of the span converted to RGB, linspace pick) ->
             float, /255, -0.45, /0.225 at full size -> short-side scale jitter U(128, 170) (F.interpolate
             bilinear) -> random crop 112 -> flip p .5 (spec cpd §2.3-2.4)
"""

from __future__ import annotations

import math
import os
import random

import av
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TVF
from PIL import Image

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pil_loader(path: str) -> Image.Image:
    with open(path, "rb") as handle, Image.open(handle) as img:
        return img.convert("RGB")


def to_tensor_normalized(img: Image.Image, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    return TVF.normalize(TVF.to_tensor(img), mean, std)


# --------------------------------------------------------------------------------------------------- MemDPC


def memdpc_random_sized_crop(imgs: list[Image.Image], size: int = 224) -> list[Image.Image]:
    width, height = imgs[0].size
    for _ in range(10):
        area = random.uniform(0.5, 1) * width * height
        aspect = random.uniform(3.0 / 4, 4.0 / 3)
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if random.random() < 0.5:
            w, h = h, w
        if w <= width and h <= height:
            x1, y1 = random.randint(0, width - w), random.randint(0, height - h)
            return [i.crop((x1, y1, x1 + w, y1 + h)).resize((size, size), Image.BILINEAR) for i in imgs]
    scale = size / min(width, height)  # fallback: short side -> size (bilinear), centre crop
    new = (size, int(size * height / width)) if width < height else (int(size * width / height), size)
    imgs = [i.resize(new, Image.BILINEAR) for i in imgs] if abs(scale - 1) > 0 else imgs
    x1, y1 = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return [i.crop((x1, y1, x1 + size, y1 + size)) for i in imgs]


def memdpc_channel_gray(img: Image.Image) -> Image.Image:
    channel = np.random.choice(3)
    plane = np.array(img)[:, :, channel]
    return Image.fromarray(np.dstack([plane, plane, plane]), "RGB")


def memdpc_jitter_transform(b: float, c: float, s: float, h: float):
    ops = []
    bf, cf = random.uniform(max(0, 1 - b), 1 + b), random.uniform(max(0, 1 - c), 1 + c)
    sf, hf = random.uniform(max(0, 1 - s), 1 + s), random.uniform(-h, h)
    ops.append(lambda img: TVF.adjust_brightness(img, bf))
    ops.append(lambda img: TVF.adjust_contrast(img, cf))
    ops.append(lambda img: TVF.adjust_saturation(img, sf))
    ops.append(lambda img: TVF.adjust_hue(img, hf))
    random.shuffle(ops)

    def apply(img):
        for op in ops:
            img = op(img)
        return img

    return apply


def memdpc_pretrain_transform(imgs: list[Image.Image], img_dim: int = 128) -> list[torch.Tensor]:
    imgs = memdpc_random_sized_crop(imgs, 224)
    imgs = [i.resize((img_dim, img_dim), Image.NEAREST) for i in imgs]
    if random.random() < 0.5:
        imgs = [i.transpose(Image.FLIP_LEFT_RIGHT) for i in imgs]
    imgs = [memdpc_channel_gray(i) if random.random() < 0.25 else i for i in imgs]
    if random.random() < 1.0:  # ColorJitter(p=1), per frame
        imgs = [memdpc_jitter_transform(0.5, 0.5, 0.5, 0.25)(i) for i in imgs]
    return [to_tensor_normalized(i) for i in imgs]


def memdpc_item(folder: str, frame_index: np.ndarray, num_seq: int = 8, seq_len: int = 5, img_dim: int = 128):
    """One pretraining item [num_seq, 3, seq_len, img_dim, img_dim] (frame_index: 0-based, num_seq*seq_len)."""
    seq = [pil_loader(os.path.join(folder, f"image_{i + 1:05d}.jpg")) for i in frame_index]
    t_seq = torch.stack(memdpc_pretrain_transform(seq, img_dim), 0)
    return t_seq.view(num_seq, seq_len, 3, img_dim, img_dim).transpose(1, 2)


# --------------------------------------------------------------------------------------------------- VTDL


def vtdl_one_of_four_jitter(imgs: list[Image.Image]) -> list[Image.Image]:
    bf, cf = random.uniform(0.5, 1.5), random.uniform(0.5, 1.5)
    sf, hf = random.uniform(0.75, 1.25), random.uniform(-0.5, 0.5)
    ops = [
        lambda img: TVF.adjust_brightness(img, bf),
        lambda img: TVF.adjust_contrast(img, cf),
        lambda img: TVF.adjust_saturation(img, sf),
        lambda img: TVF.adjust_hue(img, hf),
    ]
    random.shuffle(ops)
    return [ops[-1](img) for img in imgs]  # each op sees the original frame: only the last one survives


def vtdl_train_transform(imgs: list[Image.Image], size: int = 224, resize: int = 256) -> torch.Tensor:
    angle = random.uniform(-10, 10)
    imgs = [i.rotate(angle) for i in imgs]  # PIL default: nearest, no expand
    w, h = imgs[0].size
    if min(w, h) != resize:  # the inverted mapping: the default 'nearest' gives PIL BILINEAR
        new = (resize, int(resize * h / w)) if w < h else (int(resize * w / h), resize)
        imgs = [i.resize(new, Image.BILINEAR) for i in imgs]
        w, h = new
    x1, y1 = random.randint(0, w - size), random.randint(0, h - size)
    imgs = [i.crop((x1, y1, x1 + size, y1 + size)) for i in imgs]
    imgs = vtdl_one_of_four_jitter(imgs)
    clip = torch.from_numpy(np.stack([np.asarray(i) for i in imgs]).transpose(3, 0, 1, 2).astype(np.float32) / 255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    return (clip - mean) / torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)


def vtdl_item(folder: str, anchor_ids: list[int], negative_ids: list[int], size: int = 224) -> list[torch.Tensor]:
    """[anchor, positive, negative] each [3, T, size, size]; ids 1-based (frame%06d.jpg), positive re-loaded."""

    def load(ids):
        return [pil_loader(os.path.join(folder, f"frame{i:06d}.jpg")) for i in ids]

    anchor = vtdl_train_transform(load(anchor_ids), size)
    positive = vtdl_train_transform(load(anchor_ids), size)
    negative = vtdl_train_transform(load(negative_ids), size)
    return [anchor, positive, negative]


# --------------------------------------------------------------------------------------------------- VideoMoCo


def pyav_read_frames(path: str, first: int, last: int) -> np.ndarray:
    """torchvision's (PyAV backend) read_video for frames [first, last] at a constant frame rate: seek before the
    start pts, decode, keep frames whose pts falls in the range, frame.to_rgb().to_ndarray()."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        start_pts = int(first / fps / stream.time_base)
        end_pts = int(last / fps / stream.time_base)
        container.seek(max(start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
        frames = {}
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            frames[frame.pts] = frame
            if frame.pts >= end_pts:
                break
        kept = [frames[p] for p in sorted(frames) if start_pts <= p <= end_pts]
        return np.stack([f.to_rgb().to_ndarray() for f in kept])


def videomoco_random_resized_crop(clip: torch.Tensor, size: int = 112, scale=(0.2, 1.0)) -> torch.Tensor:
    """torchvision RandomResizedCropVideo on [C, T, H, W] float: RandomResizedCrop.get_params (python random),
    then F.interpolate bilinear, align_corners=False."""
    height, width = clip.shape[-2:]
    area = height * width
    log_ratio = (math.log(3 / 4), math.log(4 / 3))
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(*log_ratio))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i, j = random.randint(0, height - h), random.randint(0, width - w)
            break
    else:
        h, w = height, width
        i, j = 0, 0
    crop = clip[..., i : i + h, j : j + w]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


def videomoco_item(path: str, start: int, fpc: int = 32, crop: int = 112) -> tuple[torch.Tensor, torch.Tensor]:
    frames = torch.from_numpy(pyav_read_frames(path, start, start + fpc - 1))
    clip = frames.permute(3, 0, 1, 2).float() / 255.0  # ToTensorVideo
    return videomoco_random_resized_crop(clip, crop), videomoco_random_resized_crop(clip, crop)


# --------------------------------------------------------------------------------------------------- CPD


def cpd_decode(path: str, num_frames: int = 16, stride: int = 4) -> np.ndarray:
    """The SlowFast-derived decoder: threaded PyAV, random start in the clip span at a 30 fps reference, seek,
    decode the range, convert EVERY decoded frame to RGB, then pick linspace(0, clip - 1, num_frames)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps, n, duration = float(stream.average_rate), stream.frames, stream.duration
        clip = stride * num_frames / 30 * fps
        start = random.uniform(0, max(n - clip, 0))
        end = start + clip - 1
        timebase = duration / n
        start_pts, end_pts = int(start * timebase), int(end * timebase)
        container.seek(max(start_pts - 1024, 0), any_frame=False, backward=True, stream=stream)
        frames, past = {}, None
        for frame in container.decode(stream):
            if frame.pts < start_pts:
                continue
            if frame.pts <= end_pts:
                frames[frame.pts] = frame
            else:
                past = frame
                break
        kept = [frames[p] for p in sorted(frames)] + ([past] if past is not None else [])
        arrays = np.stack([f.to_rgb().to_ndarray() for f in kept])
    index = torch.clamp(torch.linspace(0, clip - 1, num_frames), 0, len(arrays) - 1).long().numpy()
    return arrays[index]


def cpd_item(path: str, num_frames: int = 16, stride: int = 4, crop: int = 112) -> torch.Tensor:
    x = torch.from_numpy(cpd_decode(path, num_frames, stride)).float() / 255.0
    x = ((x - 0.45) / 0.225).permute(3, 0, 1, 2)
    low, high = (128, 170) if crop == 112 else (256, 340)
    size = int(round(np.random.uniform(low, high)))
    height, width = x.shape[-2:]
    if not ((width <= height and width == size) or (height <= width and height == size)):
        if width < height:
            new = (int(math.floor(height / width * size)), size)
        else:
            new = (size, int(math.floor(width / height * size)))
        x = F.interpolate(x, size=new, mode="bilinear", align_corners=False)
    height, width = x.shape[-2:]
    y0 = np.random.randint(0, height - crop) if height > crop else 0
    x0 = np.random.randint(0, width - crop) if width > crop else 0
    x = x[..., y0 : y0 + crop, x0 : x0 + crop]
    if np.random.uniform() < 0.5:
        x = x.flip(-1)
    return x
