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

from shared_utils import checkpoint, dist
from shared_utils.checkpoint import (
    CheckpointWriter,
    add_prefix,
    extract_state_dict,
    load_checkpoint,
    load_state_dict_reported,
    strip_prefix,
)
from shared_utils.cli import fail

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


# the released keys first, then what exact resume needs, in this order
CHECKPOINT_ORDER = ("epoch", "arch", "state_dict", "iteration", "global_step", "optimizer", "generator", "optimizer_g")
RESUME_ORDER = ("count", "scaler", "rng", "sampler_seed", "args")


def run_state(D, opt_d, G=None, opt_g=None, name: str = "D", **counters) -> checkpoint.RunState:
    """D as `state_dict` and G as `generator` ('module.' keys, as DDP wrote them; D strictly loaded with a key
    report), their optimizers, the queue ages `count` (a buffer kept out of D's state dict)."""
    count = checkpoint.StatePart(
        lambda: D.count.detach().cpu().clone(), lambda saved: D.count.copy_(saved.to(D.count.dtype))
    )
    put_d = lambda state: load_state_dict_reported(D, state, strict=True, name=name)  # noqa: E731
    parts = {"state_dict": checkpoint.StatePart(D.state_dict, put_d), "optimizer": opt_d, "count": count}
    parts |= {"generator": G, "optimizer_g": opt_g}
    parts = {key: part for key, part in parts.items() if part is not None}
    prefixes = {"state_dict": "module.", "generator": "module."}
    return checkpoint.RunState(parts, prefixes=prefixes, optional={"optimizer", "count"}, **counters)


def _restore_d(ckpt: dict, path: str, args, D, opt_d, run: RunState) -> None:
    if ckpt.get("arch") and ckpt["arch"] != args.arch:
        fail(f"checkpoint '{path}' was trained with -a {ckpt['arch']}, not {args.arch}")
    ckpt = {**ckpt, "state_dict": extract_state_dict(ckpt, ("state_dict",))}  # a bare D state dict loads too
    state = run_state(D, opt_d, name=f"D '{os.path.basename(path)}'", epoch=0, iteration=0, global_step=-1)
    state["sampler_seed"] = run.seed
    state.load(ckpt, restore_rng=False)  # the RNG once G is loaded too (resume_run)
    run.epoch, run.iteration, run.seed = state["epoch"], state["iteration"], state["sampler_seed"]
    run.global_step = state["global_step"]
    if run.global_step < 0:  # the released files: from the epoch counter
        run.global_step = run.epoch * run.iters_per_epoch + run.iteration
    if "count" not in ckpt:
        print("queue ages (count) not in the checkpoint: starting from 0 as the released code does")
    if "optimizer" not in ckpt:
        print("no D optimizer state in the checkpoint: SGD momentum starts from zero")


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
    if isinstance(ckpt.get("rng"), list):
        checkpoint.RunState.restore_rng(ckpt["rng"])
    if path:
        print(f"starting at epoch {run.epoch}, iteration {run.iteration} (global step {run.global_step})")
    return run


def save_run(run: RunState, G, D, opt_g, opt_d, args, ctx, epoch_done: bool) -> None:
    """Write the latest state (all ranks must call: RNG states are gathered); numbered copies at epoch ends.
    scaler: None (bf16 autocast needs no loss scaling)."""
    counters = {"epoch": run.epoch, "iteration": run.iteration, "global_step": run.global_step}
    state = run_state(D, opt_d, G, opt_g, **counters, sampler_seed=run.seed)
    absent = {key: None for key in ("generator", "optimizer_g") if key not in state.parts}
    numbered = epoch_done and (run.epoch % max(args.save_freq, 1) == 0 or run.epoch == args.epochs)
    epoch = run.epoch if numbered else None
    order = CHECKPOINT_ORDER + RESUME_ORDER
    state.save(run.writer_d, args, ctx, epoch=epoch, order=order, arch=args.arch, scaler=None, **absent)
    if not (numbered and dist.is_main_process()):
        return
    if G is not None:
        g_state = {"epoch": run.epoch, "arch": args.arch, "state_dict": add_prefix(G.state_dict(), "module.")}
        g_state["optimizer"] = opt_g.state_dict() if opt_g is not None else None
        run.writer_g.save(g_state, epoch=run.epoch, latest=False)
    print(f"saved {run.writer_d.epoch_path(run.epoch)}")
