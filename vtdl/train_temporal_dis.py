"""VTDL pretraining (the original `train_temporal_dis.py`, spec §6): MoCo with a same-video temporal negative
and TCA on the query. Run from anywhere: `python vtdl/train_temporal_dis.py --softmax --moco ...`;
`--gpus 0,1` or torchrun for DDP (the batch size is global)."""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch

from shared_utils import dist
from shared_utils.checkpoint import CheckpointWriter, RunState, StatePart, load_checkpoint, unwrap_model
from shared_utils.cli import fail, require_file, run_cli
from shared_utils.data import DataWarnings, EpochSampler, build_loader
from shared_utils.logger import (
    MetricLogger,
    append_json_line,
    check_finite,
    log_run_header,
    make_tb_writer,
    write_args_json,
)
from shared_utils.rng import derive_seed
from shared_utils.runtime import wrap_ddp
from shared_utils.split_bn import check_bn_splits
from vtdl import runtime
from vtdl.dataset import PretrainDataset, TrainTransform, build_reader, read_list
from vtdl.loss import NCECriterion, NCESoftmaxLoss, ins_prob, positive_probability
from vtdl.model import VTDL, build_backbone, weights_init
from vtdl.opts import get_pretrain_args_parser, jitter_mode, start_range_len
from vtdl.tca import tca


def compute_loss(model, criterion, anchor, positive, negative, tca_rng, args, ctx):
    """One VTDL step's loss and logits (spec §6.2): TCA on the anchor, then the VTDL module (q and the temporal
    negative n from the query encoder with gradient, k from the key encoder with shuffle-BN, the queue)."""
    if not args.no_tca:
        anchor = tca(anchor, tca_rng, args.tca_lambda)
    with ctx.autocast():
        logits = model(anchor, positive, None if args.no_temporal_negative else negative)  # B, K + 1 (+ 1)
    return criterion(logits), logits


def adjust_learning_rate(optimizer, epoch: int, args) -> float:
    """base * rate ** (number of decay epochs strictly below the current 1-based epoch)."""
    steps = int(np.sum(epoch > np.asarray([int(e) for e in args.lr_decay_epochs.split(",") if e.strip()])))
    lr = args.learning_rate * args.lr_decay_rate**steps
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def train_one_epoch(state, loader, epoch: int, start_iter: int, args, ctx) -> str:
    """Iterate one epoch (from start_iter when resuming mid-epoch). Returns 'done' or 'stop' (--max_iters)."""
    model = state["model"]
    logger = MetricLogger(delimiter="  ")
    logger.restore_totals(state.pop("resumed_meters", {}) if start_iter else {})
    header = f"TemporalDis Train: [{epoch}]"
    model.train()  # the key encoder too: the original's eval mode except BN, i.e. batch statistics
    for it, (inputs, _label, _index) in enumerate(logger.log_every(loader, args.print_freq, header), start_iter):
        if args.iters_per_epoch and it >= args.iters_per_epoch:
            break
        anchor, positive, negative = (runtime.to_device(x, args, ctx) for x in inputs)
        tca_rng = np.random.RandomState(derive_seed("tca", args.seed, epoch, it, ctx.rank) % 2**32)
        loss, logits = compute_loss(model, state["criterion"], anchor, positive, negative, tca_rng, args, ctx)
        check_finite(loss, state["global_step"])
        state["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        state["optimizer"].step()
        unwrap_model(model).momentum_update()
        state["global_step"] += 1
        logger.update(
            n=anchor.shape[0],
            loss=loss.item(),
            prob=dist.all_reduce_mean(ins_prob(logits)),
            p_pos=dist.all_reduce_mean(positive_probability(logits)),
        )
        logger.update(lr=state["optimizer"].param_groups[0]["lr"])
        state["meters"] = logger
        if args.save_every_iters and state["global_step"] % args.save_every_iters == 0:
            save(state, args, ctx, epoch - 1, it + 1)
        if args.max_iters and state["global_step"] >= args.max_iters:
            save(state, args, ctx, epoch - 1, it + 1)
            return "stop"
    logger.synchronize_between_processes()
    state["meters"] = logger
    return "done"


# --------------------------------------------------------------------------------------------------- checkpoints


# the original's entries first, in its order; then what exact resume needs
CHECKPOINT_ORDER = ("opt", "args", "model", "model_ema", "contrast", "contrast_index", "optimizer", "epoch")


def run_state(state, epochs_done: int = 0, iteration: int = 0) -> RunState:
    """The run's parts under the original's keys: the query encoder as `model` and the key encoder as `model_ema`
    ('module.' keys, as the original's DataParallel wrote them), the queue buffers as `contrast`; the queue
    pointer (lost by the original) as `contrast_index`; the optimizer; epoch = epochs done."""
    moco = unwrap_model(state["model"])
    parts = {
        "model": moco.encoder_q,
        "model_ema": moco.encoder_k,
        "contrast": StatePart(moco.contrast_state_dict, moco.load_contrast_state_dict),
        "contrast_index": StatePart(lambda: moco.index, lambda index: setattr(moco, "index", int(index))),
        "optimizer": state["optimizer"],
    }
    prefixes = {"model": "module.", "model_ema": "module."}
    counters = {"epoch": epochs_done, "iteration": iteration, "global_step": state["global_step"]}
    return RunState(parts, prefixes=prefixes, optional={"contrast_index"}, **counters)


def save(state, args, ctx, epochs_done: int, iteration: int = 0, epoch_file: bool = False) -> None:
    """current.pth (+ ckpt_epoch_{e}.pth) in the original format, plus what exact resume needs (every rank's RNG,
    the running epoch meters). Called on every rank: the RNG gather is a collective."""
    meters = state["meters"].totals() if iteration and "meters" in state else {}
    run_state(state, epochs_done, iteration).save(
        state["writer"],
        args,
        ctx,
        epoch=epochs_done if epoch_file else None,
        arg_keys=("opt", "args"),
        order=CHECKPOINT_ORDER,
        meters=meters,
    )


def resume(state, path: str) -> tuple[int, int]:
    """Restore everything from a pretraining checkpoint (ours or the original's); returns (next epoch, iter)."""
    ckpt = load_checkpoint(path)
    for key in ("model", "model_ema", "contrast", "optimizer", "epoch"):
        if key not in ckpt:
            fail(f"--resume '{path}' is not a pretraining checkpoint (no '{key}')")
    run = run_state(state)
    run.load(ckpt)
    state["global_step"] = run["global_step"]
    state["resumed_meters"] = ckpt.get("meters") or {}
    if not ckpt.get("rng"):
        print("note: checkpoint without queue pointer / RNG state (original format): the queue restarts at row 0")
    print(f"=> resumed '{path}' (epochs done {run['epoch']}, iteration {run['iteration']})")
    return run["epoch"] + 1, run["iteration"]


# --------------------------------------------------------------------------------------------------- main


def run_dirs(args, date: str) -> tuple[str, str]:
    """(checkpoint dir, tensorboard dir): --output_dir, else the original's date-stamped layout
    {experiments_root}/TemporalDis/{dataset}/{models,tensorboard}/{mm-dd-HHMM}[_warm][_amp_O2]_aug_{aug}."""
    if args.output_dir:
        return args.output_dir, os.path.join(args.output_dir, "tb")
    run = date + ("_warm" if args.warm else "")
    run += (f"_amp_{args.opt_level}" if args.amp else "") + f"_aug_{args.aug}"
    base = os.path.join(args.experiments_root, "TemporalDis", args.dataset)
    return os.path.join(base, "models", run), os.path.join(base, "tensorboard", run)


def build_state(args, ctx, n_data: int) -> dict:
    """The VTDL module (original init, key encoder = copy of the query encoder, queue), criterion, SGD (query
    encoder only). Under DDP the whole module is wrapped, as MoCo's: the start state is rank 0's everywhere."""
    encoder = build_backbone(
        args.arch, num_classes=101, with_classifier=False, r2p1d_layers=args.r2p1d_layers, width_mult=args.width_mult
    )
    encoder.apply(weights_init)
    moco = VTDL(encoder, n_data, args.nce_k, args.nce_t, args.softmax, args.alpha, bn_splits=args.bn_splits)
    memory_format = torch.channels_last_3d if args.channels_last else torch.contiguous_format
    moco.to(ctx.device, memory_format=memory_format)
    criterion = NCESoftmaxLoss() if args.softmax else NCECriterion(n_data)
    optimizer = torch.optim.SGD(
        moco.encoder_q.parameters(), lr=args.learning_rate, momentum=args.momentum, weight_decay=args.weight_decay
    )
    return {
        "model": wrap_ddp(moco, ctx),
        "criterion": criterion,
        "optimizer": optimizer,
        "global_step": 0,
    }


def build_loader_for(args, ctx, warnings: DataWarnings):
    entries = read_list(args.train_list, args.root, args.frame_root)
    reader = build_reader(entries, args.image_tmpl, args.spatial_size, warnings)
    dataset = PretrainDataset(
        entries,
        reader,
        TrainTransform(args.spatial_size, jitter_mode(args), args.aug),
        args.data_length,
        args.stride,
        start_range_len(args),
    )
    batch = runtime.per_rank_batch(args.batch_size, ctx.world_size)
    check_bn_splits(batch, args.bn_splits)
    if len(dataset) < args.batch_size:
        fail(f"{args.train_list} lists {len(dataset)} videos, fewer than one batch (--batch_size {args.batch_size})")
    sampler = EpochSampler(len(dataset), shuffle=True, seed=args.seed, batch_size=batch, drop_last=True)
    loader = build_loader(
        dataset,
        batch,
        sampler,
        runtime.worker_count(args.num_workers),
        drop_last=True,
        persistent_workers=runtime.worker_count(args.num_workers) > 0,
    )
    return dataset, sampler, loader


def worker(args, plan) -> None:
    ctx = runtime.setup_process(args, plan)
    try:
        pretrain(args, ctx, runtime.launch_date(plan))
    finally:
        dist.cleanup()


def set_up(args, ctx, date: str):
    """Data, model state, run folders and resume; returns (state, sampler, loader, tb, ckpt dir, warnings, first
    epoch, first iteration)."""
    ckpt_dir, tb_dir = run_dirs(args, date)
    log_run_header(args)  # args.json once the data passed its checks: a failed start writes nothing
    warnings = DataWarnings()
    dataset, sampler, loader = build_loader_for(args, ctx, warnings)
    state = build_state(args, ctx, len(dataset))
    if args.resume:
        load_checkpoint(args.resume)  # an unreadable --resume fails here, before the run folder is made
    write_args_json(args, ckpt_dir)
    state["writer"] = CheckpointWriter(ckpt_dir, "current.pth", "ckpt_epoch_{epoch}.pth", None)
    tb = make_tb_writer(tb_dir, enabled=not args.no_tensorboard)
    print(
        f"{len(dataset)} videos, {len(loader)} iterations/epoch, K={args.nce_k}, T={args.nce_t}, "
        f"TCA {'off' if args.no_tca else f'lambda<{args.tca_lambda}'}, temporal negative "
        f"{'off' if args.no_temporal_negative else 'on'}, {ctx.world_size} process(es) on {ctx.device}; "
        f"starts reserve {dataset.range_len}x{args.stride} frames, colour jitter {dataset.transform.jitter}"
    )
    start_epoch, start_iter = 1, 0
    resume_path = args.resume or (state["writer"].latest() if args.output_dir else None)
    if resume_path:
        start_epoch, start_iter = resume(state, resume_path)
    per_epoch = min(len(loader), args.iters_per_epoch) if args.iters_per_epoch else len(loader)
    if start_iter >= per_epoch:
        start_epoch, start_iter = start_epoch + 1, 0
    return state, sampler, loader, tb, ckpt_dir, warnings, start_epoch, start_iter


def log_epoch(state, tb, ckpt_dir: str, epoch: int, lr: float, tic: float) -> None:
    """TensorBoard scalars and the JSON line of one finished epoch (fails on a non-finite epoch loss)."""
    stats = state["meters"].averages()
    print(f"epoch {epoch}, total time {time.time() - tic:.2f}")
    if not math.isfinite(stats.get("loss", 0.0)):
        fail(f"non-finite loss in epoch {epoch}")
    tb.add_scalar("ins_loss", stats.get("loss", 0.0), epoch)
    tb.add_scalar("ins_prob", stats.get("prob", 0.0), epoch)
    tb.add_scalar("learning_rate", lr, epoch)
    append_json_line(
        os.path.join(ckpt_dir, "log.txt"),
        {
            "epoch": epoch,
            "ins_loss": stats.get("loss"),
            "ins_prob": stats.get("prob"),
            "p_pos": stats.get("p_pos"),
            "lr": lr,
            "global_step": state["global_step"],
            "time_s": round(time.time() - tic, 2),
        },
    )


def pretrain(args, ctx, date: str) -> None:
    state, sampler, loader, tb, ckpt_dir, warnings, start_epoch, start_iter = set_up(args, ctx, date)
    for epoch in range(start_epoch, args.epochs + 1):
        lr = adjust_learning_rate(state["optimizer"], epoch, args)
        sampler.set_epoch(epoch)
        sampler.set_start_iteration(start_iter)
        print("==> (TemporalDis) training...")
        tic = time.time()
        status = train_one_epoch(state, loader, epoch, start_iter, args, ctx)
        if status == "stop":
            print(f"stopped at global iteration {state['global_step']} (--max_iters)")
            return
        start_iter = 0
        log_epoch(state, tb, ckpt_dir, epoch, lr, tic)
        print("==> Saving...")
        save(state, args, ctx, epoch, 0, epoch_file=epoch % args.save_freq == 0)
        dist.barrier()
    if warnings.summary():
        print(warnings.summary())
    tb.close()


def main(args) -> None:
    require_file(args.train_list, "--train_list")
    if args.val_list and "--val_list" in sys.argv:
        require_file(args.val_list, "--val_list")
    runtime.start(worker, args, args.gpus)


def cli(argv=None) -> None:
    args = get_pretrain_args_parser().parse_args(argv)
    run_cli(main, args)


if __name__ == "__main__":
    from vtdl.train_temporal_dis import cli as _cli  # spawned workers must find `worker` by module path

    _cli()
