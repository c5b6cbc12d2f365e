"""Frame-folder videos: split-list readers, fast JPEG clip loading, clip index sampling, a generic clip dataset.

A video is a folder of JPEG frames named by a 1-based template (`image_%05d.jpg` as MemDPC/CoCLR; VTDL's
`img_%05d.jpg` / `frame%06d.jpg` work too). Indices in this module are 0-based; file k+1 holds frame k.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from shared_utils.cli import fail, require_file
from shared_utils.data import DataWarnings, unpack_index
from shared_utils.frame_files import count_frames, frame_name, template_regex  # noqa: F401 (re-exported)

DEFAULT_TEMPLATE = "image_{:05d}.jpg"
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10
cv2.setNumThreads(1)  # decoding runs inside DataLoader workers; OpenCV's own pool would oversubscribe the cores


class UnreadableClip(RuntimeError):
    """No frame of the requested clip could be read."""


@dataclass(frozen=True)
class VideoEntry:
    path: str  # frame folder (or video file for shared_utils.video)
    n_frames: int
    label: int
    video_id: str


# --------------------------------------------------------------------------------------------------- lists


def read_class_index(path: str) -> list[str]:
    """Class names in label order from 'Name' or '1 Name' lines (CRLF and blank lines tolerated)."""
    require_file(path, "class index")
    names = []
    with open(path, newline="") as handle:
        for line in handle.read().splitlines():
            parts = line.strip().split()
            if not parts:
                continue
            names.append(parts[-1] if len(parts) > 1 and parts[0].isdigit() else parts[0])
    return names


def _video_id(frame_dir: str) -> str:
    parts = os.path.normpath(frame_dir).split(os.sep)
    return "/".join(parts[-2:])


def read_frame_csv(path: str, classes: Sequence[str] | None = None) -> list[VideoEntry]:
    """MemDPC split CSV: `<frame dir>[/],<n_frames>` per line, no header. The label is the index of the class
    folder (the frame folder's parent) in `classes` (-1 without classes)."""
    require_file(path, "split file")
    lookup = {name: i for i, name in enumerate(classes or [])}
    lookup_lower = {name.lower(): i for name, i in lookup.items()}
    entries = []
    with open(path, newline="") as handle:
        for line_no, line in enumerate(handle.read().splitlines(), 1):
            if not line.strip():
                continue
            try:
                frame_dir, count = line.rsplit(",", 1)
                n_frames = int(count)
            except ValueError:
                fail(f"{path}:{line_no}: expected '<frame dir>,<n_frames>', got {line.strip()!r}")
            class_name = os.path.basename(os.path.dirname(os.path.normpath(frame_dir)))
            label = lookup.get(class_name, lookup_lower.get(class_name.lower(), -1))
            if classes and label < 0:
                fail(f"{path}:{line_no}: class folder '{class_name}' is not in the class index")
            entries.append(VideoEntry(frame_dir.rstrip("/"), n_frames, label, _video_id(frame_dir)))
    if not entries:
        fail(f"split file '{path}' lists no videos")
    return entries


def read_video_list(path: str, root: str | None = None, basename_only: bool = False) -> list[VideoEntry]:
    """VTDL list: `<frame dir> <n_frames> <label>` per line. With `root`, relative dirs are joined to it
    (basename_only=True keeps only the last path component, as the original did with its hard-coded roots)."""
    require_file(path, "video list")
    entries = []
    with open(path, newline="") as handle:
        for line_no, line in enumerate(handle.read().splitlines(), 1):
            parts = line.strip().split()
            if not parts:
                continue
            if len(parts) < 3:
                fail(f"{path}:{line_no}: expected '<frame dir> <n_frames> <label>', got {line.strip()!r}")
            frame_dir, n_frames, label = " ".join(parts[:-2]), int(parts[-2]), int(parts[-1])
            if basename_only:
                frame_dir = os.path.basename(frame_dir.rstrip("/"))
            if root:
                frame_dir = os.path.join(root, frame_dir)
            entries.append(VideoEntry(frame_dir.rstrip("/"), n_frames, label, _video_id(frame_dir)))
    if not entries:
        fail(f"video list '{path}' lists no videos")
    return entries


# --------------------------------------------------------------------------------------------------- frames


def _looks_complete(data: bytes) -> bool:
    """A JPEG stream ends with the EOI marker (allow a little trailing padding)."""
    return len(data) > 4 and data[:2] == b"\xff\xd8" and b"\xff\xd9" in data[-32:]


def _reduced_flag(height: int, width: int, short_side: int | None) -> int:
    """Let libjpeg downscale by 2/4/8 during decoding when the target is much smaller (resize early)."""
    if not short_side:
        return cv2.IMREAD_COLOR
    short = min(height, width)
    for factor, flag in (
        (8, cv2.IMREAD_REDUCED_COLOR_8),
        (4, cv2.IMREAD_REDUCED_COLOR_4),
        (2, cv2.IMREAD_REDUCED_COLOR_2),
    ):
        if short // factor >= short_side:
            return flag
    return cv2.IMREAD_COLOR


def resize_short_side_np(image: np.ndarray, short_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if min(h, w) == short_side:
        return image
    if h <= w:
        new_h, new_w = short_side, max(1, round(w * short_side / h))
    else:
        new_h, new_w = max(1, round(h * short_side / w)), short_side
    interp = cv2.INTER_AREA if short_side < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (new_w, new_h), interpolation=interp)


def decode_jpeg(
    data: bytes, short_side: int | None = None, size_hint: tuple[int, int] | None = None
) -> np.ndarray | None:
    """RGB uint8 [H, W, 3] from JPEG bytes, or None when the data is not a complete JPEG."""
    if not _looks_complete(data):
        return None
    flag = _reduced_flag(*size_hint, short_side) if size_hint else cv2.IMREAD_COLOR
    if flag == cv2.IMREAD_COLOR and _IMREAD_RGB is not None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD_RGB)  # RGB straight from libjpeg
        is_bgr = False
    else:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        is_bgr = True
    if image is None:
        return None
    if short_side:
        image = resize_short_side_np(image, short_side)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if is_bgr else image


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def load_frames(
    folder: str,
    indices: Sequence[int] | np.ndarray,
    template: str = DEFAULT_TEMPLATE,
    short_side: int | None = None,
    warnings: DataWarnings | None = None,
) -> np.ndarray:
    """Frames `indices` (0-based, repeats allowed) of a frame folder as uint8 [T, H, W, 3] RGB.

    Each distinct frame is decoded once. A missing or corrupt frame is replaced by the nearest readable frame of
    the same clip and counted in `warnings`; if no frame is readable, UnreadableClip is raised.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    wanted = sorted(set(indices.tolist()))
    decoded: dict[int, np.ndarray] = {}
    size_hint: tuple[int, int] | None = None
    for index in wanted:
        path = os.path.join(folder, frame_name(template, index + 1))
        data = _read_bytes(path)
        if data is None:
            if warnings is not None:
                warnings.warn("missing_frame", f"missing frame {path}")
            continue
        image = decode_jpeg(data, short_side, size_hint)
        if image is None:
            if warnings is not None:
                warnings.warn("corrupt_frame", f"corrupt frame {path}")
            continue
        if size_hint is None:
            size_hint = _original_size(data) or image.shape[:2]
        decoded[index] = image
    if not decoded:
        raise UnreadableClip(f"no readable frame among {len(wanted)} requested in {folder}")
    good = np.array(sorted(decoded))
    reference = decoded[int(good[0])].shape
    out = np.empty((len(indices), *reference), dtype=np.uint8)
    for t, index in enumerate(indices.tolist()):
        image = decoded.get(index)
        if image is None:
            image = decoded[int(good[np.abs(good - index).argmin()])]
        if image.shape != reference:
            image = cv2.resize(image, (reference[1], reference[0]), interpolation=cv2.INTER_AREA)
        out[t] = image
    return out


def _original_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the JPEG SOF header without decoding."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
        i += 2 + length
    return None


# --------------------------------------------------------------------------------------------------- sampling


def clip_indices(
    n_frames: int,
    clip_len: int,
    stride: int = 1,
    mode: str = "random",
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
    pad: str = "repeat_last",
) -> np.ndarray:
    """0-based frame indices [num_clips, clip_len] of clips of `clip_len` frames taken every `stride` frames.

    mode: 'random' (uniform start; needs rng), 'center' (one clip in the middle), 'uniform' (num_clips starts
    spread evenly from the first to the last possible start). A video shorter than one clip starts at 0 and is
    padded: 'repeat_last' repeats the last frame, 'loop' wraps to the first frame.
    """
    if n_frames <= 0:
        raise UnreadableClip("video has no frames")
    if clip_len <= 0 or stride <= 0 or num_clips <= 0:
        raise ValueError("clip_len, stride and num_clips must be positive")
    span = (clip_len - 1) * stride + 1
    max_start = max(n_frames - span, 0)
    if mode == "random":
        if rng is None:
            raise ValueError("mode='random' needs an rng")
        starts = rng.integers(0, max_start + 1, size=num_clips)
    elif mode == "center":
        starts = np.full(num_clips, max_start // 2)
    elif mode == "uniform":
        starts = np.full(1, max_start // 2) if num_clips == 1 else np.linspace(0, max_start, num_clips).round()
    else:
        raise ValueError(f"unknown sampling mode {mode!r}")
    indices = starts.astype(np.int64)[:, None] + np.arange(clip_len, dtype=np.int64)[None, :] * stride
    if pad == "repeat_last":
        return np.minimum(indices, n_frames - 1)
    if pad == "loop":
        return indices % n_frames
    raise ValueError(f"unknown pad mode {pad!r}")


def is_short(n_frames: int, clip_len: int, stride: int = 1) -> bool:
    return n_frames < (clip_len - 1) * stride + 1


# --------------------------------------------------------------------------------------------------- dataset

ClipTransform = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]


class ClipDataset(Dataset):
    """Base for clip datasets. Item: (clip, label, index); clip = transform(uint8 [T, C, H, W], rng).

    mode 'train' samples a random start, 'val' the center clip, 'test' `num_clips` uniform clips stacked into
    [K, ...]. Short videos are padded (pad='repeat_last' | 'loop') and counted. An unreadable video is counted;
    in 'train' another random video is used instead, elsewhere the item is None (use collate_skip_none).
    Subclasses implement `read_frames(entry, indices) -> uint8 [N, H, W, 3]`.
    """

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        clip_len: int,
        stride: int = 1,
        mode: str = "train",
        num_clips: int = 1,
        transform: ClipTransform | None = None,
        pad: str = "repeat_last",
        warnings: DataWarnings | None = None,
    ) -> None:
        if mode not in ("train", "val", "test"):
            raise ValueError(f"mode must be train, val or test, not {mode!r}")
        self.entries = list(entries)
        self.clip_len, self.stride, self.mode, self.num_clips = clip_len, stride, mode, num_clips
        self.transform, self.pad = transform, pad
        self.warnings = warnings if warnings is not None else DataWarnings()

    def __len__(self) -> int:
        return len(self.entries)

    def num_frames(self, entry: VideoEntry) -> int:
        return entry.n_frames

    def read_frames(self, entry: VideoEntry, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def load_clips(self, entry: VideoEntry, rng: np.random.Generator) -> torch.Tensor:
        """uint8 [K, T, C, H, W] for one video (K = 1 outside test mode)."""
        n_frames = self.num_frames(entry)
        if is_short(n_frames, self.clip_len, self.stride):
            self.warnings.warn("short_video", f"{entry.path}: {n_frames} frames < one clip, padded ({self.pad})")
        sampling = {"train": "random", "val": "center", "test": "uniform"}[self.mode]
        k = self.num_clips if self.mode == "test" else 1
        idx = clip_indices(n_frames, self.clip_len, self.stride, sampling, k, rng, self.pad)
        frames = self.read_frames(entry, idx.reshape(-1))
        clips = torch.from_numpy(frames).view(k, self.clip_len, *frames.shape[1:])
        return clips.permute(0, 1, 4, 2, 3)  # K, T, C, H, W

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        for _attempt in range(10):
            entry = self.entries[index]
            try:
                clips = self.load_clips(entry, rng)
            except UnreadableClip as err:
                self.warnings.warn("unreadable_video", f"{entry.path}: {err}")
                if self.mode != "train":
                    return None
                index = int(rng.integers(len(self.entries)))
                continue
            if self.mode != "test":
                clip = clips[0] if self.transform is None else self.transform(clips[0], rng)
            elif self.transform is None:
                clip = clips
            else:
                clip = torch.stack([self.transform(c, rng) for c in clips])
            return clip, entry.label, index
        return None


class FrameClipDataset(ClipDataset):
    """ClipDataset over frame folders (`template` names the 1-based JPEG files)."""

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        clip_len: int,
        stride: int = 1,
        mode: str = "train",
        num_clips: int = 1,
        transform: ClipTransform | None = None,
        template: str = DEFAULT_TEMPLATE,
        short_side: int | None = None,
        pad: str = "repeat_last",
        warnings: DataWarnings | None = None,
    ) -> None:
        super().__init__(entries, clip_len, stride, mode, num_clips, transform, pad, warnings)
        self.template, self.short_side = template, short_side

    def num_frames(self, entry: VideoEntry) -> int:
        return entry.n_frames or count_frames(entry.path, self.template)

    def read_frames(self, entry: VideoEntry, indices: np.ndarray) -> np.ndarray:
        return load_frames(entry.path, indices, self.template, self.short_side, self.warnings)
