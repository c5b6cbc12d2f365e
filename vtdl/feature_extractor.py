"""VTDL feature extraction (`python feature_extractor.py --eval_indict feature_extract --method ft ...`).

The backbone (no classifier) loaded from a pretraining checkpoint (`ckpt_epoch_*.pth`, `current.pth`) or a
fine-tuned one; one deterministic centre clip of --data_length frames per video of --val_list (or --train_list
with --feature_split train); features = last conv map averaged over time and space (I3D 1024-d, others 512-d).
Writes ONE float32 array [video_nums, features_dim] to --feature_path (what the README promised; the original
pickled a dict of CUDA tensors), plus <stem>_labels.npy [video_nums] and <stem>_video_ids.txt (list order).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from shared_utils import dist
from shared_utils.cli import require_file, run_cli
from shared_utils.data import DataWarnings, EpochSampler, build_loader, collate_skip_none
from shared_utils.logger import log_run_header, progress
from vtdl import runtime
from vtdl.dataset import FinetuneDataset, TestTransform, build_reader, read_list
from vtdl.evaluation import gather_by_index
from vtdl.main import build_model, check_common, clip_shape
from vtdl.opts import get_args_parser


@torch.no_grad()
def extract(model, loader, args, ctx):
    model.eval()
    indices, feats, labels = [], [], []
    for batch in progress(loader, desc="features"):
        if batch is None:
            continue
        clips, target, index = batch
        with ctx.autocast():
            conv_map = model(runtime.to_device(clips, args, ctx), return_conv=True)  # B, D, T', H', W'
        feats += list(conv_map.float().mean(dim=(2, 3, 4)).cpu())
        indices += index.tolist()
        labels += target.tolist()
    return gather_by_index(indices, feats, labels)


def output_paths(path: str) -> tuple[str, str, str]:
    stem = path[:-4] if path.endswith(".npy") else path
    return stem + ".npy", stem + "_labels.npy", stem + "_video_ids.txt"


def worker(args, plan) -> None:
    ctx = runtime.setup_process(args, plan)
    try:
        run(args, ctx)
    finally:
        dist.cleanup()


def feature_path(args) -> str:
    """--feature_path, or the original's default under experiments/visualization/TSNE."""
    if args.feature_path:
        return args.feature_path
    return os.path.join(
        "..", "experiments", "visualization", "TSNE", f"{args.dataset}_{args.feature_split}_features.npy"
    )


def run(args, ctx) -> None:
    log_run_header(args)
    if not args.weights:
        print("note: no --weights: features of a randomly initialised backbone")
    model = build_model(args, with_classifier=False).to(ctx.device)
    list_path = args.val_list if args.feature_split == "val" else args.train_list
    entries = read_list(list_path, args.root, args.frame_root)
    warnings = DataWarnings()
    length, size = clip_shape(args)
    reader = build_reader(entries, args.image_tmpl, size, warnings)
    dataset = FinetuneDataset(entries, reader, TestTransform(size), length, args.stride, "val")
    batch = runtime.per_rank_batch(args.batch_size, ctx.world_size)
    sampler = EpochSampler(len(dataset), shuffle=False, seed=args.seed)
    loader = build_loader(dataset, batch, sampler, runtime.worker_count(args.workers), collate_fn=collate_skip_none)
    order, feats, labels = extract(model, loader, args, ctx)
    if warnings.summary():
        print(warnings.summary())
    if not dist.is_main_process():
        return
    feat_path, label_path, ids_path = output_paths(feature_path(args))
    os.makedirs(os.path.dirname(os.path.abspath(feat_path)), exist_ok=True)
    np.save(feat_path, feats.numpy().astype(np.float32))
    np.save(label_path, labels.numpy().astype(np.int64))
    with open(ids_path, "w") as handle:
        handle.writelines(entries[i].video_id + "\n" for i in order)
    print(
        f"saved features {tuple(feats.shape)} to {feat_path} (+ {os.path.basename(label_path)}, "
        f"{os.path.basename(ids_path)}); {len(entries) - len(order)} unreadable videos left out"
    )


def main(args) -> None:
    check_common(args)
    require_file(args.val_list if args.feature_split == "val" else args.train_list, f"--{args.feature_split}_list")
    runtime.start(worker, args, args.gpus)


def cli(argv=None) -> None:
    run_cli(main, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    from vtdl.feature_extractor import cli as _cli  # spawned workers must find `worker` by module path

    _cli()
