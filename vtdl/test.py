"""VTDL video-level test (`python test.py --method ft ... --weights fine_tune_rgb_model_latest.pth.tar`).

--eval_protocol clips (default, what the README promised): --test_clips (10) uniformly spaced clips of
--clip_size frames per video, mean of the softmax scores. --eval_protocol original (spec §9): the whole video is
loaded, windows of --clip_size frames start every 10 frames, only the first two are evaluated and each softmax
is divided by the number of windows. Both print video top-1/top-5 and mean-class accuracy (the original printed
only the latter) and save video_pred.npy, video_labels.npy, confusion.npy and rgbres.npz.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from shared_utils import dist
from shared_utils.cli import fail, require_file, run_cli
from shared_utils.data import DataWarnings, EpochSampler, build_loader, collate_skip_none
from shared_utils.logger import log_run_header, progress, write_args_json
from vtdl import runtime
from vtdl.dataset import FinetuneDataset, TestTransform, build_reader, read_list
from vtdl.evaluation import classification_metrics, gather_by_index
from vtdl.main import build_model, check_common, clip_shape, num_classes
from vtdl.opts import get_args_parser


def original_windows(video: torch.Tensor, model, args, ctx) -> torch.Tensor:
    """video [C, T, H, W] -> scores [C']: windows at 0, 10 only, each softmax / (1 + (T - clip_size) // 10)."""
    total = video.shape[1]
    n_windows = 1 + max(total - args.clip_size, 0) // 10
    scores = 0
    for i in range(min(2, n_windows)):
        window = video[:, i * 10 : i * 10 + args.clip_size].unsqueeze(0)
        with ctx.autocast():
            scores = scores + F.softmax(model(runtime.to_device(window, args, ctx)).float(), 1)[0] / n_windows
    return scores


def multi_clip(clips: torch.Tensor, model, args, ctx) -> torch.Tensor:
    """clips [K, C, L, H, W] -> mean softmax over the K clips, forwarded --batch_size clips at a time."""
    out = []
    for chunk in clips.split(max(args.batch_size, 1)):
        with ctx.autocast():
            out.append(F.softmax(model(runtime.to_device(chunk, args, ctx)).float(), 1))
    return torch.cat(out).mean(0)


@torch.no_grad()
def evaluate(model, loader, args, ctx) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    model.eval()
    indices, scores, labels = [], [], []
    for batch in progress(loader, desc="test"):
        if batch is None:
            continue
        clips, target, index = batch
        for video, y, i in zip(clips, target.tolist(), index.tolist(), strict=True):
            score = (
                original_windows(video, model, args, ctx)
                if args.eval_protocol == "original"
                else multi_clip(video, model, args, ctx)
            )
            indices.append(i)
            scores.append(score.cpu())
            labels.append(y)
    return gather_by_index(indices, scores, labels)


def save_results(out_dir: str, dataset, order, scores, labels, result: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    pred = scores.argmax(1).numpy()
    np.save(os.path.join(out_dir, "video_pred.npy"), pred)
    np.save(os.path.join(out_dir, "video_labels.npy"), labels.numpy())
    np.save(os.path.join(out_dir, "confusion.npy"), result["confusion"])
    paths = [dataset.entries[i].path for i in order]
    by_path = np.argsort(paths, kind="stable")
    np.savez(
        os.path.join(out_dir, "rgbres.npz"),
        scores=scores.numpy()[by_path],
        labels=labels.numpy()[by_path],
        paths=np.array(paths)[by_path],
    )
    with open(os.path.join(out_dir, "test_results.json"), "w") as handle:
        json.dump({k: v for k, v in result.items() if k != "confusion"}, handle, indent=2)


def worker(args, plan) -> None:
    ctx = runtime.setup_process(args, plan)
    try:
        run_test(args, ctx, runtime.launch_date(plan))
    finally:
        dist.cleanup()


def run_test(args, ctx, date: str) -> None:
    out_dir = args.output_dir or os.path.join("..", "experiments", "evaluation", args.dataset, date)
    log_run_header(args)  # args.json with the results: a run that fails its checks writes nothing
    model = build_model(args, require_classifier=True).to(ctx.device)
    entries = read_list(args.val_list, args.root, args.frame_root)
    warnings = DataWarnings()
    data_length, size = clip_shape(args)
    reader = build_reader(entries, args.image_tmpl, size, warnings)
    original = args.eval_protocol == "original"
    length = data_length if original else args.clip_size
    dataset = FinetuneDataset(
        entries,
        reader,
        TestTransform(size),
        length,
        args.stride,
        "full" if original else "clips",
        num_clips=args.test_clips,
    )
    sampler = EpochSampler(len(dataset), shuffle=False, seed=args.seed)
    loader = build_loader(dataset, 1, sampler, runtime.worker_count(args.workers), collate_fn=collate_skip_none)
    order, scores, labels = evaluate(model, loader, args, ctx)
    result = classification_metrics(scores, labels, num_classes(args))
    result |= {
        "protocol": args.eval_protocol,
        "clips": 2 if original else args.test_clips,
        "clip_size": args.clip_size,
        "unreadable": len(dataset) - result["videos"],
    }
    print(
        f"video-level ({args.eval_protocol}): Top1 {result['top1']:.3f}  Top5 {result['top5']:.3f}  "
        f"mean-class Accuracy {result['mean_class']:.2f}%  ({result['videos']} videos)"
    )
    if warnings.summary():
        print(warnings.summary())
    if dist.is_main_process():
        write_args_json(args, out_dir)
        save_results(out_dir, dataset, order, scores, labels, result)
        print(f"results saved to {out_dir}")


def main(args) -> None:
    check_common(args)
    if not args.weights:
        fail("--weights is required: a fine-tuned checkpoint (fine_tune_rgb_model_*.pth.tar)")
    require_file(args.val_list, "--val_list")
    if args.test_clips < 1 or args.clip_size < 1:
        fail("--test_clips and --clip_size must be positive")
    runtime.start(worker, args, args.gpus)


def cli(argv=None) -> None:
    run_cli(main, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    from vtdl.test import cli as _cli  # spawned workers must find `worker` by module path

    _cli()
