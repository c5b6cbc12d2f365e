"""extract_frames' checks: flag values, and the settings a frame (or flow) tree was extracted with, so that a
re-run never mixes or mislabels them.

`extract_frames` keeps one record per output tree: `<frame_root>/extract_settings.json` (short side, JPEG quality,
file template) and `<flow_root>/flow_settings.json` (the same plus the flow algorithm). A finished folder is
skipped by a re-run only when the record matches the new settings; any difference refuses the run with one line
(`--overwrite` re-extracts instead). Trees written before the record existed are checked against their
`extract_report.json`. During an `--overwrite` run the record says so, and an interrupted overwrite must be
finished with `--overwrite` before the tree is used again.
"""

from __future__ import annotations

import json
import os

from process_data.common import template_regex, write_json_atomic
from shared_utils.cli import fail, require_dir

FRAME_RECORD, FLOW_RECORD, LEGACY_REPORT = "extract_settings.json", "flow_settings.json", "extract_report.json"
FRAME_KEYS = ("short_side", "quality", "template")
FLOW_KEYS = ("short_side", "quality", "flow_template", "flow_algorithm")


def wanted(cfg: dict, flow: bool) -> dict:
    return {k: cfg[k] for k in (FLOW_KEYS if flow else FRAME_KEYS)}


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_record(root: str, flow: bool, legacy_report: str | None = None) -> dict | None:
    """{'settings': {...}, 'overwriting': bool} of `root`, or None when nothing says how it was extracted."""
    record = _read_json(os.path.join(root, FLOW_RECORD if flow else FRAME_RECORD))
    if record is not None and isinstance(record.get("settings"), dict):
        return record
    report = _read_json(legacy_report) if legacy_report else None
    keys = FLOW_KEYS if flow else FRAME_KEYS
    if report is None or not all(k in report for k in keys) or (flow and not report.get("flow_algorithm")):
        return None
    return {"settings": {k: report[k] for k in keys}, "overwriting": False}


def check_tree(root: str, settings: dict, existing: int, overwrite: bool, flow: bool, legacy: str | None) -> bool:
    """Fail with one line when `existing` finished folders under `root` were made with other settings (unless
    `overwrite`). Returns False when they exist but no record says how they were made (kept as they are)."""
    if existing == 0:
        return True
    record = read_record(root, flow, legacy)
    if record is None:
        return False
    what, flag = ("flow", "--flow_root") if flow else ("frame", "--frame_root")
    if record.get("overwriting") and not overwrite:
        fail(f"an --overwrite run into {flag} '{root}' was interrupted; run it again with --overwrite")
    old = record["settings"]
    diff = [f"{k} {old.get(k)!r} (now {v!r})" for k, v in settings.items() if old.get(k) != v]
    if diff and not overwrite:
        fail(
            f"{flag} '{root}' holds {existing} {what} folder(s) extracted with {', '.join(diff)}; use those "
            f"settings, another {flag}, or --overwrite to re-extract them"
        )
    return True


def write_record(root: str, settings: dict, flow: bool, overwriting: bool) -> None:
    os.makedirs(root, exist_ok=True)
    write_json_atomic(
        os.path.join(root, FLOW_RECORD if flow else FRAME_RECORD), {"settings": settings, "overwriting": overwriting}
    )


def check_values(video_root, frame_root, short_side, quality, template, flow, flow_root, flow_template, workers,
                  frame_tolerance) -> None:  # fmt: skip
    """One-line errors for flag values that cannot run, before anything is written."""
    require_dir(video_root, "video root")
    for name in (template, flow_template):
        try:
            template_regex(name)
        except ValueError as err:
            fail(str(err))
    if flow and not flow_root:
        fail("--flow needs --flow_root (where the flow JPEGs go)")
    if flow and os.path.abspath(flow_root) == os.path.abspath(frame_root):
        fail("--flow_root must differ from --frame_root (both hold one folder per video)")
    for root, flag in ((frame_root, "--frame_root"), (flow_root if flow else None, "--flow_root")):
        if root and os.path.exists(root) and not os.path.isdir(root):
            fail(f"{flag} '{root}' exists and is not a directory")
    if not 1 <= quality <= 100:
        fail(f"--quality must be in 1..100, got {quality}")
    for value, flag, low in ((short_side, "--short_side", 0), (workers, "-j/--workers", 1),
                             (frame_tolerance, "--frame_tolerance", 0)):  # fmt: skip
        if value < low:
            fail(f"{flag} must be >= {low}, got {value}")


def check_trees(videos: list[str], cfg: dict) -> dict[str, int]:
    """Refuse (one line) to add to a tree made with other settings; {tree: count} of unrecorded finished folders."""
    legacy = os.path.join(cfg["frame_root"], LEGACY_REPORT)
    trees = [("frame", cfg["frame_root"], False)] + ([("flow", cfg["flow_root"], True)] if cfg["flow"] else [])
    unrecorded = {}
    for name, root, is_flow in trees:
        existing = sum(os.path.isdir(os.path.join(root, os.path.splitext(v)[0])) for v in videos)
        if not check_tree(root, wanted(cfg, is_flow), existing, cfg["overwrite"], is_flow, legacy):
            unrecorded[name] = existing
    return unrecorded


def record(cfg: dict, overwriting: bool) -> None:
    write_record(cfg["frame_root"], wanted(cfg, False), False, overwriting)
    if cfg["flow"]:
        write_record(cfg["flow_root"], wanted(cfg, True), True, overwriting)
