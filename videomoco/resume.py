"""Pretraining checkpoints: the original names and payload keys, plus everything exact resume needs.

Directory `<ckp_dir>/netD/` holds `checkpoint_%04d.pth.tar` (named by epochs completed, so the file written after
epoch 100 is `checkpoint_0100.pth.tar`, the README's name) every `--save_freq` epochs and at the end, and
`checkpoint.pth.tar`, the latest state (epoch ends and every `--save_every_iters` iterations), which a restarted
run resumes from automatically. `<ckp_dir>/netG/checkpoint_%04d.pth.tar` holds G alone, as the original wrote it.
A D file keeps the released keys `epoch`, `arch`, `state_dict` (`module.`-prefixed, as DDP wrote them) and adds
`iteration`, `global_step`, `optimizer`, `generator`, `optimizer_g`, `count` (queue ages), `scaler`, `rng` (one
state per rank), `sampler_seed` and `args`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from shared_utils import dist
from shared_utils.checkpoint import (
    CheckpointWriter,
    add_prefix,
    extract_state_dict,
    load_checkpoint,
    load_state_dict_reported,
    plain_args,
    strip_prefix,
)
from shared_utils.cli import fail
from shared_utils.rng import capture_rng_state, restore_rng_state

EPOCH_PATTERN = "checkpoint_{epoch:04d}.pth.tar"
LATEST = "checkpoint.pth.tar"


@dataclass
class RunState:
    seed: int
    epoch: int = 0  # epochs completed (= where training continues)
    iteration: int = 0  # iterations already done in epoch `epoch`
    global_step: int = 0
    iters_per_epoch: int = 0
    last_stats: dict = field(default_factory=dict)
    writer_d: CheckpointWriter | None = None
    writer_g: CheckpointWriter | None = None


def _writers(ckp_dir: str) -> tuple[CheckpointWriter, CheckpointWriter]:
    writer_d = CheckpointWriter(os.path.join(ckp_dir, "netD"), LATEST, EPOCH_PATTERN, None, keep_last=20)
    writer_g = CheckpointWriter(os.path.join(ckp_dir, "netG"), None, EPOCH_PATTERN, None, keep_last=20)
    return writer_d, writer_g


def load_generator(G, path_or_ckpt, name: str) -> dict:
    """Load G strictly from a G file (`state_dict`) or from our D file (`generator`)."""
    ckpt = load_checkpoint(path_or_ckpt) if isinstance(path_or_ckpt, str) else path_or_ckpt
    state = ckpt.get("generator") or extract_state_dict(ckpt, ("state_dict",))
    load_state_dict_reported(G, strip_prefix(state, ("module.",)), strict=True, name=name)
    return ckpt


def _restore_d(ckpt: dict, path: str, args, D, opt_d, run: RunState) -> None:
    if ckpt.get("arch") and ckpt["arch"] != args.arch:
        fail(f"checkpoint '{path}' was trained with -a {ckpt['arch']}, not {args.arch}")
    state = strip_prefix(extract_state_dict(ckpt, ("state_dict",)), ("module.",))
    load_state_dict_reported(D, state, strict=True, name=f"D '{os.path.basename(path)}'")
    run.epoch = int(ckpt.get("epoch", 0))
    run.iteration = int(ckpt.get("iteration", 0))
    run.global_step = int(ckpt.get("global_step", run.epoch * run.iters_per_epoch + run.iteration))
    if "count" in ckpt:
        D.count.copy_(ckpt["count"].to(D.count.dtype))
    else:
        print("queue ages (count) not in the checkpoint: starting from 0 as the released code does")
    if "optimizer" in ckpt:
        opt_d.load_state_dict(ckpt["optimizer"])
    else:
        print("no D optimizer state in the checkpoint: SGD momentum starts from zero")
    run.seed = int(ckpt.get("sampler_seed", run.seed))


def resume_run(args, G, D, opt_g, opt_d, ckp_dir: str, seed: int, iters_per_epoch: int) -> RunState:
    """Restore from the run's latest checkpoint if one exists, else from --resume; then --resumeG."""
    run = RunState(seed=seed, epoch=args.start_epoch, iters_per_epoch=iters_per_epoch)
    run.writer_d, run.writer_g = _writers(ckp_dir)
    run.global_step = run.epoch * iters_per_epoch
    path = run.writer_d.latest() or args.resume
    ckpt: dict = {}
    if path:
        print(f"resuming from '{path}'" + (" (latest of this run)" if path != args.resume else ""))
        ckpt = load_checkpoint(path)
        _restore_d(ckpt, path, args, D, opt_d, run)
        if G is not None and ckpt.get("generator"):
            load_generator(G, ckpt, "G (from the D checkpoint)")
            if opt_g is not None and "optimizer_g" in ckpt:
                opt_g.load_state_dict(ckpt["optimizer_g"])
    if args.resumeG and G is not None:
        if ckpt.get("generator"):
            print(f"--resumeG '{args.resumeG}' ignored: '{path}' already holds this run's generator")
        else:
            g_ckpt = load_generator(G, args.resumeG, f"G '{os.path.basename(args.resumeG)}'")
            if opt_g is not None and "optimizer" in g_ckpt:
                opt_g.load_state_dict(g_ckpt["optimizer"])
    rng = ckpt.get("rng")
    if isinstance(rng, list) and len(rng) == dist.get_world_size():
        restore_rng_state(rng[dist.get_rank()])
    if path:
        print(f"starting at epoch {run.epoch}, iteration {run.iteration} (global step {run.global_step})")
    return run


def save_run(run: RunState, G, D, opt_g, opt_d, args, ctx, epoch_done: bool) -> None:
    """Write the latest state (all ranks must call: RNG states are gathered); numbered copies at epoch ends."""
    rng = dist.all_gather_object(capture_rng_state())
    if not dist.is_main_process():
        return
    state = {
        "epoch": run.epoch,
        "arch": args.arch,
        "state_dict": add_prefix(D.state_dict(), "module."),
        "iteration": run.iteration,
        "global_step": run.global_step,
        "optimizer": opt_d.state_dict(),
        "generator": add_prefix(G.state_dict(), "module.") if G is not None else None,
        "optimizer_g": opt_g.state_dict() if opt_g is not None else None,
        "count": D.count.detach().cpu().clone(),
        "scaler": None,  # bf16 autocast needs no loss scaling
        "rng": rng,
        "sampler_seed": run.seed,
        "args": plain_args(args, ctx),
    }
    numbered = epoch_done and (run.epoch % max(args.save_freq, 1) == 0 or run.epoch == args.epochs)
    run.writer_d.save(state, epoch=run.epoch if numbered else None)
    if numbered and G is not None:
        g_state = {"epoch": run.epoch, "arch": args.arch, "state_dict": state["generator"]}
        run.writer_g.save({**g_state, "optimizer": state["optimizer_g"]}, epoch=run.epoch, latest=False)
    if numbered:
        print(f"saved {run.writer_d.epoch_path(run.epoch)}")
