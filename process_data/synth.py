"""Synthetic motion dataset in the exact on-disk layout of the official UCF101 release.

    python -m process_data.synth --out data/synth_raw [--classes 8 --train_per_class 12 --test_per_class 4
        --frames 48 --width 96 --height 72 --fps 25 --seed 0 --ext avi --appearance_pool 4 -j 2]

writes
    <out>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi      real encoded videos (PyAV; mpeg4 in .avi by default)
    <out>/ucfTrainTestlist/classInd.txt              "1 ClassName" (CRLF, like the official files)
    <out>/ucfTrainTestlist/trainlist0k.txt           "Class/v_..avi <1-based label>"
    <out>/ucfTrainTestlist/testlist0k.txt            "Class/v_..avi"
    <out>/captions.tsv                               "Class/v_..avi<TAB>caption"
    <out>/synth_config.json                          the settings (a re-run with other settings is refused)

Groups and splits: video j (0-based) of a class is clip j % P + 1 of group j // P + 1, P = --test_per_class.
Split k (k = 1, 2, 3) tests on group k and trains on all other groups, the way official split k tests on
groups 7(k-1)+1..7k. A split is written only when its test group is complete (defaults: 4 groups of 4 -> 3 splits
of 12 train + 4 test videos per class). The split files are written last: their presence means "finished".
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from process_data.synth_render import (
    CAPTION_STYLES,
    CLASSES,
    DEFAULT_POOL,
    appearance_pool,
    render_video,
    sample_video_spec,
)
from shared_utils.cli import ArgumentParser, fail, run_cli

CODECS = {"avi": ("mpeg4", "mjpeg"), "mp4": ("libx264", "mpeg4")}


@dataclass(frozen=True)
class SynthVideo:
    cls: str
    cls_index: int  # position in CLASSES (seeds the video, so --classes N gives a prefix of the full set)
    index: int  # 0-based index within the class
    group: int
    clip: int
    filename: str

    @property
    def rel_path(self) -> str:
        return f"{self.cls}/{self.filename}"


def plan_videos(n_classes: int, train_per_class: int, test_per_class: int, ext: str = "avi") -> list[SynthVideo]:
    """Every video of the dataset with its group/clip numbers, sorted like the official lists."""
    videos = []
    for cls_index, cls in enumerate(CLASSES[:n_classes]):
        for j in range(train_per_class + test_per_class):
            group, clip = j // test_per_class + 1, j % test_per_class + 1
            name = f"v_{cls}_g{group:02d}_c{clip:02d}.{ext}"
            videos.append(SynthVideo(cls, cls_index, j, group, clip, name))
    return sorted(videos, key=lambda v: (v.cls.lower(), v.group, v.clip))


def split_groups(train_per_class: int, test_per_class: int) -> list[int]:
    """Splits k (1..3) whose test group k is complete and leaves at least one training video."""
    total = train_per_class + test_per_class
    return [k for k in (1, 2, 3) if k * test_per_class <= total and total > test_per_class]


def video_rng(seed: int, video: SynthVideo) -> np.random.Generator:
    return np.random.default_rng([seed, video.cls_index, video.index])


def write_video(path: str, frames: np.ndarray, fps: int, codec: str) -> None:
    """Encode uint8 [T, H, W, 3] RGB frames to `path` atomically (temporary sibling + rename)."""
    ext = os.path.splitext(path)[1].lstrip(".")
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.partial")
    height, width = frames.shape[1:3]
    with av.open(tmp, "w", format={"avi": "avi", "mp4": "mp4"}[ext]) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.codec_context.thread_count = 1  # bit-identical files whatever the machine
        if codec == "libx264":
            stream.options = {"crf": "17", "preset": "fast"}
        else:
            stream.bit_rate = max(500_000, 2 * width * height * fps)  # ~2 bit/pixel: near-lossless for this content
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def _make_video(video: SynthVideo, cfg: dict, video_dir: str, codec: str) -> str:
    """Render + encode one video (skipped when the file exists); returns its caption."""
    rng = video_rng(cfg["seed"], video)
    pool = appearance_pool(cfg["seed"], cfg["pool"]) if cfg["pool"] else None
    spec = sample_video_spec(
        rng, video.cls, cfg["frames"], cfg["width"], cfg["height"], cfg["noise"], pool=pool, camera=cfg["camera"],
        captions=cfg.get("captions", "scene"),
    )  # fmt: skip
    path = os.path.join(video_dir, video.cls, video.filename)
    if not os.path.isfile(path):
        write_video(path, render_video(spec, rng), cfg["fps"], codec)
    return spec.caption


def _write_lines(path: str, lines: list[str]) -> None:
    with open(path, "w", newline="") as handle:  # CRLF like the official UCF101 list files
        handle.write("".join(line + "\r\n" for line in lines))


def write_split_files(split_dir: str, videos: list[SynthVideo], classes: list[str], splits: list[int]) -> None:
    """classInd.txt (1-based, case-insensitive alphabetical like UCF101) and train/test lists per split."""
    os.makedirs(split_dir, exist_ok=True)
    label = {name: i + 1 for i, name in enumerate(classes)}
    for k in splits:
        _write_lines(
            os.path.join(split_dir, f"trainlist0{k}.txt"),
            [f"{v.rel_path} {label[v.cls]}" for v in videos if v.group != k],
        )
        _write_lines(os.path.join(split_dir, f"testlist0{k}.txt"), [v.rel_path for v in videos if v.group == k])
    _write_lines(os.path.join(split_dir, "classInd.txt"), [f"{label[c]} {c}" for c in classes])


def write_hmdb51_split_files(split_dir: str, videos: list[SynthVideo], classes: list[str], splits: list[int]) -> None:
    """The same videos described in HMDB51's split format (`<class>_test_split<N>.txt`, lines 'video.avi tag'
    with 1 = train, 2 = test), so the HMDB51 parser and every HMDB51 code path can run on synthetic data."""
    os.makedirs(split_dir, exist_ok=True)
    for k in splits:
        for cls in classes:
            lines = [f"{v.filename} {2 if v.group == k else 1}" for v in videos if v.cls == cls]
            with open(os.path.join(split_dir, f"{cls}_test_split{k}.txt"), "w") as handle:
                handle.write("".join(line + " \n" for line in lines))  # HMDB's files end lines with a space


def _check_config(out: str, cfg: dict, overwrite: bool) -> None:
    path = os.path.join(out, "synth_config.json")
    if os.path.isfile(path) and not overwrite:
        with open(path) as handle:
            old = json.load(handle)
        if old != cfg:
            changed = ", ".join(f"{k}: {old.get(k)} -> {v}" for k, v in cfg.items() if old.get(k) != v)
            fail(
                f"{out} holds a synthetic dataset made with other settings ({changed}); use a new --out or --overwrite"
            )
    elif overwrite:
        for name in ("UCF-101", "ucfTrainTestlist", "testTrainMulti_7030_splits", "captions.tsv"):
            target = os.path.join(out, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.isfile(target):
                os.remove(target)
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(cfg, handle, indent=1)


def _check_options(out, classes, train_per_class, test_per_class, frames, width, height, pool, captions, workers):
    if not 1 <= classes <= len(CLASSES):
        fail(f"--classes must be in 1..{len(CLASSES)} (available motions: {', '.join(CLASSES)})")
    if train_per_class < 1 or test_per_class < 1 or frames < 2:
        fail("--train_per_class and --test_per_class must be >= 1 and --frames >= 2")
    if pool < 0:
        fail(f"--appearance_pool must be >= 0, got {pool}")
    if width < 16 or height < 16 or width % 2 or height % 2:
        fail(f"--width/--height must be even and >= 16 (4:2:0 video), got {width}x{height}")
    if workers < 1:
        fail(f"-j/--workers must be >= 1, got {workers}")
    if captions not in CAPTION_STYLES:
        fail(f"--captions must be one of {', '.join(CAPTION_STYLES)}, got '{captions}'")
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out '{out}' exists and is not a directory")


def generate(
    out: str,
    classes: int = 8,
    train_per_class: int = 12,
    test_per_class: int = 4,
    frames: int = 48,
    width: int = 96,
    height: int = 72,
    fps: int = 25,
    seed: int = 0,
    ext: str = "avi",
    codec: str | None = None,
    noise: float = 2.0,
    pool: int = DEFAULT_POOL,
    camera: bool = True,
    captions: str = "scene",
    workers: int = 1,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    """Build the dataset under `out` (resumable: existing videos are kept) and return a summary dict."""
    _check_options(out, classes, train_per_class, test_per_class, frames, width, height, pool, captions, workers)
    codec = codec or CODECS[ext][0]
    if codec not in CODECS[ext] or codec not in av.codecs_available:
        fail(f"codec '{codec}' is not usable for .{ext} here (choose from: {', '.join(CODECS[ext])})")
    config_keys = ("classes", "train_per_class", "test_per_class", "frames", "width", "height", "fps", "seed")
    cfg = {k: v for k, v in locals().items() if k in config_keys} | dict(
        ext=ext, codec=codec, noise=noise, pool=pool, camera=camera
    )
    if captions != "scene":  # recorded only when not the default, so datasets made before the option still match
        cfg["captions"] = captions
    _check_config(out, cfg, overwrite)
    start = time.perf_counter()
    videos = plan_videos(classes, train_per_class, test_per_class, ext)
    video_dir = os.path.join(out, "UCF-101")
    for cls in CLASSES[:classes]:
        os.makedirs(os.path.join(video_dir, cls), exist_ok=True)
    jobs = (delayed(_make_video)(v, cfg, video_dir, codec) for v in videos)
    bar = dict(total=len(videos), desc="synth videos", disable=not verbose, unit="video")
    if workers > 1:
        captions = list(tqdm(Parallel(n_jobs=workers, return_as="generator")(jobs), **bar))
    else:
        captions = [fn(*a, **kw) for fn, a, kw in tqdm(jobs, **bar)]
    with open(os.path.join(out, "captions.tsv"), "w") as handle:
        handle.writelines(f"{v.rel_path}\t{c}\n" for v, c in zip(videos, captions))
    class_names = sorted(CLASSES[:classes], key=str.lower)
    splits = split_groups(train_per_class, test_per_class)
    write_split_files(os.path.join(out, "ucfTrainTestlist"), videos, class_names, splits)
    write_hmdb51_split_files(os.path.join(out, "testTrainMulti_7030_splits"), videos, class_names, splits)
    elapsed = time.perf_counter() - start
    if verbose:
        print(
            f"synth: {len(videos)} videos ({classes} classes x {train_per_class + test_per_class}, {frames} frames "
            f"{width}x{height} @ {fps} fps, {codec}) in {elapsed:.1f} s -> {out}; splits {splits}"
        )
    return dict(out=out, videos=len(videos), classes=class_names, splits=splits, seconds=elapsed, codec=codec)


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("python -m process_data.synth", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument(
        "--out",
        required=True,
        help="output root (gets UCF-101/, ucfTrainTestlist/, testTrainMulti_7030_splits/, captions.tsv)",
    )
    p.add_argument(
        "--classes",
        type=int,
        default=8,
        help=f"number of motion classes, 1..{len(CLASSES)} (first N of: " + ", ".join(CLASSES) + ")",
    )
    p.add_argument("--train_per_class", type=int, default=12, help="training videos per class in every split")
    p.add_argument("--test_per_class", type=int, default=4, help="test videos per class (= clips per group)")
    p.add_argument("--frames", type=int, default=48, help="frames per video")
    p.add_argument("--width", type=int, default=96, help="frame width (even)")
    p.add_argument("--height", type=int, default=72, help="frame height (even)")
    p.add_argument("--fps", type=int, default=25, help="frame rate written into the container")
    p.add_argument("--seed", type=int, default=0, help="videos are a pure function of (seed, class, index)")
    p.add_argument("--ext", default="avi", choices=sorted(CODECS), help="container")
    p.add_argument("--codec", default=None, help="avi: mpeg4 (default) or mjpeg; mp4: libx264 (default) or mpeg4")
    p.add_argument("--noise", type=float, default=2.0, help="std of per-frame Gaussian pixel noise (0..255 scale)")
    p.add_argument(
        "--appearance_pool",
        dest="pool",
        type=int,
        default=DEFAULT_POOL,
        help="backgrounds and shape designs shared by all videos (0: every video draws its own)",
    )
    p.add_argument(
        "--static_camera",
        dest="camera",
        action="store_false",
        help="keep the background still (default: it moves with the shapes, a camera motion of the class)",
    )
    p.add_argument(
        "--captions",
        default="scene",
        choices=CAPTION_STYLES,
        help="scene: name every shape, the background and the motion; motion: name the motion only",
    )
    p.add_argument("-j", "--workers", type=int, default=1, help="parallel processes (joblib)")
    p.add_argument("--overwrite", action="store_true", help="delete existing videos made with other settings")
    return p


def main(args) -> dict:
    return generate(**vars(args))


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
