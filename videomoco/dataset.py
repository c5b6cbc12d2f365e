"""VideoMoCo data: video discovery, the original clip sampling and the augmentation recipes.

Pretraining (Kinetics style, `DATA/train/<class>/<video>.mp4`): one random clip of `fpc` consecutive frames per
video and epoch (start = a multiple of the step between clips), decoded once and cropped twice independently
(random resized crop, scale 0.2-1, bilinear) into the query and key views; colour/flip augmentation then runs on
GPU batches (`VideoMoCoAugment`). Evaluation (UCF101 / HMDB51): random clips + random resized crop (0.08-1) + flip
for fine-tuning, `clip_per_video` uniformly spaced clips + center crop for the test. Clip-level randomness comes
from the sampler's per-sample generator, so a sample does not depend on the worker count (exact resume).
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from shared_utils.cli import fail
from shared_utils.data import DataWarnings, unpack_index
from shared_utils.frames import UnreadableClip, VideoEntry, count_frames, load_frames
from shared_utils.rng import derive_seed
from shared_utils.transforms import IMAGENET_MEAN, IMAGENET_STD, cthw_u8, random_resized_crop_params
from shared_utils.video import decode_frames, video_entries

# --------------------------------------------------------------------------------------------------- discovery


def class_folders(root: str) -> list[str]:
    """Sorted class sub-directories (label = position, as the original)."""
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))


def find_items(root: str, data_format: str, exts: tuple[str, ...], template: str) -> tuple[list, list, list]:
    """(paths, labels, classes) of the videos (files with `exts`) or frame folders under root/<class>/."""
    classes = class_folders(root)
    paths, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for item in sorted(os.listdir(folder)):
            path = os.path.join(folder, item)
            if data_format == "frames" and os.path.isdir(path):
                paths.append(path)
                labels.append(label)
            elif data_format == "video" and os.path.isfile(path) and item.lower().endswith(exts):
                paths.append(path)
                labels.append(label)
    return paths, labels, classes


def make_entries(paths, labels, data_format: str, template: str, warnings: DataWarnings, cache_file=None):
    """VideoEntry list with frame counts; unreadable videos / empty frame folders are counted and skipped."""
    if data_format == "video":
        ids = ["/".join(p.split(os.sep)[-2:]) for p in paths]
        return video_entries(paths, labels, ids, warnings=warnings, cache_file=cache_file)
    entries = []
    for path, label in zip(paths, labels):
        n = count_frames(path, template)
        if n == 0:
            warnings.warn("unreadable_video", f"no frames in {path}")
            continue
        entries.append(VideoEntry(path, n, label, "/".join(path.rstrip("/").split(os.sep)[-2:])))
    return entries


def long_enough(entries, fpc: int, warnings: DataWarnings, pad: bool = False) -> list:
    """The entries with at least one full clip of `fpc` frames. torchvision's VideoClips (the original's index)
    has no clip for a shorter video, so it is never sampled, trained on or tested; those are left out with a
    count. pad=True (`--fix pad_short_videos`) keeps them: their clips repeat the last frame."""
    if pad:
        return list(entries)
    kept = [entry for entry in entries if entry.n_frames >= fpc]
    for entry in entries:
        if entry.n_frames < fpc:
            warnings.warn("short_video_left_out", f"{entry.path}: {entry.n_frames} frames < {fpc}, left out")
    return kept


def metadata_cache(ckp_dir: str, path: str = "") -> str:
    """The video probe cache file: `path` if given, else in the run's checkpoint folder. Never in the dataset folder
    (the original wrote its metadata next to the videos); it is written only once some video was readable."""
    return path or os.path.join(ckp_dir, "videomoco_video_metadata.json")


def _resolve(video_dir: str, rel: str, data_format: str, lookup: dict[str, str]) -> str | None:
    """Path of a split-list entry 'Class/v_x.avi' (frame folders drop the extension); class and file names are
    matched case-insensitively as a fallback (UCF101's lists and folders disagree on a few capitalisations)."""
    rel = rel.replace("\\", "/")
    if data_format == "frames":
        rel = os.path.splitext(rel)[0]
    path = os.path.join(video_dir, *rel.split("/"))
    if os.path.exists(path):
        return path
    return lookup.get(rel.lower())


def _lookup_table(video_dir: str, classes: list[str], data_format: str) -> dict[str, str]:
    table = {}
    for name in classes:
        for item in os.listdir(os.path.join(video_dir, name)):
            path = os.path.join(video_dir, name, item)
            if os.path.isdir(path) == (data_format == "frames"):
                table[f"{name}/{item}".lower()] = path
    return table


def read_ucf_list(video_dir: str, list_file: str, data_format: str, warnings: DataWarnings):
    """(paths, labels, classes) of the videos named by an official UCF101 list (first token of each line =
    Class/file.avi); label = index of the class in the sorted class folders (the original's labels)."""
    if not os.path.isfile(list_file):
        fail(f"split file not found: '{list_file}'")
    classes = class_folders(video_dir)
    label_of = {name.lower(): i for i, name in enumerate(classes)}
    lookup = _lookup_table(video_dir, classes, data_format)
    paths, labels = [], []
    with open(list_file, newline="") as handle:
        rows = [line for line in handle.read().splitlines() if line.strip()]
    if not rows:
        fail(f"split file '{list_file}' is empty (it lists no videos)")
    missing = []
    for line in rows:
        rel = line.split()[0]
        label = label_of.get(rel.replace("\\", "/").split("/")[0].lower())
        path = _resolve(video_dir, rel, data_format, lookup)
        if label is None or path is None:
            missing.append(rel)
            continue
        paths.append(path)
        labels.append(label)
    if not paths:
        fail(f"none of the {len(rows)} videos listed in '{list_file}' exists under '{video_dir}' (e.g. {missing[0]})")
    for rel in missing:
        warnings.warn("unreadable_video", f"{rel} (listed in {list_file}) not found under {video_dir}")
    return paths, labels, classes


def ucf101_split(video_dir: str, split_dir: str, fold: int, train: bool, data_format: str, warnings: DataWarnings):
    """UCF101 split `fold` from the official trainlist0N.txt / testlist0N.txt."""
    list_file = os.path.join(split_dir, f"{'trainlist' if train else 'testlist'}{fold:02d}.txt")
    return read_ucf_list(video_dir, list_file, data_format, warnings)


def hmdb51_split(video_dir: str, split_dir: str, fold: int, train: bool, data_format: str, warnings: DataWarnings):
    """(paths, labels, classes) of HMDB51 split `fold` from the official <class>_test_split<N>.txt files
    (lines 'file.avi id': id 1 = train, 2 = test, 0 = unused); label = index in the sorted class folders."""
    classes = class_folders(video_dir)
    lookup = _lookup_table(video_dir, classes, data_format)
    wanted = "1" if train else "2"
    paths, labels = [], []
    for label, name in enumerate(classes):
        list_file = os.path.join(split_dir, f"{name}_test_split{fold}.txt")
        if not os.path.isfile(list_file):
            fail(f"split file not found: '{list_file}'")
        with open(list_file, newline="") as handle:
            for line in handle.read().splitlines():
                parts = line.split()
                if len(parts) < 2 or parts[-1] != wanted:
                    continue
                path = _resolve(video_dir, f"{name}/{parts[0]}", data_format, lookup)
                if path is None:
                    warnings.warn("unreadable_video", f"{name}/{parts[0]} (listed in {list_file}) not found")
                    continue
                paths.append(path)
                labels.append(label)
    return paths, labels, classes


class ClipReader:
    """uint8 frames [T, H, W, 3] of a video file (PyAV) or a frame folder, by 0-based indices."""

    def __init__(self, data_format: str, template: str, warnings: DataWarnings) -> None:
        self.data_format, self.template, self.warnings = data_format, template, warnings

    def __call__(self, entry: VideoEntry, indices: np.ndarray) -> np.ndarray:
        if self.data_format == "video":
            return decode_frames(entry.path, indices)
        return load_frames(entry.path, indices, self.template, warnings=self.warnings)


# --------------------------------------------------------------------------------------------------- sampling


def num_clip_starts(n_frames: int, fpc: int, step: int) -> int:
    """Candidate clips of `fpc` consecutive frames starting every `step` frames (>= 1: short videos pad)."""
    return max((n_frames - fpc) // step + 1, 1)


def random_clip(n_frames: int, fpc: int, step: int, rng: np.random.Generator) -> np.ndarray:
    """Frame indices [fpc] of one uniformly chosen candidate clip (RandomClipSampler)."""
    start = int(rng.integers(num_clip_starts(n_frames, fpc, step))) * step
    return np.minimum(start + np.arange(fpc), n_frames - 1)


def uniform_clips(n_frames: int, fpc: int, step: int, num: int) -> np.ndarray:
    """Frame indices [num, fpc] of `num` evenly spaced candidate clips, floor(linspace) over the clip index as
    torchvision's UniformClipSampler (clips repeat when a video has fewer than `num`)."""
    n_clips = num_clip_starts(n_frames, fpc, step)
    clip_ids = torch.linspace(0, n_clips - 1, steps=num).floor().long().numpy()
    return np.minimum(clip_ids[:, None] * step + np.arange(fpc)[None, :], n_frames - 1)


# --------------------------------------------------------------------------------------------------- CPU transforms


def to_float_cthw(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [3, T, H, W] in [0, 1]."""
    return cthw_u8(np.ascontiguousarray(frames)).float().div_(255.0)  # permute bytes, not floats


def random_resized_crop(clip: torch.Tensor, size: int, scale, rng: np.random.Generator) -> torch.Tensor:
    """One crop box for all frames of clip [C, T, H, W], bilinear resize to size x size (no antialias, as the
    original's video transform)."""
    top, left, h, w = random_resized_crop_params(clip.shape[-2], clip.shape[-1], scale, (3 / 4, 4 / 3), rng)
    crop = clip[..., top : top + h, left : left + w]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


def random_resized_crop_u8(
    frames: np.ndarray, size: int, scale, rng: np.random.Generator, to_float: bool = True
) -> torch.Tensor:
    """random_resized_crop of uint8 frames [T, H, W, 3] -> float [3, T, size, size] in [0, 1]: the same draws
    and the same bilinear map (OpenCV's INTER_LINEAR on the crop = F.interpolate with align_corners=False and no
    antialias, up to uint8 rounding), but only the crop is resized and converted to float. to_float=False
    returns the uint8 [3, T, size, size] crop (VideoMoCoAugment divides it by 255 on the device)."""
    top, left, h, w = random_resized_crop_params(frames.shape[1], frames.shape[2], scale, (3 / 4, 4 / 3), rng)
    out = np.empty((frames.shape[0], size, size, frames.shape[3]), dtype=np.uint8)
    for t in range(frames.shape[0]):
        cv2.resize(frames[t, top : top + h, left : left + w], (size, size), dst=out[t], interpolation=cv2.INTER_LINEAR)
    return to_float_cthw(out) if to_float else cthw_u8(out)


def center_crop(clip: torch.Tensor, size: int, resize_first: bool) -> torch.Tensor:
    """Center crop of clip [C, T, H, W]; with resize_first the short side is resized to `size` first."""
    if resize_first:
        h, w = clip.shape[-2:]
        scale = size / min(h, w)
        new = (max(size, round(h * scale)), max(size, round(w * scale)))
        clip = F.interpolate(clip, size=new, mode="bilinear", align_corners=False)
    h, w = clip.shape[-2:]
    if h < size or w < size:  # pad like torchvision's center crop
        pad_h, pad_w = max(size - h, 0), max(size - w, 0)
        clip = F.pad(clip, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        h, w = clip.shape[-2:]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return clip[..., top : top + size, left : left + size]


def normalize(clip: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of clip [C, T, H, W]."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    return (clip - mean) / std


# --------------------------------------------------------------------------------------------------- datasets


class PretrainClips(Dataset):
    """Item: (view_q [3, T, S, S], view_k [3, T, S, S], index), uint8 (to [0, 1] and augmented later on the device).

    Both views come from the same decoded clip (released) or, with two_clips, from two independent clips."""

    def __init__(self, entries, reader: ClipReader, fpc: int, step: int, crop: int, two_clips: bool = False):
        self.entries, self.reader = list(entries), reader
        self.fpc, self.step, self.crop, self.two_clips = fpc, step, crop, two_clips

    def __len__(self) -> int:
        return len(self.entries)

    def _views(self, entry: VideoEntry, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx_q = random_clip(entry.n_frames, self.fpc, self.step, rng)
        idx_k = random_clip(entry.n_frames, self.fpc, self.step, rng) if self.two_clips else idx_q
        frames = self.reader(entry, np.concatenate([idx_q, idx_k]) if self.two_clips else idx_q)
        frames_k = frames[self.fpc :] if self.two_clips else frames
        scale = (0.2, 1.0)  # uint8 views: VideoMoCoAugment scales them to [0, 1] on the device
        view_q = random_resized_crop_u8(frames[: self.fpc], self.crop, scale, rng, to_float=False)
        return view_q, random_resized_crop_u8(frames_k, self.crop, scale, rng, to_float=False)

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        for _attempt in range(10):
            entry = self.entries[index]
            try:
                view_q, view_k = self._views(entry, rng)
                return view_q, view_k, index
            except UnreadableClip as err:
                self.reader.warnings.warn("decode_error", f"{entry.path}: {err}; another video is used")
                index = int(rng.integers(len(self.entries)))
        raise RuntimeError("ten consecutive videos failed to decode; check the dataset")


class EvalClips(Dataset):
    """Fine-tuning / test clips. 'train' item: (clip [3, T, S, S], label, index) from a random clip (random
    resized crop 0.08-1, flip, normalise); up to `repeats` *distinct* clips per video and epoch, as
    torchvision's RandomClipSampler(…, 10) (a video with fewer candidate clips gives fewer items). 'test' item:
    (clips [cpv, 3, T, S, S], label, index) from `cpv` uniform clips, center crop; None if the video is
    unreadable. Call `set_epoch` before each training epoch (the distinct clips are drawn per video and epoch)."""

    def __init__(
        self,
        entries,
        reader: ClipReader,
        fpc: int,
        step: int,
        crop: int,
        mode: str,
        clips_per_video: int = 10,
        repeats: int = 1,
        resize_test: bool = False,
        seed: int = 0,
    ):
        self.entries, self.reader, self.mode = list(entries), reader, mode
        self.fpc, self.step, self.crop = fpc, step, crop
        self.cpv, self.repeats, self.resize_test = clips_per_video, repeats, resize_test
        self.seed, self.epoch = int(seed), 0
        counts = [min(num_clip_starts(e.n_frames, fpc, step), repeats) for e in self.entries]
        # item -> (video, rank of its clip in this epoch's permutation of the video's candidate clips)
        self.items = [(video, r) for video, n in enumerate(counts) for r in range(n)] if mode == "train" else []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items) if self.mode == "train" else len(self.entries)

    def train_clip_indices(self, index: int) -> tuple[int, np.ndarray]:
        """(video, frame indices [fpc]) of training item `index`: clip number r of the video's epoch permutation."""
        video, r = self.items[index % len(self.items)]
        n_frames = self.entries[video].n_frames
        order = np.random.default_rng(derive_seed("eval_clips", self.seed, self.epoch, video))
        clip = int(order.permutation(num_clip_starts(n_frames, self.fpc, self.step))[r])
        return video, np.minimum(clip * self.step + np.arange(self.fpc), n_frames - 1)

    def _train_item(self, entry: VideoEntry, indices: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        clip = to_float_cthw(self.reader(entry, indices))
        clip = random_resized_crop(clip, self.crop, (0.08, 1.0), rng)
        if rng.random() < 0.5:
            clip = clip.flip(-1)
        return normalize(clip)

    def _test_item(self, entry: VideoEntry) -> torch.Tensor:
        idx = uniform_clips(entry.n_frames, self.fpc, self.step, self.cpv)
        frames = self.reader(entry, idx.reshape(-1))
        clips = to_float_cthw(frames).view(3, self.cpv, self.fpc, *frames.shape[1:3]).transpose(0, 1)
        return torch.stack([normalize(center_crop(c, self.crop, self.resize_test)) for c in clips])

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        if self.mode == "test":
            index = index % len(self.entries)
            try:
                return self._test_item(self.entries[index]), self.entries[index].label, index
            except UnreadableClip as err:
                self.reader.warnings.warn("unreadable_video", f"{self.entries[index].path}: {err}")
                return None
        video, indices = self.train_clip_indices(index)
        for _attempt in range(10):
            entry = self.entries[video]
            try:
                return self._train_item(entry, indices, rng), entry.label, video
            except UnreadableClip as err:
                self.reader.warnings.warn("decode_error", f"{entry.path}: {err}; another video is used")
                video = int(rng.integers(len(self.entries)))
                indices = random_clip(self.entries[video].n_frames, self.fpc, self.step, rng)
        raise RuntimeError("ten consecutive videos failed to decode; check the dataset")


def require_entries(entries, what: str, root: str) -> list:
    if not entries:
        fail(f"no readable {what} found under '{root}'")
    return entries


def gaussian_kernel_side(crop_size: int) -> int:
    """Blur kernel side of the MoCo v2 recipe: 2 * floor(floor(0.1 * crop) / 2) + 1 (11 for 112)."""
    return 2 * math.floor(math.floor(0.1 * crop_size) / 2) + 1
