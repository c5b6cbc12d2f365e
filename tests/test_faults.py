"""Fault tests: interrupted checkpoint writes, kill -9 mid-epoch then resume (VTDL, MemDPC; VideoMoCo's is in
test_videomoco_train.py), a dataset with one of each fault, bad flags (more one-line-error tests live per method)."""

from __future__ import annotations

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

from process_data.write_splits import write_splits
from shared_utils.checkpoint import CheckpointWriter, load_checkpoint
from shared_utils.data import DataWarnings
from shared_utils.evaluate import evaluate, get_args_parser

WRITER = textwrap.dedent(
    """
    import sys, torch
    from shared_utils.checkpoint import CheckpointWriter
    writer = CheckpointWriter(sys.argv[1], latest_name="checkpoint.pth", epoch_pattern=None, best_name=None)
    payload = torch.empty(48 * 2**20 // 4)  # 48 MB per write, so a kill lands mid-write
    for step in range(10**6):
        payload.fill_(float(step))
        writer.save({"step": step, "payload": payload})
        print(step, flush=True)
    """
)


def kill_writer_mid_write(folder) -> list[str]:
    """Start the writer, let it finish two checkpoints, SIGKILL it during the third; return leftover temp files."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert [int(proc.stdout.readline()) for _ in range(2)] == [0, 1]
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


def test_checkpoint_killed_mid_write_never_replaces_the_good_file(tmp_path):
    for attempt in range(3):  # a kill can race just past a rename; retry until it lands inside a write
        folder = tmp_path / f"try{attempt}"
        leftovers = kill_writer_mid_write(folder)
        if leftovers:
            break
    assert leftovers, "the kill never landed inside a write"
    ckpt = load_checkpoint(folder / "checkpoint.pth")
    assert ckpt["step"] >= 1
    assert torch.all(ckpt["payload"] == float(ckpt["step"]))  # complete and self-consistent, never a torn write
    writer = CheckpointWriter(str(folder), latest_name="checkpoint.pth", epoch_pattern=None, best_name=None)
    assert writer.latest() == str(folder / "checkpoint.pth")
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]  # stale temp files are cleaned up


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


# ------------------------------------------------------------------------------------------ bad flags and paths

MISSING = "/nonexistent/dataset"
BAD_COMMANDS = {
    "memdpc pretrain, missing csv_root": ["memdpc/main.py", "--gpu", "cpu", "--csv_root", MISSING],
    "memdpc test, unknown --net": ["memdpc/test.py", "--gpu", "cpu", "--net", "resnet99"],
    "vtdl pretrain, missing list": ["vtdl/train_temporal_dis.py", "--train_list", MISSING + "/list.txt"],
    "videomoco pretrain, missing data": ["videomoco/train.py", MISSING],
    "videomoco eval, unknown arch": ["videomoco/eval.py", "-a", "resnet99", MISSING],
    "cpd pretrain, missing videos": ["cpd/main.py", "--video_path", MISSING, "--dataset_file", MISSING + ".json"],
    "unified evaluation, missing lists": ["-m", "shared_utils.evaluate", "--method", "vtdl", "--list_dir", MISSING],
    "extract_frames, missing videos": [
        "-m",
        "process_data.extract_frames",
        "--video_root",
        MISSING,
        "--frame_root",
        MISSING,
    ],
    "bad flag value": ["memdpc/main.py", "--gpu", "cpu", "--epochs", "many"],
}


@pytest.mark.parametrize("name", list(BAD_COMMANDS))
def test_bad_flags_and_paths_end_with_one_line_and_exit_2(name, tmp_path):
    result = subprocess.run([sys.executable, *BAD_COMMANDS[name]], cwd=REPO, capture_output=True, text=True,
                            env=_quiet_env(), timeout=300)  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and len(lines) <= 2, result.stderr  # argparse adds a usage line
    assert "error" in lines[-1].lower() and len(lines[-1]) < 400, lines
