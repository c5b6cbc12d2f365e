"""VideoMoCo evaluation: fine-tune a pretrained query encoder on UCF101 (or HMDB51) and test it with
`--clip_per_video` (10) uniformly spaced clips per video, averaging the clip logits (video-level accuracy).

    python videomoco/eval.py -a r2plus1d_18 --pretrained C/netD/checkpoint_0200.pth.tar DATA
    python videomoco/eval.py -a r2plus1d_18 --pretrained ... --video_dir RAW/UCF-101 --split_dir RAW/ucfTrainTestlist
    python videomoco/eval.py ... --dataset hmdb51 --video_dir HMDB/videos --split_dir HMDB/splits --split all

The released recipe (the default; `--fix bn_train,test_resize` = the older `--protocol standard`): torchvision model, fc -> Linear(512, classes) ~ N(0,
0.01); the pretrained `encoder_q` without its projection head is loaded (missing keys must be exactly fc.*);
all layers are fine-tuned with BatchNorm kept in eval mode; the test clips are center-cropped without resizing.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path[0] = os.path.dirname(sys.path[0])  # run as a script: import the package, not its files

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils import dist, runtime
from shared_utils.checkpoint import (
    CheckpointWriter,
    add_prefix,
    extract_state_dict,
    load_checkpoint,
    load_state_dict_reported,
    plain_args,
    require_checkpoint,
    strip_prefix,
)
from shared_utils.cli import fail, require_dir, run_cli
from shared_utils.data import DataWarnings, EpochSampler, build_loader, collate_skip_none
from shared_utils.logger import (
    MetricLogger,
    append_json_line,
    check_finite,
    log_run_header,
    make_tb_writer,
    write_args_json,
)
from shared_utils.metrics import accuracy
from shared_utils.rng import capture_rng_state, restore_rng_state
from shared_utils.width import check_saved_width
from videomoco.dataset import (
    ClipReader,
    EvalClips,
    hmdb51_split,
    long_enough,
    make_entries,
    metadata_cache,
    ucf101_split,
)
from videomoco.model import pretrained_backbone, video_resnet
from videomoco.opts import SHORT_VIDEO_FIX, fix_on, get_eval_args_parser
from videomoco.train import (
    adjust_learning_rate,
    launch_plan,
    per_process_batch,
    run_dirs,
    setup_worker,
    workers_per_process,
)

# --------------------------------------------------------------------------------------------------- model


def build_eval_model(arch: str, num_class: int, width_mult: float = 1.0) -> nn.Module:
    """The torchvision network (400-way), then fc replaced by Linear(512, num_class) ~ N(0, 0.01), bias 0."""
    model = video_resnet(arch, 400, width_mult)
    model.fc = nn.Linear(model.fc.in_features, num_class)
    model.fc.weight.data.normal_(mean=0.0, std=0.01)
    model.fc.bias.data.zero_()
    return model


def load_pretrained(model: nn.Module, path: str, width_mult: float = 1.0) -> None:
    """Initialise from a D checkpoint (trained at `width_mult`); everything but fc.weight / fc.bias must load."""
    content = load_checkpoint(path)
    check_saved_width(content, width_mult, f"--pretrained '{path}'")
    backbone = pretrained_backbone(extract_state_dict(content, ("state_dict", "model")))
    if not backbone:
        fail(f"'{path}' holds no encoder_q weights (is it a VideoMoCo D checkpoint?)")
    report = load_state_dict_reported(
        model,
        backbone,
        strict=True,
        allow_missing=("fc.weight", "fc.bias"),
        name=f"pretrained '{os.path.basename(path)}'",
    )
    if sorted(report.missing) != ["fc.bias", "fc.weight"]:
        fail(f"pretrained '{path}': expected exactly fc.weight/fc.bias missing, got {report.missing}")


# --------------------------------------------------------------------------------------------------- data


def dataset_paths(args) -> tuple[str, str]:
    """(video folder, split folder): the flags, else the original layout DATA/data and DATA/anno."""
    if args.video_dir is None and args.split_dir is None and args.data is None:
        fail("give the dataset root DIR (with data/ and anno/) or --video_dir and --split_dir")
    video_dir = args.video_dir or os.path.join(args.data, "data")
    split_dir = args.split_dir or os.path.join(args.data, "anno")
    return require_dir(video_dir, "video folder"), require_dir(split_dir, "split folder")


def build_split_data(args, split: int, ckp_dir: str, warnings: DataWarnings):
    """{'train'|'test': (readable entries, number listed, classes)}; the videos of both lists are probed at once."""
    video_dir, split_dir = dataset_paths(args)
    read_split = ucf101_split if args.dataset == "ucf101" else hmdb51_split
    cache = metadata_cache(ckp_dir, args.metadata_cache) if args.data_format == "video" else None
    lists = {mode: read_split(video_dir, split_dir, split, mode == "train", args.data_format, warnings)
             for mode in ("train", "test")}  # fmt: skip
    paths = lists["train"][0] + lists["test"][0]
    if not dist.is_main_process():
        dist.barrier()  # rank 0 probes first and writes the cache
    entries = make_entries(paths, lists["train"][1] + lists["test"][1], args.data_format, args.frame_template,
                           warnings, cache)  # fmt: skip
    if dist.is_main_process():
        dist.barrier()
    entries = long_enough(entries, args.frame_per_clip, warnings, pad=fix_on(args, SHORT_VIDEO_FIX))
    by_path = {entry.path: entry for entry in entries}
    sets = {}
    for mode, (mode_paths, _, classes) in lists.items():
        readable = [by_path[path] for path in mode_paths if path in by_path]
        if not readable:
            fail(f"split {split}: no readable {mode} videos under '{video_dir}'")
        sets[mode] = (readable, len(mode_paths), classes)
    return sets


def build_loaders(args, ctx, sets, warnings: DataWarnings, seed: int):
    reader = ClipReader(args.data_format, args.frame_template, warnings)
    common = dict(reader=reader, fpc=args.frame_per_clip, step=args.step_between_clips, crop=args.crop_size)
    train_set = EvalClips(sets["train"][0], mode="train", repeats=args.train_clips_per_video, seed=seed, **common)
    test_set = EvalClips(
        sets["test"][0],
        mode="test",
        clips_per_video=args.clip_per_video,
        resize_test=fix_on(args, "test_resize"),
        **common,
    )
    batch = max(per_process_batch(args, ctx), 1)
    workers = workers_per_process(args, ctx)
    train_sampler = EpochSampler(len(train_set), shuffle=True, seed=seed, batch_size=batch)
    train_loader = build_loader(train_set, batch, train_sampler, workers)
    test_sampler = EpochSampler(len(test_set), shuffle=False, seed=seed)
    test_loader = build_loader(test_set, 1, test_sampler, workers, collate_fn=collate_skip_none)
    return train_loader, train_sampler, test_loader


# --------------------------------------------------------------------------------------------------- loops


def train_one_epoch(model, loader, optimizer, epoch: int, args, ctx, writer) -> dict:
    # the released recipe keeps BatchNorm in eval mode (pretrained statistics, trained affine parameters)
    model.train(fix_on(args, "bn_train"))
    logger = MetricLogger(delimiter="  ")
    for i, (clips, labels, _) in enumerate(logger.log_every(loader, args.print_freq, f"Epoch: [{epoch}]")):
        clips, labels = clips.to(ctx.device, non_blocking=True), labels.to(ctx.device)
        with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=ctx.amp):
            output = model(clips)  # B, classes
        loss = F.cross_entropy(output.float(), labels)
        check_finite(loss, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        acc1, acc5 = accuracy(output.detach(), labels, (1, 5))
        logger.update(n=clips.shape[0], loss=loss.item(), acc1=acc1, acc5=acc5)
        if i % args.print_freq == 0:
            step = epoch * len(loader) + i
            for name, value in (("loss", loss.item()), ("acc1", acc1), ("acc5", acc5)):
                writer.add_scalar(f"lincls_train/{name}", value, step)
                writer.add_scalar(f"lincls_train_avg/{name}", logger.meters[name].global_avg, step)
            writer.add_scalar("lincls_train_avg/lr", optimizer.param_groups[0]["lr"], step)
    logger.synchronize_between_processes()
    return logger.averages()


@torch.no_grad()
def evaluate(model, loader, args, ctx) -> dict:
    """Video-level (mean of the clip logits) and clip-level top-1/top-5 over every readable test video."""
    model.eval()
    results = {}
    for item in loader:
        if item is None:
            continue
        clips, labels, index = item
        clips = clips.to(ctx.device).flatten(0, 1)  # cpv, 3, T, H, W (one video)
        with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=ctx.amp):
            logits = model(clips).float().cpu()  # cpv, classes
        results[int(index[0])] = (logits, int(labels[0]))
    merged = {}
    for part in dist.all_gather_object(results):
        merged.update(part)
    video_logits = torch.stack([merged[k][0].mean(0) for k in sorted(merged)])
    target = torch.tensor([merged[k][1] for k in sorted(merged)])
    clip_logits = torch.cat([merged[k][0] for k in sorted(merged)])
    clip_target = torch.cat([torch.full((merged[k][0].shape[0],), merged[k][1]) for k in sorted(merged)])
    acc1, acc5 = accuracy(video_logits, target, (1, 5))
    clip1, clip5 = accuracy(clip_logits, clip_target, (1, 5))
    loss = F.cross_entropy(video_logits, target).item()
    return {"acc1": acc1, "acc5": acc5, "clip_acc1": clip1, "clip_acc5": clip5, "loss": loss, "videos": len(merged)}


def report(stats: dict, listed: int) -> None:
    print(f" * Acc@1 {stats['acc1']:.3f} Acc@5 {stats['acc5']:.3f}")
    print(
        f"test: clip Acc@1 {stats['clip_acc1']:.3f} Acc@5 {stats['clip_acc5']:.3f} | video Acc@1 {stats['acc1']:.3f} "
        f"Acc@5 {stats['acc5']:.3f} | loss {stats['loss']:.4f} | {stats['videos']} of {listed} listed videos"
    )


# --------------------------------------------------------------------------------------------------- driver


def setup_model(args, ctx, num_class: int):
    model = build_eval_model(args.arch, num_class, args.width_mult).to(ctx.device)
    if args.pretrained:
        load_pretrained(model, args.pretrained, args.width_mult)
    if args.channels_last and ctx.use_cuda:
        model = model.to(memory_format=torch.channels_last_3d)
    model_ddp = runtime.wrap_ddp(model, ctx)
    optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return model, model_ddp, optimizer


def resume_finetune(path: str, model, optimizer) -> tuple[int, float, int | None]:
    """(start epoch, best acc@1, sampler seed) from a fine-tuning checkpoint."""
    ckpt = load_checkpoint(path)
    state = strip_prefix(extract_state_dict(ckpt, ("state_dict",)), ("module.",))
    load_state_dict_reported(model, state, strict=True, name=f"resume '{os.path.basename(path)}'")
    if "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    rng = ckpt.get("rng")
    if isinstance(rng, list) and len(rng) == dist.get_world_size():
        restore_rng_state(rng[dist.get_rank()])
    print(f"resumed '{path}' at epoch {ckpt.get('epoch', 0)}")
    return int(ckpt.get("epoch", 0)), float(ckpt.get("best_acc1", 0.0)), ckpt.get("sampler_seed")


def save_epoch(ckpt_writer, model, optimizer, epoch: int, best_acc1: float, is_best: bool, seed: int, args, ctx):
    """checkpoint_<epochs done>.pth.tar (only the newest kept) and best_checkpoint.pth.tar, as the original."""
    rng = dist.all_gather_object(capture_rng_state())
    if not dist.is_main_process():
        return
    state = {
        "epoch": epoch + 1,
        "arch": args.arch,
        "state_dict": add_prefix(model.state_dict(), "module."),
        "best_acc1": best_acc1,
        "optimizer": optimizer.state_dict(),
        "sampler_seed": seed,
        "rng": rng,
        "args": plain_args(args, ctx),
    }
    ckpt_writer.save(state, epoch=epoch + 1, is_best=is_best, latest=False)


def fine_tune(args, ctx, split, parts, loaders, start_epoch, best_acc1, seed, ckpt_writer, logs):
    """Epochs from start_epoch: train, test every epoch, checkpoint; parts = (model, DDP model, optimizer)."""
    model, model_ddp, optimizer = parts
    train_loader, train_sampler, test_loader, listed = loaders
    writer = logs["writer"]
    stats = {}
    for epoch in range(start_epoch, args.epochs):
        lr = adjust_learning_rate([optimizer], epoch, args)
        train_sampler.set_epoch(epoch)
        train_loader.dataset.set_epoch(epoch)  # this epoch's distinct clips per video
        train_stats = train_one_epoch(model_ddp, train_loader, optimizer, epoch, args, ctx, writer)
        stats = evaluate(model_ddp, test_loader, args, ctx)
        report(stats, listed)
        for name in ("loss", "acc1", "acc5"):
            writer.add_scalar(f"lincls_val/{name}", stats[name], epoch)
        is_best, best_acc1 = stats["acc1"] > best_acc1, max(best_acc1, stats["acc1"])
        save_epoch(ckpt_writer, model, optimizer, epoch, best_acc1, is_best, seed, args, ctx)
        test_stats = {f"test_{k}": v for k, v in stats.items()}
        record = {"split": split, "epoch": epoch, "lr": lr, **train_stats, **test_stats}
        append_json_line(os.path.join(logs["dir"], "log.txt"), record)
    return {**stats, "best_acc1": best_acc1}


def run_split(args, ctx, split: int, ckp_dir: str, seed: int, logs: dict) -> dict:
    warnings = DataWarnings()
    sets = build_split_data(args, split, ckp_dir, warnings)
    if "writer" not in logs:  # the first split's data passed its checks: now the log folder gets its files
        write_args_json(args, logs["dir"])
        logs["writer"] = make_tb_writer(logs["dir"], enabled=not args.no_tensorboard)
    classes = sets["train"][2]
    num_class = args.num_class or len(classes)
    if num_class < len(classes):
        fail(f"--num_class {num_class} is smaller than the {len(classes)} classes found")
    model, model_ddp, optimizer = setup_model(args, ctx, num_class)
    ckpt_writer = CheckpointWriter(ckp_dir, None, "checkpoint_{epoch:04d}.pth.tar", "best_checkpoint.pth.tar", 1)
    start_epoch, best_acc1 = args.start_epoch, 0.0
    resume_path = args.resume or ckpt_writer.latest()
    if resume_path:
        start_epoch, best_acc1, saved_seed = resume_finetune(resume_path, model, optimizer)
        seed = saved_seed if saved_seed is not None else seed
    train_loader, train_sampler, test_loader = build_loaders(args, ctx, sets, warnings, seed)
    print(f"split {split}: {len(sets['train'][0])} train / {len(sets['test'][0])} test videos, {num_class} outputs")
    if args.evaluate:
        stats = evaluate(model_ddp, test_loader, args, ctx)
        report(stats, sets["test"][1])
    else:
        loaders = (train_loader, train_sampler, test_loader, sets["test"][1])
        parts = (model, model_ddp, optimizer)
        stats = fine_tune(args, ctx, split, parts, loaders, start_epoch, best_acc1, seed, ckpt_writer, logs)
    if warnings.summary():
        print(warnings.summary())
    return stats


def main_worker(args, plan) -> None:
    ctx, seed = setup_worker(args, plan, cudnn_flags=False)
    log_dir, ckp_dir = run_dirs(args, max(per_process_batch(args, ctx), 1))
    log_run_header(args)  # printed now; args.json and TensorBoard once the first split's data passed its checks
    logs: dict = {"dir": log_dir}
    splits = [1, 2, 3] if args.split == "all" else [int(args.split)]
    results = []
    for split in splits:
        split_ckp = ckp_dir if len(splits) == 1 else os.path.join(ckp_dir, f"split_{split}")
        results.append(run_split(args, ctx, split, split_ckp, seed, logs))
    if len(results) > 1:
        mean1 = sum(r["acc1"] for r in results) / len(results)
        mean5 = sum(r["acc5"] for r in results) / len(results)
        print(f"mean over splits {splits}: Acc@1 {mean1:.3f} Acc@5 {mean5:.3f}")
        append_json_line(os.path.join(log_dir, "log.txt"), {"splits": splits, "mean_acc1": mean1, "mean_acc5": mean5})
    if "writer" in logs:
        logs["writer"].close()
    dist.cleanup()


def main(args) -> None:
    dataset_paths(args)
    for path, what in ((args.pretrained, "--pretrained checkpoint"), (args.resume, "--resume checkpoint")):
        if path:
            require_checkpoint(path, what)
    for flag, low in (("batch_size", 1), ("epochs", 0), ("workers", 0), ("frame_per_clip", 1), ("crop_size", 1)):
        if getattr(args, flag) < low:
            fail(f"--{flag} must be >= {low}, got {getattr(args, flag)}")
    runtime.launch(main_worker, args, launch_plan(args))


if __name__ == "__main__":
    run_cli(main, get_eval_args_parser().parse_args())
