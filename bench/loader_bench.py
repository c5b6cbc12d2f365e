"""Clip-loader throughput: our frame-folder loader vs. an original-style loader vs. the JPEG-decode floor.

All three read the same 16-frame clips (stride 1) from JPEG frame folders stored at 128 px short side and produce
normalised 128x128 float clips (except the floor, which only reads and decodes). Single process, so the numbers
are clips/s per DataLoader worker.
  baseline: PIL.Image.open + convert('RGB') per frame, then per-frame PIL crop/resize/flip, ToTensor and
            Normalize per frame, torch.stack — what the original repositories' loaders do.
  ours:     shared_utils.frames.FrameClipDataset (cv2 decode of each distinct frame, one uint8 clip tensor) with
            clip-level RandomResizedCrop / flip / Normalize from shared_utils.transforms.
  ours_uint8: the same without Normalize (uint8 clips out; normalisation on the device batch).
  floor:    read the bytes and cv2.imdecode each frame, nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time

import cv2
import numpy as np
import torch
from PIL import Image

from shared_utils.frames import FrameClipDataset, VideoEntry, clip_indices, frame_name
from shared_utils.transforms import ClipCompose, Normalize, RandomHorizontalFlip, RandomResizedCrop

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_frame_folders(root: str, videos: int, frames: int, height: int = 128, width: int = 171) -> list[VideoEntry]:
    """Textured moving frames (JPEG q95), the size process_data writes with --short_side 128."""
    rng = np.random.default_rng(0)
    entries = []
    base = cv2.resize(rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8), (width * 2, height * 2))
    for v in range(videos):
        folder = os.path.join(root, "Class", f"v_{v:03d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(frames):
            y, x = (v * 7 + i) % height, (v * 13 + 2 * i) % width
            img = base[y : y + height, x : x + width]
            cv2.imwrite(
                os.path.join(folder, frame_name("image_{:05d}.jpg", i + 1)), img, [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
        entries.append(VideoEntry(folder, frames, 0, f"Class/v_{v:03d}"))
    return entries


def baseline_clip(entry: VideoEntry, indices: np.ndarray, size: int) -> torch.Tensor:
    images = [
        Image.open(os.path.join(entry.path, frame_name("image_{:05d}.jpg", i + 1))).convert("RGB") for i in indices
    ]
    w, h = images[0].size
    scale = random.uniform(0.5, 1.0)
    cw, ch = int(w * scale**0.5), int(h * scale**0.5)
    x, y = random.randint(0, w - cw), random.randint(0, h - ch)
    flip = random.random() < 0.5
    tensors = []
    for img in images:
        img = img.crop((x, y, x + cw, y + ch)).resize((size, size), Image.BILINEAR)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        for c in range(3):
            t[c] = (t[c] - MEAN[c]) / STD[c]
        tensors.append(t)
    return torch.stack(tensors, dim=1)  # C, T, H, W


def floor_clip(entry: VideoEntry, indices: np.ndarray) -> list[np.ndarray]:
    out = []
    for i in indices:
        with open(os.path.join(entry.path, frame_name("image_{:05d}.jpg", i + 1)), "rb") as handle:
            out.append(cv2.imdecode(np.frombuffer(handle.read(), np.uint8), cv2.IMREAD_COLOR))
    return out


def time_clips(fn, n: int) -> float:
    for i in range(min(4, n)):
        fn(i)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def run(clips: int = 96, clip_len: int = 16, size: int = 128, root: str | None = None) -> dict:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        entries = make_frame_folders(root or tmp, videos=12, frames=48)
        rng = np.random.default_rng(1)
        plan = [
            (entries[i % len(entries)], clip_indices(48, clip_len, 1, "random", 1, rng)[0]) for i in range(clips + 4)
        ]
        ours_ds = FrameClipDataset(
            entries,
            clip_len,
            1,
            "train",
            transform=ClipCompose(
                [RandomResizedCrop(size, (0.5, 1.0)), RandomHorizontalFlip(), Normalize(to_cthw=True)]
            ),
        )

        def ours(i):
            entry, idx = plan[i]
            clip = ours_ds.transform(ours_ds.load_clips(entry, np.random.default_rng(i))[0], np.random.default_rng(i))
            assert clip.shape == (3, clip_len, size, size)

        crop_flip = ClipCompose([RandomResizedCrop(size, (0.5, 1.0)), RandomHorizontalFlip()])

        def ours_uint8(i):  # normalisation left to the device batch (VideoMoCo's GPU path, or any GPU run)
            entry, idx = plan[i]
            clip = crop_flip(ours_ds.load_clips(entry, np.random.default_rng(i))[0], np.random.default_rng(i))
            assert clip.shape == (clip_len, 3, size, size) and clip.dtype == torch.uint8

        def baseline(i):
            entry, idx = plan[i]
            assert baseline_clip(entry, idx, size).shape == (3, clip_len, size, size)

        def floor(i):
            entry, idx = plan[i]
            floor_clip(entry, idx)

        results = {
            "floor_clips_per_s": time_clips(floor, clips),
            "ours_clips_per_s": time_clips(ours, clips),
            "ours_uint8_clips_per_s": time_clips(ours_uint8, clips),
            "baseline_clips_per_s": time_clips(baseline, clips),
        }
    results["speedup_vs_baseline"] = results["ours_clips_per_s"] / results["baseline_clips_per_s"]
    results["ratio_to_floor"] = results["floor_clips_per_s"] / results["ours_clips_per_s"]
    results["uint8_ratio_to_floor"] = results["floor_clips_per_s"] / results["ours_uint8_clips_per_s"]
    results["setup"] = (
        f"{clip_len} frames/clip at 128px short side (171x128 JPEG q95) -> {size}x{size} normalised, 1 process"
    )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--out", default="", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = run(args.clips)
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(results, handle, indent=1)
