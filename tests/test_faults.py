"""Fault tests: interrupted checkpoint writes, kill -9 mid-epoch then resume (VTDL, MemDPC; VideoMoCo's is in
test_videomoco_train.py), a dataset with one of each fault, bad flags (more one-line-error tests live per method)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from evaluation.evaluate import evaluate, get_args_parser
from process_data.write_splits import write_splits
from shared_utils.checkpoint import CheckpointWriter, load_checkpoint
from shared_utils.data import DataWarnings

WRITER = textwrap.dedent(
    """
    import io, sys, time, torch
    from shared_utils.checkpoint import CheckpointWriter
    real_save = torch.save

    def save_then_stall(obj, handle):  # the third write stops half-way, so the kill lands inside a write
        if obj["step"] < 2:
            return real_save(obj, handle)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        handle.flush()
        print("mid-write", flush=True)
        time.sleep(600)

    torch.save = save_then_stall
    writer = CheckpointWriter(sys.argv[1], latest_name="checkpoint.pth", epoch_pattern=None, best_name=None)
    payload = torch.empty(2**20)
    for step in range(3):
        payload.fill_(float(step))
        writer.save({"step": step, "payload": payload})
        print(step, flush=True)
    """
)


def kill_writer_mid_write(folder) -> list[str]:
    """Start the writer, let it finish two checkpoints, SIGKILL it half-way through the third; return the
    leftover temp files."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert [proc.stdout.readline().strip() for _ in range(3)] == ["0", "1", "mid-write"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_checkpoint_killed_mid_write_never_replaces_the_good_file(tmp_path):
    leftovers = kill_writer_mid_write(tmp_path)
    assert leftovers, "the killed write left no temporary file"
    assert os.path.getsize(tmp_path / leftovers[0]) > 0  # a torn, half-written file
    ckpt = load_checkpoint(tmp_path / "checkpoint.pth")
    assert ckpt["step"] == 1
    assert torch.all(ckpt["payload"] == 1.0)  # the last complete write, never the torn one
    writer = CheckpointWriter(str(tmp_path), latest_name="checkpoint.pth", epoch_pattern=None, best_name=None)
    assert writer.latest() == str(tmp_path / "checkpoint.pth")
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]  # stale temp files are cleaned up


# --------------------------------------------------------------------------------------- kill -9 mid-epoch


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_to_end(command: list[str], cwd: str) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=_quiet_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]


def _quiet_env() -> dict:
    return dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1")


def kill_after_step(command: list[str], cwd: str, ckpt_path: str, step_key: str, at_least: int) -> int:
    """Start a pretraining run, SIGKILL it as soon as its resumable checkpoint records `at_least` steps, and
    return the step of the checkpoint left behind (what a resume starts from)."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_quiet_env())
    try:
        deadline, seen = time.time() + 600, -1
        while seen < at_least:
            assert proc.poll() is None, f"finished before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.time() < deadline, "no checkpoint appeared in time"
            if os.path.isfile(ckpt_path):
                seen = int(load_checkpoint(ckpt_path)[step_key])  # atomic writes: never a torn file
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    return int(load_checkpoint(ckpt_path)[step_key])


def assert_same_state(a, b, path: str = "") -> None:
    """Tensors bit-identical, everything else equal, recursively (dicts, lists)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys differ"
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def vtdl_pretrain(data, out, *extra) -> list[str]:
    return [
        sys.executable, os.path.join(REPO, "vtdl", "train_temporal_dis.py"), "--softmax", "--moco", "--dataset",
        "ucf101", "--train_list", str(data.list_file("ucf101_rgb_train_split_1.txt")), "--batch_size", "2",
        "--nce_k", "8", "--data_length", "8", "--spatial_size", "32", "--stride", "2", "--epochs", "1",
        "--num_workers", "1", "--print_freq", "1", "--save_freq", "100", "--no_tensorboard", "--output_dir", str(out),
        *extra,
    ]  # fmt: skip


def test_vtdl_killed_mid_epoch_resumes_to_the_uninterrupted_result(synth_dataset, tmp_path):
    """12 videos, batch 2: one epoch of 6 iterations, a loader worker process, a resumable checkpoint after every
    iteration. kill -9 inside the epoch, restart the same command (it resumes from current.pth): the final model,
    key encoder, queue + pointer and optimizer state equal the uninterrupted run's, bit for bit."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_to_end(vtdl_pretrain(synth_dataset, straight), REPO)
    ckpt = str(killed / "current.pth")
    left = kill_after_step(
        vtdl_pretrain(synth_dataset, killed, "--save_every_iters", "1"), REPO, ckpt, "global_step", 2
    )
    assert 2 <= left < 6  # the run really died inside the epoch
    run_to_end(vtdl_pretrain(synth_dataset, killed, "--save_every_iters", "1"), REPO)
    final, reference = load_checkpoint(ckpt), load_checkpoint(str(straight / "current.pth"))
    assert final["global_step"] == reference["global_step"] == 6
    for key in ("model", "model_ema", "contrast", "contrast_index", "optimizer"):
        assert_same_state(final[key], reference[key], key)


def memdpc_pretrain(list_dir, out, *extra) -> list[str]:
    """3 blocks x 5 frames at stride 2, 32 px, batch 2: 6 iterations an epoch on the 12 training videos."""
    return [
        sys.executable, os.path.join(REPO, "memdpc", "main.py"), "--gpu", "cpu", "-j", "1", "--img_dim", "32",
        "--num_seq", "3", "--seq_len", "5", "--ds", "2", "--pred_step", "1", "--batch_size", "2", "--epochs", "1",
        "--print_freq", "1", "--seed", "0", "--no_tensorboard", "--csv_root", str(list_dir),
        "--output_dir", str(out), *extra,
    ]  # fmt: skip


def test_memdpc_killed_mid_epoch_resumes_to_the_uninterrupted_result(synth_dataset, tmp_path):
    """kill -9 inside the epoch (a loader worker running), the same command again auto-resumes from
    model/latest.pth.tar: weights, BN statistics, optimizer moments and the iteration count equal the uninterrupted
    run's, bit for bit."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_to_end(memdpc_pretrain(synth_dataset.list_dir, straight), REPO)
    ckpt = str(killed / "model" / "latest.pth.tar")
    command = memdpc_pretrain(synth_dataset.list_dir, killed, "--save_every_iters", "1")
    left = kill_after_step(command, REPO, ckpt, "iteration", 2)
    assert 2 <= left < 6  # the run really died inside the epoch
    run_to_end(command, REPO)
    final, reference = load_checkpoint(ckpt), load_checkpoint(str(straight / "model" / "latest.pth.tar"))
    assert final["iteration"] == reference["iteration"] == 6
    for key in ("state_dict", "optimizer", "scheduler"):
        assert_same_state(final[key], reference[key], key)


# ------------------------------------------------------------------------------------------ a damaged dataset


def damaged_copy(data, root, corrupt_file):
    """A copy of the session dataset with one of each fault. Lists are written after shortening one training and
    one test video to 8 frames (shorter than one clip); a training and a test frame folder are emptied and two
    consecutive JPEGs of a training video truncated after that (the lists still count them), and one .avi is cut."""
    shutil.copytree(data.raw_root, root / "raw", symlinks=True)
    shutil.copytree(data.frame_root, root / "frames")
    train = [line.split()[0][:-4] for line in open(data.split_dir / "trainlist01.txt") if line.strip()]
    test = [line.split()[0][:-4] for line in open(data.split_dir / "testlist01.txt") if line.strip()]
    for stem in (train[0], test[0]):  # short: 8 of 40 frames
        for frame in sorted((root / "frames" / stem).iterdir())[8:]:
            frame.unlink()
    write_splits(
        "ucf101", str(root / "raw" / "ucfTrainTestlist"), str(root / "frames"), str(root / "lists"), verbose=False
    )
    for stem in (train[1], test[1]):  # empty frame folders
        for frame in (root / "frames" / stem).iterdir():
            frame.unlink()
    for index in (20, 21):  # truncated JPEGs: every training clip of this video reads one of them
        corrupt_file(root / "frames" / train[2] / f"image_{index:05d}.jpg", "truncate", keep=0.3)
    corrupt_file(root / "raw" / "UCF-101" / f"{train[3]}.avi", "truncate", keep=0.02)
    return root, len(train), len(test)


def warning_counts(output: str) -> dict[str, int]:
    """The DataWarnings summary lines ('  N <description>') of a run's output, keyed by kind."""
    counts = {}
    for kind, text in DataWarnings.KINDS.items():
        hits = re.findall(rf"(\d+) {re.escape(text)}", output)
        counts[kind] = int(hits[-1]) if hits else 0
    return counts


def test_damaged_dataset_training_and_evaluation_finish_and_count_each_fault(synth_dataset, tmp_path, corrupt):
    root, n_train, n_test = damaged_copy(synth_dataset, tmp_path / "damaged", corrupt)
    out = tmp_path / "memdpc"
    result = subprocess.run(memdpc_pretrain(root / "lists", out), cwd=REPO, capture_output=True, text=True,
                            env=_quiet_env(), timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    counts = warning_counts(output)
    assert counts["unreadable_video"] >= 1 and counts["corrupt_frame"] >= 1, counts
    assert "note: 1 train video(s) of at most 30 frames (one clip) left out" in output  # MemDPC's rule, said aloud
    assert os.path.isfile(out / "model" / "epoch0.pth.tar")  # epochs count from 0, as the original

    flags = ["--method", "memdpc", "--ckpt", str(out / "model" / "epoch0.pth.tar"), "--list_dir", str(root / "lists"),
             "--num_clips", "2", "--out", str(tmp_path / "eval"), "--no_cache"]  # fmt: skip
    record = evaluate(get_args_parser().parse_args(flags))
    assert record["videos"]["listed_test"] == n_test and record["videos"]["test"] == n_test - 1  # all readable ones
    assert record["videos"]["listed_train"] == n_train and record["videos"]["train"] == n_train - 1
    assert record["data_warnings"]["unreadable_video"] == 2 and record["data_warnings"]["short_video"] >= 2
    assert record["data_warnings"]["corrupt_frame"] >= 1

    # the cut .avi: VideoMoCo decodes the raw videos itself, skips it with a count and trains on the rest
    ckp = tmp_path / "videomoco"
    command = [
        sys.executable, os.path.join(REPO, "videomoco", "train.py"), str(root / "raw"), "--train_subdir", "UCF-101",
        "--video_exts", "avi", "--train_list", str(root / "raw" / "ucfTrainTestlist" / "trainlist01.txt"),
        "--metadata_cache", str(ckp / "probe.json"), "-a", "mc3_18", "-fpc", "4", "-cs", "16", "--moco-dim", "16",
        "-b", "4", "--moco-k", "8", "-j", "0", "--seed", "0", "-p", "1", "--exact_dirs", "--no_tensorboard",
        "--epochs", "1", "--log_dir", str(ckp / "log"), "--ckp_dir", str(ckp / "ckp"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=_quiet_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert warning_counts(result.stdout + result.stderr)["unreadable_video"] >= 1, result.stdout[-2000:]


# ------------------------------------------------------------------------------------------ bad-input matrix
# Every entry point x every kind of bad input, in-process (main(args) under run_cli, as its `__main__` does): one
# line on stderr, exit code 2, and the workspace (a copy of the raw videos, lists, previous outputs) byte-identical.


def tree_state(root) -> dict[str, str]:
    """{relative path: md5 of the bytes, or 'dir'} of everything under root: byte-identical made checkable."""
    import hashlib

    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            state[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                state[os.path.relpath(os.path.join(folder, name), root)] = hashlib.md5(handle.read()).hexdigest()
    return state


@pytest.fixture(scope="module")
def workspace(synth_dataset, tmp_path_factory):
    """W/raw (copy of the raw videos + official splits), W/lists (good lists), W/gone (the same lists pointing at
    frame folders that do not exist), W/empty_lists (empty lists), W/empty_splits (empty official lists),
    W/gone_splits (official lists naming absent videos), W/empty.txt, W/garbage.pth, W/adir/, W/novideos/, and
    W/out/ with the files of an earlier good run."""
    root = tmp_path_factory.mktemp("bad_inputs")
    shutil.copytree(synth_dataset.raw_root, root / "raw")
    shutil.copytree(synth_dataset.list_dir / "ucf101", root / "lists" / "ucf101")
    frames = str(synth_dataset.frame_root)
    for folder, rewrite in (("gone", lambda t: t.replace(frames, "/nonexistent/frames")), ("empty_lists", None)):
        (root / folder / "ucf101").mkdir(parents=True)
        for item in (root / "lists" / "ucf101").iterdir():
            text = item.read_text()
            keep = item.name == "ClassInd.txt" or item.suffix == ".json"
            (root / folder / "ucf101" / item.name).write_text(text if keep else rewrite(text) if rewrite else "")
    for folder, text in (("empty_splits", ""), ("gone_splits", "Nowhere/v_Nowhere_g01_c01.avi 1\n")):
        shutil.copytree(root / "raw" / "ucfTrainTestlist", root / folder)
        for name in ("trainlist01.txt", "testlist01.txt", "trainlist02.txt", "testlist02.txt"):
            (root / folder / name).write_text(text)
    (root / "empty.txt").write_text("")
    (root / "garbage.pth").write_bytes(bytes(range(256)) * 8)
    for name in ("adir", "novideos", "out"):
        (root / name).mkdir()
    (root / "out" / "earlier_result.txt").write_text("a previous good output\n")
    return root


def _entry_points():
    """name -> (callable running argv like the script's __main__, tiny good argv built from the workspace W)."""
    from cpd.main import main as cpd_main
    from evaluation import evaluate as unified
    from memdpc.main import main as memdpc_main
    from memdpc.opts import get_args_parser as memdpc_parser
    from memdpc.opts import get_eval_args_parser as memdpc_eval_parser
    from memdpc.test import main as memdpc_test
    from process_data import extract_frames, resize_video, synth, write_splits
    from shared_utils.cli import run_cli
    from videomoco import eval as vm_eval
    from videomoco import train as vm_train
    from videomoco.opts import get_args_parser as vm_parser
    from videomoco.opts import get_eval_args_parser as vm_eval_parser
    from vtdl import main as vtdl_ft
    from vtdl import test as vtdl_test
    from vtdl import train_temporal_dis as vtdl_pretrain

    def parsed(main, parser):
        return lambda argv: run_cli(main, parser().parse_args(argv))

    memdpc_small = "--gpu cpu -j 0 --img_dim 32 --num_seq 3 --seq_len 5 --ds 1 --batch_size 2 --epochs 1".split()
    vtdl_lists = ["--train_list", "{W}/lists/ucf101/ucf101_rgb_train_split_1.txt", "--val_list",
                  "{W}/lists/ucf101/ucf101_rgb_val_split_1.txt"]  # fmt: skip
    vtdl_small = "--arch r3d --data_length 8 --spatial_size 32 --gpus cpu --workers 0 --epochs 1".split()
    vm_small = "-a mc3_18 -fpc 4 -cs 16 -b 2 -j 0 --epochs 1 --no_tensorboard".split()
    cpd_small = "--model_depth 10 --sample_size 32 --sample_duration 8 --stride_size 2 --batch_size 2 --n_threads 0"
    return {
        "memdpc pretrain": (parsed(memdpc_main, memdpc_parser), memdpc_small + [
            "--pred_step", "1", "--no_tensorboard", "--csv_root", "{W}/lists", "--output_dir", "{W}/out/m"]),
        "memdpc finetune/test": (parsed(memdpc_test, memdpc_eval_parser), memdpc_small + [
            "--csv_root", "{W}/lists", "--output_dir", "{W}/out/mt"]),
        "vtdl pretrain": (parsed(vtdl_pretrain.main, vtdl_pretrain.get_pretrain_args_parser), [
            "--dataset", "ucf101", "--train_list", "{W}/lists/ucf101/ucf101_rgb_train_split_1.txt", "--batch_size",
            "2", "--nce_k", "8", "--data_length", "8", "--spatial_size", "32", "--epochs", "1", "--num_workers", "0",
            "--no_tensorboard", "--output_dir", "{W}/out/v"]),
        "vtdl finetune": (parsed(vtdl_ft.main, vtdl_ft.get_args_parser), vtdl_small + vtdl_lists + [
            "--method", "ft", "--dataset", "ucf101", "--output_dir", "{W}/out/vf"]),
        "vtdl test": (parsed(vtdl_test.main, vtdl_test.get_args_parser), vtdl_small + vtdl_lists + [
            "--dataset", "ucf101", "--weights", "{W}/garbage.pth", "--output_dir", "{W}/out/vt"]),
        "videomoco pretrain": (parsed(vm_train.main, vm_parser), vm_small + [
            "{W}/raw", "--train_subdir", "UCF-101", "--video_exts", "avi", "--exact_dirs", "--log_dir",
            "{W}/out/vm_log", "--ckp_dir", "{W}/out/vm_ckp"]),
        "videomoco finetune/test": (parsed(vm_eval.main, vm_eval_parser), vm_small + [
            "--video_dir", "{W}/raw/UCF-101", "--split_dir", "{W}/raw/ucfTrainTestlist", "--exact_dirs",
            "--log_dir", "{W}/out/ve_log", "--ckp_dir", "{W}/out/ve_ckp"]),
        "cpd pretrain": (lambda argv: run_cli(cpd_main, argv), cpd_small.split() + [
            "--phase", "pretraining", "--dataset", "ins", "--video_path", "{W}/raw/UCF-101", "--dataset_file",
            "{W}/lists/ucf101/ucf101_01.json", "--result_path", "{W}/out/cp"]),
        "cpd finetune/test": (lambda argv: run_cli(cpd_main, argv), cpd_small.split() + [
            "--phase", "finetuning", "--dataset", "ucf101", "--n_finetune_classes", "4", "--video_path",
            "{W}/raw/UCF-101", "--dataset_file", "{W}/lists/ucf101/ucf101_01.json", "--result_path", "{W}/out/cf"]),
        "evaluate": (lambda argv: run_cli(unified.main, argv), [
            "--method", "memdpc", "--list_dir", "{W}/lists", "--num_clips", "1", "--device", "cpu", "--override",
            "img_dim=32", "--out", "{W}/out"]),
        "extract_frames": (parsed(extract_frames.main, extract_frames.get_args_parser), [
            "--video_root", "{W}/raw/UCF-101", "--frame_root", "{W}/out/frames", "--quiet"]),
        "write_splits": (parsed(write_splits.main, write_splits.get_args_parser), [
            "--dataset", "ucf101", "--split_dir", "{W}/raw/ucfTrainTestlist", "--frame_root", str(FRAMES_MARK),
            "--out", "{W}/out", "--quiet"]),
        "resize_video": (parsed(resize_video.main, resize_video.get_args_parser), [
            "--video_root", "{W}/raw/UCF-101", "--out_root", "{W}/out/resized", "--quiet"]),
        "synth": (parsed(synth.main, synth.get_args_parser), [
            "--out", "{W}/out/synth", "--classes", "2", "--train_per_class", "1", "--test_per_class", "1",
            "--frames", "8", "--width", "32", "--height", "32"]),
    }  # fmt: skip


FRAMES_MARK = "{FRAMES}"

# (entry point, bad input) -> flags appended to (or replacing, by flag name) the good argv
BAD_INPUTS = {
    "memdpc pretrain": {
        "batch 0": ["--batch_size", "0"], "missing lists": ["--csv_root", "/nonexistent"],
        "empty lists": ["--csv_root", "{W}/empty_lists"], "pretrain is a dir": ["--pretrain", "{W}/adir"],
        "garbage pretrain": ["--pretrain", "{W}/garbage.pth"], "frames gone": ["--csv_root", "{W}/gone"],
    },
    "memdpc finetune/test": {
        "batch -1": ["--batch_size", "-1"], "missing lists": ["--csv_root", "/nonexistent"],
        "empty lists": ["--csv_root", "{W}/empty_lists"], "test is a dir": ["--test", "{W}/adir"],
        "garbage test ckpt": ["--test", "{W}/garbage.pth"], "frames gone": ["--csv_root", "{W}/gone"],
    },
    "vtdl pretrain": {
        "batch 0": ["--batch_size", "0"], "missing list": ["--train_list", "/nonexistent/list.txt"],
        "empty list": ["--train_list", "{W}/empty_lists/ucf101/ucf101_rgb_train_split_1.txt"],
        "list is a dir": ["--train_list", "{W}/adir"], "garbage resume": ["--resume", "{W}/garbage.pth"],
        "frames gone": ["--train_list", "{W}/gone/ucf101/ucf101_rgb_train_split_1.txt"],
    },
    "vtdl finetune": {
        "epochs -1": ["--epochs", "-1"], "missing list": ["--train_list", "/nonexistent/list.txt"],
        "empty list": ["--train_list", "{W}/empty_lists/ucf101/ucf101_rgb_train_split_1.txt"],
        "list is a dir": ["--val_list", "{W}/adir"], "garbage weights": ["--weights", "{W}/garbage.pth"],
        "frames gone": ["--train_list", "{W}/gone/ucf101/ucf101_rgb_train_split_1.txt"],
    },
    "vtdl test": {
        "clips 0": ["--test_clips", "0"], "missing list": ["--val_list", "/nonexistent/list.txt"],
        "empty list": ["--val_list", "{W}/empty_lists/ucf101/ucf101_rgb_val_split_1.txt"],
        "weights is a dir": ["--weights", "{W}/adir"], "garbage weights": ["--weights", "{W}/garbage.pth"],
        "frames gone": ["--val_list", "{W}/gone/ucf101/ucf101_rgb_val_split_1.txt"],
    },
    "videomoco pretrain": {
        "batch 0": ["-b", "0"], "missing data": ["--train_subdir", "nonexistent"],
        "empty list": ["--train_list", "{W}/empty.txt"], "list is a dir": ["--train_list", "{W}/adir"],
        "garbage resume": ["--resume", "{W}/garbage.pth"], "videos gone": ["--train_list", "{W}/gone_splits/trainlist01.txt"],
    },
    "videomoco finetune/test": {
        "batch 0": ["-b", "0"], "missing videos": ["--video_dir", "/nonexistent"],
        "empty lists": ["--split_dir", "{W}/empty_splits"], "pretrained is a dir": ["--pretrained", "{W}/adir"],
        "garbage pretrained": ["--pretrained", "{W}/garbage.pth"], "videos gone": ["--split_dir", "{W}/gone_splits"],
    },
    "cpd pretrain": {
        "batch 0": ["--batch_size", "0"], "missing videos": ["--video_path", "/nonexistent"],
        "empty list": ["--dataset_file", "{W}/empty.txt"], "list is a dir": ["--dataset_file", "{W}/adir"],
        "garbage resume": ["--resume_path", "{W}/garbage.pth"], "videos gone": ["--video_path", "{W}/novideos"],
    },
    "cpd finetune/test": {
        "lr -1": ["--learning_rate", "-1"], "missing videos": ["--video_path", "/nonexistent"],
        "empty list": ["--dataset_file", "{W}/empty.txt"], "pretrain is a dir": ["--pretrain_path", "{W}/adir"],
        "garbage pretrain": ["--pretrain_path", "{W}/garbage.pth"], "videos gone": ["--video_path", "{W}/novideos"],
    },
    "evaluate": {
        "batch -4": ["--batch_size", "-4"], "clips 0": ["--num_clips", "0"], "clips -1": ["--num_clips", "-1"],
        "missing lists": ["--list_dir", "/nonexistent"], "empty lists": ["--list_dir", "{W}/empty_lists"],
        "ckpt is a dir": ["--ckpt", "{W}/adir"], "garbage ckpt": ["--ckpt", "{W}/garbage.pth"],
        "frames gone": ["--list_dir", "{W}/gone"], "out is a file": ["--out", "{W}/out/earlier_result.txt"],
    },
    "extract_frames": {
        "short side -5": ["--short_side", "-5"], "-j -3": ["-j", "-3"], "quality 0": ["--quality", "0"],
        "missing videos": ["--video_root", "/nonexistent"], "no videos": ["--video_root", "{W}/novideos"],
        "frame root is a file": ["--frame_root", "{W}/out/earlier_result.txt"],
    },
    "write_splits": {
        "split 7": ["--splits", "7"], "missing splits": ["--split_dir", "/nonexistent"],
        "empty splits": ["--split_dir", "{W}/empty_splits"], "splits is a file": ["--split_dir", "{W}/empty.txt"],
        "frames gone": ["--frame_root", "{W}/adir"], "out is a file": ["--out", "{W}/out/earlier_result.txt"],
    },
    "resize_video": {
        "odd short side": ["--short_side", "3"], "-j 0": ["-j", "0"], "missing videos": ["--video_root", "/nonexistent"],
        "no videos": ["--video_root", "{W}/novideos"], "out is a file": ["--out_root", "{W}/out/earlier_result.txt"],
    },
    "synth": {
        "classes 0": ["--classes", "0"], "frames 1": ["--frames", "1"], "-j 0": ["-j", "0"],
        "odd width": ["--width", "33"], "out is a file": ["--out", "{W}/out/earlier_result.txt"],
    },
}  # fmt: skip
MATRIX = [(entry, bad) for entry, cases in BAD_INPUTS.items() for bad in cases]


def with_flags(argv: list[str], extra: list[str]) -> list[str]:
    """argv with the flags of `extra` replaced (same flag name) or appended."""
    argv = list(argv)
    for i in range(0, len(extra), 2):
        flag, value = extra[i], extra[i + 1]
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


@pytest.mark.parametrize("entry, bad", MATRIX, ids=[f"{e}: {b}" for e, b in MATRIX])
def test_bad_input_matrix_one_line_exit_2_and_nothing_changed(entry, bad, workspace, synth_dataset, capsys,
                                                               monkeypatch):  # fmt: skip
    monkeypatch.setenv("TQDM_DISABLE", "1")
    run, good = _entry_points()[entry]
    fill = {"{W}": str(workspace), FRAMES_MARK: str(synth_dataset.frame_root)}
    argv = []
    for item in with_flags(good, BAD_INPUTS[entry][bad]):
        for mark, value in fill.items():
            item = item.replace(mark, value)
        argv.append(item)
    before = tree_state(workspace)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, (exit_info.value.code, err[-2000:])
    assert len(lines) == 1 and "error" in lines[0] and len(lines[0]) < 500, err[-2000:]
    after = tree_state(workspace)
    changed = sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
    assert not changed, changed


# A few through the real command line (the `__main__` wiring, sys.argv, imports from the script's folder).
MISSING = "/nonexistent/dataset"
BAD_COMMANDS = {
    "memdpc pretrain, missing csv_root": ["memdpc/main.py", "--gpu", "cpu", "--csv_root", MISSING],
    "videomoco eval, unknown arch": ["videomoco/eval.py", "-a", "resnet99", MISSING],
    "unified evaluation, missing lists": ["-m", "evaluation", "--method", "vtdl", "--list_dir", MISSING],
    "bad flag value": ["memdpc/main.py", "--gpu", "cpu", "--epochs", "many"],
}


@pytest.mark.parametrize("name", list(BAD_COMMANDS))
def test_bad_flags_and_paths_end_with_one_line_and_exit_2(name, tmp_path):
    result = subprocess.run([sys.executable, *BAD_COMMANDS[name]], cwd=REPO, capture_output=True, text=True,
                            env=_quiet_env(), timeout=300)  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert "error" in lines[-1].lower() and len(lines[-1]) < 400, lines


HELP_PARSERS = {
    "memdpc pretrain": ("memdpc.opts", "get_args_parser"),
    "memdpc finetune/test": ("memdpc.opts", "get_eval_args_parser"),
    "vtdl pretrain": ("vtdl.opts", "get_pretrain_args_parser"),
    "vtdl finetune/test": ("vtdl.opts", "get_args_parser"),
    "videomoco pretrain": ("videomoco.opts", "get_args_parser"),
    "videomoco finetune/test": ("videomoco.opts", "get_eval_args_parser"),
    "cpd": ("cpd.opts", "get_args_parser"),
    "evaluate": ("evaluation.evaluate", "get_args_parser"),
    "extract_frames": ("process_data.extract_frames", "get_args_parser"),
    "write_splits": ("process_data.write_splits", "get_args_parser"),
    "resize_video": ("process_data.resize_video", "get_args_parser"),
    "synth": ("process_data.synth", "get_args_parser"),
}


@pytest.mark.parametrize("entry", list(HELP_PARSERS))
def test_help_shows_every_options_default(entry):
    """--help names a default (or 'required') for every option, e.g. '(default: 128)'."""
    import importlib

    module, name = HELP_PARSERS[entry]
    parser = getattr(importlib.import_module(module), name)()
    parser.format_help()  # what --help prints (gives options without a help text their line)
    for action in parser._actions:
        if not action.option_strings or action.default is argparse.SUPPRESS or action.dest == "help":
            continue
        block = " ".join(parser._get_formatter()._format_action(action).split())  # this option's --help lines
        assert "default" in block.lower() or "(required)" in block, block
