"""Fault tests: interrupted checkpoint writes (more fault tests live with the methods' resume tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

from shared_utils.checkpoint import CheckpointWriter, load_checkpoint

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
