"""Video files decoded on the fly with PyAV: probing, frame-index decoding with seeking, a clip dataset.

Frame k of a video is the k-th frame in presentation order (0-based), located by its timestamp
(round((pts - start) * time_base * fps)), so seeking gives the same indices as decoding from the start.
We never call av.logging.set_level: combined with threaded decoding it deadlocks in container.close() on
PyAV 18 (CPD spec §2.3).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import av
import numpy as np

from shared_utils.data import DataWarnings
from shared_utils.frames import ClipDataset, ClipTransform, UnreadableClip, VideoEntry

SEEK_MIN_FRAMES = 48  # seek only when the clip starts this far in: short seeks cost more than they save


@dataclass(frozen=True)
class VideoInfo:
    n_frames: int
    fps: float
    width: int
    height: int


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 30.0


def probe_video(path: str) -> VideoInfo:
    """Frame count, fps and size of the first video stream; UnreadableClip if it cannot be opened or is empty."""
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise UnreadableClip(f"{path}: no video stream")
            stream = container.streams.video[0]
            n_frames = stream.frames
            if n_frames <= 0:  # some containers do not store the count: count packets
                n_frames = sum(1 for packet in container.demux(stream) if packet.size)
            info = VideoInfo(
                int(n_frames), _stream_fps(stream), stream.codec_context.width, stream.codec_context.height
            )
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise UnreadableClip(f"{path}: {type(err).__name__}: {err}") from err
    if info.n_frames <= 0 or info.width <= 0:
        raise UnreadableClip(f"{path}: no decodable frames")
    return info


def _scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    if not short_side or min(width, height) == short_side:
        return width, height
    if height <= width:
        return max(1, round(width * short_side / height)), short_side
    return short_side, max(1, round(height * short_side / width))


def decode_frames(path: str, indices: Sequence[int] | np.ndarray, short_side: int | None = None) -> np.ndarray:
    """Frames `indices` (0-based, repeats allowed) as uint8 [T, H, W, 3] RGB, short side resized if asked.

    Indices past the end (or frames that fail to decode) take the nearest decoded frame; UnreadableClip if none.
    A packet whose frame is not wanted is sent with skip_frame NONREF: the decoder drops it when no other frame
    references it (B-frames of most encodes) and decodes it otherwise, so the wanted frames come out unchanged.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    wanted = set(indices.tolist())
    first, last = int(indices.min()), int(indices.max())
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps, time_base = _stream_fps(stream), stream.time_base
            start = stream.start_time or 0
            if first >= SEEK_MIN_FRAMES and time_base:
                target = start + int((first - fps) / fps / time_base)  # a second early, then back to a key frame
                container.seek(max(target, start), stream=stream, backward=True, any_frame=False)
            _decode_wanted(container, stream, wanted, last, got, short_side)
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as err:
        if not got:
            raise UnreadableClip(f"{path}: {type(err).__name__}: {err}") from err
    if not got:
        raise UnreadableClip(f"{path}: none of frames {first}..{last} could be decoded")
    have = np.array(sorted(got))
    out = np.stack([got[i] if i in got else got[int(have[np.abs(have - i).argmin()])] for i in indices.tolist()])
    return out


def _decode_wanted(container, stream, wanted: set, last: int, got: dict, short_side: int | None) -> None:
    """Decode from the current position until frame `last`, converting the wanted frames into `got`. Frame index
    = round((pts - start) * time_base * fps) in floats (Fraction arithmetic per frame cost more than the
    conversions); frames without a pts are counted in decoding order."""
    fps, start = _stream_fps(stream), stream.start_time or 0
    seconds = float(stream.time_base) if stream.time_base else 0.0
    codec = stream.codec_context
    ordinal = 0
    for packet in container.demux(stream):
        if packet.pts is not None and seconds:
            codec.skip_frame = "DEFAULT" if round((packet.pts - start) * seconds * fps) in wanted else "NONREF"
        else:
            codec.skip_frame = "DEFAULT"  # the flush packet at the end, or no timestamps
        for frame in packet.decode():
            index = round((frame.pts - start) * seconds * fps) if frame.pts is not None and seconds else ordinal
            ordinal += 1
            if index in wanted and index not in got:
                width, height = _scaled_size(frame.width, frame.height, short_side)
                got[index] = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
            if index >= last:
                return


PROBE_CACHE_VERSION = 2  # part of every cache key: bump when probe_video's output changes meaning


def probe_cache_key(path: str) -> str:
    """The probe cache key of a file: cache version, path, size and mtime (ns), so a changed file is probed again."""
    try:
        stat = os.stat(path)
    except OSError:
        return f"v{PROBE_CACHE_VERSION}|{path}|missing"
    return f"v{PROBE_CACHE_VERSION}|{path}|{stat.st_size}|{stat.st_mtime_ns}"


def probe_videos(paths: Sequence[str], workers: int = 8, cache_file: str | None = None) -> list[VideoInfo | None]:
    """probe_video over many files in threads; None for unreadable ones. An optional JSON cache holds one entry
    per `probe_cache_key`; it is (re)written only when at least one video is readable, so a run that finds no
    data leaves no file behind."""
    cache: dict[str, dict] = {}
    if cache_file and os.path.isfile(cache_file):
        try:
            with open(cache_file) as handle:
                cache = json.load(handle)
        except (OSError, ValueError):
            cache = {}

    def probe(path: str) -> VideoInfo | None:
        cached = cache.get(probe_cache_key(path))
        if cached is not None:
            return VideoInfo(**cached) if cached else None
        try:
            return probe_video(path)
        except UnreadableClip:
            return None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        infos = list(pool.map(probe, paths))
    if cache_file and any(info is not None for info in infos):
        new_cache = {probe_cache_key(p): (asdict(i) if i else {}) for p, i in zip(paths, infos, strict=True)}
        os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
        tmp = cache_file + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(new_cache, handle)
        os.replace(tmp, cache_file)
    return infos


def video_entries(
    paths: Sequence[str],
    labels: Sequence[int],
    video_ids: Sequence[str] | None = None,
    warnings: DataWarnings | None = None,
    workers: int = 8,
    cache_file: str | None = None,
) -> list[VideoEntry]:
    """Probe `paths` and return entries for the readable ones; unreadable files are counted and reported."""
    infos = probe_videos(paths, workers, cache_file)
    entries = []
    for i, (path, info) in enumerate(zip(paths, infos, strict=True)):
        if info is None:
            if warnings is not None:
                warnings.warn("unreadable_video", f"unreadable video skipped: {path}")
            continue
        vid = video_ids[i] if video_ids is not None else os.path.splitext(os.path.basename(path))[0]
        entries.append(VideoEntry(path, info.n_frames, int(labels[i]), vid))
    return entries


class VideoClipDataset(ClipDataset):
    """ClipDataset over video files decoded with PyAV (entries from `video_entries`)."""

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        clip_len: int,
        stride: int = 1,
        mode: str = "train",
        num_clips: int = 1,
        transform: ClipTransform | None = None,
        short_side: int | None = None,
        pad: str = "repeat_last",
        warnings: DataWarnings | None = None,
    ) -> None:
        super().__init__(entries, clip_len, stride, mode, num_clips, transform, pad, warnings)
        self.short_side = short_side

    def read_frames(self, entry: VideoEntry, indices: np.ndarray) -> np.ndarray:
        return decode_frames(entry.path, indices, self.short_side)
