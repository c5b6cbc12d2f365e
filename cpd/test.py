"""Fine-tuning on UCF101 / HMDB51 (--phase finetuning): full fine-tuning or a linear probe (--ft_begin_index 5),
ReduceLROnPlateau on the validation top-1, and the 30-view video-level test writing `{result_path}/val.json`."""

from __future__ import annotations

import json
import os
import time

import torch
import torch.nn.functional as F

from cpd import utils
from cpd.dataset import UcfHmdb
from cpd.model import build_visual_encoder
from cpd.opts import fix_on
from cpd.resnet import fine_tuning_parameters
from shared_utils import dist
from shared_utils.checkpoint import extract_state_dict, load_checkpoint, load_state_dict_reported, strip_prefix
from shared_utils.cli import fail
from shared_utils.data import DataWarnings, EpochSampler, build_loader, collate_skip_none
from shared_utils.logger import (
    MetricLogger,
    append_json_line,
    check_finite,
    log_run_header,
    progress,
)
from shared_utils.metrics import VideoScoreAggregator, accuracy
from shared_utils.rng import seed_everything
from shared_utils.width import check_saved_width


def load_pretrained_visual(model, path: str) -> None:
    """Initialise the ResNet from a CPD checkpoint: keep the `visual_encoder.` entries (prefix removed); only
    `fc.*` may be missing. A bare ResNet checkpoint (fine-tuned, or features) loads too."""
    content = load_checkpoint(path)
    check_saved_width(content, getattr(model, "width_mult", 1.0), f"--pretrain_path '{path}'")
    state = strip_prefix(extract_state_dict(content, ("state_dict", "model")), ("module.",))
    visual = {k[len("visual_encoder.") :]: v for k, v in state.items() if k.startswith("visual_encoder.")}
    if visual:
        state = visual
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_state_dict_reported(model, state, strict=True, allow_missing=("fc.",), name=f"pretrained '{path}'")


def train_one_epoch(model, loader, optimizer, epoch, args, ctx, state, batch_log):
    model.train()
    logger = MetricLogger()
    for i, batch in enumerate(logger.log_every(loader, args.print_frq, f"Epoch: [{epoch}]"), start=state["start_iter"]):
        if batch is None:
            continue
        clips, target = batch[0].to(ctx.device, non_blocking=True), batch[1].to(ctx.device)  # B,3,T,S,S / B
        with ctx.autocast():
            logits = model(clips)
        loss = F.cross_entropy(logits.float(), target)
        check_finite(loss, state["global_step"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], args.clip_gradient)
        optimizer.step()
        state["global_step"] += 1
        acc1, acc5 = accuracy(logits.float(), target, (1, 5))
        logger.update(n=target.shape[0], loss=loss.item(), acc1=acc1, acc5=acc5)
        logger.update(lr=optimizer.param_groups[0]["lr"])
        if i % args.print_frq == 0:
            batch_log.log(
                {
                    "epoch": epoch,
                    "batch": i + 1,
                    "iter": state["global_step"],
                    "loss": loss.item(),
                    "acc": acc1,
                    "lr": optimizer.param_groups[0]["lr"],
                }
            )
        if args.save_every_iters and state["global_step"] % args.save_every_iters == 0:
            state["save"](epoch, i + 1)
        if args.max_iters and state["global_step"] >= args.max_iters:
            state["save"](epoch, i + 1)  # the latest state first: a later run resumes exactly
            state["stop"] = True
            break
        if args.iters_per_epoch and i + 1 >= args.iters_per_epoch:
            break
    logger.synchronize_between_processes()
    return {k: m.global_avg for k, m in logger.meters.items()}


@torch.no_grad()
def gather_predictions(model, loader, args, ctx, max_iters: int = 0):
    """Logits and dataset indices of every item, all ranks gathered, each index once (the sampler pads)."""
    model.eval()
    logits, indices = [], []
    for n, batch in enumerate(progress(loader, desc="evaluation")):
        if batch is None:
            continue
        with ctx.autocast():
            logits.append(model(batch[0].to(ctx.device)).float().cpu())
        indices.append(batch[2])
        if max_iters and n + 1 >= max_iters:
            break
    parts = dist.all_gather_object(
        (
            torch.cat(logits) if logits else torch.zeros(0),
            torch.cat(indices) if indices else torch.zeros(0, dtype=torch.long),
        )
    )
    seen, out_logits, out_idx = set(), [], []
    for part_logits, part_idx in parts:
        for row, index in zip(part_logits, part_idx.tolist()):
            if index not in seen:
                seen.add(index)
                out_logits.append(row)
                out_idx.append(index)
    return (torch.stack(out_logits) if out_logits else torch.zeros(0)), out_idx


def validate(model, loader, dataset, args, ctx) -> dict[str, float]:
    logits, idx = gather_predictions(model, loader, args, ctx, args.max_val_iters)
    if not idx:
        return {"acc1": 0.0, "acc5": 0.0}
    target = torch.tensor([dataset.labels[i] for i in idx])
    acc1, acc5 = accuracy(logits, target, (1, 5))
    return {"acc1": acc1, "acc5": acc5, "loss": F.cross_entropy(logits, target).item()}


def run_test(model, args, ctx, warnings, filename: str | None = None) -> dict[str, float]:
    """num_test_clips x num_test_crops views per validation video; raw logits averaged per video; writes
    {result_path}/{test_subset}.json (or `filename`) = {"results": {stem: [{"label", "score"} x top-5]}}."""
    dataset = UcfHmdb(
        args.video_path,
        args.dataset_file,
        "validation",
        "test",
        utils.num_frames(args),
        args.stride_size,
        args.sample_size,
        args.num_test_clips,
        args.num_test_crops,
        warnings=warnings,
    )
    batch, workers = utils.per_process(args)
    sampler = EpochSampler(len(dataset), shuffle=False, seed=args.manual_seed)
    loader = build_loader(dataset, batch, sampler, workers, collate_skip_none)
    logits, idx = gather_predictions(model, loader, args, ctx)
    if not dist.is_main_process():
        return {}
    videos = [i // dataset.views for i in idx]
    labels = [dataset.labels[v] for v in videos]
    clip1, clip5 = accuracy(logits, torch.tensor(labels), (1, 5)) if idx else (0.0, 0.0)
    agg = VideoScoreAggregator()
    agg.add(videos, logits, labels)
    video = agg.compute((1, 5))
    results = {}
    for v, scores in agg.video_scores().items():
        top = scores.topk(min(5, scores.numel()))
        results[dataset.videos[v][0]] = [
            {"label": dataset.classes[c], "score": float(s)} for s, c in zip(top.values.tolist(), top.indices.tolist())
        ]
    path = os.path.join(args.result_path, filename or f"{args.test_subset}.json")
    with open(path + ".tmp", "w") as handle:
        json.dump({"results": results}, handle)
    os.replace(path + ".tmp", path)
    missing = len(dataset.videos) - len(results)
    print(
        f"test: clip top1 {clip1:.2f} top5 {clip5:.2f} | video top1 {video['top1']:.2f} top5 {video['top5']:.2f} "
        f"| {len(results)} videos ({missing} unreadable), {len(idx)} views -> {path}"
    )
    return {"clip_top1": clip1, "clip_top5": clip5, "video_top1": video["top1"], "video_top5": video["top5"]}


def build_finetuning(args, ctx):
    """ResNet with the new head built BEFORE any DDP wrapping (seeded, identical on every rank), the pretrained
    visual weights, the trainable parameters (--ft_begin_index) and SGD + ReduceLROnPlateau."""
    model = build_visual_encoder(args, n_classes=args.n_finetune_classes)
    if args.pretrain_path:
        load_pretrained_visual(model, args.pretrain_path)
    params = fine_tuning_parameters(model, args.ft_begin_index)
    model.to(ctx.device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(params, lr=args.learning_rate, momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, "max", factor=args.lr_factor, patience=args.lr_patience, min_lr=1e-6
    )
    return model, optimizer, scheduler


def build_datasets(args, warnings):
    """(training set or None with --no_train, validation set or None with --no_val)."""
    nf = utils.num_frames(args)
    train_set = val_set = None
    if not args.no_train:
        train_set = UcfHmdb(
            args.video_path,
            args.dataset_file,
            "training",
            "train",
            nf,
            args.stride_size,
            args.sample_size,
            warnings=warnings,
        )
        if len(train_set) == 0:
            fail(f"--dataset_file '{args.dataset_file}' lists no 'training' video found under {args.video_path}")
        if len(train_set.classes) > args.n_finetune_classes:
            fail(
                f"--dataset_file has {len(train_set.classes)} classes but --n_finetune_classes is "
                f"{args.n_finetune_classes}"
            )
    if not args.no_val:
        val_set = UcfHmdb(
            args.video_path,
            args.dataset_file,
            "validation",
            "val",
            nf,
            args.stride_size,
            args.sample_size,
            center=fix_on(args, "center_val"),
            warnings=warnings,
            verbose=False,
        )
    return train_set, val_set


def build_loaders(args, train_set, val_set, batch: int, workers: int) -> dict:
    """{'train': (sampler, loader), 'val': (sampler, loader)} for the sets that exist."""
    loaders = {}
    if train_set is not None:
        sampler = EpochSampler(len(train_set), shuffle=True, seed=args.manual_seed, drop_last=True, batch_size=batch)
        loaders["train"] = sampler, build_loader(train_set, batch, sampler, workers, collate_skip_none, drop_last=True)
    if val_set is not None:
        val_sampler = EpochSampler(len(val_set), shuffle=False, seed=args.manual_seed)
        loaders["val"] = val_sampler, build_loader(val_set, batch, val_sampler, workers, collate_skip_none)
    return loaders


def train_epoch(ddp_model, loaders, optimizer, epoch, args, ctx, state, logs) -> dict:
    sampler, loader = loaders["train"]
    sampler.set_epoch(epoch)
    sampler.set_start_iteration(state["start_iter"])
    t0 = time.time()
    stats = train_one_epoch(ddp_model, loader, optimizer, epoch, args, ctx, state, logs["batch"])
    if state.get("stop"):  # --max_iters inside the epoch: no epoch-end logs
        return stats
    state["start_iter"] = 0
    stats["epoch_time"] = time.time() - t0
    lr = optimizer.param_groups[0]["lr"]
    logs["train"].log({"epoch": epoch, "loss": stats.get("loss", 0), "acc": stats.get("acc1", 0), "lr": lr})
    logs["writer"].add_scalar("scalar/train_loss", stats.get("loss", 0), epoch)
    logs["writer"].add_scalar("scalar/train_acc", stats.get("acc1", 0), epoch)
    return stats


def val_epoch(ddp_model, loaders, val_set, epoch, args, ctx, logs) -> dict:
    val_sampler, val_loader = loaders["val"]
    val_sampler.set_epoch(epoch)  # a new random clip/crop per epoch (as the original), reproducible
    val_stats = validate(ddp_model, val_loader, val_set, args, ctx)
    print(f"Epoch [{epoch}] validation: top1 {val_stats['acc1']:.2f} top5 {val_stats['acc5']:.2f}")
    logs["val"].log({"epoch": epoch, **val_stats})
    logs["writer"].add_scalar("scalar/val_acc1", val_stats["acc1"], epoch)
    logs["writer"].add_scalar("scalar/val_acc5", val_stats["acc5"], epoch)
    return val_stats


def main_finetuning(args, plan):
    ctx = utils.init_process(args, plan)
    seed_everything(args.manual_seed)  # same head on every rank (the original's heads differed per rank)
    log_run_header(args)  # opts.json once data, model and checkpoint passed their checks
    batch, workers = utils.per_process(args)
    warnings = DataWarnings()
    model, optimizer, scheduler = build_finetuning(args, ctx)
    seed_everything(args.manual_seed, ctx.rank)  # per-rank streams for dropout; a resume restores them
    begin_epoch, start_iter, global_step = 1, 0, 0
    resume = utils.resume_file(args)
    if resume:
        ckpt = utils.load_model_state(resume, model, name=f"resume '{resume}'")
        if not args.no_train:
            begin_epoch, start_iter, global_step = utils.restore_training(ckpt, optimizer, scheduler)
            print(f"resumed from {resume}: epoch {begin_epoch}, iteration {start_iter}")
    ddp_model = utils.wrap_ddp(model, ctx)
    train_set, val_set = build_datasets(args, warnings)
    loaders = build_loaders(args, train_set, val_set, batch, workers)
    logs = utils.build_run_logs(args, ctx.rank, ["acc1", "acc5"])
    state = {"global_step": global_step, "start_iter": start_iter}

    def save(epoch, iteration, name="checkpoint.pth"):
        path = os.path.join(args.result_path, name)
        utils.save_state(path, model, optimizer, epoch, iteration, state["global_step"], args, ctx, scheduler=scheduler)

    state["save"] = save
    for epoch in range(begin_epoch, args.n_epochs + 1):
        if args.no_train and args.no_val:
            break
        stats = {}
        if not args.no_train:
            stats = train_epoch(ddp_model, loaders, optimizer, epoch, args, ctx, state, logs)
            if state.get("stop"):
                print(utils.STOPPED.format(state["global_step"]))
                break
        if not args.no_val:
            val_stats = val_epoch(ddp_model, loaders, val_set, epoch, args, ctx, logs)
            stats.update({f"val_{k}": v for k, v in val_stats.items()})
            if not args.no_train:
                scheduler.step(val_stats["acc1"])
        if args.no_train:
            break
        save(epoch + 1, 0)
        if epoch % args.checkpoint == 0 or epoch == args.n_epochs:
            save(epoch + 1, 0, f"save_{epoch}.pth")
        append_json_line(os.path.join(args.result_path, "log.txt"), {"epoch": epoch, **stats})
    if args.test:
        test_stats = run_test(ddp_model, args, ctx, warnings)
        append_json_line(os.path.join(args.result_path, "log.txt"), {"test": test_stats})
    if warnings.total():
        print(warnings.summary())
    logs["writer"].close()
    dist.cleanup()
