"""Parsers of the official split files: UCF101 (classInd / trainlist0N / testlist0N), HMDB51
(`<class>_test_splitN.txt`, tags 1 = train, 2 = test, 0 = unused) and Kinetics-400 (CSV with header
`label,youtube_id,time_start,time_end,split,is_cc`). CRLF, BOMs, blank lines and trailing spaces are tolerated;
malformed lines fail with `file:line: message`.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass

from shared_utils.cli import fail

HMDB_TAGS = {"1": "train", "2": "test", "0": None}


@dataclass(frozen=True)
class Listed:
    """One video of an official split file."""

    rel: str  # frame folder relative to the frame root as the split file names it: Class/stem, split/label/id
    stem: str
    label: int  # 0-based index into the class list
    subset: str  # train | test (UCF/HMDB) or train | val | test (K400 csv split column)
    video: str = ""  # the video file as the split file names it (UCF/HMDB), for --video_root checks


# ------------------------------------------------------------------------------------------------ parsers


def _lines(path: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines; CRLF, BOM and trailing spaces tolerated."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return [(i, line.strip()) for i, line in enumerate(handle.read().splitlines(), 1) if line.strip()]


def parse_ucf101_classes(split_dir: str) -> list[str]:
    """classInd.txt ('1 ApplyEyeMakeup') -> names in label order; ids must be 1..N."""
    path = os.path.join(split_dir, "classInd.txt")
    if not os.path.isfile(path):
        fail(f"UCF101 class index not found: {path} (expected the official ucfTrainTestlist folder)")
    pairs = []
    for line_no, text in _lines(path):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            fail(f"{path}:{line_no}: expected '<id> <ClassName>', got {text!r}")
        pairs.append((int(parts[0]), parts[1]))
    pairs.sort()
    if [i for i, _ in pairs] != list(range(1, len(pairs) + 1)):
        fail(f"{path}: class ids must be 1..{len(pairs)} without gaps")
    return [name for _, name in pairs]


def parse_ucf101(split_dir: str, split: int, classes: list[str]) -> list[Listed]:
    """trainlist0N.txt ('Class/v_..avi <1-based label>') + testlist0N.txt ('Class/v_..avi')."""
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    entries = []
    for subset, name in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        path = os.path.join(split_dir, name)
        if not os.path.isfile(path):
            fail(f"UCF101 split {split}: {path} not found")
        for line_no, text in _lines(path):
            parts = text.split()
            video = parts[0].replace("\\", "/")
            folder, _, filename = video.rpartition("/")
            label = lookup.get(folder.lower())
            if label is None or not filename:
                fail(f"{path}:{line_no}: class folder of {video!r} is not in classInd.txt")
            if len(parts) > 1 and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
                fail(
                    f"{path}:{line_no}: label {parts[1]} does not match class {folder} (id {label + 1} in classInd.txt)"
                )
            stem = os.path.splitext(filename)[0]
            entries.append(Listed(f"{folder}/{stem}", stem, label, subset, video))
    return entries


def hmdb51_split_files(split_dir: str, split: int) -> dict[str, str]:
    """{class name: path} of the `<class>_test_split<N>.txt` files."""
    suffix = f"_test_split{split}.txt"
    files = sorted(glob.glob(os.path.join(glob.escape(split_dir), f"*{suffix}")))
    return {os.path.basename(p)[: -len(suffix)]: p for p in files}


def parse_hmdb51(split_dir: str, split: int, classes: list[str]) -> list[Listed]:
    """Per class file, lines 'video.avi tag': 1 = train, 2 = test, 0 = unused."""
    files = hmdb51_split_files(split_dir, split)
    if not files:
        fail(f"HMDB51 split {split}: no *_test_split{split}.txt files in {split_dir}")
    label = {name: i for i, name in enumerate(classes)}
    entries = []
    for cls, path in files.items():
        for line_no, text in _lines(path):
            parts = text.rsplit(None, 1)
            if len(parts) != 2 or parts[1] not in HMDB_TAGS:
                fail(f"{path}:{line_no}: expected '<video>.avi <0|1|2>', got {text!r}")
            subset = HMDB_TAGS[parts[1]]
            if subset:
                stem = os.path.splitext(parts[0])[0]
                entries.append(Listed(f"{cls}/{stem}", stem, label[cls], subset, f"{cls}/{parts[0]}"))
    return entries


def parse_kinetics(csv_paths: list[str]) -> tuple[list[str], list[Listed]]:
    """Official CSVs 'label,youtube_id,time_start,time_end,split,is_cc' -> sorted classes and videos.
    Files without a label column (the K400 test CSV) are skipped with a note."""
    rows = []
    for path in csv_paths:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = set(reader.fieldnames or [])
            if not {"youtube_id", "time_start", "time_end", "split"} <= fields:
                fail(f"{path}: not a Kinetics CSV (header must have label,youtube_id,time_start,time_end,split)")
            if "label" not in fields:
                print(f"write_splits: {path} has no label column (test set) -> skipped")
                continue
            for line_no, row in enumerate(reader, 2):
                try:
                    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                except (TypeError, ValueError):
                    fail(f"{path}:{line_no}: bad time_start/time_end {row.get('time_start')!r}/{row.get('time_end')!r}")
                rows.append((row["label"].strip(), f"{row['youtube_id']}_{start:06d}_{end:06d}", row["split"].strip()))
    if not rows:
        fail(f"no labelled rows in {', '.join(csv_paths)}")
    classes = sorted({label for label, _, _ in rows})
    index = {name: i for i, name in enumerate(classes)}
    return classes, [Listed(f"{split}/{label}/{stem}", stem, index[label], split) for label, stem, split in rows]
