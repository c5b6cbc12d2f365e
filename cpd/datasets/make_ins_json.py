"""Build an Instagram-300k-style pretraining set from a folder of captioned videos (CPD spec §2.1).

    python -m cpd.datasets.make_ins_json --video_root RAW/UCF-101 --captions RAW/captions.tsv \
        --out_dir DATA/ins_videos --json DATA/ins_list/ins_synth.json [--val_ratio 0.1] [--mode transcode|link]

writes `<out_dir>/trimmed_resize_{id}.mp4` for every captioned video (transcode: the middle `--trim_seconds`,
short side `--short_side`, H.264 in MP4, as the authors prepared Instagram-300k; link: a symbolic link to the
source, which PyAV opens by content whatever the extension) and the list JSON
`{"<id>": {"subset": "training" | "validation", "caption": "...", "source": "<relative path>"}}`.
Captions file: one video per line, `<path relative to video_root><TAB><caption>` (the synthetic dataset's
captions.tsv); a third column is allowed (Kinetics-210k's `{id}\\t{processed title}\\t{original title}`,
pick the column with --caption_column). Ids are the file stems; the validation subset is a seeded random
`--val_ratio` of the videos (at least one when the ratio is positive).
"""

from __future__ import annotations

import json
import os
import re
from fractions import Fraction

import av
import numpy as np
from joblib import Parallel, delayed

from shared_utils.cli import ArgumentParser, fail, require_dir, require_file, run_cli


def read_captions(path: str, video_root: str, column: int = 1) -> list[tuple[str, str]]:
    """[(relative video path, caption)] for the lines whose video exists (the missing ones are reported)."""
    require_file(path, "--captions")
    stems: dict[str, str] | None = None
    pairs, missing = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.rstrip("\r\n").split("\t")
            if not parts[0].strip():
                continue
            if len(parts) <= column:
                fail(f"{path}:{number}: expected '<video><TAB><caption>', got {line.strip()[:80]!r}")
            rel, caption = parts[0].strip(), " ".join(parts[column].split())
            if not os.path.isfile(os.path.join(video_root, rel)):  # an id instead of a path: look it up by stem
                stems = stems if stems is not None else _index_stems(video_root)
                rel = stems.get(os.path.splitext(os.path.basename(rel))[0], rel)
            if not os.path.isfile(os.path.join(video_root, rel)):
                missing.append(rel)
                continue
            pairs.append((rel, caption))
    if missing:
        print(f"{len(missing)} captioned videos are missing under {video_root} (e.g. {missing[0]}); skipped")
    if not pairs:
        fail(f"no captioned video of {path} was found under {video_root}")
    return pairs


def _index_stems(root: str) -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            out.setdefault(os.path.splitext(name)[0], os.path.relpath(os.path.join(folder, name), root))
    return out


def video_id(rel: str) -> str:
    stem = os.path.splitext(os.path.basename(rel))[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def assign_subsets(ids: list[str], val_ratio: float, seed: int) -> dict[str, str]:
    n_val = 0 if val_ratio <= 0 else max(1, int(round(len(ids) * val_ratio)))
    if n_val >= len(ids) and len(ids) > 0 and val_ratio < 1:
        n_val = len(ids) - 1
    order = np.random.default_rng(seed).permutation(sorted(ids))
    val = set(order[:n_val].tolist())
    return {i: ("validation" if i in val else "training") for i in ids}


def transcode(src: str, dst: str, trim_seconds: float, short_side: int, crf: int = 18) -> None:
    """The middle `trim_seconds` of `src`, short side -> `short_side` (even sizes), H.264/MP4, atomically."""
    tmp = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.partial")
    with av.open(src) as inp:
        stream = inp.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(30)
        n = stream.frames or sum(1 for p in inp.demux(stream) if p.size)
        if not stream.frames:
            inp.seek(0)
        keep = n if trim_seconds <= 0 else min(n, int(round(trim_seconds * float(rate))))
        first = (n - keep) // 2
        width, height = stream.codec_context.width, stream.codec_context.height
        if short_side > 0:
            scale = short_side / min(width, height)
            width, height = round(width * scale), round(height * scale)
        width, height = width - width % 2, height - height % 2
        with av.open(tmp, "w", format="mp4") as out:
            ostream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
            ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
            ostream.options = {"crf": str(crf)} if ostream.name == "libx264" else {}
            for i, frame in enumerate(inp.decode(stream)):
                if i < first:
                    continue
                if i >= first + keep:
                    break
                image = frame.reformat(width=width, height=height, format="yuv420p")
                image.pts = None
                for packet in ostream.encode(image):
                    out.mux(packet)
            for packet in ostream.encode():
                out.mux(packet)
    os.replace(tmp, dst)


def _materialise(src: str, dst: str, mode: str, trim_seconds: float, short_side: int) -> None:
    if os.path.exists(dst):
        return
    if mode == "link":
        os.symlink(os.path.abspath(src), dst)
    else:
        transcode(src, dst, trim_seconds, short_side)


def build(args) -> dict:
    video_root = require_dir(args.video_root, "--video_root")
    pairs = read_captions(args.captions, video_root, args.caption_column)
    ids = [video_id(rel) for rel, _ in pairs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        fail(f"two captioned videos share the id '{dup}' (ids are file stems); rename one")
    subsets = assign_subsets(ids, args.val_ratio, args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    jobs = [
        delayed(_materialise)(
            os.path.join(video_root, rel),
            os.path.join(args.out_dir, f"trimmed_resize_{vid}.mp4"),
            args.mode,
            args.trim_seconds,
            args.short_side,
        )
        for vid, (rel, _) in zip(ids, pairs)
    ]
    Parallel(n_jobs=args.workers)(jobs)
    listing = {vid: {"subset": subsets[vid], "caption": cap, "source": rel} for vid, (rel, cap) in zip(ids, pairs)}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(listing, handle, indent=1)
    os.replace(tmp, args.json)
    n_val = sum(1 for s in subsets.values() if s == "validation")
    print(f"{len(ids)} videos ({len(ids) - n_val} training, {n_val} validation) -> {args.out_dir}; list {args.json}")
    return listing


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("python -m cpd.datasets.make_ins_json", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument("--video_root", required=True, help="folder the caption paths are relative to")
    p.add_argument("--captions", required=True, help="'<relative video path><TAB><caption>' per line")
    p.add_argument("--caption_column", type=int, default=1, help="column holding the caption (0-based)")
    p.add_argument("--out_dir", required=True, help="flat folder of trimmed_resize_{id}.mp4 (= --video_path)")
    p.add_argument("--json", required=True, help="list file to write (= --dataset_file)")
    p.add_argument("--val_ratio", type=float, default=0.1, help="fraction of videos in the validation subset")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation draw")
    p.add_argument("--mode", choices=("transcode", "link"), default="transcode")
    p.add_argument("--trim_seconds", type=float, default=20.0, help="transcode: keep the middle N seconds (0: all)")
    p.add_argument("--short_side", type=int, default=256, help="transcode: short side in pixels (0: keep)")
    p.add_argument("-j", "--workers", type=int, default=1)
    return p


if __name__ == "__main__":
    run_cli(build, get_args_parser().parse_args())
