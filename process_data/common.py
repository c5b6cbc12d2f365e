"""Helpers shared by the process_data steps: finding videos, parallel map with a progress bar, atomic JSON."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from typing import Any

from joblib import Parallel, delayed
from tqdm import tqdm

from shared_utils.frame_files import count_frames, frame_name, template_regex  # noqa: F401 (torch-free re-exports)

VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".3gp", ".ogv")
PARTIAL_SUFFIX = ".partial"  # temporary outputs are hidden siblings: .<name>.partial


def find_videos(root: str, exts: Iterable[str] = VIDEO_EXTS) -> list[str]:
    """Video files under `root` as sorted relative paths (hidden files and our temporaries skipped)."""
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in exts)
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(exts):
                found.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(found)


def partial_path(final: str) -> str:
    """The temporary sibling that is renamed onto `final` once complete."""
    return os.path.join(os.path.dirname(final), f".{os.path.basename(final)}{PARTIAL_SUFFIX}")


def remove_partials(folders: Iterable[str]) -> list[str]:
    """Delete leftovers of an interrupted run (.<name>.partial files or folders) directly inside `folders`."""
    removed = []
    for folder in sorted(set(folders)):
        if not os.path.isdir(folder):
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.remove(entry.path)
                    removed.append(entry.path)
    return removed


def parallel_map(
    fn: Callable[..., Any], items: list, workers: int = 1, desc: str = "", verbose: bool = True, **kwargs
) -> list:
    """[fn(item, **kwargs) for item in items] with joblib processes when workers > 1 and a tqdm bar.
    Results come back in completion order when parallel; each result should identify its item."""
    bar = dict(total=len(items), desc=desc, disable=not verbose, unit="video", dynamic_ncols=True)
    if workers <= 1 or len(items) <= 1:
        return [fn(item, **kwargs) for item in tqdm(items, **bar)]
    jobs = (delayed(fn)(item, **kwargs) for item in items)
    runner = Parallel(n_jobs=workers, return_as="generator_unordered", batch_size="auto")
    return list(tqdm(runner(jobs), **bar))


def write_json_atomic(path: str, obj: Any) -> None:
    tmp = partial_path(path)
    with open(tmp, "w") as handle:
        json.dump(obj, handle, indent=1, sort_keys=False)
    os.replace(tmp, path)


class Timer:
    """`with Timer() as t: ...; t.seconds` — wall time of a block (used for the frames/s numbers)."""

    def __enter__(self) -> Timer:
        self.start, self.seconds = time.perf_counter(), 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start
