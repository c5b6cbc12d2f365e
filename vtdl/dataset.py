"""VTDL data: list files, frame/video reading, the original's clip sampling and spatial recipe (spec §2).

Frame numbers here are 1-based as in the original (`get()` walks p, p+stride, ... and wraps to frame 1 when it
runs past the end); readers convert to the 0-based indices of shared_utils. All randomness of a sample comes
from the generator handed out by shared_utils.data.EpochSampler, so it does not depend on the worker count
and resumes exactly.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from shared_utils import transforms as T
from shared_utils.cli import fail, require_file
from shared_utils.data import DataWarnings, unpack_index
from shared_utils.frames import UnreadableClip, VideoEntry, frame_name, load_frames
from shared_utils.video import decode_frames, probe_video

TEMPLATES = ("image_{:05d}.jpg", "img_{:05d}.jpg", "frame{:06d}.jpg", "{:05d}.jpg")  # process_data first

# --------------------------------------------------------------------------------------------------- lists


def read_list(path: str, root: str = "", frame_root: str = "") -> list[VideoEntry]:
    """`<frames_dir> <num_frames> <label>` (UCF101/HMDB51) or `<video path> <label>` (Kinetics) per line.

    frame_root: use <frame_root>/<basename of the listed path>, the original's layout (its roots were
    hard-coded); root: joined in front of the listed path (the original's --root)."""
    require_file(path, "list file")
    entries = []
    with open(path, newline="") as handle:
        for line_no, line in enumerate(handle.read().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) >= 3:
                    item, n_frames, label = " ".join(parts[:-2]), int(parts[-2]), int(parts[-1])
                elif len(parts) == 2:
                    item, n_frames, label = parts[0], 0, int(parts[1])
                else:
                    raise ValueError
            except ValueError:
                fail(
                    f"{path}:{line_no}: expected '<frames_dir> <num_frames> <label>' or '<video> <label>', "
                    f"got {line.strip()!r}"
                )
            if frame_root:
                item = os.path.join(frame_root, os.path.basename(item.rstrip("/")))
            elif root:
                item = os.path.join(root, item)
            vid = "/".join(os.path.normpath(item).split(os.sep)[-2:])
            entries.append(VideoEntry(item.rstrip("/"), n_frames, label, vid))
    if not entries:
        fail(f"list file '{path}' lists no videos")
    return entries


def detect_template(entries: list[VideoEntry], template: str | None) -> str | None:
    """The frame file template of a frames list (None for video files). Fails with one line when the first
    video's folder or first frame cannot be found."""
    first = entries[0].path
    if os.path.isfile(first):
        return None
    if not os.path.isdir(first):
        fail(
            f"frame folder not found: '{first}' (list paths are used as written; --frame_root DIR looks up "
            f"DIR/<basename> as the original did, --root DIR prefixes them)"
        )
    for candidate in [template] if template else TEMPLATES:
        if os.path.isfile(os.path.join(first, frame_name(candidate, 1))):
            return candidate
    tried = ", ".join(frame_name(t, 1) for t in ([template] if template else TEMPLATES))
    fail(f"no first frame ({tried}) in '{first}'; pass --image_tmpl")


class ClipReader:
    """uint8 frames [T, H, W, 3] of 1-based frame numbers from a frame folder or (template None) a video file,
    short side resized to `short_side`. Video frame counts missing from the list are probed once."""

    def __init__(self, template: str | None, short_side: int | None, warnings: DataWarnings):
        self.template, self.short_side, self.warnings = template, short_side, warnings
        self._counts: dict[str, int] = {}

    def num_frames(self, entry: VideoEntry) -> int:
        if entry.n_frames > 0:
            return entry.n_frames
        if entry.path not in self._counts:
            self._counts[entry.path] = probe_video(entry.path).n_frames
        return self._counts[entry.path]

    def __call__(self, entry: VideoEntry, frames_1based) -> np.ndarray:
        idx = np.asarray(frames_1based, dtype=np.int64) - 1
        if self.template is None:
            return decode_frames(entry.path, idx, self.short_side)
        return load_frames(entry.path, idx, self.template, self.short_side, self.warnings)


# --------------------------------------------------------------------------------------------------- sampling


def walk(n_frames: int, start: int, length: int, stride: int) -> list[int]:
    """The original get(): frames start, start+stride, ...; past N - stride + 1 it wraps to frame 1."""
    p, out = start, []
    for _ in range(length):
        out.append(p)
        p = p + stride if p < n_frames - stride + 1 else 1
    return out


def random_start(n_frames: int, range_len: int, stride: int, rng: np.random.Generator) -> int:
    """randint(1, max(N - range_len*stride, 0) + 1), inclusive, as the original."""
    return int(rng.integers(1, max(n_frames - range_len * stride, 0) + 2))


def triplet_starts(n_frames: int, range_len: int, stride: int, rng: np.random.Generator) -> tuple[int, int]:
    """(anchor/positive start, temporal-negative start) of spec §2.3: the negative is redrawn from the same
    range; if it lies within 1 frame of the anchor it is shifted by N//3 (mod N, 0 -> 1)."""
    s_a = random_start(n_frames, range_len, stride, rng)
    s_n = random_start(n_frames, range_len, stride, rng)
    if abs(s_n - s_a) < 2:
        s_n = (s_n + n_frames // 3) % n_frames or 1
    return s_a, s_n


def uniform_starts(n_frames: int, length: int, stride: int, num: int) -> list[int]:
    """`num` evenly spaced 1-based starts whose clips fit in the video (all 1 for short videos)."""
    last = max(n_frames - (length - 1) * stride, 1)
    if num == 1:
        return [(last + 1) // 2]
    return [int(round(v)) for v in np.linspace(1, last, num)]


# --------------------------------------------------------------------------------------------------- transforms


def resize_size(spatial_size: int) -> int:
    """256 for 224 and 128 for 112 as the original; size*8/7 in general."""
    return int(spatial_size) * 8 // 7


def one_of_four_jitter(clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The original ColorJitter(0.5, 0.5, 0.25, 0.5): factors drawn b, c, s, h, then exactly ONE of the four
    adjustments (uniformly chosen) survives, applied to every frame (spec §2.4), with PIL's uint8 arithmetic."""
    factors = (rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.75, 1.25), rng.uniform(-0.5, 0.5))
    which = int(rng.integers(4))
    return T.from_frames_hwc(_clip_op(T.frames_hwc(clip), which, float(factors[which])))


def composed_jitter(clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The fix: all four adjustments (same ranges) in a random order, drawn once per clip."""
    factors = (rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.75, 1.25), rng.uniform(-0.5, 0.5))
    order = rng.permutation(4)
    frames = T.frames_hwc(clip)
    for op in order:
        frames = _clip_op(frames, int(op), float(factors[op]))
    return T.from_frames_hwc(frames)


def _clip_op(frames: np.ndarray, op: int, factor: float) -> np.ndarray:
    """PIL colour op `op` (shared_utils.transforms.PIL_COLOUR_OPS) with one factor for every frame [T, H, W, 3].
    Brightness, saturation and hue act per pixel, so they run once on the clip seen as one tall image; contrast
    blends each frame with its own mean luminance, so it runs frame by frame."""
    n, height, width, channels = frames.shape
    if op == 1:
        out = np.empty_like(frames)
        for t in range(n):
            out[t] = T.pil_contrast(frames[t], factor)
        return out
    tall = np.ascontiguousarray(frames).reshape(n * height, width, channels)
    return T.PIL_COLOUR_OPS[op](tall, factor).reshape(n, height, width, channels)


class TrainTransform:
    """Basic augmentation ('BA'): rotation U(-10, 10) deg (PIL's nearest, black corners) -> random crop -> colour
    jitter (composed, or the original one-of-four) -> [0, 1] -> ImageNet normalisation -> [C, T, H, W].
    Rotation and crop run as one warp per frame that computes only the cropped pixels. The short-side resize
    (256 for 224 crops) happens while decoding; the original rotated before resizing, which differs only by
    interpolation and not at all for frames stored at short side 256 (the jpegs_256 frames the paper used).
    aug='NULL' gives the test transform (centre crop) instead. defer_normalize (default): the clip leaves the
    loader as uint8 [C, T, H, W] and runtime.to_device normalises it on the device (the same numbers)."""

    def __init__(self, size: int, jitter: str = "composed", aug: str = "CJ", defer_normalize: bool = True):
        self.size, self.jitter, self.aug, self.defer = size, jitter, aug, defer_normalize

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:  # clip: T, C, H, W uint8
        if self.aug == "NULL":
            return TestTransform(self.size)(clip)
        angle = float(rng.uniform(-10, 10))
        height, width = clip.shape[-2:]
        top = int(rng.integers(0, max(height - self.size, 0) + 1))
        left = int(rng.integers(0, max(width - self.size, 0) + 1))
        frames = T.frames_hwc(clip)
        side = min(self.size, height, width)
        out = np.empty((frames.shape[0], side, side, frames.shape[3]), dtype=np.uint8)
        for t in range(frames.shape[0]):
            T.pil_rotate_crop(frames[t], angle, top, left, side, dst=out[t])
        clip = T.from_frames_hwc(out)
        clip = composed_jitter(clip, rng) if self.jitter == "composed" else one_of_four_jitter(clip, rng)
        return T.normalize(clip, to_cthw=True, defer=self.defer)  # uint8 -> [C, T, H, W] (float unless deferred)


class TestTransform:
    """Centre crop -> [0, 1] -> ImageNet normalisation -> [C, T, H, W] (after the short-side resize)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, clip: torch.Tensor, rng=None) -> torch.Tensor:
        return T.normalize(T.center_crop(clip, self.size), to_cthw=True)


def to_tchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2)  # T, C, H, W


# --------------------------------------------------------------------------------------------------- datasets


class PretrainDataset(Dataset):
    """VTDL triplets (spec §2.3): anchor and positive = the SAME frames (one read, two independent spatial
    augmentations); temporal negative = the same video from another start. Item: ([anchor, positive,
    negative] each [C, T, H, W] float, label, index). An unreadable video is counted and replaced by a random
    other one (as the original's Kinetics loader did)."""

    def __init__(
        self, entries, reader: ClipReader, transform, clip_len: int = 16, stride: int = 4, range_len: int = 16
    ):
        self.entries, self.reader, self.transform = list(entries), reader, transform
        self.clip_len, self.stride, self.range_len = clip_len, stride, range_len

    def __len__(self) -> int:
        return len(self.entries)

    def sample_frames(self, n_frames: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        s_a, s_n = triplet_starts(n_frames, self.range_len, self.stride, rng)
        return walk(n_frames, s_a, self.clip_len, self.stride), walk(n_frames, s_n, self.clip_len, self.stride)

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        for _attempt in range(20):
            entry = self.entries[index]
            try:
                anchor_ids, negative_ids = self.sample_frames(self.reader.num_frames(entry), rng)
                frames = to_tchw(self.reader(entry, anchor_ids + negative_ids))
            except UnreadableClip as err:
                self.reader.warnings.warn("unreadable_video", f"{entry.path}: {err}")
                index = int(rng.integers(len(self.entries)))
                continue
            anchor_frames, negative_frames = frames[: self.clip_len], frames[self.clip_len :]
            anchor = self.transform(anchor_frames, rng)
            positive = self.transform(anchor_frames, rng)
            negative = self.transform(negative_frames, rng)
            return [anchor, positive, negative], entry.label, index
        raise UnreadableClip("20 consecutive unreadable videos; check the list and the frame root")


class FinetuneDataset(Dataset):
    """Clips for fine-tuning and evaluation. Modes (spec §2.3, §9):
    train: random start in 1..max(N - L*stride, 0)+1, L frames with wrap;
    val: centre start (fix) or, with val_clip='random', the original's random start;
    full: the original test loader, all N frames from frame 1 (L frames with wrap if N < L), batch size 1;
    clips: `num_clips` uniformly spaced clips stacked to [K, C, L, H, W] (the README's multi-clip test).
    Item: (clip, label, index); None for an unreadable video outside train (use collate_skip_none)."""

    def __init__(
        self,
        entries,
        reader: ClipReader,
        transform,
        data_length: int,
        stride: int = 1,
        mode: str = "train",
        val_clip: str = "center",
        num_clips: int = 10,
    ):
        if mode not in ("train", "val", "full", "clips"):
            raise ValueError(f"unknown mode {mode!r}")
        self.entries, self.reader, self.transform = list(entries), reader, transform
        self.length, self.stride, self.mode = data_length, stride, mode
        self.val_clip, self.num_clips = val_clip, num_clips

    def __len__(self) -> int:
        return len(self.entries)

    def clip_frames(self, n: int, rng: np.random.Generator) -> list[list[int]]:
        length, stride = self.length, self.stride
        if self.mode == "train" or (self.mode == "val" and self.val_clip == "random"):
            start = random_start(n, length, stride, rng) if self.mode == "train" or n > length * stride else 1
            return [walk(n, start, length, stride)]
        if self.mode == "val":
            return [walk(n, uniform_starts(n, length, stride, 1)[0], length, stride)]
        if self.mode == "full":
            return [walk(n, 1, length if n < length else n, stride)]
        return [walk(n, s, length, stride) for s in uniform_starts(n, length, stride, self.num_clips)]

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        for _attempt in range(20):
            entry = self.entries[index]
            try:
                clips = self.clip_frames(self.reader.num_frames(entry), rng)
                frames = to_tchw(self.reader(entry, [f for clip in clips for f in clip]))
            except UnreadableClip as err:
                self.reader.warnings.warn("unreadable_video", f"{entry.path}: {err}")
                if self.mode != "train":
                    return None
                index = int(rng.integers(len(self.entries)))
                continue
            size = len(clips[0])
            out = [self.transform(frames[i * size : (i + 1) * size], rng) for i in range(len(clips))]
            return (torch.stack(out) if self.mode == "clips" else out[0]), entry.label, index
        raise UnreadableClip("20 consecutive unreadable videos; check the list and the frame root")


def build_reader(entries, image_tmpl: str | None, spatial_size: int, warnings: DataWarnings) -> ClipReader:
    return ClipReader(detect_template(entries, image_tmpl), resize_size(spatial_size), warnings)
