"""Loader throughput per method at its pretraining recipe: the original recipe (bench/original_recipes.py) vs the
project's loader vs the decode floor, in clips/s per core (one process, one thread).

    python bench/recipe_bench.py [--methods memdpc vtdl videomoco cpd] [--rounds 9] [--items 2] [--out F]
    python bench/recipe_bench.py --profile memdpc      # cProfile of the project loader, top entries

One process pinned to one CPU, torch and OpenCV at one thread; rates are clips per CPU-second of the process
(= clips/s of one core; wall time on a shared machine would also count the waits for the core). The three
variants of a method run interleaved in one process (round r times `items` samples of each, in an
order rotated every round) and the medians of the per-round rates are reported, so that the ratios hold on a
machine shared with other work. One "clip" is one training sample of the method:
  memdpc     8 blocks x 5 frames, ds 3, 128 px, from 320x240 JPEG q100 folders (UCF101's native frames)
  vtdl       anchor + positive + temporal negative, 16 frames stride 4, 224 crop, from 340x256 JPEG folders
  videomoco  query + key views of one 32-frame clip, 112 crop, from a 340x256 30 fps H.264 mp4
  cpd        16 frames at stride 4 (30 fps reference), 112 crop, from a 340x256 30 fps H.264 mp4
The floor decodes the frames a sample needs (each distinct frame once) and does nothing else. The project's loaders
return uint8 clips, as in training: the conversion to normalised floats runs on the device batch in the training
step (each variant's "_device" entry does it for the statistics test; it is not timed here).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import av
import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository root, when run as a script

from bench import original_recipes as orig  # noqa: E402
from shared_utils import transforms as T  # noqa: E402
from shared_utils.data import unpack_index  # noqa: E402
from shared_utils.frames import VideoEntry, load_frames  # noqa: E402

METHODS = ("memdpc", "vtdl", "videomoco", "cpd")


# --------------------------------------------------------------------------------------------------- data


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth colourful texture twice the frame size (moving crops of it make the frames)."""
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8), (width * 2, height * 2))


def _frame(base: np.ndarray, i: int, height: int, width: int) -> np.ndarray:
    y, x = (3 * i) % height, (5 * i) % width
    return base[y : y + height, x : x + width]


def make_frame_folder(folder: str, n: int, height: int, width: int, template: str, quality: int, seed: int = 0):
    os.makedirs(folder, exist_ok=True)
    base = _texture(height, width, seed)
    for i in range(n):
        cv2.imwrite(
            os.path.join(folder, template % (i + 1)),
            cv2.cvtColor(_frame(base, i, height, width), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, quality],
        )


def make_video(path: str, n: int, height: int, width: int, fps: int = 30, seed: int = 0) -> None:
    base = _texture(height, width, seed)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}  # x264's default GOP (keyint 250)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_frame(base, i, height, width)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


SIZES = {  # (height, width, frames per video) of the benchmark data; tiny: for tests
    "full": {"memdpc": (240, 320, 130), "vtdl": (256, 340, 100), "video": (256, 340, 150)},
    "tiny": {"memdpc": (60, 80, 130), "vtdl": (64, 84, 100), "video": (64, 84, 70)},
}


# --------------------------------------------------------------------------------------------------- variants


def memdpc_variants(root: str, size: str) -> dict[str, Callable[[int], object]]:
    from memdpc.augment import pretrain_transform
    from memdpc.dataset import BlockDataset

    height, width, n = SIZES[size]["memdpc"]
    img_dim = 128 if size == "full" else 32
    folders = [os.path.join(root, f"memdpc_{v}") for v in range(2)]
    for v, folder in enumerate(folders):
        make_frame_folder(folder, n, height, width, "image_%05d.jpg", 100, seed=v)
    entries = [VideoEntry(f, n, 0, os.path.basename(f)) for f in folders]
    transform = pretrain_transform(img_dim, blocks=8, defer_normalize=True)  # as build_dataset: uint8 blocks
    dataset = BlockDataset(entries, 8, 5, 3, transform, "image_{:05d}.jpg")

    def indices(i: int) -> np.ndarray:  # the frames the project's i-th sample reads
        return dataset.frame_indices(n, unpack_index((i % 2, i))[1])

    return {
        "baseline": lambda i: orig.memdpc_item(folders[i % 2], indices(i), img_dim=img_dim),
        "project": lambda i: dataset[(i % 2, i)],
        "floor": lambda i: load_frames(folders[i % 2], indices(i), "image_{:05d}.jpg"),
        "_settings": f"8x5 frames ds 3, {img_dim} px, {width}x{height} JPEG q100",
        "_device": lambda out: (T.device_normalize(out[0][None], channel_dim=2)[0], *out[1:]),  # MemDPC.forward
    }


def vtdl_variants(root: str, size: str) -> dict[str, Callable[[int], object]]:
    from shared_utils.data import DataWarnings
    from vtdl.dataset import ClipReader, PretrainDataset, TrainTransform

    height, width, n = SIZES[size]["vtdl"]
    crop, resize = (224, 256) if size == "full" else (56, 64)
    folders = [os.path.join(root, f"vtdl_{v}") for v in range(2)]
    for v, folder in enumerate(folders):
        make_frame_folder(folder, n, height, width, "frame%06d.jpg", 95, seed=v)
    entries = [VideoEntry(f, n, 0, os.path.basename(f)) for f in folders]
    reader = ClipReader("frame{:06d}.jpg", resize, DataWarnings())
    dataset = PretrainDataset(entries, reader, TrainTransform(crop, "original"), 16, 4, 32)

    def baseline(i):
        anchor, negative = dataset.sample_frames(n, unpack_index((i % 2, i))[1])
        return orig.vtdl_item(folders[i % 2], anchor, negative, crop)

    def floor(i):
        anchor, negative = dataset.sample_frames(n, unpack_index((i % 2, i))[1])
        return load_frames(folders[i % 2], np.array(anchor + negative) - 1, "frame{:06d}.jpg")

    return {
        "baseline": baseline,
        "project": lambda i: dataset[(i % 2, i)],
        "floor": floor,
        "_settings": f"3 clips x 16 frames stride 4, {crop} crop, {width}x{height} JPEG q95, one-of-four jitter",
        "_device": lambda out: ([T.device_normalize(c[None])[0] for c in out[0]], *out[1:]),  # runtime.to_device
    }


def _videos(root: str, size: str) -> tuple[list[str], int]:
    height, width, n = SIZES[size]["video"]
    paths = [os.path.join(root, f"video_{v}.mp4") for v in range(2)]
    for v, path in enumerate(paths):
        if not os.path.exists(path):
            make_video(path, n, height, width, seed=v)
    return paths, n


def videomoco_variants(root: str, size: str) -> dict[str, Callable[[int], object]]:
    from shared_utils.data import DataWarnings
    from shared_utils.video import decode_frames
    from videomoco.dataset import ClipReader, PretrainClips, random_clip

    paths, n = _videos(root, size)
    fpc, crop = (32, 112) if size == "full" else (32, 32)
    entries = [VideoEntry(p, n, 0, os.path.basename(p)) for p in paths]
    dataset = PretrainClips(entries, ClipReader("video", "", DataWarnings()), fpc, 1, crop)

    def indices(i: int) -> np.ndarray:  # the frames the project's i-th sample decodes
        return random_clip(n, fpc, 1, unpack_index((i % 2, i))[1])

    return {
        "baseline": lambda i: orig.videomoco_item(paths[i % 2], int(indices(i)[0]), fpc, crop),
        "project": lambda i: dataset[(i % 2, i)],
        "floor": lambda i: decode_frames(paths[i % 2], indices(i)),
        "_settings": f"2 views of {fpc} frames, {crop} crop, 340x256 H.264 30 fps"
        if size == "full"
        else f"2 views of {fpc} frames, {crop} crop",
        "_device": lambda out: (*(T.device_normalize(v, mean=None) for v in out[:2]), out[2]),  # VideoMoCoAugment
    }


def cpd_variants(root: str, size: str) -> dict[str, Callable[[int], object]]:
    from cpd.dataset import device_normalize_clips, train_transform
    from cpd.decoder import decode_clip

    paths, _ = _videos(root, size)
    crop = 112 if size == "full" else 32

    def project(i):
        rng = np.random.default_rng(i)
        return train_transform(decode_clip(paths[i % 2], 16, 4, -1, 1, rng), crop, rng, defer_normalize=True)

    def baseline(i):
        random.seed(i)
        return orig.cpd_item(paths[i % 2], 16, 4, crop)

    return {
        "baseline": baseline,
        "project": project,
        "floor": lambda i: decode_clip(paths[i % 2], 16, 4, -1, 1, np.random.default_rng(i)),
        "_settings": f"16 frames stride 4 (30 fps reference), {crop} crop, scale jitter, 340x256 H.264 30 fps",
        "_device": lambda out: device_normalize_clips(out[None])[0],  # cpd.main's training step
    }


VARIANTS = {"memdpc": memdpc_variants, "vtdl": vtdl_variants, "videomoco": videomoco_variants, "cpd": cpd_variants}


# --------------------------------------------------------------------------------------------------- timing


def interleaved_rates(fns: dict[str, Callable[[int], object]], rounds: int, items: int) -> dict[str, list[float]]:
    """clips per CPU-second of each variant per round (the process's CPU time, all its threads: on a shared
    machine wall time also counts the waits for a core). The variants alternate within every round, in a
    rotating order, and all read the same samples (call k of every variant reads the project's sample k)."""
    names = list(fns)
    for name in names:  # warm-up: imports, caches, first-call allocations
        fns[name](0)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.process_time()
            for k in range(items):
                fns[name](1 + r * items + k)
            rates[name].append(items / max(time.process_time() - start, 1e-9))
    return rates


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "pyav": av.__version__,
    }


def bench_method(method: str, root: str, size: str, rounds: int, items: int) -> dict:
    fns = VARIANTS[method](root, size)
    settings = fns.pop("_settings")
    fns.pop("_device")
    rates = interleaved_rates(fns, rounds, items)
    med = {name: statistics.median(values) for name, values in rates.items()}
    row = {
        "method": method,
        "settings": settings,
        **{f"{name}_clips_per_s": round(value, 3) for name, value in med.items()},
        "project_vs_baseline": round(med["project"] / med["baseline"], 2),
        "floor_vs_project": round(med["floor"] / med["project"], 2),
        "floor_vs_baseline": round(med["floor"] / med["baseline"], 2),
        "rounds": {name: [round(v, 3) for v in values] for name, values in rates.items()},
    }
    print(
        f"{method:10s} baseline {med['baseline']:7.2f}  project {med['project']:7.2f}  floor {med['floor']:7.2f} "
        f"clips/s/core   project/baseline {row['project_vs_baseline']:.2f}x   floor/project "
        f"{row['floor_vs_project']:.2f}x   ({settings})",
        flush=True,
    )
    return row


def profile(method: str, root: str, size: str, items: int, top: int = 15) -> str:
    fns = VARIANTS[method](root, size)
    project = fns["project"]
    project(0)
    profiler = cProfile.Profile(time.process_time)  # CPU time: the waits for a shared core do not count
    profiler.enable()
    for i in range(items):
        project(i + 1)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    out.write(f"{method}: cProfile of {items} project samples (per sample: divide by {items})\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def pin_to_one_core() -> str:
    """Per core: torch and OpenCV at one thread, and the process pinned to one CPU, so that FFmpeg's decoding
    threads (thread_type AUTO in the project's and CPD's decoders) share that core too."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}; torch and OpenCV at 1 thread"
    return "torch and OpenCV at 1 thread (no CPU pinning on this OS)"


def run(methods=METHODS, rounds: int = 9, items: int = 2, size: str = "full", root: str | None = None) -> dict:
    pinning = pin_to_one_core()
    random.seed(0)
    np.random.seed(0)
    report = {"machine": {**machine(), "per_core": pinning}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for method in methods:
            report["rows"].append(bench_method(method, root or tmp, size, rounds, items))
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (medians reported)")
    parser.add_argument("--items", type=int, default=2, help="samples per variant per round")
    parser.add_argument("--tiny", action="store_true", help="tiny frames and crops (a smoke test, not a benchmark)")
    parser.add_argument("--profile", choices=METHODS, help="cProfile the project loader of this method instead")
    parser.add_argument("--out", default="", help="also write the results to this JSON file")
    args = parser.parse_args()
    size = "tiny" if args.tiny else "full"
    if args.profile:
        pin_to_one_core()
        with tempfile.TemporaryDirectory() as tmp:
            print(profile(args.profile, tmp, size, max(args.items, 8)))
        return
    report = run(args.methods, args.rounds, args.items, size)
    print(json.dumps(report["machine"]))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
