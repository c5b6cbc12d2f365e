"""Official split files -> the per-split lists every method reads (MemDPC CSV, VTDL list, CPD JSON).

    python -m process_data.write_splits --dataset ucf101 --split_dir ucfTrainTestlist --frame_root frames --out lists
    python -m process_data.write_splits --dataset hmdb51 --split_dir testTrainMulti_7030_splits --frame_root frames --out lists
    python -m process_data.write_splits --dataset kinetics400 --split_dir kinetics400_csvs/ --frame_root frames --out lists

Output in `<out>/<dataset>/`:
    ClassInd.txt                          one class per line; label = 0-based line index (UCF101: official
                                          classInd order; HMDB51 / Kinetics-400: sorted)
    train_split0N.csv, test_split0N.csv   MemDPC: `<abs frame dir>/,<n_frames>` (K400: train_split.csv /
                                          val_split.csv, no trailing slash)
    <dataset>_rgb_{train,val}_split_N.txt VTDL: `<abs frame dir> <n_frames> <0-based label>`
    ucf101_0N.json / hmdb51_N.json        CPD: {"labels": [...], "database": {stem: {"subset", "annotations"}}}
Listed videos without a frame folder (or with an empty one) are left out of the CSV/lists and reported
(`missing_*.txt`, `write_splits_report.json`); the CPD JSON lists every video of the official split (CPD reads
the video files, not the frames).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

from process_data.common import count_frames, partial_path, template_regex, write_json_atomic
from process_data.official_splits import (
    Listed,
    hmdb51_split_files,
    parse_hmdb51,
    parse_kinetics,
    parse_ucf101,
    parse_ucf101_classes,
)
from shared_utils.cli import ArgumentParser, fail, require_dir, run_cli

DATASETS = ("ucf101", "hmdb51", "kinetics400")
FORMATS = ("memdpc", "vtdl", "cpd")


# ------------------------------------------------------------------------------------------------ frame folders


def _key(name: str) -> str:
    """Loose folder-name key: case, spaces/underscores and punctuation ignored (K400 label folders differ
    between downloaders: 'riding a bike' / 'riding_a_bike')."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


class FrameResolver:
    """Finds the frame folder of `Class/stem` (or `split/label/id`) under the frame root: exact path first,
    then a case-insensitive match per component (UCF101's HandstandPushups / HandStandPushups), then a loose
    match (K400 labels), then a flat `<root>/<stem>` layout. Directory listings are cached."""

    def __init__(self, frame_root: str, split_folders: dict[str, str] | None = None):
        self.root, self.split_folders = frame_root, split_folders or {}
        self._cache: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    def _children(self, folder: str) -> tuple[dict[str, str], dict[str, str]]:
        if folder not in self._cache:
            try:
                with os.scandir(folder) as entries:
                    names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
            except OSError:
                names = []
            self._cache[folder] = ({n.lower(): n for n in names}, {_key(n): n for n in names})
        return self._cache[folder]

    def _step(self, folder: str, part: str, candidates: list[str]) -> str | None:
        for name in candidates:
            if os.path.isdir(os.path.join(folder, name)):
                return os.path.join(folder, name)
        lower, loose = self._children(folder)
        for name in candidates:
            match = lower.get(name.lower()) or loose.get(_key(name))
            if match:
                return os.path.join(folder, match)
        return None

    def find(self, rel: str, kinetics: bool = False) -> str | None:
        folder: str | None = self.root
        parts = rel.split("/")
        for depth, part in enumerate(parts):
            candidates = [part]
            if kinetics and depth == 0:
                candidates = (
                    [self.split_folders[part]] if part in self.split_folders else [part, f"{part}_split", f"{part}_256"]
                )
            folder = self._step(folder, part, candidates)
            if folder is None:
                break
        if folder is None and not kinetics:
            flat = os.path.join(self.root, parts[-1])
            folder = flat if os.path.isdir(flat) else None
        return folder


def resolve(entries: list[Listed], resolver: FrameResolver, template: str, kinetics: bool = False):
    """-> (rows [(entry, abs frame dir, n_frames)], missing [entry], empty [entry])."""
    rows, missing, empty = [], [], []
    for entry in entries:
        folder = resolver.find(entry.rel, kinetics)
        if folder is None:
            missing.append(entry)
            continue
        n_frames = count_frames(folder, template)
        if n_frames == 0:
            empty.append(entry)
        else:
            rows.append((entry, os.path.abspath(folder), n_frames))
    return rows, missing, empty


# ------------------------------------------------------------------------------------------------ writers


def _write(path: str, lines: list[str]) -> None:
    with open(path, "w", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)


def write_class_ind(path: str, classes: list[str]) -> None:
    _write(path, classes)


def write_memdpc_csv(path: str, rows, trailing_slash: bool) -> None:
    _write(path, [f"{folder}{'/' if trailing_slash else ''},{n}" for _, folder, n in rows])


def write_vtdl_list(path: str, rows) -> None:
    _write(path, [f"{folder} {n} {entry.label}" for entry, folder, n in rows])


def write_cpd_json(path: str, classes: list[str], entries: list[Listed]) -> None:
    subset = {"train": "training", "test": "validation", "val": "validation"}
    database = {e.stem: {"subset": subset[e.subset], "annotations": {"label": classes[e.label]}} for e in entries}
    with open(path, "w") as handle:
        json.dump({"labels": list(classes), "database": database}, handle)


# ------------------------------------------------------------------------------------------------ driver


def _available_splits(dataset: str, split_dir: str) -> list[int]:
    if dataset == "ucf101":
        return [
            k
            for k in (1, 2, 3)
            if all(os.path.isfile(os.path.join(split_dir, f"{n}0{k}.txt")) for n in ("trainlist", "testlist"))
        ]
    return [k for k in (1, 2, 3) if hmdb51_split_files(split_dir, k)]


def _load(dataset: str, split_dir: str, splits: list[int] | None) -> tuple[list[str], dict]:
    """-> (classes, {split number or None (K400): [Listed]})."""
    if dataset == "kinetics400":
        paths = (
            [split_dir]
            if os.path.isfile(split_dir)
            else sorted(glob.glob(os.path.join(glob.escape(split_dir), "**", "*.csv"), recursive=True))
        )
        if not paths:
            fail(f"no Kinetics CSV files in {split_dir}")
        classes, entries = parse_kinetics(paths)
        return classes, {None: entries}
    require_dir(split_dir, f"{dataset} split folder")
    available = _available_splits(dataset, split_dir)
    if splits is None:
        splits = available
    if not splits:
        fail(f"no {dataset} split files found in {split_dir}")
    for k in splits:
        if k not in available:
            fail(f"{dataset} split {k} not found in {split_dir} (available: {available or 'none'})")
    if dataset == "ucf101":
        classes = parse_ucf101_classes(split_dir)
        return classes, {k: parse_ucf101(split_dir, k, classes) for k in splits}
    class_sets = {k: sorted(hmdb51_split_files(split_dir, k)) for k in splits}
    classes = class_sets[splits[0]]
    for k, names in class_sets.items():
        if names != classes:
            fail(f"HMDB51 split {k} has other classes than split {splits[0]}: {sorted(set(names) ^ set(classes))}")
    return classes, {k: parse_hmdb51(split_dir, k, classes) for k in splits}


def _names(dataset: str, split: int | None, subset: str) -> tuple[str, str]:
    """(MemDPC csv, VTDL list) file names."""
    if split is None:
        return f"{subset}_split.csv", f"{dataset}_rgb_{subset}.txt"
    train = subset == "train"
    return (
        f"{'train' if train else 'test'}_split0{split}.csv",
        f"{dataset}_rgb_{'train' if train else 'val'}_split_{split}.txt",
    )


def _write_split(dataset, split, entries, classes, out_dir, resolver, formats, template):
    """Write one split's CSV/list/JSON files. Returns (counts per subset, problem lines, videos found)."""
    counts, problems, found = {}, [], 0
    for subset in sorted({e.subset for e in entries}, key=lambda s: (s != "train", s)):
        chosen = [e for e in entries if e.subset == subset]
        counts[subset] = dict(listed=len(chosen))
        if resolver is None:
            continue
        rows, missing, empty = resolve(chosen, resolver, template, kinetics=split is None)
        csv_name, list_name = _names(dataset, split, subset)
        if "memdpc" in formats:
            write_memdpc_csv(os.path.join(out_dir, csv_name), rows, trailing_slash=split is not None)
        if "vtdl" in formats:
            write_vtdl_list(os.path.join(out_dir, list_name), rows)
        counts[subset].update(found=len(rows), missing=len(missing), empty=len(empty))
        problems += [f"{subset}\t{e.rel}\tno frame folder" for e in missing]
        problems += [f"{subset}\t{e.rel}\tframe folder has no {template} files" for e in empty]
        found += len(rows)
    if "cpd" in formats and split is not None:
        name = f"ucf101_0{split}.json" if dataset == "ucf101" else f"hmdb51_{split}.json"
        write_cpd_json(os.path.join(out_dir, name), classes, entries)
    return counts, problems, found


def _write_groups(dataset, classes, groups, stage, final_dir, resolver, formats, template, video_root, say):
    """Write every split's files into `stage`; returns (report['splits'], total videos found, stale final files)."""
    splits, total_found, stale = {}, 0, []
    for split, entries in groups.items():
        tag = "all" if split is None else str(split)
        counts, problems, found = _write_split(dataset, split, entries, classes, stage, resolver, formats, template)
        if "cpd" in formats and split is not None and video_root:
            absent = [e.video for e in entries if not os.path.isfile(os.path.join(video_root, e.video))]
            counts["videos_missing"] = len(absent)
            problems += [f"video\t{v}\tvideo file not found under {video_root}" for v in absent]
        missing_name = "missing.txt" if split is None else f"missing_split0{split}.txt"
        if problems:
            _write(os.path.join(stage, missing_name), problems)
        else:
            stale.append(os.path.join(final_dir, missing_name))
        splits[tag] = counts
        total_found += found
        parts = [
            f"{k} " + (", ".join(f"{n} {v}" for n, v in c.items()) if isinstance(c, dict) else str(c))
            for k, c in counts.items()
        ]
        note = f"  (see {os.path.join(final_dir, missing_name)})" if problems else ""
        say(f"write_splits: {dataset} split {tag}: " + " | ".join(parts) + note)
    return splits, total_found, stale


def _make_dirs(path: str) -> list[str]:
    """os.makedirs(path), returning the folders it created (deepest last), so a failed run can remove them."""
    created, folder = [], os.path.abspath(path)
    while not os.path.isdir(folder):
        created.insert(0, folder)
        folder = os.path.dirname(folder)
    os.makedirs(path, exist_ok=True)
    return created


def _commit(stage: str, final_dir: str, stale: list[str]) -> None:
    """Move the staged files over the previous ones (each a rename) and drop reports that no longer apply."""
    os.makedirs(final_dir, exist_ok=True)
    for name in sorted(os.listdir(stage)):
        os.replace(os.path.join(stage, name), os.path.join(final_dir, name))
    for path in stale:
        if os.path.exists(path):
            os.remove(path)
    os.rmdir(stage)


def write_splits(
    dataset: str,
    split_dir: str,
    frame_root: str | None,
    out: str,
    splits: list[int] | None = None,
    formats: tuple[str, ...] = FORMATS,
    template: str = "image_%05d.jpg",
    video_root: str | None = None,
    k400_split_folders: dict[str, str] | None = None,
    verbose: bool = True,
) -> dict:
    """Write the lists of `dataset` into `<out>/<dataset>/` and return the count report. Everything is written
    into a hidden staging folder first and moved into place only after the run succeeded: a failed run (no frame
    folder found, bad split files, ...) leaves earlier lists untouched."""
    say = print if verbose else (lambda *a, **k: None)
    frames_needed = bool({"memdpc", "vtdl"} & set(formats))
    if frames_needed:
        require_dir(frame_root, "frame root")
        try:
            template_regex(template)
        except ValueError as err:
            fail(str(err))
    if os.path.exists(out) and not os.path.isdir(out):
        fail(f"--out '{out}' exists and is not a directory")
    classes, groups = _load(dataset, split_dir, splits)
    final_dir = os.path.join(out, dataset)
    created = _make_dirs(out)
    stage = partial_path(final_dir)
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    try:
        write_class_ind(os.path.join(stage, "ClassInd.txt"), classes)
        resolver = FrameResolver(frame_root, k400_split_folders) if frames_needed else None
        report = dict(dataset=dataset, classes=len(classes), frame_root=frame_root, formats=list(formats))
        report["splits"], total_found, stale = _write_groups(
            dataset, classes, groups, stage, final_dir, resolver, formats, template, video_root, say
        )
        if frames_needed and total_found == 0:
            fail(
                f"none of the listed {dataset} videos has a frame folder under {frame_root} "
                f"(wrong --frame_root or --template '{template}'?); nothing written"
            )
        write_json_atomic(os.path.join(stage, "write_splits_report.json"), report)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in reversed(created):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise
    _commit(stage, final_dir, stale)
    say(f"write_splits: {len(classes)} classes -> {final_dir}")
    return report


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("python -m process_data.write_splits", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument(
        "--split_dir",
        required=True,
        help="ucf101: ucfTrainTestlist/; hmdb51: the folder of "
        "<class>_test_splitN.txt files; kinetics400: a CSV file or a folder of CSVs",
    )
    p.add_argument("--frame_root", default=None, help="output of extract_frames (needed for memdpc/vtdl formats)")
    p.add_argument("--out", required=True, help="lists go to <out>/<dataset>/")
    p.add_argument("--splits", default=None, help="e.g. 1 or 1,2,3 (default: every split present)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)}")
    p.add_argument("--template", default="image_%05d.jpg", help="frame file name template counted as n_frames")
    p.add_argument("--video_root", default=None, help="optional: also check that the listed video files exist")
    p.add_argument(
        "--k400_split_folders",
        default=None,
        help="CSV split value -> folder, e.g. train=train_256,val=val_256 (default: split, split_split, split_256)",
    )
    p.add_argument("--quiet", action="store_true")
    return p


def main(args) -> dict:
    kwargs = dict(vars(args))
    quiet = kwargs.pop("quiet")
    kwargs["formats"] = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    for name in kwargs["formats"]:
        if name not in FORMATS:
            fail(f"unknown format '{name}' in --formats (choose from: {', '.join(FORMATS)})")
    try:
        kwargs["splits"] = [int(k) for k in args.splits.split(",")] if args.splits else None
        pairs = args.k400_split_folders.split(",") if args.k400_split_folders else []
        kwargs["k400_split_folders"] = dict(pair.split("=", 1) for pair in pairs) or None
    except ValueError:
        fail(f"bad --splits '{args.splits}' or --k400_split_folders '{args.k400_split_folders}'")
    return write_splits(**kwargs, verbose=not quiet)


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
