"""PyAV decoding and temporal sampling of the original (SlowFast-derived; CPD spec §2.3).

A clip spans `stride * num_frames * fps / 30` source frames (a 30-fps reference); its start is uniform over the
possible starts (training) or clip k of K (test: start = delta * k / K). With a known stream duration the original
decodes the frames between the start and end timestamps (after a backward seek to a key frame), plus the first
frame past the end, and picks `num_frames` of them at linspace(0, clip - 1) truncated toward zero. We read that
list of timestamps from the packets, pick the same frames, and decode only up to the last picked one, skipping
the frames no picked frame references (skip_frame NONREF); the full decode remains the fallback. Fixes against
the original: no `av.logging.set_level` (with threaded decoding it deadlocks in `close()` on PyAV 18), containers
are always closed, and a stream without a frame count is decoded whole instead of failing on a division by zero.
"""

from __future__ import annotations

import math

import av
import numpy as np
import torch

TARGET_FPS = 30
SEEK_MARGIN = 1024  # pts units before the start, as the original


class DecodeError(RuntimeError):
    """The clip could not be decoded."""


def start_end(video_size: float, clip_size: float, clip_idx: int, num_clips: int, rng: np.random.Generator | None):
    """Float start/end index of a clip: clip_idx -1 draws the start uniformly in [0, delta] (rng)."""
    delta = max(video_size - clip_size, 0)
    start = rng.uniform(0, delta) if clip_idx == -1 else delta * clip_idx / num_clips
    return start, start + clip_size - 1


def linspace_pick(start: float, end: float, num: int, available: int) -> np.ndarray:
    """torch.linspace(start, end, num) (float32) clamped to [0, available - 1], truncated toward zero."""
    index = torch.linspace(start, end, num).clamp(0, available - 1).long()
    return index.numpy()


def _decode_range(container, stream, start_pts: int, end_pts: int) -> list:
    """Frames with start_pts <= pts <= end_pts plus the first one past end_pts, sorted by pts."""
    container.seek(max(start_pts - SEEK_MARGIN, 0), any_frame=False, backward=True, stream=stream)
    frames = {}
    for frame in container.decode(stream):
        if frame.pts is None or frame.pts < start_pts:
            continue
        frames[frame.pts] = frame
        if frame.pts > end_pts:
            break
    return [frames[pts] for pts in sorted(frames)]


REORDER = 16  # packets read past end_pts: H.264 / HEVC reorder at most 16 frames, so no earlier pts can follow


def _range_packets(container, stream, start_pts: int, end_pts: int) -> tuple[list, list[int]] | None:
    """The packets from the same backward seek as `_decode_range` through REORDER packets past end_pts, and the
    pts of the frames `_decode_range` keeps (start_pts <= pts <= end_pts sorted, then the first pts past end_pts),
    read from the packets without decoding. None when a packet has no pts (then the frames must be decoded)."""
    container.seek(max(start_pts - SEEK_MARGIN, 0), any_frame=False, backward=True, stream=stream)
    packets, past = [], 0
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None:
            continue  # the flush packet at the end of the file
        if packet.pts is None:
            return None
        packets.append(packet)
        past += packet.pts > end_pts
        if past > REORDER:
            break
    pts = sorted({p.pts for p in packets if p.pts >= start_pts})
    kept = [q for q in pts if q <= end_pts]
    return packets, kept + [q for q in pts if q > end_pts][:1]


def _decode_pts(stream, packets: list, wanted: set[int]) -> dict[int, np.ndarray]:
    """RGB frames of the pts in `wanted`. Every other packet goes in with skip_frame NONREF: the decoder drops
    it when no frame references it and decodes it as usual otherwise, so the wanted frames are unchanged."""
    codec, got = stream.codec_context, {}
    for packet in [*packets, None]:  # None: flush the frames still inside the decoder
        codec.skip_frame = "DEFAULT" if packet is None or packet.pts in wanted else "NONREF"
        for frame in stream.decode(packet):
            if frame.pts in wanted and frame.pts not in got:
                got[frame.pts] = frame.to_ndarray(format="rgb24")
        if len(got) == len(wanted):
            break
    return got


def _decode_picked(container, stream, start_pts: int, end_pts: int, clip_size: float, num_frames: int):
    """The frames `_decode_range` + linspace_pick return, decoding only what they need (skipping what no
    returned frame references). None when the packets do not tell (no pts, a frame that fails to decode): the
    caller then decodes the range as the original did."""
    found = _range_packets(container, stream, start_pts, end_pts)
    if found is None or not found[1]:
        return None
    packets, kept = found
    picked = [kept[i] for i in linspace_pick(0, clip_size - 1, num_frames, len(kept)).tolist()]
    got = _decode_pts(stream, packets, set(picked))
    if len(got) < len(set(picked)):
        return None
    return np.stack([got[q] for q in picked])


def _decode_all(container, stream) -> list:
    frames = [f for f in container.decode(stream)]
    if frames and all(f.pts is not None for f in frames):
        frames.sort(key=lambda f: f.pts)
    return frames


def decode_clip(
    path: str,
    num_frames: int,
    stride: int,
    clip_idx: int = -1,
    num_clips: int = 1,
    rng: np.random.Generator | None = None,
    threads: bool = True,
) -> np.ndarray:
    """uint8 [num_frames, H, W, 3] RGB for clip `clip_idx` of `num_clips` (-1: random start from rng)."""
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            if threads:
                stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else float(TARGET_FPS)
            n, duration = stream.frames, stream.duration
            clip_size = stride * num_frames / TARGET_FPS * fps
            if duration is not None and n > 0:
                start, end = start_end(n, clip_size, clip_idx, num_clips, rng)
                timebase = duration / n
                start_pts, end_pts = int(start * timebase), int(end * timebase)
                picked = _decode_picked(container, stream, start_pts, end_pts, clip_size, num_frames)
                if picked is not None:
                    return picked
                frames = _decode_range(container, stream, start_pts, end_pts)
                pick_start, pick_end = 0, clip_size - 1
            else:
                frames = _decode_all(container, stream)
                pick_start, pick_end = start_end(len(frames), clip_size, clip_idx, num_clips, rng)
            if not frames:
                raise DecodeError(f"{path}: no frame decoded")
            index = linspace_pick(pick_start, pick_end, num_frames, len(frames))
            arrays = {}
            for i in index.tolist():
                if i not in arrays:
                    arrays[i] = frames[i].to_ndarray(format="rgb24")
            return np.stack([arrays[i] for i in index.tolist()])
    except (av.error.FFmpegError, OSError, ValueError, IndexError, ZeroDivisionError) as err:
        raise DecodeError(f"{path}: {type(err).__name__}: {err}") from err


def source_indices(
    n: int, fps: float, duration: int | None, num_frames: int, stride: int, clip_idx: int, num_clips: int
) -> list[int]:
    """The 0-based source-frame indices decode_clip returns for a constant-frame-rate stream whose frame i has
    pts i * duration / n (documentation and tests)."""
    clip_size = stride * num_frames / TARGET_FPS * fps
    start, end = start_end(n, clip_size, clip_idx, num_clips, None)
    if duration is None:
        return linspace_pick(start, end, num_frames, n).tolist()
    tb = duration / n
    start_pts, end_pts = int(start * tb), int(end * tb)
    first = math.ceil(start_pts / tb - 1e-9)
    last = min(math.floor(end_pts / tb + 1e-9) + 1, n - 1)
    return (first + linspace_pick(0, clip_size - 1, num_frames, last - first + 1)).tolist()
