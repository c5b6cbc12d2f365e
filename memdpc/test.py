"""MemDPC evaluation: finetuning / linear probe of the LC classifier, multi-crop test, two-stream fusion.

    cd memdpc && python test.py --gpu 0,1 --net resnet34 --dataset ucf101 --batch_size 16 --img_dim 224 \
        --epochs 500 --train_what ft --schedule 300 400 --pretrain <memdpc checkpoint>
    cd memdpc && python test.py --net resnet34 --dataset ucf101 --img_dim 224 --test <lc checkpoint> --ten_crop
    cd memdpc && python test.py --fuse rgb-prob-ten.json flow-prob-ten.json

(The original lived at eval/test.py; memdpc/eval/test.py still runs it from there.)
"""

from __future__ import annotations

import itertools
import json
import os
import time

import torch
import torch.nn.functional as F

from memdpc import engine
from memdpc.dataset import build_dataset, class_names, read_entries
from memdpc.model import LC, clean_state_dict
from memdpc.opts import get_eval_args_parser
from memdpc.testing import crop_mode, fuse, multicrop_test
from shared_utils import dist
from shared_utils.checkpoint import extract_state_dict, load_checkpoint, load_state_dict_reported, unwrap_model
from shared_utils.cli import fail, fix_enabled, require_file, run_cli
from shared_utils.data import DataWarnings
from shared_utils.logger import MetricLogger, append_json_line, check_finite, write_args_json
from shared_utils.metrics import accuracy
from shared_utils.rng import seed_everything
from shared_utils.width import check_saved_width

NUM_CLASS = {"ucf101": 101, "hmdb51": 51}
SCHEDULE = {"ucf101": [300, 400], "hmdb51": [150, 250]}
FROZEN = ("bone", "agg", "mb", "network_pred")  # linear probe: names containing these are frozen


def num_classes(args) -> int:
    """The dataset's class count, or the count ClassInd.txt lists where that differs (a note says so)."""
    num_class = NUM_CLASS[args.dataset]
    if not args.fuse:
        n_listed = len(class_names(args.csv_root, args.dataset))
        if n_listed != num_class:
            print(f"note: ClassInd.txt lists {n_listed} classes, not {num_class}: using {n_listed}")
            num_class = n_listed
    return num_class


def build_model(args) -> LC:
    if args.model != "lc":
        fail(f"unknown --model '{args.model}' (only 'lc')")
    if args.dataset not in NUM_CLASS:
        fail(f"unknown --dataset '{args.dataset}' for evaluation (choose from: ucf101, hmdb51)")
    return LC(
        args.img_dim,
        args.num_seq,
        args.seq_len,
        args.net,
        args.dropout,
        num_classes(args),
        args.train_what,
        relu_before_pool=not fix_enabled(args, "lc_relu_order"),
        width_mult=args.width_mult,
    )


def load_pretrained(model, path: str) -> None:
    """Backbone + both GRUs from a pretraining checkpoint ('module.' stripped); fails if any of them is missing."""
    ckpt = load_checkpoint(path)
    check_saved_width(ckpt, unwrap_model(model).width_mult, f"--pretrain '{path}'")
    state = clean_state_dict(extract_state_dict(ckpt, ("state_dict", "model")))
    report = load_state_dict_reported(model, state, strict=False, name=f"pretrain '{path}'")
    missing = [k for k in report.missing + [m[0] for m in report.mismatched] if k.startswith(("backbone.", "agg_"))]
    if missing:
        fail(f"--pretrain '{path}' lacks {len(missing)} backbone/GRU weights (e.g. {missing[0]})")
    print(f"=> loaded pretrained checkpoint '{path}' (epoch {ckpt.get('epoch', '?')})")


def param_groups(model, args) -> list[dict]:
    """ft: everything at --lr, what the released code did (its lr/10 name match found nothing; --fix ft_lr gives
    backbone and GRUs the intended lr/10); last: only final_bn + final_fc (the rest frozen); else: one LR."""
    named = list(model.named_parameters())
    if args.train_what == "last":
        for name, param in named:
            param.requires_grad = not any(word in name for word in FROZEN)
        return [{"params": [p for _, p in named if p.requires_grad]}]
    if args.train_what == "ft" and fix_enabled(args, "ft_lr"):
        slow = [p for n, p in named if n.startswith(("backbone.", "agg_"))]
        fast = [p for n, p in named if not n.startswith(("backbone.", "agg_"))]
        return [{"params": slow, "lr": args.lr / 10}, {"params": fast}]
    return [{"params": [p for _, p in named]}]


def set_train_mode(model, args) -> None:
    """Linear probe: backbone and GRUs in eval mode (running BN stats, no GRU dropout); the head trains."""
    model.train()
    if args.train_what == "last":
        model.eval()
        unwrap_model(model).final_bn.train()
        unwrap_model(model).final_fc.train()


def train_one_epoch(model, loader, optimizer, epoch, args, ctx, run) -> dict:
    set_train_mode(model, args)
    metric_logger = MetricLogger()
    metric_logger.restore_totals(run.pop("meters", {}))
    start, total = run["epoch_step"], engine.epoch_steps(loader, args)
    batches = itertools.islice(loader, max(total - start, 0))
    header = f"Epoch: [{epoch}]"
    for i, (block, label, _) in enumerate(
        metric_logger.log_every(batches, args.print_freq, header, total - start), start
    ):
        block, label = block.to(ctx.device, non_blocking=True), label.to(ctx.device, non_blocking=True)
        with ctx.autocast():
            output, _ = model(block)
        logits = output.float().reshape(-1, output.shape[-1])  # B*steps, C (one output step)
        loss = F.cross_entropy(logits, label.repeat_interleave(output.shape[1]))
        check_finite(loss, run["iteration"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run["iteration"] += 1
        values = dist.all_reduce_mean(torch.tensor([loss.item(), accuracy(logits, label, (1,))[0] / 100]))
        metric_logger.update(n=block.shape[0], loss=values[0].item(), accuracy=values[1].item())
        if args.print_freq > 0 and i % args.print_freq == 0:
            run["tb_train"].add_scalar("local/loss", values[0].item(), run["iteration"])
            run["tb_train"].add_scalar("local/accuracy", values[1].item(), run["iteration"])
        stop = engine.stop_inside_epoch(args, run, i + 1 < total)
        if i + 1 < total and (stop or engine.save_due(args, run)):
            meters = metric_logger.totals()
            save(model, optimizer, args, ctx, run, epoch, next_epoch=epoch, epoch_step=i + 1, meters=meters)
        if stop:
            return {}
    run["epoch_step"] = 0
    metric_logger.synchronize_between_processes()
    return {k: metric_logger.meters[k].global_avg for k in ("loss", "accuracy")}


@torch.no_grad()
def validate(model, loader, args, ctx) -> dict:
    model.eval()
    metric_logger = MetricLogger()
    for block, label, _ in metric_logger.log_every(loader, args.print_freq, "Val:"):
        with ctx.autocast():
            output, _ = model(block.to(ctx.device, non_blocking=True))
        logits, label = output.float().reshape(-1, output.shape[-1]).cpu(), label.repeat_interleave(output.shape[1])
        metric_logger.update(
            n=block.shape[0],
            loss=F.cross_entropy(logits, label).item(),
            accuracy=accuracy(logits, label, (1,))[0] / 100,
        )
    metric_logger.synchronize_between_processes()
    return {k: metric_logger.meters[k].global_avg for k in ("loss", "accuracy")}


def save(model, optimizer, args, ctx, run, epoch, next_epoch, epoch_step=0, is_best=False, meters=None) -> None:
    kw = {"epoch_step": epoch_step, "is_best": is_best, "meters": meters}
    engine.save_run(model, optimizer, run["scheduler"], args, ctx, run, epoch, next_epoch, **kw)


def experiment_dir(args, plan) -> str:
    """log_<prefix>/<dataset>-<img>-sp<split>_<net>_lc_bs<total>_lr<lr>_wd<wd>_ds<ds>_seq<N>_len<SL>_dp<dropout>
    _train-<what>[_pt=<pretrain path, '/' -> '-'>] (the original's name)."""
    if args.output_dir:
        return args.output_dir
    if args.resume:
        return os.path.dirname(os.path.dirname(os.path.abspath(args.resume)))
    total = engine.total_batch(args, plan)
    flow = "-flow" if args.modality == "flow" else ""
    name = (
        f"{args.dataset}-{args.img_dim}{flow}-sp{args.split}_{args.net}_{args.model}_bs{total}_lr{args.lr}"
        f"_wd{args.wd}_ds{args.ds}_seq{args.num_seq}_len{args.seq_len}_dp{args.dropout}_train-{args.train_what}"
    )
    if args.pretrain:  # the original appends it for --pretrain random too
        name += "_pt=" + args.pretrain.replace("/", "-")
    return os.path.join(f"log_{args.prefix}", name)


def run_test(model, args, ctx, plan) -> None:
    """--test CKPT (strict load) or --test random, then the multi-crop test."""
    if args.test == "random":
        out_dir, name = experiment_dir(args, plan), "random"
        os.makedirs(out_dir, exist_ok=True)
    else:
        engine.load_model_weights(model, args.test, f"test '{args.test}'")
        out_dir, name = os.path.dirname(os.path.abspath(args.test)), os.path.basename(args.test)
    multicrop_test(model, args, ctx, os.path.join(out_dir, name))


def build_loaders(args, warnings: DataWarnings):
    train_set = build_dataset(args, "train", "eval", warnings)
    val_set = build_dataset(args, "val", "eval", warnings)
    train_loader = engine.make_loader(train_set, args, shuffle=True, seed=args.seed)
    val_loader = engine.make_loader(val_set, args, shuffle=False, seed=args.seed + 1)
    if engine.epoch_steps(train_loader, args) == 0:
        fail(f"{len(train_set)} training videos give no full batch of {args.batch_size} per process")
    print(f"train {len(train_set)} videos; val {len(val_set)} videos (30% of the test split)")
    return train_loader, val_loader


def build_optimizer(model, args):
    optimizer = torch.optim.Adam(param_groups(model, args), lr=args.lr, weight_decay=args.wd)
    milestones = args.schedule or SCHEDULE[args.dataset]
    rule = "x0.1 at every milestone (--fix schedule)" if fix_enabled(args, "schedule") else "the released single drop"
    print(f"LR milestones (epochs) {milestones}, {rule}")
    # Stepped after each epoch with the epoch index, as the original: a drop takes effect one epoch late.
    return optimizer, engine.make_scheduler(optimizer, milestones, args, one_epoch_late=True)


def start_run(model, optimizer, scheduler, args, exp: str) -> tuple[dict, int]:
    """The run's mutable state (resumed from --resume or the folder's latest checkpoint) and the first epoch."""
    run = {"iteration": 0, "best_acc": -1.0, "epoch_step": 0, "scheduler": scheduler}
    run["writer"] = engine.checkpoint_writer(os.path.join(exp, "model"))
    start_epoch = args.start_epoch
    resume_path = args.resume or run["writer"].latest()
    if resume_path:
        restored = engine.resume(resume_path, model, optimizer, scheduler, args)
        start_epoch = restored.pop("start_epoch")
        run.update(restored)
        engine.trim_json_log(os.path.join(exp, "log.txt"), start_epoch)
    img_dir = os.path.join(exp, "img")
    os.makedirs(img_dir, exist_ok=True)
    run["text_log"] = engine.text_log_path(img_dir)
    engine.write_text_log(run["text_log"], json.dumps(vars(args), default=str, sort_keys=True))
    run["tb_train"], run["tb_val"] = engine.tb_writers(img_dir, not args.no_tensorboard)
    return run, start_epoch


def end_epoch(model, optimizer, args, ctx, run, epoch, train_stats, val_stats, exp, start_time) -> None:
    """Best accuracy, TensorBoard, the JSON line, the epoch checkpoint and the original's text log line."""
    is_best = val_stats["accuracy"] > run["best_acc"]
    run["best_acc"] = max(val_stats["accuracy"], run["best_acc"])
    for name in ("loss", "accuracy"):
        run["tb_train"].add_scalar(f"global/{name}", train_stats[name], epoch)
        run["tb_val"].add_scalar(f"global/{name}", val_stats[name], epoch)
    append_json_line(
        os.path.join(exp, "log.txt"),
        {
            "epoch": epoch,
            "iteration": run["iteration"],
            "lr": optimizer.param_groups[-1]["lr"],
            **{f"train_{k}": v for k, v in train_stats.items()},
            **{f"val_{k}": v for k, v in val_stats.items()},
            "best_acc": run["best_acc"],
            "time": round(time.time() - start_time, 2),
        },
    )
    # after the JSON line: a run killed in between resumes before this epoch end and rewrites the line
    save(model, optimizer, args, ctx, run, epoch, next_epoch=epoch + 1, is_best=is_best)
    train, val = (train_stats["loss"], train_stats["accuracy"]), (val_stats["loss"], val_stats["accuracy"])
    engine.report_epoch(run["text_log"], epoch, args.epochs, train, val, time.time() - start_time, digits=4)


def worker(args, plan) -> None:
    ctx = engine.setup_worker(args, plan)
    exp = experiment_dir(args, plan)
    engine.start_logging(args, plan, None)  # args.json (training only) once checkpoint and data passed their checks
    seed_everything(args.seed)
    model = build_model(args).to(ctx.device)
    engine.to_channels_last(model, args)
    seed_everything(args.seed, dist.get_rank())
    if args.test:
        run_test(model, args, ctx, plan)
        dist.cleanup()
        return
    if args.pretrain and args.pretrain != "random":
        load_pretrained(model, args.pretrain)
    warnings = DataWarnings()
    train_loader, val_loader = build_loaders(args, warnings)
    optimizer, scheduler = build_optimizer(model, args)
    ddp_model = engine.wrap_ddp(model, ctx)
    write_args_json(args, exp)
    run, start_epoch = start_run(model, optimizer, scheduler, args, exp)
    for epoch in range(start_epoch, args.epochs):
        start_time = time.time()
        train_loader.sampler.set_epoch(epoch)
        train_loader.sampler.set_start_iteration(run["epoch_step"])
        train_stats = train_one_epoch(ddp_model, train_loader, optimizer, epoch, args, ctx, run)
        if run.get("stop") == "inside":
            break
        val_loader.sampler.set_epoch(epoch)
        val_stats = validate(ddp_model, val_loader, args, ctx)
        scheduler.step()
        end_epoch(model, optimizer, args, ctx, run, epoch, train_stats, val_stats, exp, start_time)
        if run.get("stop"):
            break
    if warnings.summary():
        print(warnings.summary())
    run["tb_train"].close()
    run["tb_val"].close()
    print(f"Training from ep {start_epoch} to {args.epochs} finished; checkpoints in {os.path.join(exp, 'model')}")
    dist.cleanup()


def main(args) -> None:
    if args.fuse:
        fuse(args)
        return
    notes = engine.check_common(args, tuple(NUM_CLASS))
    if args.model != "lc":
        fail(f"unknown --model '{args.model}' (only 'lc')")
    if args.test:
        crop_mode(args)
        if args.test != "random":
            require_file(args.test, "--test checkpoint")
    elif args.resume:
        require_file(args.resume, "--resume checkpoint")
    if args.pretrain and args.pretrain != "random" and not args.test:
        require_file(args.pretrain, "--pretrain checkpoint")
    for subset in ("test",) if args.test else ("train", "test"):  # lists and data checked before anything is written
        read_entries(args, subset, with_labels=True)
    engine.launch(worker, args, notes)


if __name__ == "__main__":
    run_cli(main, get_eval_args_parser().parse_args())
