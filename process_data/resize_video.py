"""Optional Kinetics-400 pre-step: re-encode every video so its short side is 256 px (fps and timestamps kept).

    python -m process_data.resize_video --video_root kinetics400/videos --out_root kinetics400/videos_256 [-j 8]

Same relative tree and file names under --out_root (`<split>/<label>/<id>.mp4`). The long side is scaled to
keep the aspect ratio and rounded to an even number (4:2:0 video), like ffmpeg's `scale=-2:256`. Frames keep
their timestamps, so the frame rate is untouched. Video only: audio streams are dropped. mp4/mkv/mov are
written with libx264 (CRF flag), avi with mpeg4; other containers (webm, flv, ...) become .mp4. A video whose
size already matches is copied. Each output is written to a hidden `.<name>.partial` sibling and renamed when
complete (re-runs skip finished files); unreadable videos are reported at the end and in
`<out_root>/resize_report.json`.
"""

from __future__ import annotations

import os
import shutil

import av

from process_data.common import (
    VIDEO_EXTS,
    Timer,
    find_videos,
    parallel_map,
    partial_path,
    remove_partials,
    write_json_atomic,
)
from shared_utils.cli import ArgumentParser, fail, require_dir, run_cli

FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side = short_side and the long side scaled, rounded to even."""
    if height <= width:
        return max(2, 2 * round(width * short_side / height / 2)), short_side
    return short_side, max(2, 2 * round(height * short_side / width / 2))


def output_name(rel: str) -> str:
    stem, ext = os.path.splitext(rel)
    return rel if ext.lower() in FORMATS else stem + ".mp4"


def _encode(src: str, dst_tmp: str, fmt: str, short_side: int, crf: int) -> tuple[int, str | None]:
    """Decode src, resize, encode to dst_tmp. Returns (frames written, mid-stream error or None)."""
    count, error = 0, None
    with av.open(src) as reader:
        if not reader.streams.video:
            raise ValueError("no video stream")
        in_stream = reader.streams.video[0]
        width, height = target_size(in_stream.codec_context.width, in_stream.codec_context.height, short_side)
        rate = in_stream.average_rate or in_stream.guessed_rate or 30
        codec = "mpeg4" if fmt == "avi" or "libx264" not in av.codecs_available else "libx264"
        with av.open(dst_tmp, "w", format=fmt) as writer:
            out = writer.add_stream(codec, rate=rate)
            out.width, out.height, out.pix_fmt = width, height, "yuv420p"
            out.time_base = in_stream.time_base
            if codec == "libx264":
                out.options = {"crf": str(crf), "preset": "veryfast"}
            else:
                out.bit_rate = 4 * width * height * 8  # generous for mpeg4 at 256p
            try:
                for frame in reader.decode(in_stream):
                    image = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                    image.pts, image.time_base = frame.pts, frame.time_base
                    for packet in out.encode(image):
                        writer.mux(packet)
                    count += 1
            except (av.error.FFmpegError, ValueError) as err:
                error = f"{type(err).__name__}: {err}"
            for packet in out.encode():
                writer.mux(packet)
    return count, error


def resize_one(rel: str, cfg: dict) -> dict:
    """Resize one video (relative path under cfg['video_root']); never raises for a bad video."""
    src = os.path.join(cfg["video_root"], rel)
    dst = os.path.join(cfg["out_root"], output_name(rel))
    result = dict(video=rel, status="skipped", frames=None, reason=None, warning=None)
    if os.path.isfile(dst):
        return result
    tmp = partial_path(dst)
    try:
        with av.open(src) as probe:
            if not probe.streams.video:
                raise ValueError("no video stream")
            ctx = probe.streams.video[0].codec_context
            same = (ctx.width, ctx.height) == target_size(ctx.width, ctx.height, cfg["short_side"])
        if same and dst.endswith(os.path.splitext(rel)[1]):
            shutil.copyfile(src, tmp)
            result["status"] = "copied"
        else:
            fmt = FORMATS.get(os.path.splitext(dst)[1].lower(), "mp4")
            count, error = _encode(src, tmp, fmt, cfg["short_side"], cfg["crf"])
            if count == 0:
                raise ValueError(f"no decodable frames{': ' + error if error else ''}")
            result.update(status="resized", frames=count, warning=error)
        os.replace(tmp, dst)
    except (av.error.FFmpegError, OSError, ValueError) as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        return dict(result, status="failed", reason=f"{type(err).__name__}: {err}")
    return result


def resize_videos(
    video_root: str,
    out_root: str,
    short_side: int = 256,
    crf: int = 23,
    workers: int = 1,
    exts: tuple[str, ...] = VIDEO_EXTS,
    verbose: bool = True,
) -> dict:
    """Resize every video under video_root into out_root; returns (and writes) the report."""
    require_dir(video_root, "video root")
    if os.path.abspath(video_root) == os.path.abspath(out_root):
        fail("--out_root must differ from --video_root")
    if short_side < 2 or short_side % 2:
        fail(f"--short_side must be an even number >= 2, got {short_side}")
    if workers < 1:
        fail(f"-j/--workers must be >= 1, got {workers}")
    if os.path.exists(out_root) and not os.path.isdir(out_root):
        fail(f"--out_root '{out_root}' exists and is not a directory")
    videos = find_videos(video_root, exts)
    if not videos:
        fail(f"no videos under {video_root}")
    parents = {os.path.dirname(os.path.join(out_root, v)) for v in videos}
    removed = remove_partials(parents)
    for parent in parents:
        os.makedirs(parent, exist_ok=True)
    cfg = dict(video_root=video_root, out_root=out_root, short_side=short_side, crf=crf)
    todo = [v for v in videos if not os.path.isfile(os.path.join(out_root, output_name(v)))]
    with Timer() as timer:
        results = parallel_map(resize_one, todo, min(workers, len(todo)), "resize", verbose, cfg=cfg)
    failures = {r["video"]: r["reason"] for r in results if r["status"] == "failed"}
    report = dict(
        cfg,
        videos=len(videos),
        skipped_existing=len(videos) - len(todo),
        resized=sum(r["status"] == "resized" for r in results),
        copied=sum(r["status"] == "copied" for r in results),
        failed=len(failures),
        removed_partial=len(removed),
        seconds=round(timer.seconds, 3),
        failures=failures,
        warnings={r["video"]: r["warning"] for r in results if r["warning"]},
    )
    write_json_atomic(os.path.join(out_root, "resize_report.json"), report)
    if verbose:
        print(
            f"resize_video: {report['resized']} resized, {report['copied']} copied, {report['skipped_existing']} "
            f"already done, {report['failed']} failed in {timer.seconds:.1f} s -> {out_root}"
        )
        for video, reason in list(failures.items())[:20]:
            print(f"  {video}: {reason}")
    return report


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("python -m process_data.resize_video", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument("--video_root", required=True, help="input tree, e.g. kinetics400/videos (<split>/<label>/*.mp4)")
    p.add_argument("--out_root", required=True, help="output tree (same relative paths)")
    p.add_argument("--short_side", type=int, default=256, help="short side of the output in px (even)")
    p.add_argument("--crf", type=int, default=23, help="libx264 constant rate factor (lower = better)")
    p.add_argument("-j", "--workers", type=int, default=1, help="parallel processes (joblib)")
    p.add_argument("--exts", default=",".join(VIDEO_EXTS), help="comma-separated video extensions to look for")
    p.add_argument("--quiet", action="store_true")
    return p


def main(args) -> dict:
    kwargs = dict(vars(args))
    exts, quiet = kwargs.pop("exts"), kwargs.pop("quiet")
    return resize_videos(**kwargs, exts=tuple(e.strip() for e in exts.split(",") if e.strip()), verbose=not quiet)


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
