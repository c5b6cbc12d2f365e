"""MemDPC self-supervised pretraining.

    cd memdpc && python main.py --gpu 0,1 --net resnet18 --dataset ucf101 --batch_size 16 --img_dim 128 --epochs 500

One DDP process per id in --gpu (or torchrun); the contrastive pool is each GPU's own batch, as in the paper.
"""

from __future__ import annotations

import itertools
import json
import os
import time

import torch

from memdpc import engine
from memdpc.dataset import build_dataset, read_entries
from memdpc.model import MemDPC, clean_state_dict
from memdpc.opts import get_args_parser
from shared_utils import dist
from shared_utils.checkpoint import extract_state_dict, load_checkpoint, load_state_dict_reported
from shared_utils.cli import fail, fix_enabled, require_file, run_cli
from shared_utils.data import DataWarnings
from shared_utils.logger import MetricLogger, append_json_line, check_finite, write_args_json
from shared_utils.rng import seed_everything

METRICS = ("loss", "F-top1", "F-top5", "B-top1", "B-top5")
MILESTONES = {"ucf101": [300, 400], "k400": [120, 160]}  # epochs; any other dataset: [1000]


def build_model(args) -> MemDPC:
    if args.model != "memdpc":
        fail(f"unknown --model '{args.model}' (only 'memdpc')")
    return MemDPC(
        args.img_dim,
        args.num_seq,
        args.seq_len,
        args.pred_step,
        args.net,
        args.mem_size,
        cross_gpu_negatives=args.cross_gpu_negatives,
        width_mult=args.width_mult,
    )


def experiment_dir(args, plan) -> str:
    """log_<prefix>/memdpc_<dataset>-<img>_<net>_mem<M>_bs<total>_lr<lr>_seq<N>_pred<P>_len<SL>_ds<ds> (original)."""
    if args.output_dir:
        return args.output_dir
    if args.resume:
        return os.path.dirname(os.path.dirname(os.path.abspath(args.resume)))
    flow = "-flow" if args.modality == "flow" else ""
    total = engine.total_batch(args, plan)
    name = (
        f"memdpc_{args.dataset}-{args.img_dim}{flow}_{args.net}_mem{args.mem_size}_bs{total}_lr{args.lr}"
        f"_seq{args.num_seq}_pred{args.pred_step}_len{args.seq_len}_ds{args.ds}"
    )
    return os.path.join(f"log_{args.prefix}", name)


def step_metrics(loss, losses, accs) -> torch.Tensor:
    """[loss, F-top1, F-top5, B-top1, B-top5] of this step, averaged over ranks (what DataParallel reported)."""
    local = torch.stack([loss.detach().float(), accs[0][0, 0], accs[0][0, 1], accs[1][0, 0], accs[1][0, 1]])
    return dist.all_reduce_mean(local.float().cpu())


def train_one_epoch(model, loader, optimizer, scheduler, epoch, args, ctx, run) -> dict:
    """One pass (or the rest of one, after a mid-epoch resume); returns the epoch averages."""
    model.train()
    metric_logger = MetricLogger()
    metric_logger.restore_totals(run.pop("meters", {}))
    start, total = run["epoch_step"], engine.epoch_steps(loader, args)
    batches = itertools.islice(loader, max(total - start, 0))
    header = f"Epoch: [{epoch}]"
    for i, (block, _, _) in enumerate(metric_logger.log_every(batches, args.print_freq, header, total - start), start):
        block = block.to(ctx.device, non_blocking=True)
        with ctx.autocast():
            loss, losses, accs, _ = model(block)
        check_finite(loss, run["iteration"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        run["iteration"] += 1
        values = step_metrics(loss, losses, accs)
        metric_logger.update(n=block.shape[0], **dict(zip(METRICS, values.tolist(), strict=True)))
        metric_logger.update(lr=optimizer.param_groups[0]["lr"])
        if args.print_freq > 0 and i % args.print_freq == 0:
            for name, value in zip(METRICS, values.tolist(), strict=True):
                run["tb_train"].add_scalar(f"local/{name}", value, run["iteration"])
        stop = engine.stop_inside_epoch(args, run, i + 1 < total)
        if i + 1 < total and (stop or engine.save_due(args, run)):
            meters = metric_logger.totals()
            save(model, optimizer, scheduler, args, ctx, run, epoch, next_epoch=epoch, epoch_step=i + 1, meters=meters)
        if stop:
            return {}
    run["epoch_step"] = 0
    metric_logger.synchronize_between_processes()
    return {name: metric_logger.meters[name].global_avg for name in METRICS}


@torch.no_grad()
def validate(model, loader, args, ctx) -> dict:
    """Validation on the 30% subset with the training augmentation (as the original); eval mode, no grad."""
    model.eval()
    metric_logger = MetricLogger()
    for block, _, _ in metric_logger.log_every(loader, args.print_freq, "Val:"):
        with ctx.autocast():
            loss, losses, accs, _ = model(block.to(ctx.device, non_blocking=True))
        local = torch.stack([loss.float(), accs[0][0, 0], accs[0][0, 1], accs[1][0, 0], accs[1][0, 1]]).cpu()
        metric_logger.update(n=block.shape[0], **dict(zip(METRICS, local.tolist(), strict=True)))
    metric_logger.synchronize_between_processes()
    return {name: metric_logger.meters[name].global_avg for name in METRICS}


def save(model, optimizer, scheduler, args, ctx, run, epoch, next_epoch, epoch_step=0, is_best=False, meters=None):
    """Every rank contributes its RNG state; rank 0 writes (atomically). Epoch ends also write epoch<E>.pth.tar."""
    kw = {"epoch_step": epoch_step, "is_best": is_best, "meters": meters}
    engine.save_run(model, optimizer, scheduler, args, ctx, run, epoch, next_epoch, **kw)


def load_pretrain(model, path: str) -> None:
    """--pretrain: initialise from any MemDPC-layout checkpoint (non-strict, with a printed key report)."""
    state = clean_state_dict(extract_state_dict(load_checkpoint(path), ("state_dict", "model")))
    report = load_state_dict_reported(model, state, strict=False, name=f"pretrain '{path}'")
    if not any(k.startswith("backbone.") for k in report.loaded):
        fail(f"--pretrain '{path}' holds no backbone weights of this architecture")


def build_loaders(args, warnings: DataWarnings):
    """Training and validation loaders (the validation split: 30% of the test list, as the original)."""
    train_set = build_dataset(args, "train", "pretrain", warnings)
    val_set = build_dataset(args, "val", "pretrain", warnings)
    train_loader = engine.make_loader(train_set, args, shuffle=True, seed=args.seed)
    val_loader = engine.make_loader(val_set, args, shuffle=False, seed=args.seed + 1)
    steps = engine.epoch_steps(train_loader, args)
    if steps == 0:
        fail(f"{len(train_set)} training videos give no full batch of {args.batch_size} per process")
    print(f"train {len(train_set)} videos, {steps} iterations/epoch; val {len(val_set)} videos")
    return train_loader, val_loader


def build_optimizer(model, args, steps: int):
    """Adam + the released LR multiplier over iterations (milestones in epochs x iterations per epoch)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.wd)
    milestones = [m * steps for m in MILESTONES.get(args.dataset, [1000])]
    rule = "x0.1 at every milestone (--fix schedule)" if fix_enabled(args, "schedule") else "the released single drop"
    print(f"LR steps (iterations): {milestones}, {rule}")
    return optimizer, engine.make_scheduler(optimizer, milestones, args)


def start_run(model, optimizer, scheduler, args, exp: str) -> tuple[dict, int]:
    """The run's mutable state (resumed from --resume or the folder's latest checkpoint) and the first epoch."""
    run = {"iteration": 0, "best_acc": -1.0, "epoch_step": 0}
    run["writer"] = engine.checkpoint_writer(os.path.join(exp, "model"))
    start_epoch = args.start_epoch
    resume_path = args.resume or run["writer"].latest()
    if args.resume == "" and resume_path:
        print(f"=> found {resume_path}: resuming automatically")
    if resume_path:
        restored = engine.resume(resume_path, model, optimizer, scheduler, args)
        start_epoch = restored.pop("start_epoch")
        run.update(restored)
        engine.trim_json_log(os.path.join(exp, "log.txt"), start_epoch)
    img_dir = os.path.join(exp, "img")
    run["text_log"] = engine.text_log_path(img_dir)
    os.makedirs(img_dir, exist_ok=True)
    engine.write_text_log(run["text_log"], json.dumps(vars(args), default=str, sort_keys=True))
    run["tb_train"], run["tb_val"] = engine.tb_writers(img_dir, not args.no_tensorboard)
    return run, start_epoch


def end_epoch(model, optimizer, scheduler, args, ctx, run, epoch, train_stats, val_stats, exp, start_time) -> None:
    """Best accuracy, TensorBoard, the JSON line, the epoch checkpoint and the original's text log line."""
    val_acc = (val_stats["F-top1"] + val_stats["B-top1"]) / 2
    is_best = val_acc > run["best_acc"]
    run["best_acc"] = max(val_acc, run["best_acc"])
    for name in METRICS:
        run["tb_train"].add_scalar(f"global/{name}", train_stats[name], epoch)
        run["tb_val"].add_scalar(f"global/{name}", val_stats[name], epoch)
    record = {
        "epoch": epoch,
        "iteration": run["iteration"],
        "lr": optimizer.param_groups[0]["lr"],
        "time": round(time.time() - start_time, 2),
        **{f"train_{k}": v for k, v in train_stats.items()},
        **{f"val_{k}": v for k, v in val_stats.items()},
        "best_acc": run["best_acc"],
    }
    append_json_line(os.path.join(exp, "log.txt"), record)
    # after the JSON line: a run killed in between resumes before this epoch end and rewrites the line
    save(model, optimizer, scheduler, args, ctx, run, epoch, next_epoch=epoch + 1, is_best=is_best)
    train, val = (train_stats["loss"], train_stats["F-top1"]), (val_stats["loss"], val_acc)
    engine.report_epoch(run["text_log"], epoch, args.epochs, train, val, time.time() - start_time, digits=6)


def worker(args, plan) -> None:
    ctx = engine.setup_worker(args, plan)
    exp = experiment_dir(args, plan)
    engine.start_logging(args, plan, None)  # args.json once model, checkpoint and data passed their checks
    seed_everything(args.seed)  # the model: same seed on every rank
    model = build_model(args).to(ctx.device)
    if args.pretrain:
        load_pretrain(model, args.pretrain)
    engine.to_channels_last(model, args)
    seed_everything(args.seed, dist.get_rank())  # per-rank stream for dropout from here on
    warnings = DataWarnings()
    train_loader, val_loader = build_loaders(args, warnings)
    optimizer, scheduler = build_optimizer(model, args, engine.epoch_steps(train_loader, args))
    ddp_model = engine.wrap_ddp(model, ctx)
    write_args_json(args, exp)
    run, start_epoch = start_run(model, optimizer, scheduler, args, exp)
    for epoch in range(start_epoch, args.epochs):
        start_time = time.time()
        train_loader.sampler.set_epoch(epoch)
        train_loader.sampler.set_start_iteration(run["epoch_step"])
        train_stats = train_one_epoch(ddp_model, train_loader, optimizer, scheduler, epoch, args, ctx, run)
        if run.get("stop") == "inside":
            break
        val_loader.sampler.set_epoch(epoch)
        val_stats = validate(ddp_model, val_loader, args, ctx)
        end_epoch(model, optimizer, scheduler, args, ctx, run, epoch, train_stats, val_stats, exp, start_time)
        if run.get("stop"):
            break
    if warnings.summary():
        print(warnings.summary())
    run["tb_train"].close()
    run["tb_val"].close()
    print(f"Training from ep {start_epoch} to {args.epochs} finished; checkpoints in {os.path.join(exp, 'model')}")
    dist.cleanup()


def main(args) -> None:
    notes = engine.check_common(args, ("ucf101", "hmdb51", "k400"))
    if args.model != "memdpc":
        fail(f"unknown --model '{args.model}' (only 'memdpc')")
    for flag in ("resume", "pretrain"):
        if getattr(args, flag):
            require_file(getattr(args, flag), f"--{flag} checkpoint")
    for subset in ("train", "test"):  # lists and data checked before anything is written
        read_entries(args, subset, with_labels=False)
    engine.launch(worker, args, notes)


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
