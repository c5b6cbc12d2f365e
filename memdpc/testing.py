"""Multi-crop video-level testing (spec §6.4) and two-stream late fusion of its per-video JSONs (spec §7).

Each test video is read once; every view (center, five crops, ten = five x flip) is a deterministic crop of those
frames. Per video and view: softmax of the K clips' logits -> mean over steps -> mean over clips; the video score is
the unweighted mean over views. Outputs `<ckpt>-prob-<title>.json` = {video folder: {"mean_prob": [[C]], "label"}}.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

from memdpc import engine
from memdpc.augment import VIEWS, view_transform
from memdpc.dataset import build_dataset, class_names, first_item
from memdpc.opts import scale_interpolation
from shared_utils import dist
from shared_utils.cli import fail, require_file
from shared_utils.data import DataWarnings
from shared_utils.logger import progress
from shared_utils.metrics import accuracy, mean_class_accuracy

TITLES = {"center": ["center"], "five": ["center", "five"], "ten": ["center", "five", "ten"]}


def crop_mode(args) -> str:
    chosen = [m for m in ("center", "five", "ten") if getattr(args, f"{m}_crop")]
    if len(chosen) != 1:
        fail("--test needs exactly one of --center_crop, --five_crop, --ten_crop")
    return chosen[0]


def clips_of_view(frames: torch.Tensor, clip_idx: torch.Tensor, transform, num_seq: int) -> torch.Tensor:
    """frames uint8 [F, C, H, W], clip_idx [K, N*SL] -> normalised clips [K, N, C, SL, d, d]."""
    view = transform(frames, None)  # F, C, d, d
    clips = view[clip_idx]  # K, N*SL, C, d, d
    k, length = clip_idx.shape
    return clips.reshape(k, num_seq, length // num_seq, *view.shape[1:]).transpose(2, 3).contiguous()


@torch.no_grad()
def score_video(model, frames, clip_idx, transforms, args, ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-view video probabilities [V, C], first view's per-clip probabilities [K, C])."""
    # the views' clips go through in shared batches of --test_batch (eval mode: batching changes no clip's output),
    # built one view at a time so that memory stays ~ one view + one batch even for long videos
    logits, pending = [], []

    def flush(final: bool) -> None:
        while pending and (final or sum(len(c) for c in pending) >= args.test_batch):
            batch = torch.cat(pending)
            chunk, rest = batch[: max(args.test_batch, 1)], batch[max(args.test_batch, 1) :]
            pending[:] = [rest] if len(rest) else []
            with ctx.autocast():
                logits.append(model(chunk.to(ctx.device, non_blocking=True))[0].float().cpu())

    for transform in transforms:
        pending.append(clips_of_view(frames, clip_idx, transform, args.num_seq))  # K, N, C, SL, d, d
        flush(final=False)
    flush(final=True)
    prob = F.softmax(torch.cat(logits), dim=2).mean(dim=1)  # V*K, C (mean over the output steps)
    prob = prob.reshape(len(transforms), clip_idx.shape[0], -1)  # V, K, C
    return prob.mean(dim=1), prob[0]


def run_views(model, args, ctx, warnings: DataWarnings) -> tuple[dict, list, list]:
    """Score every readable test video on this rank: {index: (path, label, [V, C])}, clip probs, clip labels."""
    dataset = build_dataset(args, "test", "eval", warnings)
    loader = engine.make_loader(dataset, args, shuffle=False, seed=args.seed, drop_last=False, collate_fn=first_item)
    mode = crop_mode(args)
    transforms = [view_transform(args.img_dim, pos, flip, scale_interpolation(args)) for pos, flip in VIEWS[mode]]
    model.eval()
    videos, clip_probs, clip_labels = {}, [], []
    for item in progress(loader, desc=f"test ({mode}, {len(transforms)} views)"):
        if item is None:
            continue
        frames, clip_idx, label, index = item
        views, first = score_video(model, frames, clip_idx, transforms, args, ctx)
        videos[index] = (dataset.entries[index].path, label, views)
        clip_probs.append(first)
        clip_labels += [label] * first.shape[0]
    return videos, clip_probs, clip_labels


def video_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    top1, top5 = accuracy(probs, labels, (1, 5))
    mean_class = mean_class_accuracy(probs.argmax(1).tolist(), labels.tolist())
    return {"top1": top1, "top5": top5, "mean_class": mean_class, "videos": len(labels)}


def write_prob_json(path: str, paths: list[str], probs: torch.Tensor, labels: torch.Tensor) -> None:
    record = {p: {"mean_prob": [v.tolist()], "label": int(y)} for p, v, y in zip(paths, probs, labels, strict=True)}
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(record, handle)
    os.replace(tmp, path)


def multicrop_test(model, args, ctx, out_prefix: str) -> dict:
    """Run the views, gather over ranks, report center/five/ten accuracies and write the JSONs (rank 0)."""
    warnings = DataWarnings()
    videos, clip_probs, clip_labels = run_views(model, args, ctx, warnings)
    merged: dict = {}
    for part in dist.all_gather_object(videos):
        merged.update(part)
    clip_parts = dist.all_gather_object((clip_probs, clip_labels))
    if not dist.is_main_process():
        return {}
    if not merged:
        fail("no test video could be read")
    order = sorted(merged)
    paths = [merged[i][0] for i in order]
    labels = torch.tensor([merged[i][1] for i in order])
    views = torch.stack([merged[i][2] for i in order])  # videos, V, C
    probs_all = torch.cat([torch.cat(p) for p, _ in clip_parts if p])
    clip_top1, clip_top5 = accuracy(probs_all, torch.tensor(sum((lab for _, lab in clip_parts), [])), (1, 5))
    results = {}
    for title in TITLES[crop_mode(args)]:
        count = {"center": 1, "five": 5, "ten": 10}[title]
        probs = views[:, :count].mean(dim=1)
        results[title] = video_accuracy(probs, labels)
        line = (
            f"[{title}] clip top1 {clip_top1:.2f} top5 {clip_top5:.2f} | video top1 {results[title]['top1']:.2f} "
            f"top5 {results[title]['top5']:.2f} mean-class {results[title]['mean_class']:.2f} "
            f"({len(labels)} videos)"
        )
        print(line)
        engine.write_text_log(out_prefix + "-test.log", line)
    title = crop_mode(args)
    write_prob_json(f"{out_prefix}-prob-{title}.json", paths, views.mean(dim=1), labels)
    with open(f"{out_prefix}-acc-{title}.json", "w") as handle:
        json.dump(results, handle, indent=1)
    print(f"per-video probabilities: {out_prefix}-prob-{title}.json")
    if warnings.summary():
        print(warnings.summary())
    return results


# --------------------------------------------------------------------------------------------------- fusion


def _video_key(path: str) -> str:
    """'<Class>/<video>' of a frame or flow folder, so RGB and flow results of one video meet."""
    return "/".join(os.path.normpath(path).split(os.sep)[-2:])


def _label_lookup(args):
    names = None

    def label_of(path: str, entry: dict) -> int:
        nonlocal names
        if "label" in entry:
            return int(entry["label"])
        if names is None:  # JSONs of the original code carry no label: derive it from the class folder
            names = {n: i for i, n in enumerate(class_names(args.csv_root, args.dataset))}
        return names[os.path.normpath(path).split(os.sep)[-2]]

    return label_of


def fuse(args) -> dict:
    """Equal-weight average of two streams' per-video probabilities; prints and returns the fused accuracy."""
    streams = []
    for path in args.fuse:
        with open(require_file(path, "--fuse input")) as handle:
            streams.append({_video_key(k): (k, v) for k, v in json.load(handle).items()})
    common = sorted(set(streams[0]) & set(streams[1]))
    if not common:
        fail("the two --fuse files share no video")
    label_of = _label_lookup(args)
    probs, labels = [], []
    for key in common:
        (path_a, entry_a), (_, entry_b) = streams[0][key], streams[1][key]
        probs.append((torch.tensor(entry_a["mean_prob"]).flatten() + torch.tensor(entry_b["mean_prob"]).flatten()) / 2)
        labels.append(label_of(path_a, entry_a))
    probs_t, labels_t = torch.stack(probs), torch.tensor(labels)
    result = video_accuracy(probs_t, labels_t)
    only = len(set(streams[0]) ^ set(streams[1]))
    print(
        f"[fused] video top1 {result['top1']:.2f} top5 {result['top5']:.2f} mean-class {result['mean_class']:.2f} "
        f"({len(common)} videos; {only} in only one file, skipped)"
    )
    out = args.fuse_out or os.path.splitext(args.fuse[0])[0] + "-fused.json"
    write_prob_json(out, [streams[0][k][0] for k in common], probs_t, labels_t)
    print(f"fused probabilities: {out}")
    return result
