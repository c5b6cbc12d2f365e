"""CPD entry point (`cd cpd && python main.py ...` with the original flags) and the pretraining loop.

--phase pretraining runs here; --phase finetuning (fine-tuning, linear probe, 30-view test) is in cpd/test.py and
--phase zeroshot in cpd/zeroshot.py.
"""

from __future__ import annotations

import os
import time

import torch

from cpd import utils
from cpd.dataset import InstagramDataset, device_normalize_clips
from cpd.loss import cpd_loss, nce_accuracy
from cpd.model import CPD, build_model, pretraining_param_groups, text_groups
from cpd.opts import fix_on, get_args_parser
from cpd.text import load_tokenizer
from shared_utils import dist
from shared_utils.checkpoint import unwrap_model
from shared_utils.cli import fail, run_cli
from shared_utils.data import DataWarnings, EpochSampler, build_loader, collate_skip_none
from shared_utils.logger import (
    MetricLogger,
    append_json_line,
    check_finite,
    log_run_header,
    progress,
)
from shared_utils.rng import seed_everything

MEMORY_BUFFERS = ("Z_v", "Z_t", "vis_memory", "text_memory")


def train_one_epoch(model, loader, optimizer, epoch, args, ctx, state, writer, batch_log):
    """One pretraining epoch. `state` carries global_step and the checkpoint callback for mid-epoch saves."""
    bare: CPD = unwrap_model(model)
    updbert = epoch > args.ft_bert_ep  # curriculum: text encoder trained only after ft_bert_ep
    model.train()
    if fix_on(args, "text_eval") and not updbert:
        bare.textual_encoder.eval()
    logger = MetricLogger()
    start_iter = state["start_iter"]
    for i, batch in enumerate(logger.log_every(loader, args.print_frq, f"Epoch: [{epoch}]"), start=start_iter):
        if batch is None:
            continue
        v, t, idx = (x.to(ctx.device, non_blocking=True) for x in batch)  # B,3,T,S,S / B,L / B
        v = device_normalize_clips(v)  # the loader's uint8 clips -> normalised float, on the device
        if args.channels_last:
            v = v.contiguous(memory_format=torch.channels_last_3d)
        with ctx.autocast():
            out_v, out_t = model(v, t, idx, updbert)  # B, K+1, 1 each
        loss, terms = cpd_loss(out_v, out_t, bare.n_data)
        check_finite(loss, state["global_step"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_gradient)
        if norm > args.clip_gradient:
            print(f"clipping gradient: {norm:.2f} with coef {args.clip_gradient / norm:.4f}")
        optimizer.step()
        state["global_step"] += 1
        acc = nce_accuracy(out_v)
        lr = optimizer.param_groups[-1]["lr"]
        logger.update(loss=loss.item(), acc=acc, lr=lr, **terms)
        if i % args.print_frq == 0:
            batch_log.log(
                {
                    "epoch": epoch,
                    "batch": i + 1,
                    "iter": state["global_step"],
                    "loss": loss.item(),
                    "acc": acc,
                    "lr": lr,
                }
            )
            writer.add_scalar("iter/loss", loss.item(), state["global_step"])
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
def validate(model, loader, args, ctx) -> dict[str, float]:
    """Text -> video retrieval on the validation pairs: recall@1 and recall@10 (percent), every video counted once."""
    bare: CPD = unwrap_model(model)
    bare.eval()
    feats_v, feats_t, indices = [], [], []
    for n, batch in enumerate(progress(loader, desc="validation")):
        if batch is None:
            continue
        v, t, idx = (x.to(ctx.device) for x in batch)
        v = device_normalize_clips(v)
        with ctx.autocast():
            f_v, f_t = bare(v, t)
        feats_v.append(f_v.float()), feats_t.append(f_t.float()), indices.append(idx)
        if args.max_val_iters and n + 1 >= args.max_val_iters:
            break
    f_v, f_t, idx = (dist.concat_all_gather(torch.cat(x)) for x in (feats_v, feats_t, indices))
    # the sampler pads with repeats: keep the first copy of every video
    first = torch.full((int(idx.max()) + 1,), len(idx), dtype=torch.long, device=idx.device)
    first.scatter_reduce_(0, idx, torch.arange(len(idx), device=idx.device), reduce="amin")
    sel = first[first < len(idx)]
    sim = f_t[sel] @ f_v[sel].T  # texts x videos
    ranks = (sim > sim.diag().unsqueeze(1)).sum(1)  # videos scored above the paired one
    return {"recall@1": (ranks < 1).float().mean().item() * 100, "recall@10": (ranks < 10).float().mean().item() * 100}


def adjust_learning_rate(optimizer, model: CPD, epoch: int, args) -> None:
    """After epoch `epoch`: unfreeze the text lr (bert_lr_scale x lr_bert) bert_lr_lead epochs before the text
    encoder starts training, then x0.1 at each --lr_steps epoch. Runs with or without validation (the original
    skipped both under --no_val)."""
    if epoch + args.bert_lr_lead == args.ft_bert_ep:
        set_text_lr(optimizer, model, args)
    if epoch in args.lr_steps:
        for group in optimizer.param_groups:
            group["lr"] *= 0.1


def set_text_lr(optimizer, model: CPD, args) -> None:
    for group in text_groups(optimizer, model):
        if group["lr"] == 0:
            group["lr"] = args.bert_lr_scale * args.lr_bert


def build_pretraining_data(args, warnings):
    tokenizer = load_tokenizer(args.tokenizer or args.text_model)
    common = dict(
        tokenizer=tokenizer,
        num_frames=utils.num_frames(args),
        stride=args.stride_size,
        sample_size=args.sample_size,
        max_len=args.max_text_len,
        warnings=warnings,
    )
    train_set = InstagramDataset(args.video_path, args.dataset_file, "training", **common)
    if len(train_set) == 0:
        fail(f"--dataset_file '{args.dataset_file}' lists no readable 'training' video under {args.video_path}")
    val_set = None
    if not args.no_val:
        val_set = InstagramDataset(args.video_path, args.dataset_file, "validation", verbose=False, **common)
        if len(val_set) == 0:
            fail(f"--dataset_file '{args.dataset_file}' has no 'validation' entries; add some or pass --no_val")
    return train_set, val_set


def build_training(args, ctx, n_data: int):
    """Model (seeded: identical weights and memory banks on every rank, DDP skips the banks), SGD, and the resumed
    position; returns (model, optimizer, begin epoch, start iteration, global step)."""
    seed_everything(args.manual_seed)
    model = build_model(args, n_data).to(ctx.device)
    seed_everything(args.manual_seed, ctx.rank)  # then per-rank streams (noise draws, dropout)
    if args.channels_last:
        model.visual_encoder.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(
        pretraining_param_groups(model, args.learning_rate),
        lr=args.learning_rate,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
    )
    begin_epoch, start_iter, global_step = 1, 0, 0
    resume = utils.resume_file(args)
    if resume:
        ckpt = utils.load_model_state(resume, model, name=f"resume '{resume}'")
        begin_epoch, start_iter, global_step = utils.restore_training(ckpt, optimizer)
        print(f"resumed from {resume}: epoch {begin_epoch}, iteration {start_iter}")
    if begin_epoch + args.bert_lr_lead > args.ft_bert_ep:  # unfreeze point before the first epoch run here
        set_text_lr(optimizer, model, args)
    return model, optimizer, begin_epoch, start_iter, global_step


def build_loaders(args, train_set, val_set, batch: int, workers: int):
    """(train sampler, train loader, val sampler or None, val loader or None)."""
    sampler = EpochSampler(len(train_set), shuffle=True, seed=args.manual_seed, drop_last=True, batch_size=batch)
    loader = build_loader(train_set, batch, sampler, workers, collate_skip_none, drop_last=True)
    val_loader = val_sampler = None
    if val_set is not None:
        val_sampler = EpochSampler(len(val_set), shuffle=False, seed=args.manual_seed, batch_size=batch)
        val_loader = build_loader(val_set, batch, val_sampler, workers, collate_skip_none)
    return sampler, loader, val_sampler, val_loader


def log_train(logs: dict, optimizer, epoch: int, stats: dict) -> None:
    lr = optimizer.param_groups[-1]["lr"]
    logs["train"].log({"epoch": epoch, "loss": stats.get("loss", 0), "acc": stats.get("acc", 0), "lr": lr})
    logs["writer"].add_scalar("scalar/train_loss", stats.get("loss", 0), epoch)
    logs["writer"].add_scalar("scalar/train_acc", stats.get("acc", 0), epoch)


def run_validation(ddp_model, val_loader, val_sampler, args, ctx, logs: dict, epoch: int) -> dict:
    val_sampler.set_epoch(epoch)  # a new random clip/crop/flip per epoch, as the original
    val_stats = validate(ddp_model, val_loader, args, ctx)
    print(
        f"Epoch [{epoch}] validation: text->video recall@1 {val_stats['recall@1']:.2f} "
        f"recall@10 {val_stats['recall@10']:.2f}"
    )
    logs["val"].log({"epoch": epoch, **val_stats})
    logs["writer"].add_scalar("scalar/recall@1", val_stats["recall@1"], epoch)
    logs["writer"].add_scalar("scalar/recall@10", val_stats["recall@10"], epoch)
    return {f"val_{k}": v for k, v in val_stats.items()}


def main_pretraining(args, plan):
    ctx = utils.init_process(args, plan)
    log_run_header(args)  # opts.json once data, model and checkpoint passed their checks
    batch, workers = utils.per_process(args)
    warnings = DataWarnings()
    train_set, val_set = build_pretraining_data(args, warnings)
    model, optimizer, begin_epoch, start_iter, global_step = build_training(args, ctx, len(train_set))
    ddp_model = utils.wrap_ddp(model, ctx, ignore=MEMORY_BUFFERS)
    sampler, loader, val_sampler, val_loader = build_loaders(args, train_set, val_set, batch, workers)
    logs = utils.build_run_logs(args, ctx.rank, ["recall@1", "recall@10"])
    state = {"global_step": global_step, "start_iter": start_iter}

    def save(epoch, iteration, name="checkpoint.pth"):
        path = os.path.join(args.result_path, name)
        utils.save_state(
            path, model, optimizer, epoch, iteration, state["global_step"], args, ctx, n_data=len(train_set)
        )

    state["save"] = save
    for epoch in range(begin_epoch, args.n_epochs + 1):
        stats = {}
        if not args.no_train:
            sampler.set_epoch(epoch)
            sampler.set_start_iteration(state["start_iter"])
            t0 = time.time()
            stats = train_one_epoch(
                ddp_model, loader, optimizer, epoch, args, ctx, state, logs["writer"], logs["batch"]
            )
            if state.get("stop"):
                print(utils.STOPPED.format(state["global_step"]))
                break
            state["start_iter"] = 0
            stats["epoch_time"] = time.time() - t0
            log_train(logs, optimizer, epoch, stats)
        if val_loader is not None:
            stats.update(run_validation(ddp_model, val_loader, val_sampler, args, ctx, logs, epoch))
        if args.no_train:
            break
        adjust_learning_rate(optimizer, model, epoch, args)
        save(epoch + 1, 0)
        if epoch % args.checkpoint == 0 or epoch == args.n_epochs:
            save(epoch + 1, 0, f"save_{epoch}.pth")
        append_json_line(os.path.join(args.result_path, "log.txt"), {"epoch": epoch, **stats})
        if warnings.total():
            print(warnings.summary())
    logs["writer"].close()
    dist.cleanup()


def worker(args, plan):
    if args.phase == "pretraining":
        main_pretraining(args, plan)
    elif args.phase == "finetuning":
        from cpd.test import main_finetuning

        main_finetuning(args, plan)
    else:
        from cpd.zeroshot import main_zeroshot

        main_zeroshot(args, plan)


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    utils.check_args(args)  # the result folder is made by the run once its data passed the checks
    utils.launch(worker, args)


if __name__ == "__main__":
    run_cli(main)
