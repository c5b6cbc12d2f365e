"""CPD datasets (spec §2): Instagram-style video-caption pairs for pretraining, UCF101/HMDB51 split JSONs for
fine-tuning and the 30-view test, with the original's normalisation and SlowFast-style spatial transforms."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cpd.decoder import DecodeError, decode_clip
from cpd.text import encode_caption
from shared_utils import transforms as T
from shared_utils.cli import fail, require_dir, require_file
from shared_utils.data import DataWarnings, unpack_index

MEAN, STD = 0.45, 0.225
ATTEMPTS = 10

# ----------------------------------------------------------------------------------------------- transforms


def to_normalized_cthw(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [3, T, H, W], (x / 255 - 0.45) / 0.225."""
    x = T.cthw_u8(np.ascontiguousarray(frames))  # the layout change on bytes: far cheaper than on floats
    return x.float().div_(255.0).sub_(MEAN).div_(STD)


def short_side_scale(x: torch.Tensor, size: int) -> torch.Tensor:
    """Short side -> size, long side -> floor(long / short * size); bilinear, align_corners=False, per frame."""
    height, width = x.shape[-2:]
    if (width <= height and width == size) or (height <= width and height == size):
        return x
    if width < height:
        new_h, new_w = int(math.floor(height / width * size)), size
    else:
        new_h, new_w = size, int(math.floor(width / height * size))
    return F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)


def jitter_range(crop: int) -> tuple[int, int]:
    """Scale-jitter range (256, 340) at crop 224 and (128, 170) at 112; other crops scale proportionally (the
    original crashed for them)."""
    return int(round(crop * 256 / 224)), int(round(crop * 340 / 224))


def random_crop(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Offsets drawn like np.random.randint(0, H - size) (upper bound exclusive; 0 when H == size)."""
    height, width = x.shape[-2:]
    y = int(rng.integers(0, height - size)) if height > size else 0
    x0 = int(rng.integers(0, width - size)) if width > size else 0
    return x[..., y : y + size, x0 : x0 + size]


def uniform_crop(x: torch.Tensor, size: int, spatial_idx: int) -> torch.Tensor:
    """Crop 0/1/2 = top/centre/bottom (portrait) or left/centre/right (landscape)."""
    height, width = x.shape[-2:]
    y, x0 = int(math.ceil((height - size) / 2)), int(math.ceil((width - size) / 2))
    if height > width:
        y = {0: 0, 1: y, 2: height - size}[spatial_idx]
    else:
        x0 = {0: 0, 1: x0, 2: width - size}[spatial_idx]
    return x[..., y : y + size, x0 : x0 + size]


def scaled_size(height: int, width: int, size: int) -> tuple[int, int]:
    """short_side_scale's output size: short side -> size, long side -> floor(long / short * size)."""
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(math.floor(height / width * size)), size
    return size, int(math.floor(width / height * size))


def train_transform(
    frames: np.ndarray, size: int, rng: np.random.Generator, flip: bool = True, defer_normalize: bool = False
) -> torch.Tensor:
    """Normalise -> short side ~ U(jitter range) -> random crop -> horizontal flip p = 0.5, with the original's
    draws. The bilinear scale and the crop run as one uint8 warp per frame that computes only the cropped pixels
    (normalising is affine, so it commutes with the bilinear map up to uint8 rounding), then the crop is
    normalised; defer_normalize: left uint8 [3, T, S, S] for `device_normalize_clips` in the training step."""
    height, width = frames.shape[1:3]
    low, high = jitter_range(size)
    new_h, new_w = scaled_size(height, width, int(round(rng.uniform(low, high))))
    y = int(rng.integers(0, new_h - size)) if new_h > size else 0
    x0 = int(rng.integers(0, new_w - size)) if new_w > size else 0
    if (new_h, new_w) == (height, width):
        crops = np.ascontiguousarray(frames[:, y : y + size, x0 : x0 + size])
    else:
        scale = (height / new_h, width / new_w)
        crops = np.stack([T.scale_crop_bilinear(frame, scale, y, x0, size) for frame in frames])
    x = T.cthw_u8(crops)  # 3, T, S, S uint8
    if flip and rng.uniform() < 0.5:
        x = x.flip(-1)
    return x if defer_normalize else x.float().div_(255.0).sub_(MEAN).div_(STD)


def device_normalize_clips(v: torch.Tensor) -> torch.Tensor:
    """The pretraining loader's uint8 clips [B, 3, T, S, S], on the device: (x / 255 - 0.45) / 0.225 (float input
    is returned as is)."""
    return T.device_normalize(v, (MEAN,) * 3, (STD,) * 3)


def test_transform(frames: np.ndarray, size: int, spatial_idx: int) -> torch.Tensor:
    """Normalise -> short side = size -> crop `spatial_idx` of 3 (spatial_idx 1 = centre crop)."""
    return uniform_crop(short_side_scale(to_normalized_cthw(frames), size), size, spatial_idx).contiguous()


# ----------------------------------------------------------------------------------------------- datasets


def read_json(path: str, what: str) -> dict:
    require_file(path, what)
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as err:
        fail(f"{what} '{path}' is not valid JSON ({err})")


class InstagramDataset(Dataset):
    """Pretraining pairs from `{video_path}/trimmed_resize_{id}.mp4` and a JSON {id: {subset, caption}}.

    Item: (clip uint8 [3, T, S, S], token ids int64 [max_len], index actually used) — the index addresses the
    memory banks. A caption longer than 512 tokens or an undecodable video is replaced by a random other entry
    (up to 10 attempts, counted); the flip is applied to the validation subset too, as in the original.
    """

    def __init__(
        self,
        video_path,
        dataset_file,
        subset,
        tokenizer,
        num_frames,
        stride,
        sample_size,
        max_len=64,
        warnings=None,
        verbose=True,
    ):
        require_dir(video_path, "--video_path")
        data = read_json(dataset_file, "--dataset_file")
        if not isinstance(data, dict) or "database" in data:
            fail(f"--dataset_file '{dataset_file}' is not an Instagram-style list ({{id: {{subset, caption}}}})")
        self.ids, self.captions, missing = [], [], 0
        for vid, info in data.items():
            if not isinstance(info, dict) or info.get("subset") != subset:
                continue
            if not os.path.isfile(os.path.join(video_path, f"trimmed_resize_{vid}.mp4")):
                missing += 1
                continue
            self.ids.append(str(vid))
            self.captions.append(str(info.get("caption", "")))
        if verbose and missing:
            print(f"{subset}: {missing} listed videos are missing under {video_path} (dropped)")
        self.video_path, self.tokenizer, self.max_len = video_path, tokenizer, max_len
        self.num_frames, self.stride, self.sample_size = num_frames, stride, sample_size
        self.warnings = warnings if warnings is not None else DataWarnings()

    def __len__(self) -> int:
        return len(self.ids)

    def path(self, index: int) -> str:
        return os.path.join(self.video_path, f"trimmed_resize_{self.ids[index]}.mp4")

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        for _ in range(ATTEMPTS):
            tokens = encode_caption(self.tokenizer, self.captions[index], self.max_len)
            if tokens is not None:
                try:
                    frames = decode_clip(self.path(index), self.num_frames, self.stride, -1, 1, rng)
                    clip = train_transform(frames, self.sample_size, rng, defer_normalize=True)  # uint8
                    return clip, tokens, index
                except DecodeError as err:
                    self.warnings.warn("decode_error", str(err))
            index = int(rng.integers(len(self.ids)))
        return None


def split_json(dataset_file: str) -> tuple[list[str], dict]:
    """(class names, database) of a UCF101/HMDB51 split JSON; empty label strings are skipped."""
    data = read_json(dataset_file, "--dataset_file")
    if not isinstance(data, dict) or "labels" not in data or "database" not in data:
        fail(f"--dataset_file '{dataset_file}' is not a split JSON ({{labels, database}})")
    return [name for name in data["labels"] if name], data["database"]


class UcfHmdb(Dataset):
    """UCF101 / HMDB51 videos at `{video_path}/{label}/{stem}.avi` listed in a split JSON.

    mode 'train': random clip, scale jitter, random crop, flip; 'val': random clip and crop, no flip (or the centre
    clip/crop with center=True); 'test': num_clips x num_crops views per video (view k: clip k // crops, crop
    k % crops). Item: (clip [3, T, S, S], class index, item index = video * views + view). Files are opened only when read; a missing
    file is reported at construction, an unreadable one is counted (train/val: another video; test: None).
    """

    def __init__(
        self,
        video_path,
        dataset_file,
        subset,
        mode,
        num_frames,
        stride,
        sample_size,
        num_clips=10,
        num_crops=3,
        center=False,
        warnings=None,
        verbose=True,
    ):
        require_dir(video_path, "--video_path")
        self.classes, database = split_json(dataset_file)
        class_index = {name: i for i, name in enumerate(self.classes)}
        self.videos, self.labels, missing = [], [], []
        for stem, info in database.items():
            if info.get("subset") != subset:
                continue
            label = info["annotations"]["label"]
            path = os.path.join(video_path, label, f"{stem}.avi")
            if not os.path.isfile(path):
                missing.append(path)
                continue
            self.videos.append((stem, path))
            self.labels.append(class_index[label])
        if verbose and missing:
            print(f"{subset}: {len(missing)} listed videos are missing (e.g. {missing[0]})")
        self.mode, self.num_frames, self.stride, self.sample_size = mode, num_frames, stride, sample_size
        self.num_clips, self.num_crops, self.center = num_clips, num_crops, center
        self.views = num_clips * num_crops if mode == "test" else 1
        self.warnings = warnings if warnings is not None else DataWarnings()

    def __len__(self) -> int:
        return len(self.videos) * self.views

    def _load(self, video: int, view: int, rng: np.random.Generator) -> torch.Tensor:
        path = self.videos[video][1]
        if self.mode == "test":
            frames = decode_clip(path, self.num_frames, self.stride, view // self.num_crops, self.num_clips)
            return test_transform(frames, self.sample_size, view % self.num_crops)
        if self.center:
            frames = decode_clip(path, self.num_frames, self.stride, 1, 2)  # start = delta / 2: the middle clip
            return test_transform(frames, self.sample_size, 1)
        frames = decode_clip(path, self.num_frames, self.stride, -1, 1, rng)
        return train_transform(frames, self.sample_size, rng, flip=self.mode == "train")

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        video, view = divmod(index, self.views)
        for _ in range(ATTEMPTS):
            try:
                return self._load(video, view, rng), self.labels[video], video * self.views + view
            except DecodeError as err:
                self.warnings.warn("decode_error", str(err))
                if self.mode == "test":
                    return None
                video = int(rng.integers(len(self.videos)))
        return None
