"""VTDL fine-tuning (`python main.py --method ft ...`, spec §8): backbone + classifier initialised from a VTDL
checkpoint, NLL on log-probabilities, SGD with x0.3 steps, one validation clip per video every epoch."""

from __future__ import annotations

import datetime
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils import dist
from shared_utils.checkpoint import CheckpointWriter, RunState, load_checkpoint
from shared_utils.cli import fail, fix_enabled, require_file, run_cli
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
from vtdl import runtime
from vtdl.dataset import FinetuneDataset, TestTransform, TrainTransform, build_reader, read_list
from vtdl.evaluation import classification_metrics, gather_by_index
from vtdl.model import NUM_CLASSES, build_backbone, load_weight, weights_init
from vtdl.opts import get_args_parser, jitter_mode, val_clip_mode


def clip_shape(args) -> tuple[int, int]:
    """(--data_length, --spatial_size) as numbers: the original parsed both as strings."""
    try:
        return int(args.data_length), int(args.spatial_size)
    except ValueError:
        fail("--data_length and --spatial_size must be integers")


def check_common(args) -> None:
    """Flag checks shared by main.py, test.py and feature_extractor.py (one clear line each)."""
    if args.mode not in (None, "rgb"):
        fail(f"--mode {args.mode}: only rgb is supported (the original's flow path was broken, spec §13.23)")
    values = dict(zip(("data_length", "spatial_size"), clip_shape(args), strict=True))
    for flag in ("data_length", "spatial_size", "stride", "epochs", "start_epoch", "workers", "print_freq"):
        low = 0 if flag in ("epochs", "start_epoch", "workers") else 1
        if values.get(flag, getattr(args, flag)) < low:
            fail(f"--{flag} must be >= {low}, got {values.get(flag, getattr(args, flag))}")


def num_classes(args) -> int:
    return NUM_CLASSES[args.dataset]


def build_model(args, with_classifier: bool = True, require_classifier: bool = False) -> nn.Module:
    model = build_backbone(
        args.arch, num_classes(args), with_classifier, args.dropout, args.r2p1d_layers, width_mult=args.width_mult
    )
    model.apply(weights_init)
    if args.weights:
        load_weight(model, args.weights, args.arch, require_classifier=require_classifier)
    return model


def finetune_loss(output: torch.Tensor, target: torch.Tensor, args) -> torch.Tensor:
    """NLL of log-probabilities; log_softmax is a no-op on I3D/R3D outputs (already log-probabilities) and fixes
    the original's NLL on raw R(2+1)D/C3D logits (spec §13.16) unless --raw_logits_nll."""
    output = output.float()
    return F.nll_loss(output if args.raw_logits_nll else F.log_softmax(output, dim=1), target)


def lr_at(epoch: int, args) -> float:
    """lr * 0.3 ** #{s in lr_steps : epoch >= s} (0-based epochs)."""
    return args.lr * 0.3 ** sum(1 for s in args.lr_steps if epoch >= s)


def train_one_epoch(model, loader, optimizer, epoch: int, args, ctx, run: dict) -> dict:
    """One epoch from run['start_iter'] (a run resumed mid-epoch continues its epoch averages). run holds
    'global_step' (optimiser steps so far), 'per_epoch' (iterations of a whole epoch) and 'save' (the latest
    checkpoint mid-epoch); --max_iters sets run['stop'], inside the epoch after writing that checkpoint."""
    model.train()
    logger = MetricLogger(delimiter="  ")
    start = run["start_iter"]
    logger.restore_totals(run.pop("meters", {}) if start else {})
    header = f"Epoch: [{epoch}], lr: {optimizer.param_groups[0]['lr']:.5f}"
    for i, (clips, target, _index) in enumerate(logger.log_every(loader, args.print_freq, header), start):
        if args.iters_per_epoch and i >= args.iters_per_epoch:
            break
        clips, target = runtime.to_device(clips, args, ctx), target.to(ctx.device)
        with ctx.autocast():
            output = model(clips)  # B, num_class
        loss = finetune_loss(output, target, args)
        check_finite(loss, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run["global_step"] += 1
        top1, top3 = accuracy(output.detach().float(), target, (1, 3))
        logger.update(n=clips.shape[0], loss=loss.item(), top1=top1, top3=top3)
        run["stop"] = bool(args.max_iters) and run["global_step"] >= args.max_iters
        run["mid_epoch"] = i + 1 < run["per_epoch"]  # at the epoch's end the epoch-end checkpoint follows
        due = run["stop"] or (args.save_every_iters and run["global_step"] % args.save_every_iters == 0)
        if run["mid_epoch"] and due:
            run["save"](epoch, i + 1, logger)
        if run["stop"]:
            break
    logger.synchronize_between_processes()
    stats = logger.averages()
    print(f"Finetune Training: Top1:{stats.get('top1', 0):.3f} Top3:{stats.get('top3', 0):.3f}")
    return stats


@torch.no_grad()
def evaluate(model, loader, args, ctx) -> dict:
    """One clip per video (val mode); clip = video level here. Prints top-1/3/5, mean-class accuracy, loss."""
    model.eval()
    indices, scores, labels = [], [], []
    for batch in MetricLogger().log_every(loader, args.print_freq, "Test:"):
        if batch is None:
            continue
        clips, target, index = batch
        with ctx.autocast():
            output = model(runtime.to_device(clips, args, ctx)).float()
        scores += list(F.log_softmax(output, 1).cpu())
        indices += index.tolist()
        labels += target.tolist()
    _, stacked, target = gather_by_index(indices, scores, labels)
    result = classification_metrics(stacked.exp(), target, num_classes(args))
    result["loss"] = F.nll_loss(stacked, target).item() if target.numel() else 0.0
    print(
        f"Finetune Eval: Top1:{result['top1']:.3f} Top3:{result['top3']:.3f} Top5:{result['top5']:.3f} "
        f"mean-class:{result['mean_class']:.3f} loss:{result['loss']:.4f} ({result['videos']} videos)"
    )
    return result


def build_finetune_loader(args, ctx, list_path: str, mode: str, warnings: DataWarnings, shuffle: bool):
    entries = read_list(list_path, args.root, args.frame_root)
    length, size = clip_shape(args)
    reader = build_reader(entries, args.image_tmpl, size, warnings)
    transform = TrainTransform(size, jitter_mode(args)) if mode == "train" else TestTransform(size)
    dataset = FinetuneDataset(entries, reader, transform, length, args.stride, mode, val_clip_mode(args))
    batch = runtime.per_rank_batch(args.batch_size, ctx.world_size)
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=args.seed, batch_size=batch)
    workers = runtime.worker_count(args.workers)
    return build_loader(dataset, batch, sampler, workers, collate_fn=collate_skip_none), sampler


# --------------------------------------------------------------------------------------------------- checkpoints


# the original's entries (epoch = epochs done, arch, best_prec1, state_dict) and order; then exact resume's
CHECKPOINT_ORDER = ("epoch", "arch", "best_prec1", "state_dict", "optimizer", "rng", "args", "iteration", "global_step")


def run_state(model, optimizer, **counters) -> RunState:
    """The fine-tuned network as `state_dict` with the original's 'module.base_model.' keys (DataParallel(TCN)),
    the optimizer (the original saved none), and the counters (epoch, best_prec1, iteration, global_step)."""
    prefixes = {"state_dict": "module.base_model."}
    return RunState(
        {"state_dict": model, "optimizer": optimizer}, prefixes=prefixes, optional={"optimizer"}, **counters
    )


def save(writer, model, optimizer, epoch: int, best_prec1: float, is_best: bool, args, ctx, progress=None) -> None:
    """fine_tune_rgb_model_latest.pth.tar in the original layout ('module.base_model.' keys, epoch = epochs
    done) plus the optimizer, every rank's RNG state and `progress` (global_step; mid-epoch also the iteration
    reached in the epoch and the running epoch meters); copied to ..._best.pth.tar when the val accuracy improves,
    as the original (not with --fix report_last). Called on every rank (the RNG gather is a collective; rank r
    resumes from entry r, its own dropout stream)."""
    progress = progress or {}
    counters = {"epoch": epoch, "best_prec1": best_prec1, "iteration": int(progress.get("iteration", 0))}
    run = run_state(model, optimizer, **counters, global_step=int(progress.get("global_step", 0)))
    is_best = is_best and not fix_enabled(args, "report_last")
    extra = {"arch": args.arch, "meters": progress.get("meters") or {}}
    run.save(writer, args, ctx, is_best=is_best, order=CHECKPOINT_ORDER, **extra)


def resume(path: str, model, optimizer, per_epoch: int) -> tuple[int, float, dict]:
    """(epochs done, best top-1, progress: start_iter, global_step, meters) of a fine-tuning checkpoint; the
    original's files (no progress entries) resume at an epoch start, global step = epochs x per_epoch."""
    ckpt = load_checkpoint(path)
    if "state_dict" not in ckpt or "epoch" not in ckpt:
        fail(f"--resume '{path}' is not a fine-tuning checkpoint (needs 'state_dict' and 'epoch')")
    run = run_state(model, optimizer, epoch=0, best_prec1=0.0, iteration=0, global_step=-1)
    run.load(ckpt)
    if run["global_step"] < 0:
        run["global_step"] = run["epoch"] * per_epoch + run["iteration"]
    progress = {"start_iter": run["iteration"], "global_step": run["global_step"], "meters": ckpt.get("meters") or {}}
    print(f"=> resumed '{path}' at epoch {run['epoch']}, iteration {run['iteration']}")
    return run["epoch"], run["best_prec1"], progress


# --------------------------------------------------------------------------------------------------- main


def worker(args, plan) -> None:
    ctx = runtime.setup_process(args, plan)
    try:
        finetune(args, ctx, runtime.launch_date(plan))
    finally:
        dist.cleanup()


def build_training(args, ctx, run_dir: str, per_epoch: int):
    """Model (resumed from --resume or the run folder's latest checkpoint), optimizer, checkpoint writer; returns
    (model wrapped for DDP, optimizer, writer, start epoch, best top-1 so far, run progress)."""
    model = build_model(args).to(ctx.device)
    write_args_json(args, run_dir)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if args.optim == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), args.lr)
    writer = CheckpointWriter(run_dir, "fine_tune_rgb_model_latest.pth.tar", None, "fine_tune_rgb_model_best.pth.tar")
    start_epoch, best_prec1 = args.start_epoch, 0.0
    run = {"start_iter": 0, "global_step": 0, "per_epoch": per_epoch, "stop": False, "mid_epoch": False}
    resume_path = args.resume or (writer.latest() if args.output_dir else None)
    if resume_path:
        start_epoch, best_prec1, progress = resume(resume_path, model, optimizer, per_epoch)
        run.update(progress)
    if ctx.distributed:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.gpu] if ctx.use_cuda else None)
    return model, optimizer, writer, start_epoch, best_prec1, run


def report(last: dict, best_prec1: float, args) -> None:
    if not last:
        return
    final = f"final epoch val Top1 {last['top1']:.3f} Top5 {last['top5']:.3f} mean-class {last['mean_class']:.3f}"
    if fix_enabled(args, "report_last"):
        print(f"reported (--fix report_last): {final}")
    else:  # the original's figure: the best epoch's accuracy, selected on the test split
        print(f"reported: best_prec1 {best_prec1:.3f} (best epoch, chosen on the val list); {final}")


def epoch_record(model, val_loader, train: dict, epoch: int, best_prec1: float, lr: float, args, ctx):
    """The epoch's log record; validation on the eval epochs. Returns (record, val result or {}, is_best, best)."""
    record = {
        "epoch": epoch,
        "lr": lr,
        "train_loss": train.get("loss"),
        "train_top1": train.get("top1"),
        "train_top3": train.get("top3"),
    }
    last, is_best = {}, False
    if (epoch + 1) % args.eval_freq == 0 or epoch == args.epochs - 1:
        last = evaluate(model, val_loader, args, ctx)
        is_best = last["top1"] > best_prec1
        best_prec1 = max(best_prec1, last["top1"])
        record.update({f"val_{k}": v for k, v in last.items() if k != "confusion"})
        record["best_prec1"] = best_prec1
    return record, last, is_best, best_prec1


def finetune(args, ctx, date: str) -> None:
    run_dir = args.output_dir or os.path.join(args.logs_path, f"{args.method}_{date}")
    log_run_header(args)  # args.json once data and weights passed their checks: a failed start writes nothing
    warnings = DataWarnings()
    train_loader, train_sampler = build_finetune_loader(args, ctx, args.train_list, "train", warnings, shuffle=True)
    val_loader, _ = build_finetune_loader(args, ctx, args.val_list, "val", warnings, shuffle=False)
    per_epoch = min(len(train_loader), args.iters_per_epoch) if args.iters_per_epoch else len(train_loader)
    model, optimizer, writer, start_epoch, best_prec1, run = build_training(args, ctx, run_dir, per_epoch)
    tb = make_tb_writer(os.path.join(run_dir, "tb"), enabled=not args.no_tensorboard)
    run["save"] = lambda epoch, iteration, logger: save(
        writer, model, optimizer, epoch, best_prec1, False, args, ctx,
        {"global_step": run["global_step"], "iteration": iteration, "meters": logger.totals()},
    )  # fmt: skip
    last = {}
    for epoch in range(start_epoch, args.epochs):
        tic = time.time()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch, args)
        train_sampler.set_epoch(epoch)
        train_sampler.set_start_iteration(run["start_iter"])
        train = train_one_epoch(model, train_loader, optimizer, epoch, args, ctx, run)
        if run["stop"] and run["mid_epoch"]:  # the latest checkpoint is written; no epoch-end work
            break
        run["start_iter"] = 0
        lr = optimizer.param_groups[0]["lr"]
        record, val, is_best, best_prec1 = epoch_record(model, val_loader, train, epoch, best_prec1, lr, args, ctx)
        last = val or last
        for key in ("train_loss", "train_top1", "val_loss", "val_top1"):
            if record.get(key) is not None:
                tb.add_scalar(key, record[key], epoch)
        append_json_line(os.path.join(run_dir, "log.txt"), record | {"time_s": round(time.time() - tic, 2)})
        save(writer, model, optimizer, epoch + 1, best_prec1, is_best, args, ctx, {"global_step": run["global_step"]})
        remaining = (time.time() - tic) * (args.epochs - epoch - 1)
        print(
            f"best_prec1 is: {best_prec1:.3f} (best epoch on the val list = the test split) "
            f"left time is : {datetime.timedelta(seconds=int(remaining))}"
        )
        dist.barrier()
        if run["stop"]:
            break
    if run["stop"]:
        print(f"stopped at global step {run['global_step']} (--max_iters); the same command without it resumes")
    report(last, best_prec1, args)
    if warnings.summary():
        print(warnings.summary())
    tb.close()


def main(args) -> None:
    if args.method != "ft":
        fail(
            f"--method {args.method}: only 'ft' is implemented; the older pretext tasks (pt, pt_and_ft, spec §7) "
            "are not ported: pretrain VTDL with train_temporal_dis.py"
        )
    check_common(args)
    require_file(args.train_list, "--train_list")
    require_file(args.val_list, "--val_list")
    runtime.start(worker, args, args.gpus)


def cli(argv=None) -> None:
    run_cli(main, get_args_parser().parse_args(argv))


if __name__ == "__main__":
    from vtdl.main import cli as _cli  # spawned workers must find `worker` by module path

    _cli()
