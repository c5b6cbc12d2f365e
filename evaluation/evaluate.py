"""One evaluation protocol for all four methods: cached clip features -> kNN, linear probe, retrieval.

    python -m evaluation --method memdpc --ckpt runs/memdpc/model_best.pth.tar \
        --list_dir data/lists --dataset ucf101 --split 1 --num_clips 10 --out results/

Each method exposes `<method>.features.build_clip_encoder(ckpt, **overrides)` (listed in evaluation.registry): a module taking uint8 clips
[B, T, H, W, 3] (T = num_frames at frame_stride, H = W = crop_size) and returning features [B, D]. This module
samples the clips the same way for every method (N uniform clips per video, short side resized to crop_size,
center crop), averages the clip features per video, caches them, and scores them with:
  * kNN: cosine similarity, k = 200 with temperature-weighted voting (exp(s / 0.07), as PySlowFast /
    pytorchvideo / InstDisc) and k = 1;
  * linear probe: multinomial logistic regression (scikit-learn) on standardised features;
  * retrieval: test videos query train videos (features centred by the train mean, L2-normalised, cosine);
    R@k = fraction of queries with a same-class video among the top k (VCOP / CoCLR protocol).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from evaluation import feature_cache
from evaluation.registry import METHODS, build_clip_encoder
from shared_utils.cli import ArgumentParser, fail, require_dir, require_file, run_cli
from shared_utils.data import DataWarnings, build_loader, collate_skip_none
from shared_utils.frames import FrameClipDataset, VideoEntry, read_class_index, read_frame_csv
from shared_utils.logger import progress
from shared_utils.transforms import center_crop, resize

RECALL_KS = (1, 5, 10, 20, 50)
FRAME_TEMPLATE = "image_{:05d}.jpg"


@dataclass
class FeatureSet:
    features: torch.Tensor  # N, D (float32, per-video mean of clip features)
    labels: torch.Tensor  # N
    video_ids: list[str]


# --------------------------------------------------------------------------------------------------- extraction


class EvalClipTransform:
    """Deterministic view: short side -> crop_size, center crop, back to uint8 [T, H, W, 3]."""

    def __init__(self, crop_size: int) -> None:
        self.crop_size = crop_size

    def __call__(self, clip: torch.Tensor, rng=None) -> torch.Tensor:
        clip = center_crop(resize(clip, self.crop_size), self.crop_size)  # T, C, H, W
        return clip.permute(0, 2, 3, 1).contiguous()


@torch.no_grad()
def extract_features(
    encoder: torch.nn.Module,
    entries: Sequence[VideoEntry],
    num_clips: int = 10,
    batch_size: int = 4,
    workers: int = 0,
    device: torch.device | str = "cpu",
    template: str = FRAME_TEMPLATE,
    warnings: DataWarnings | None = None,
    desc: str = "features",
    per_clip: bool = False,
) -> FeatureSet:
    """Mean over `num_clips` uniform clips of encoder features, per readable video (per_clip: features [N, K, D],
    one row per clip in temporal order, not averaged)."""
    warnings = warnings if warnings is not None else DataWarnings()
    dataset = FrameClipDataset(
        entries,
        encoder.num_frames,
        encoder.frame_stride,
        mode="test",
        num_clips=num_clips,
        transform=EvalClipTransform(encoder.crop_size),
        template=template,
        warnings=warnings,
    )
    loader = build_loader(dataset, batch_size, workers=workers, collate_fn=collate_skip_none)
    encoder = encoder.to(device).eval()
    feats, labels, ids = [], [], []
    for batch in progress(loader, desc=desc):
        if batch is None:
            continue
        clips, target, index = batch  # B, K, T, H, W, 3
        b, k = clips.shape[:2]
        out = encoder(clips.flatten(0, 1).to(device)).float().view(b, k, -1)
        out = out if per_clip else out.mean(dim=1)
        feats.append(out.cpu())
        labels.append(target)
        ids += [dataset.entries[int(i)].video_id for i in index]
    if not feats:
        fail("no readable video to extract features from")
    return FeatureSet(torch.cat(feats), torch.cat(labels).long(), ids)


# --------------------------------------------------------------------------------------------------- scoring


def knn_predict(
    train: FeatureSet,
    test: FeatureSet,
    k: int = 200,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores [N_test, C] by cosine kNN; k = 1 is the plain nearest neighbour."""
    num_classes = num_classes or int(max(train.labels.max(), test.labels.max())) + 1
    k = min(k, len(train.labels))
    bank = F.normalize(train.features, dim=1)
    scores = []
    for start in range(0, len(test.labels), chunk):
        query = F.normalize(test.features[start : start + chunk], dim=1)
        sim, idx = (query @ bank.T).topk(k, dim=1)
        weight = (sim / temperature).exp() if k > 1 else torch.ones_like(sim)
        votes = torch.zeros(len(query), num_classes)
        votes.scatter_add_(1, train.labels[idx], weight)
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(train: FeatureSet, test: FeatureSet, k: int, temperature: float = 0.07) -> float:
    pred = knn_predict(train, test, k, temperature).argmax(dim=1)
    return 100.0 * (pred == test.labels).float().mean().item()


def linear_probe_predict(train: FeatureSet, test: FeatureSet, c: float = 1.0, seed: int = 0) -> np.ndarray:
    """Test predictions of a multinomial logistic regression trained on standardised train features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(train.labels.tolist())) < 2:
        fail("the linear probe needs at least two classes in the train split")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    classifier.fit(train.features.double().numpy(), train.labels.numpy())
    return classifier.predict(test.features.double().numpy())


def linear_probe_accuracy(train: FeatureSet, test: FeatureSet, c: float = 1.0, seed: int = 0) -> float:
    """Top-1 (percent) of `linear_probe_predict`."""
    pred = linear_probe_predict(train, test, c, seed)
    return 100.0 * float((pred == test.labels.numpy()).mean())


def retrieval_recall(train: FeatureSet, test: FeatureSet, ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """R@k (percent) of test -> train nearest-neighbour retrieval."""
    mean = train.features.mean(dim=0, keepdim=True)
    bank = F.normalize(train.features - mean, dim=1)
    query = F.normalize(test.features - mean, dim=1)
    kmax = min(max(ks), len(train.labels))
    idx = (query @ bank.T).topk(kmax, dim=1).indices
    hits = train.labels[idx] == test.labels[:, None]  # N_test, kmax
    return {f"R@{k}": 100.0 * hits[:, : min(k, kmax)].any(dim=1).float().mean().item() for k in ks}


def score_features(train: FeatureSet, test: FeatureSet, temperature: float = 0.07) -> dict[str, float]:
    results = {
        "knn200_top1": knn_accuracy(train, test, 200, temperature),
        "knn1_top1": knn_accuracy(train, test, 1),
        "linear_top1": linear_probe_accuracy(train, test),
    }
    results.update(retrieval_recall(train, test))
    return results


# --------------------------------------------------------------------------------------------------- CLI


def file_hash(path: str | None) -> str:
    if not path:
        return "random-init"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    parser = ArgumentParser(description="Unified evaluation of a pretrained video encoder", add_help=add_help)
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument(
        "--ckpt", default="", help="pretraining checkpoint; empty = random init of the same architecture"
    )
    parser.add_argument("--list_dir", required=True, help="process_data.write_splits output folder")
    parser.add_argument("--dataset", default="ucf101", choices=("ucf101", "hmdb51"))
    parser.add_argument("--split", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--num_clips", type=int, default=10, help="uniform clips per video, features averaged")
    parser.add_argument("--batch_size", type=int, default=4, help="videos per batch")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to build_clip_encoder (e.g. net=resnet18, img_dim=64)",
    )
    parser.add_argument("--temperature", type=float, default=0.07, help="kNN voting temperature")
    parser.add_argument("--out", default="results", help="folder for results.jsonl, results.md, features cache")
    parser.add_argument("--label", default="", help="row name in the results table (default: method + ckpt)")
    parser.add_argument(
        "--random_init",
        action="store_true",
        help="the baseline: --ckpt's architecture and clip geometry with its weights NOT loaded (random init)",
    )
    parser.add_argument("--no_cache", action="store_true")
    return parser


def parse_overrides(items: Sequence[str]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            fail(f"--override expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def load_split(list_dir: str, dataset: str, split: int) -> tuple[dict, list[str]]:
    """({'train'|'test': (entries, [list files they depend on])}, classes)."""
    folder = require_dir(os.path.join(list_dir, dataset), f"{dataset} split folder")
    class_file = os.path.join(folder, "ClassInd.txt")
    classes = read_class_index(class_file)
    subsets = {}
    for subset in ("train", "test"):
        path = os.path.join(folder, f"{subset}_split{split:02d}.csv")
        entries = read_frame_csv(path, classes)
        if not any(os.path.isdir(e.path) for e in entries):
            fail(f"none of the {len(entries)} frame folders listed in '{path}' exists (e.g. '{entries[0].path}')")
        subsets[subset] = (entries, [class_file, path])
    return subsets, classes


def check_args(args) -> None:
    """One-line errors for values that cannot run, before any model is built or anything is written."""
    for flag, low in (("num_clips", 1), ("batch_size", 1), ("workers", 0)):
        if getattr(args, flag) < low:
            fail(f"--{flag} must be >= {low}, got {getattr(args, flag)}")
    if not args.temperature > 0:
        fail(f"--temperature must be > 0, got {args.temperature}")
    if args.ckpt:
        require_file(args.ckpt, "--ckpt checkpoint")
    require_dir(args.list_dir, "--list_dir")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        fail(f"--out '{args.out}' exists and is not a directory")


def split_features(encoder, split: dict, args, weights_id: str, warnings: DataWarnings) -> tuple[dict, list]:
    """({'train', 'test'}: features, [(path, key, features) to cache]): cached features where the stored key
    matches, else extracted. The caller writes the new caches only once the whole run succeeded."""
    results, fresh = {}, []
    for subset in ("train", "test"):
        entries, list_files = split[subset]
        key = feature_cache.feature_cache_key(
            args, encoder, weights_id, feature_cache.list_digest(list_files, entries), subset, FRAME_TEMPLATE
        )
        path = feature_cache.cache_path(args.out, key)
        blob = None if args.no_cache else feature_cache.load_cached(path, key)
        cached = blob and FeatureSet(blob["features"], blob["labels"], list(blob["video_ids"]))
        if cached is None:
            cached = extract_features(encoder, entries, args.num_clips, args.batch_size, args.workers, args.device,
                                      warnings=warnings, desc=f"{args.method} {subset}")  # fmt: skip
            fresh.append((path, key, cached))
        results[subset] = cached
    return results, fresh


def append_markdown_row(path: str, record: dict) -> None:
    header = (
        "| label | method | dataset/split | clips | kNN-200 | kNN-1 | linear | R@1 | R@5 | R@10 | R@20 | R@50 "
        "| ckpt | date |\n|" + "---|" * 14 + "\n"
    )
    r = record["results"]
    row = (
        f"| {record['label']} | {record['method']} | {record['dataset']}/{record['split']} | {record['num_clips']} "
        f"| {r['knn200_top1']:.1f} | {r['knn1_top1']:.1f} | {r['linear_top1']:.1f} | {r['R@1']:.1f} | {r['R@5']:.1f} "
        f"| {r['R@10']:.1f} | {r['R@20']:.1f} | {r['R@50']:.1f} | {record['ckpt_sha256'][:10]} | {record['date']} |\n"
    )
    new = not os.path.isfile(path)
    with open(path, "a") as handle:
        handle.write(header if new else "")
        handle.write(row)


def plot_results(jsonl_path: str, png_path: str) -> None:
    """Bar chart of kNN-200 / linear / R@1 per evaluated row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(jsonl_path) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    latest = {}
    for rec in records:
        latest[rec["label"]] = rec
    labels = list(latest)
    metrics = ("knn200_top1", "linear_top1", "R@1")
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 4))
    for i, metric in enumerate(metrics):
        ax.bar(x + (i - 1) * 0.27, [latest[lbl]["results"][metric] for lbl in labels], 0.27, label=metric)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("accuracy / recall (%)")
    ax.set_title("Unified evaluation (same clips, same protocol)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def default_label(args) -> str:
    if not args.ckpt:
        return f"{args.method}:random-init"
    name = os.path.basename(args.ckpt)
    return f"{args.method}:{name} random-init" if args.random_init else f"{args.method}:{name}"


def evaluate(args) -> dict:
    """Extract (or load cached) features for train and test, score them, write JSON/markdown/PNG."""
    start = time.time()
    check_args(args)
    split, classes = load_split(args.list_dir, args.dataset, args.split)  # lists and data before the model
    encoder = build_clip_encoder(
        args.method, args.ckpt or None, load_weights=not args.random_init, **parse_overrides(args.override)
    )
    weights_hash = "random-init" if args.random_init else file_hash(args.ckpt or None)
    ckpt_hash = (
        weights_hash + "-" + hashlib.sha1(json.dumps(sorted(args.override) + [args.ckpt]).encode()).hexdigest()[:6]
    )
    warnings = DataWarnings()
    features, fresh = split_features(encoder, split, args, weights_hash, warnings)
    train, test = features["train"], features["test"]
    results = score_features(train, test, args.temperature)
    for path, key, feats in [] if args.no_cache else fresh:
        feature_cache.store(path, key, feats.features, feats.labels, feats.video_ids)
    record = {
        "label": args.label or default_label(args),
        "method": args.method,
        "dataset": args.dataset,
        "split": args.split,
        "num_clips": args.num_clips,
        "ckpt": args.ckpt or None,
        "ckpt_sha256": ckpt_hash,
        "weights": "random init" if args.random_init or not args.ckpt else "checkpoint",
        "overrides": parse_overrides(args.override),
        "protocol": {
            "clip_frames": encoder.num_frames,
            "frame_stride": encoder.frame_stride,
            "resolution": encoder.crop_size,
            "crops": "center (short side -> resolution)",
            "clips": f"{args.num_clips} uniform, features averaged",
            "knn": f"cosine, T={args.temperature}",
            "linear": "logistic regression (C=1) on standardised features",
            "retrieval": "test->train, train-mean centred cosine",
        },
        "videos": {
            "train": len(train.labels),
            "test": len(test.labels),
            "listed_train": len(split["train"][0]),
            "listed_test": len(split["test"][0]),
            "classes": len(classes),
        },
        "data_warnings": warnings.counts(),
        "results": results,
        "seconds": round(time.time() - start, 1),
        "date": datetime.date.today().isoformat(),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.jsonl"), "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
    append_markdown_row(os.path.join(args.out, "results.md"), record)
    plot_results(os.path.join(args.out, "results.jsonl"), os.path.join(args.out, "results.png"))
    summary = warnings.summary()
    if summary:
        print(summary)
    print(json.dumps({"label": record["label"], **{k: round(v, 2) for k, v in results.items()}}))
    return record


def main(argv: Sequence[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    evaluate(args)


if __name__ == "__main__":
    run_cli(main)
