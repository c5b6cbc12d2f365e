"""Videos -> JPEG frame folders (+ optional optical-flow JPEGs), parallel, resumable, corrupt videos reported.

    python -m process_data.extract_frames --video_root UCF-101 --frame_root frames [--short_side 0]
        [--quality 100] [--template image_%05d.jpg] [--flow --flow_root flow] [-j 8]

`<video_root>/<rel dir>/<stem>.<ext>` -> `<frame_root>/<rel dir>/<stem>/image_00001.jpg ...` (1-based), which
mirrors UCF101 (`<Class>/*.avi`), HMDB51 (`<class>/*.avi`) and Kinetics (`<split>/<label>/*.mp4`) alike.
Each video is written into a hidden sibling `.<stem>.partial/` and renamed when complete, so an existing
`<stem>/` folder means finished: a re-run skips it and removes leftovers of a killed run, but only when
the tree's settings record (`extract_settings.json`, `flow_settings.json`) matches; other settings are refused
with one line (`--overwrite` re-extracts). Flow (`--flow`) is
TV-L1 when this OpenCV has it, else Farneback, between consecutive grayscale frames at the extracted size,
clipped to +-20 px and mapped to uint8 by (f+20)*255/40: `<flow_root>/<rel dir>/<stem>/flow_%05d.jpg`,
n-1 files for n frames, ch0 = horizontal, ch1 = vertical, ch2 = 128 in the array given to cv2.imwrite.
A summary (per-video frame counts, failures, warnings) is written to `<frame_root>/extract_report.json`.
"""

from __future__ import annotations

import os
import shutil

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from process_data import extract_settings
from process_data.common import (
    PARTIAL_SUFFIX,
    VIDEO_EXTS,
    Timer,
    count_frames,
    find_videos,
    frame_name,
    parallel_map,
    partial_path,
    remove_partials,
    write_json_atomic,
)
from process_data.flow import flow_algorithm, flow_function, flow_to_image
from shared_utils.cli import ArgumentParser, fail, run_cli

# The original pipelines' extraction: MemDPC's extract_ff.py writes every frame at its native size with JPEG
# quality 100 (it resizes in the data loader); VideoMoCo and CPD decode the videos themselves at native size.
NATIVE = 0
ORIGINAL_QUALITY = 100

# ------------------------------------------------------------------------------------------------ decoding


def resize_short_side(image: np.ndarray, short_side: int) -> np.ndarray:
    """Resize so min(H, W) == short_side (aspect kept, long side rounded); 0 keeps the native size."""
    height, width = image.shape[:2]
    if short_side <= 0 or min(height, width) == short_side:
        return image
    if height <= width:
        size = (max(1, round(width * short_side / height)), short_side)
    else:
        size = (short_side, max(1, round(height * short_side / width)))
    interp = cv2.INTER_AREA if short_side < min(height, width) else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


BT601_SPACES = (2, 5, 6)  # AVColorSpace unspecified, BT470BG, SMPTE170M: what cv2's I420 conversion assumes


def _to_bgr(frame: av.VideoFrame, reformatter: VideoReformatter) -> np.ndarray:
    """BGR uint8 array; limited-range BT.601 yuv420p (UCF/HMDB/most K400) via cv2, which is several times
    faster than swscale at these sizes (mean difference ~1 grey level), anything else via swscale."""
    if (
        frame.format.name == "yuv420p"
        and frame.color_range in (0, 1)
        and frame.colorspace in BT601_SPACES
        and frame.width % 2 == 0
        and frame.height % 2 == 0
    ):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return reformatter.reformat(frame, format="bgr24").to_ndarray()


def _iter_pyav(path: str, info: dict):
    reformatter = VideoReformatter()
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        info.update(decoder="pyav", declared=int(stream.frames or 0))
        try:
            for frame in container.decode(stream):
                yield _to_bgr(frame, reformatter)
        except (av.error.FFmpegError, ValueError) as err:  # damaged packet mid-stream: keep what decoded
            info["error"] = f"{type(err).__name__}: {err}"


def _iter_opencv(path: str, info: dict):
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError("OpenCV cannot open it either")
    info.update(decoder="opencv", declared=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield frame
    finally:
        capture.release()


def iter_frames(path: str, info: dict):
    """Yield the frames of `path` as BGR uint8 arrays, one at a time (PyAV; OpenCV when PyAV cannot open the
    file), single-threaded: parallelism comes from processing videos in parallel. `info` receives 'decoder', 'declared' (container frame count, 0 = unknown) and 'error' (a mid-stream
    decode error, or why PyAV was not used). ValueError when neither can open it."""
    info.update(decoder=None, declared=0, error=None)
    frames = _iter_pyav(path, info)
    try:
        first = next(frames, None)
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as err:
        pyav_error = f"{type(err).__name__}: {err}"
    else:
        if first is not None:
            yield first
        yield from frames
        return
    try:
        yield from _iter_opencv(path, info)
    except (ValueError, cv2.error) as err:
        raise ValueError(f"unreadable (PyAV: {pyav_error}; {err})") from err
    info["error"] = f"PyAV could not open it ({pyav_error})"


# ------------------------------------------------------------------------------------------------ one video


class _FolderWriter:
    """JPEGs go into the hidden partial sibling of `final`; commit() renames it onto `final`."""

    def __init__(self, final: str, template: str, quality: int):
        self.final, self.tmp, self.template = final, partial_path(final), template
        self.params, self.count = [cv2.IMWRITE_JPEG_QUALITY, quality], 0
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.makedirs(self.tmp)

    def write(self, image: np.ndarray) -> None:
        self.count += 1
        if not cv2.imwrite(os.path.join(self.tmp, frame_name(self.template, self.count)), image, self.params):
            raise OSError(f"cv2.imwrite failed in {self.tmp}")

    def commit(self) -> None:
        """Rename the finished folder into place; an older folder (--overwrite) is moved aside first."""
        old = os.path.join(os.path.dirname(self.final), f".{os.path.basename(self.final)}.old{PARTIAL_SUFFIX}")
        if os.path.isdir(self.final):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _extract_stream(path: str, cfg: dict, frames_out: _FolderWriter | None, flow_out: _FolderWriter | None):
    """Decode, resize and write frame by frame (memory stays at two frames). Returns (n_frames, info)."""
    info: dict = {}
    calc = flow_function(cfg["flow_algorithm"]) if flow_out else None
    prev, count = None, 0
    for frame in iter_frames(path, info):
        frame = resize_short_side(frame, cfg["short_side"])
        count += 1
        if frames_out:
            frames_out.write(frame)
        if flow_out:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if prev is not None:
                flow_out.write(flow_to_image(calc(prev, gray)))
            prev = gray
    return count, info


def _needs_work(rel: str, cfg: dict) -> bool:
    stem_rel = os.path.splitext(rel)[0]
    if cfg["overwrite"] or not os.path.isdir(os.path.join(cfg["frame_root"], stem_rel)):
        return True
    return cfg["flow"] and not os.path.isdir(os.path.join(cfg["flow_root"], stem_rel))


def process_video(rel: str, cfg: dict) -> dict:
    """Extract one video (relative path under cfg['video_root']); never raises for a bad video."""
    cv2.setNumThreads(1)
    stem_rel = os.path.splitext(rel)[0]
    frame_dir = os.path.join(cfg["frame_root"], stem_rel)
    flow_dir = os.path.join(cfg["flow_root"], stem_rel) if cfg["flow"] else None
    need_frames = cfg["overwrite"] or not os.path.isdir(frame_dir)
    need_flow = flow_dir is not None and (cfg["overwrite"] or not os.path.isdir(flow_dir))
    result = dict(video=rel, key=stem_rel, status="skipped", frames=None, flow=None, reason=None, warning=None,
                  wrote_frames=need_frames, wrote_flow=need_flow)  # fmt: skip
    if need_frames or need_flow:
        writers = []
        try:
            frames_out = flow_out = None
            if need_frames:
                writers.append(frames_out := _FolderWriter(frame_dir, cfg["template"], cfg["quality"]))
            if need_flow:
                writers.append(flow_out := _FolderWriter(flow_dir, cfg["flow_template"], cfg["quality"]))
            count, info = _extract_stream(os.path.join(cfg["video_root"], rel), cfg, frames_out, flow_out)
            problem = _check_count(count, info, cfg)
            if problem and not (cfg["keep_partial"] and count):
                raise ValueError(problem)
            if need_flow and count < 2:
                raise ValueError(f"{count} frame(s): no flow possible")
            for writer in writers:
                writer.commit()
            result.update(
                status="extracted", warning=problem or (info["error"] and f"{info['decoder']}: {info['error']}")
            )
        except (ValueError, OSError, cv2.error, MemoryError) as err:
            for writer in writers:
                writer.discard()
            if cfg["overwrite"]:  # frames of the old settings must not stay behind under the new record
                for folder in (frame_dir, flow_dir):
                    if folder and os.path.isdir(folder):
                        shutil.rmtree(folder)
            return dict(result, status="failed", reason=str(err))
    result["frames"] = count_frames(frame_dir, cfg["template"])
    if flow_dir is not None:
        result["flow"] = count_frames(flow_dir, cfg["flow_template"])
    return result


def _check_count(n_decoded: int, info: dict, cfg: dict) -> str | None:
    if n_decoded == 0:
        return f"no decodable frames ({info['decoder']}{': ' + info['error'] if info['error'] else ''})"
    if info["declared"] and n_decoded < info["declared"] - cfg["frame_tolerance"]:
        return f"truncated: decoded {n_decoded} of {info['declared']} frames"
    return None


# ------------------------------------------------------------------------------------------------ driver


def extract(
    video_root: str,
    frame_root: str,
    short_side: int = NATIVE,
    quality: int = ORIGINAL_QUALITY,
    template: str = "image_%05d.jpg",
    flow: bool = False,
    flow_root: str | None = None,
    flow_template: str = "flow_%05d.jpg",
    workers: int = 1,
    keep_partial: bool = False,
    frame_tolerance: int = 3,
    exts: tuple[str, ...] = VIDEO_EXTS,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict:
    """Extract every video under `video_root`; returns the report that is also written to
    `<frame_root>/extract_report.json`. Bad videos are listed under 'failures', never raised. Finished folders
    are kept only when the tree's settings record matches (else one-line refusal, or --overwrite re-extracts)."""
    extract_settings.check_values(video_root, frame_root, short_side, quality, template, flow, flow_root, flow_template, workers,
                  frame_tolerance)  # fmt: skip
    videos = find_videos(video_root, exts)
    if not videos:
        fail(f"no videos ({', '.join(exts)}) under {video_root}")
    cfg = {k: v for k, v in locals().items() if k not in ("exts", "verbose", "videos", "name")}
    cfg["flow_algorithm"] = flow_algorithm() if flow else None
    unrecorded = extract_settings.check_trees(videos, cfg)
    parents = {os.path.join(frame_root, os.path.dirname(v)) for v in videos}
    if flow:
        parents |= {os.path.join(flow_root, os.path.dirname(v)) for v in videos}
    removed = remove_partials(parents)
    for parent in parents:
        os.makedirs(parent, exist_ok=True)
    extract_settings.record(cfg, overwriting=overwrite)
    if verbose:
        print(
            f"extract_frames: {len(videos)} videos under {video_root} -> {frame_root} (short side "
            f"{short_side or 'native'}, JPEG q{quality}"
            + (f", flow: {cfg['flow_algorithm']} -> {flow_root}" if flow else "")
            + f", {workers} worker(s))"
            + (f"; removed {len(removed)} partial folder(s) of an interrupted run" if removed else "")
        )
        for tree, count in unrecorded.items():
            print(f"extract_frames: note: {count} existing {tree} folder(s) have no settings record; kept as they are")
    with Timer() as timer:
        # Finished videos are counted here; only the rest goes to the worker pool (none started if all done).
        todo = [v for v in videos if _needs_work(v, cfg)]
        pending = set(todo)
        results = [process_video(v, cfg) for v in videos if v not in pending]
        results += parallel_map(process_video, todo, min(workers, len(todo)), "extract", verbose, cfg=cfg)
    if overwrite:
        extract_settings.record(cfg, overwriting=False)
    report = _report(results, cfg, removed, timer.seconds)
    report["unrecorded_existing"] = unrecorded
    write_json_atomic(os.path.join(frame_root, "extract_report.json"), report)
    if verbose:
        _print_summary(report, frame_root)
    return report


REPORT_SETTINGS = ("video_root", "frame_root", "flow_root", "short_side", "quality", "template", "flow_template",
                   "flow_algorithm")  # fmt: skip


def _report(results: list[dict], cfg: dict, removed: list[str], seconds: float) -> dict:
    results = sorted(results, key=lambda r: r["video"])
    done = [r for r in results if r["status"] != "failed"]
    extracted = [r for r in done if r["wrote_frames"]]  # frame folders written by this run (flow counted apart)
    written = sum(r["frames"] or 0 for r in extracted)
    report = {k: cfg[k] for k in REPORT_SETTINGS}
    report.update(
        videos=len(results),
        extracted=len(extracted),
        skipped_existing=len(done) - len(extracted),
        failed=len(results) - len(done),
        removed_partial=len(removed),
        seconds=round(seconds, 3),
        frames_written=written,
        frames_per_second=round(written / seconds, 1) if seconds > 0 else None,
        frame_counts={r["key"]: r["frames"] for r in done},
        failures={r["video"]: r["reason"] for r in results if r["status"] == "failed"},
        warnings={r["video"]: r["warning"] for r in done if r["warning"]},
    )
    if cfg["flow"]:
        flow_done = [r for r in done if r["wrote_flow"]]
        report.update(flow_extracted=len(flow_done), flow_skipped_existing=len(done) - len(flow_done))
        report["flow_written"] = sum(r["flow"] or 0 for r in flow_done)
        report["flow_counts"] = {r["key"]: r["flow"] for r in done}
    return report


def _print_summary(report: dict, frame_root: str) -> None:
    print(
        f"extract_frames: {report['extracted']} extracted, {report['skipped_existing']} already done, "
        f"{report['failed']} failed; {report['frames_written']} frames in {report['seconds']:.1f} s "
        f"({report['frames_per_second'] or 0:.0f} frames/s)"
    )
    if report["flow_algorithm"]:
        print(
            f"extract_frames: flow ({report['flow_algorithm']}): {report['flow_extracted']} extracted, "
            f"{report['flow_skipped_existing']} already done; {report['flow_written']} flow images"
        )
    for video, message in list(report["warnings"].items())[:10]:
        print(f"  warning {video}: {message}")
    if report["failures"]:
        print(f"extract_frames: {report['failed']} video(s) could not be extracted (skipped):")
        for video, reason in list(report["failures"].items())[:20]:
            print(f"  {video}: {reason}")
        if report["failed"] > 20:
            print(f"  ... and {report['failed'] - 20} more")
    print(f"extract_frames: report -> {os.path.join(frame_root, 'extract_report.json')}")


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("python -m process_data.extract_frames", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument("--video_root", required=True, help="tree of videos (UCF-101/, hmdb51/, or K400 <split>/<label>/)")
    p.add_argument("--frame_root", required=True, help="output tree of frame folders (mirrors video_root)")
    p.add_argument(
        "--short_side",
        type=int,
        default=NATIVE,
        help="resize so the short side is this many px; 0 (default) = native, as MemDPC's extract_ff.py wrote "
        "and the video decoders of VideoMoCo and CPD read (README table)",
    )
    p.add_argument(
        "--quality", type=int, default=ORIGINAL_QUALITY, help="JPEG quality 1..100 (default 100, as extract_ff.py)"
    )
    p.add_argument("--template", default="image_%05d.jpg", help="1-based frame file name (VTDL HMDB: img_%%05d.jpg)")
    p.add_argument(
        "--flow", action="store_true", help="also write optical-flow JPEGs (TV-L1 if available, else Farneback)"
    )
    p.add_argument("--flow_root", default=None, help="output tree of flow folders (required with --flow)")
    p.add_argument("--flow_template", default="flow_%05d.jpg", help="1-based flow file name")
    p.add_argument("-j", "--workers", type=int, default=1, help="parallel processes (joblib)")
    p.add_argument(
        "--keep_partial",
        action="store_true",
        help="keep the frames of truncated videos instead of reporting them as failed",
    )
    p.add_argument(
        "--frame_tolerance",
        type=int,
        default=3,
        help="a video decoding to fewer than (container frame count - this) frames counts as truncated",
    )
    p.add_argument("--exts", default=",".join(VIDEO_EXTS), help="comma-separated video extensions to look for")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="re-extract finished folders made with other settings (default: refuse with one line)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(args) -> dict:
    kwargs = dict(vars(args))
    exts, quiet = kwargs.pop("exts"), kwargs.pop("quiet")
    return extract(**kwargs, exts=tuple(e.strip() for e in exts.split(",") if e.strip()), verbose=not quiet)


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
