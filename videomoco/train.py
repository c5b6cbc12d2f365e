"""VideoMoCo pretraining: D (MoCo with temporally decayed queue keys) and, after the D-only phase, the frame-drop
generator G trained adversarially against it.

    python videomoco/train.py -a r2plus1d_18 --lr 0.005 -fpc 32 -b 32 -j 128 --epochs 200 --schedule 120 160 \
        --dist_url tcp://localhost:10001 --multiprocessing_distributed --world_size 1 --rank 0 \
        --resume checkpoint_0100.pth.tar --log_dir L --ckp_dir C DATA

One iteration (adversarial phase): x_fake = G(x_q); (q_fake, q_real, logits) = D(x_fake, x_q, x_k, t);
L_D = CE(logits, 0) steps the query encoder; L_G = -100 |q_fake - q_real|_1 steps G, with grad(L_G + L_D) as the
released code (default) or grad(L_G) alone (`--fix pure_g_grad`). One backward pass goes through the DDP
model (L_D); G's share of L_G is taken with autograd.grad beforehand, so D never sees L_G (spec section 11.9).
"""

from __future__ import annotations

import math
import os
import sys

if __name__ == "__main__" and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path[0] = os.path.dirname(sys.path[0])  # run as a script: import the package, not its files

import torch
import torch.nn.functional as F

from shared_utils import dist, runtime
from shared_utils.checkpoint import require_checkpoint
from shared_utils.cli import fail, require_dir, run_cli
from shared_utils.data import DataWarnings, EpochSampler, build_loader
from shared_utils.logger import (
    MetricLogger,
    append_json_line,
    check_finite,
    log_run_header,
    make_tb_writer,
    write_args_json,
)
from shared_utils.metrics import accuracy
from shared_utils.rng import seed_everything
from shared_utils.split_bn import check_bn_splits
from videomoco.augment import VideoMoCoAugment
from videomoco.dataset import (
    ClipReader,
    PretrainClips,
    find_items,
    long_enough,
    make_entries,
    metadata_cache,
    read_ucf_list,
    require_entries,
)
from videomoco.loss import generator_loss
from videomoco.model import MaskGenerator, VideoMoCo
from videomoco.opts import SHORT_VIDEO_FIX, aug_per_frame, fix_on, get_args_parser
from videomoco.resume import RunState, resume_run, save_run

STOPPED = "stopped at global step {} (--max_iters); the same command without it (or with a larger cap) resumes"

# --------------------------------------------------------------------------------------------------- set-up helpers


def run_dirs(args, per_process_batch: int) -> tuple[str, str]:
    """(log dir, checkpoint dir) named as the original: '<stem>_bs=<per-GPU batch>_lr=<lr>_cs=<crop>_fpc=<fpc>'."""
    if args.exact_dirs:
        return args.log_dir, args.ckp_dir
    suffix = f"_bs={per_process_batch}_lr={args.lr}_cs={args.crop_size}_fpc={args.frame_per_clip}"
    return args.log_dir + suffix, args.ckp_dir + suffix


def adjust_learning_rate(optimizers, epoch: int, args) -> float:
    """Per-epoch lr: step decay at the milestones (default), cosine (--cos) or linear warm-up (--warmup)."""
    milestones = sorted(args.schedule)
    if args.cos:
        lr = args.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / args.epochs))
    elif args.warmup and milestones and epoch < milestones[0]:
        lr = args.wp_lr + epoch * (args.lr - args.wp_lr) / milestones[0]
    else:
        passed = [m for m in (milestones[1:] if args.warmup else milestones) if epoch >= m]
        lr = args.lr * args.lr_decay ** len(passed)
    for optimizer in optimizers:
        if optimizer is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
    return lr


def uses_generator(args, epoch: int) -> bool:
    return not args.no_generator and epoch >= args.adversarial_start_epoch


def decay_base(args, epoch: int) -> float:
    if args.no_temporal_decay or (args.no_decay_in_d_only and not uses_generator(args, epoch)):
        return 1.0
    return args.temporal_decay


def num_dropped(args) -> int:
    return max(1, min(args.frame_per_clip - 1, round(args.drop_ratio * args.frame_per_clip)))


def validate(args) -> None:
    """Fail early, with one line, on settings that cannot run."""
    require_dir(args.data, "dataset root")
    require_dir(os.path.join(args.data, args.train_subdir), "training videos folder (DATA/<train_subdir>)")
    for path, what in ((args.resume, "--resume checkpoint"), (args.resumeG, "--resumeG checkpoint")):
        if path:
            require_checkpoint(path, what)
    if args.batch_size < 1 or args.frame_per_clip < 2 or args.crop_size < 11:
        fail("need --batch_size >= 1, --frame_per_clip >= 2 and --crop_size >= 11")
    if not 0 < args.temporal_decay <= 1:
        fail(f"--temporal_decay must be in (0, 1], got {args.temporal_decay}")


def launch_plan(args) -> runtime.LaunchPlan:
    """The original flags: --multiprocessing_distributed spawns one process per GPU of the node (--world_size
    nodes, --rank node rank, --dist_url of a multi-node run); --gpu picks the device of a single process; torchrun's
    variables win."""
    gpu_ids = (args.gpu,) if args.gpu is not None else ()
    if "RANK" in os.environ or not args.multiprocessing_distributed:
        return runtime.LaunchPlan(gpu_ids=gpu_ids)
    nprocs = args.nproc_per_node or torch.cuda.device_count() or 1
    nnodes = max(args.world_size, 1)
    # one node: any free local port will do (the original's default URL is remote)
    dist_url = None if nnodes == 1 else args.dist_url
    return runtime.LaunchPlan(nprocs, nnodes, max(args.rank, 0), dist_url, gpu_ids)


def setup_worker(args, plan: runtime.LaunchPlan, cudnn_flags: bool = True) -> tuple[runtime.RunContext, int]:
    """Process group, device, CPU cores shared by the node's processes, seeds (--seed, else one random draw shared
    by the ranks) + rank; returns (run context, seed). cudnn_flags (pretraining): deterministic cuDNN with --seed,
    autotuned without."""
    ctx = runtime.setup_worker(plan, amp=args.amp, cudnn_benchmark=False)
    seed = (
        args.seed if args.seed is not None else int(dist.all_gather_object(int.from_bytes(os.urandom(4), "little"))[0])
    )
    seed_everything(seed, ctx.rank)
    if cudnn_flags:
        torch.backends.cudnn.benchmark = args.seed is None
        torch.backends.cudnn.deterministic = args.seed is not None
    return ctx, seed


def per_process_batch(args, ctx: runtime.RunContext) -> int:
    """-b is the batch of one node (moco): divided over the node's processes."""
    batch = args.batch_size // ctx.local_world_size
    check_bn_splits(batch, args.bn_splits)
    return batch


def workers_per_process(args, ctx: runtime.RunContext) -> int:
    return min(-(-args.workers // ctx.local_world_size), os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------------- data


def build_data(args, ctx, ckp_dir: str, per_process_batch: int, seed: int):
    warnings = DataWarnings()
    root = os.path.normpath(os.path.join(args.data, args.train_subdir))
    exts = tuple("." + e.strip().lstrip(".").lower() for e in args.video_exts.split(",") if e.strip())
    if args.train_list:
        paths, labels, _ = read_ucf_list(root, args.train_list, args.data_format, warnings)
    else:
        paths, labels, _ = find_items(root, args.data_format, exts, args.frame_template)
    cache = metadata_cache(ckp_dir, args.metadata_cache) if args.data_format == "video" else None
    if not dist.is_main_process():
        dist.barrier()  # rank 0 probes the videos first and writes the cache
    entries = make_entries(paths, labels, args.data_format, args.frame_template, warnings, cache)
    entries = long_enough(entries, args.frame_per_clip, warnings, pad=fix_on(args, SHORT_VIDEO_FIX))
    entries = require_entries(entries, f"{args.data_format} ({args.video_exts})", root)
    if dist.is_main_process():
        dist.barrier()
    reader = ClipReader(args.data_format, args.frame_template, warnings)
    dataset = PretrainClips(
        entries, reader, args.frame_per_clip, args.step_between_clips, args.crop_size, fix_on(args, "two_clips")
    )
    sampler = EpochSampler(len(dataset), shuffle=True, seed=seed, drop_last=True, batch_size=per_process_batch)
    workers = workers_per_process(args, ctx)
    loader = build_loader(
        dataset,
        per_process_batch,
        sampler,
        workers,
        drop_last=True,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )
    if len(loader) == 0:
        fail(f"{len(dataset)} videos give no full batch of {per_process_batch} per process")
    print(f"pretraining on {len(dataset)} videos from {root}: {len(loader)} iterations per epoch")
    return loader, sampler, warnings


# --------------------------------------------------------------------------------------------------- model


def build_models(args, ctx):
    """(G or None, D, D wrapped for DDP, optimizer of G or None, optimizer of D)."""
    G = None
    if not args.no_generator:
        select = "highest" if fix_on(args, "drop_highest") else "lowest"
        G = MaskGenerator(args.frame_per_clip, args.crop_size, num_dropped(args), select).to(ctx.device)
        for tensor in list(G.parameters()) + list(G.buffers()):  # G is not DDP-wrapped: start from rank 0's
            _broadcast(tensor)
    decay_mode = "paper" if fix_on(args, "paper_decay") else "code"
    D = VideoMoCo(
        args.arch, args.moco_dim, args.moco_k, args.moco_m, args.moco_t, args.mlp, decay_mode, args.width_mult,
        args.bn_splits,
    )  # fmt: skip
    D = D.to(ctx.device)
    if args.channels_last and ctx.use_cuda:
        D = D.to(memory_format=torch.channels_last_3d)
    D_ddp = runtime.wrap_ddp(D, ctx)
    sgd = dict(lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    opt_d = torch.optim.SGD(D.encoder_q.parameters(), **sgd)  # the key encoder never has gradients
    opt_g = torch.optim.SGD(G.parameters(), **sgd) if G is not None else None
    n_d = sum(p.numel() for p in D.encoder_q.parameters())
    n_g = sum(p.numel() for p in G.parameters()) if G is not None else 0
    print(f"D: {args.arch} query encoder {n_d:,} parameters, queue {args.moco_k}; G: {n_g:,} parameters")
    return G, D, D_ddp, opt_g, opt_d


def _broadcast(tensor: torch.Tensor) -> None:
    if dist.get_world_size() > 1:
        torch.distributed.broadcast(tensor.data, src=0)


def average_gradients(params) -> None:
    """Mean of the gradients over ranks (G is not DDP-wrapped; one flat all-reduce)."""
    if dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


# --------------------------------------------------------------------------------------------------- training


def train_step(G, D_ddp, aug, batch, opt_g, opt_d, adversarial: bool, t: float, args, ctx, step: int = 0) -> dict:
    """One G/D update (or a D-only update before the adversarial phase), global step `step`. Returns the logged
    scalars."""
    x_q, x_k = (x.to(ctx.device, non_blocking=True) for x in batch[:2])
    x_q, x_k = aug(x_q), aug(x_k)  # B, 3, T, H, W (normalised)
    if args.channels_last and ctx.use_cuda:
        x_q, x_k = (x.contiguous(memory_format=torch.channels_last_3d) for x in (x_q, x_k))
    # no autocast context at all without --amp, so a caller's own autocast (the benchmark's) stays in force
    with ctx.autocast():
        if adversarial:
            x_fake, _ = G(x_q)
            q, q_real, logits, labels = D_ddp(x_fake, x_k, t, im_q_real=x_q)
        else:
            q, _, logits, labels = D_ddp(x_q, x_k, t)
    loss_d = F.cross_entropy(logits.float(), labels)
    check_finite(loss_d, step)
    out = {"loss_d": loss_d.item()}
    grads_g = None
    if adversarial:
        loss_g = generator_loss(q, q_real, args.g_loss_weight)
        g_params = list(G.parameters())
        grads_g = torch.autograd.grad(loss_g, g_params, retain_graph=True)  # G's share of L_G only
        out["loss_g"] = loss_g.item()
        opt_g.zero_grad(set_to_none=True)
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()  # D: grad L_D (DDP all-reduce); G: grad L_D through the straight-through frame drop
    if adversarial:
        for param, grad in zip(g_params, grads_g):
            keep_ld = not fix_on(args, "pure_g_grad") and param.grad is not None
            param.grad = param.grad + grad if keep_ld else grad.clone()
        average_gradients(g_params)
        opt_g.step()
    opt_d.step()
    out["acc1"], out["acc5"] = accuracy(logits.detach(), labels, (1, 5))
    return out


def train_one_epoch(G, D, D_ddp, aug, loader, opt_g, opt_d, epoch: int, args, ctx, run: RunState, writer) -> bool:
    """Returns False when --max_iters stopped the run inside the epoch (after writing the latest checkpoint)."""
    adversarial, t = uses_generator(args, epoch), decay_base(args, epoch)
    D_ddp.train()
    if G is not None:
        G.train()
    logger = MetricLogger(delimiter="\t")
    iters = run.iters_per_epoch
    header = f"Epoch: [{epoch}]" + (" adversarial" if adversarial else " D-only")
    for i, batch in enumerate(logger.log_every(loader, args.print_freq, header), start=run.iteration):
        stats = train_step(G, D_ddp, aug, batch, opt_g, opt_d, adversarial, t, args, ctx, run.global_step)
        logger.update(n=batch[0].shape[0], **stats)
        step = epoch * iters + i
        if i % args.print_freq == 0:
            for name, value in stats.items():
                writer.add_scalar(f"moco_train/{name}", value, step)
            for name, meter in logger.meters.items():
                writer.add_scalar(f"moco_train_avg/{name}", meter.global_avg, step)
            writer.add_scalar("moco_train/lr", opt_d.param_groups[0]["lr"], step)
        run.iteration, run.global_step = i + 1, run.global_step + 1
        stop = bool(args.max_iters) and run.global_step >= args.max_iters
        if run.iteration < iters and (stop or (args.save_every_iters and run.iteration % args.save_every_iters == 0)):
            save_run(run, G, D, opt_g, opt_d, args, ctx, epoch_done=False)
        if stop and run.iteration < iters:
            return False
    logger.synchronize_between_processes()
    run.last_stats = {f"{name}": meter.global_avg for name, meter in logger.meters.items()}
    return True


def check_batch(args, ctx) -> int:
    """The per-process batch; the global batch must divide the queue (the original's assertion)."""
    batch = per_process_batch(args, ctx)
    global_batch = batch * ctx.world_size
    if batch < 1 or args.moco_k % global_batch:
        fail(
            f"global batch {global_batch} (= {batch} per process x {ctx.world_size}) must "
            f"divide the queue size --moco-k {args.moco_k}"
        )
    return batch


def main_worker(args, plan) -> None:
    ctx, seed = setup_worker(args, plan)
    batch = check_batch(args, ctx)
    log_dir, ckp_dir = run_dirs(args, batch)
    log_run_header(args)  # printed now; args.json and TensorBoard only once the data passed its checks
    # ------------------------------------------------------------------ data, models, optimisers, resume
    loader, sampler, warnings = build_data(args, ctx, ckp_dir, batch, seed)
    write_args_json(args, log_dir)
    writer = make_tb_writer(log_dir, enabled=not args.no_tensorboard)
    aug = VideoMoCoAugment(args.aug_plus, aug_per_frame(args), args.crop_size).to(ctx.device)
    G, D, D_ddp, opt_g, opt_d = build_models(args, ctx)
    run = resume_run(args, G, D, opt_g, opt_d, ckp_dir, seed, len(loader))
    sampler.seed = run.seed
    # ------------------------------------------------------------------ epochs
    for epoch in range(run.epoch, args.epochs):
        lr = adjust_learning_rate([opt_g, opt_d], epoch, args)
        sampler.set_epoch(epoch)
        sampler.set_start_iteration(run.iteration)
        finished = train_one_epoch(G, D, D_ddp, aug, loader, opt_g, opt_d, epoch, args, ctx, run, writer)
        if not finished:
            print(STOPPED.format(run.global_step))
            break
        run.epoch, run.iteration = epoch + 1, 0
        save_run(run, G, D, opt_g, opt_d, args, ctx, epoch_done=True)
        record = {"epoch": epoch, "lr": lr, "adversarial": uses_generator(args, epoch), **run.last_stats}
        append_json_line(os.path.join(log_dir, "log.txt"), record)
        if warnings.summary():
            print(warnings.summary())
        if args.max_iters and run.global_step >= args.max_iters:
            print(STOPPED.format(run.global_step))
            break
    writer.close()
    dist.cleanup()


def main(args) -> None:
    validate(args)
    runtime.launch(main_worker, args, launch_plan(args))


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
