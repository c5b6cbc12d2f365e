"""MemDPC data: split CSVs -> videos -> N blocks of SL frames taken every `ds` frames (spec §2.3-2.5).

A training sample covers L = N*SL*ds frames from a uniformly drawn start; a test video yields K half-overlapping
clips (starts 0, L/2-1, ... up to n-L). Output layout [N, C, SL, H, W] per clip. RGB reads image_%05d.jpg from
the frame folder named in the CSV; flow reads flow_%05d.jpg (n-1 files per video) from the flow tree.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from memdpc.augment import finetune_transform, pretrain_transform
from memdpc.opts import scale_interpolation
from shared_utils.cli import fail, require_dir, require_file
from shared_utils.data import DataWarnings, unpack_index
from shared_utils.frames import UnreadableClip, VideoEntry, load_frames, read_class_index, read_frame_csv

DATASETS = ("ucf101", "hmdb51", "k400")
VAL_FRACTION = 0.3
TEMPLATES = {"rgb": "image_{:05d}.jpg", "flow": "flow_{:05d}.jpg"}


# --------------------------------------------------------------------------------------------------- lists


def csv_folder(csv_root: str, dataset: str) -> str:
    """<csv_root>/<dataset>; Kinetics lives under 'kinetics400' (the original split it across two names)."""
    names = {"ucf101": ["ucf101"], "hmdb51": ["hmdb51"], "k400": ["kinetics400", "k400"]}[dataset]
    for name in names:
        if os.path.isdir(os.path.join(csv_root, name)):
            return os.path.join(csv_root, name)
    require_dir(csv_root, "--csv_root")
    fail(f"no '{names[0]}' folder in --csv_root '{csv_root}' (run process_data.write_splits --out {csv_root})")


def split_csv(csv_root: str, dataset: str, subset: str, split: int = 1) -> str:
    """Path of the train / test (val for K400) CSV of `split`."""
    folder = csv_folder(csv_root, dataset)
    if dataset == "k400":
        name = "train_split.csv" if subset == "train" else "val_split.csv"
    else:
        if split not in (1, 2, 3):
            fail(f"--split must be 1, 2 or 3, got {split}")
        name = f"{'train' if subset == 'train' else 'test'}_split{split:02d}.csv"
    return require_file(os.path.join(folder, name), f"{dataset} split list")


def class_names(csv_root: str, dataset: str) -> list[str]:
    return read_class_index(os.path.join(csv_folder(csv_root, dataset), "ClassInd.txt"))


def flow_folder(frame_dir: str, flow_root: str, dataset: str) -> str:
    """The flow folder of a video: <flow_root>/<Class>/<video> (K400: <flow_root>/<split>/<label>/<video>)."""
    depth = 3 if dataset == "k400" else 2
    parts = os.path.normpath(frame_dir).split(os.sep)[-depth:]
    return os.path.join(flow_root, *parts)


def default_flow_root(frame_dir: str, dataset: str) -> str:
    """The frame tree's root with its last 'frames' component replaced by 'flow' (process_data's layouts:
    <root>/frames/ucf101 -> <root>/flow/ucf101, <synth>/frames -> <synth>/flow); else a sibling 'flow' folder."""
    depth = 3 if dataset == "k400" else 2
    frame_root = os.path.normpath(frame_dir)
    for _ in range(depth):
        frame_root = os.path.dirname(frame_root)
    parts = frame_root.split(os.sep)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "frames":
            return os.sep.join(parts[:i] + ["flow"] + parts[i + 1 :])
    return os.path.join(os.path.dirname(frame_root), "flow")


def require_some_folders(entries: list[VideoEntry], csv: str) -> None:
    """Fail with one line when none of the listed frame (or flow) folders exists (moved data, another machine);
    single missing folders are skipped and counted at read time."""
    if not any(os.path.isdir(e.path) for e in entries):
        fail(
            f"none of the {len(entries)} folders listed in '{csv}' exists (e.g. '{entries[0].path}'); "
            "re-run process_data.write_splits for this frame tree"
        )


def read_entries(args, subset: str, with_labels: bool) -> list[VideoEntry]:
    """Videos of one split CSV; for --modality flow, paths point into the flow tree and n_frames = n - 1."""
    classes = class_names(args.csv_root, args.dataset) if with_labels else None
    csv = split_csv(args.csv_root, args.dataset, subset, getattr(args, "split", 1))
    entries = read_frame_csv(csv, classes)
    if args.modality == "flow":
        flow_root = args.flow_root or default_flow_root(entries[0].path, args.dataset)
        require_dir(flow_root, "flow root (--flow_root)")
        entries = [
            VideoEntry(flow_folder(e.path, flow_root, args.dataset), max(e.n_frames - 1, 0), e.label, e.video_id)
            for e in entries
        ]
    require_some_folders(entries, csv)
    return entries


def clip_span(args) -> int:
    return args.num_seq * args.seq_len * args.ds


def val_subset(entries: list[VideoEntry], dataset: str, seed: int) -> list[VideoEntry]:
    """The original's validation set: pandas `sample(frac=0.3)` of the filtered TEST-split rows, which draws
    `RandomState.permutation(n)[:round(0.3 n)]` from numpy's global RNG right after `np.random.seed(--seed)` (nothing
    else draws from it first); K400: `random_state=666`. Same videos, same order."""
    state = np.random.RandomState(666 if dataset == "k400" else seed)
    count = max(1, round(VAL_FRACTION * len(entries)))
    return [entries[i] for i in state.permutation(len(entries))[:count]]


# --------------------------------------------------------------------------------------------------- datasets


class BlockDataset(Dataset):
    """Train / val clips: item -> (block [N, C, SL, H, W], label, index); the block is float, or uint8 from a
    transform that defers the normalisation to the device. Draws from the sampler's seed."""

    def __init__(self, entries, num_seq, seq_len, ds, transform, template, warnings: DataWarnings | None = None):
        self.entries = list(entries)
        self.num_seq, self.seq_len, self.ds = num_seq, seq_len, ds
        self.transform, self.template = transform, template
        self.warnings = warnings if warnings is not None else DataWarnings()

    def __len__(self) -> int:
        return len(self.entries)

    def frame_indices(self, n_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Start uniform in [0, n - L); frames start + ds*k, k < N*SL."""
        span = self.num_seq * self.seq_len * self.ds
        start = int(rng.integers(0, max(n_frames - span, 1)))
        return np.minimum(start + self.ds * np.arange(self.num_seq * self.seq_len), max(n_frames - 1, 0))

    def __getitem__(self, item):
        index, rng = unpack_index(item)
        for _ in range(10):
            entry = self.entries[index]
            try:
                frames = load_frames(
                    entry.path, self.frame_indices(entry.n_frames, rng), self.template, warnings=self.warnings
                )
                break
            except UnreadableClip as err:
                self.warnings.warn("unreadable_video", f"{entry.path}: {err}")
                index = int(rng.integers(len(self.entries)))
        else:
            raise RuntimeError("ten unreadable videos in a row; check the frame folders")
        clip = self.transform(torch.from_numpy(frames).permute(0, 3, 1, 2), rng)  # T, C, H, W (or N, C, SL, H, W)
        if clip.dim() == 5:  # the transform already laid the frames out in blocks
            return clip, entry.label, index
        blocks = clip.reshape(self.num_seq, self.seq_len, *clip.shape[1:]).transpose(1, 2)
        return blocks.contiguous(), entry.label, index


def eval_clip_starts(n_frames: int, span: int) -> np.ndarray:
    """Starts 0, span/2-1, ... up to and including n - span (one clip at 0 for a short video)."""
    return np.arange(0, max(n_frames - span, 0) + 1, max(span // 2 - 1, 1))


class WholeVideoDataset(Dataset):
    """Whole test videos: item -> (frames uint8 [F, C, H, W] (each needed frame once), clip index [K, N*SL] into
    them, label, index), or None for an unreadable video. Short videos are padded with their last frame."""

    def __init__(self, entries, num_seq, seq_len, ds, template, warnings: DataWarnings | None = None):
        self.entries = list(entries)
        self.num_seq, self.seq_len, self.ds, self.template = num_seq, seq_len, ds, template
        self.warnings = warnings if warnings is not None else DataWarnings()

    def __len__(self) -> int:
        return len(self.entries)

    def clip_indices(self, n_frames: int, path: str = "") -> np.ndarray:
        span = self.num_seq * self.seq_len * self.ds
        if n_frames <= span:
            self.warnings.warn("short_video", f"{path}: {n_frames} frames < {span + 1}, padded with the last frame")
        starts = eval_clip_starts(n_frames, span)
        idx = starts[:, None] + self.ds * np.arange(self.num_seq * self.seq_len)[None, :]
        return np.minimum(idx, max(n_frames - 1, 0))

    def __getitem__(self, item):
        index, _ = unpack_index(item)
        entry = self.entries[index]
        idx = self.clip_indices(entry.n_frames, entry.path)
        unique, inverse = np.unique(idx, return_inverse=True)
        try:
            frames = load_frames(entry.path, unique, self.template, warnings=self.warnings)
        except UnreadableClip as err:
            self.warnings.warn("unreadable_video", f"{entry.path}: {err}")
            return None
        frames = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
        return frames, torch.from_numpy(inverse.reshape(idx.shape)), entry.label, index


def first_item(batch: list):
    """Collate for batch size 1 in the test phase (whole videos of different lengths)."""
    return batch[0]


# --------------------------------------------------------------------------------------------------- builders


def keep_long_enough(entries: list[VideoEntry], span: int, what: str) -> list[VideoEntry]:
    """The original keeps a video only if n_frames - L > 0 (train and val); the ones left out are counted aloud."""
    kept = [e for e in entries if e.n_frames - span > 0]
    if not kept:
        fail(f"no {what} video has more than {span} frames (num_seq x seq_len x ds); use a smaller --ds/--num_seq")
    if len(kept) < len(entries):
        print(f"note: {len(entries) - len(kept)} {what} video(s) of at most {span} frames (one clip) left out, "
              "as the original does")  # fmt: skip
    return kept


def build_dataset(args, split: str, purpose: str = "pretrain", warnings: DataWarnings | None = None) -> Dataset:
    """split: 'train' | 'val' | 'test'; purpose: 'pretrain' (no labels needed) or 'eval'."""
    if args.dataset not in DATASETS:
        fail(f"unknown --dataset '{args.dataset}' (choose from: {', '.join(DATASETS)})")
    template, span = TEMPLATES[args.modality], clip_span(args)
    entries = read_entries(args, "train" if split == "train" else "test", with_labels=purpose == "eval")
    if split == "test":
        if getattr(args, "drop_short", False):
            entries = keep_long_enough(entries, span, "test")
        return WholeVideoDataset(entries, args.num_seq, args.seq_len, args.ds, template, warnings)
    entries = keep_long_enough(entries, span, split)
    if split == "val":
        entries = val_subset(entries, args.dataset, args.seed)
    if purpose == "pretrain":
        transform = pretrain_transform(
            args.img_dim, args.modality, scale_interpolation(args), blocks=args.num_seq, defer_normalize=True
        )  # uint8 blocks: MemDPC.forward normalises them on the device
    else:
        transform = finetune_transform(
            args.img_dim, split, args.modality, scale_interpolation(args), blocks=args.num_seq
        )
    return BlockDataset(entries, args.num_seq, args.seq_len, args.ds, transform, template, warnings)
