"""Behaviour of the shared infrastructure: sampling, loading, augmentation, checkpoints, RNG, DDP, CLI errors."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from argparse import Namespace

import av
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from shared_utils import checkpoint as ckpt
from shared_utils import dist, runtime
from shared_utils.cli import UserError
from shared_utils.data import DataWarnings, EpochSampler, build_loader, collate_skip_none, unpack_index
from shared_utils.frames import (
    FrameClipDataset,
    UnreadableClip,
    VideoEntry,
    clip_indices,
    count_frames,
    load_frames,
    read_class_index,
    read_frame_csv,
    read_video_list,
)
from shared_utils.metrics import VideoScoreAggregator, accuracy, mean_class_accuracy
from shared_utils.rng import capture_rng_state, restore_rng_state, seed_everything
from shared_utils.transforms import (
    ClipCompose,
    ColorJitter,
    GPUClipAugment,
    Normalize,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToCTHW,
)
from shared_utils.video import decode_frames, probe_video, video_entries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_frame_folder(folder, n, size=(24, 32), template="image_{:05d}.jpg"):
    """Frames whose red channel encodes the 0-based frame index (x 8), so indices can be read back."""
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        img = np.zeros((*size, 3), np.uint8)
        img[..., 2] = (i * 8) % 256  # BGR: channel 2 is red
        img[..., 1] = 128
        cv2.imwrite(os.path.join(folder, template.format(i + 1)), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    return folder


def frame_ids(frames):
    return [int(round(f[..., 0].mean() / 8)) for f in frames]


# --------------------------------------------------------------------------------------------------- sampling


def test_clip_indices_modes_and_padding():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = clip_indices(40, 8, 3, "random", 1, rng)
        assert idx.shape == (1, 8) and idx[0, 0] >= 0 and idx[0, -1] <= 39
        assert np.all(np.diff(idx[0]) == 3)
    assert clip_indices(40, 8, 3, "center").tolist() == [[9, 12, 15, 18, 21, 24, 27, 30]]
    uniform = clip_indices(40, 4, 2, "uniform", 3)
    assert uniform[:, 0].tolist() == [0, 16, 33] and uniform[-1, -1] == 39
    assert clip_indices(5, 4, 2, "center").tolist() == [[0, 2, 4, 4]]  # repeat the last frame
    assert clip_indices(5, 4, 2, "center", pad="loop").tolist() == [[0, 2, 4, 1]]
    a = clip_indices(100, 8, 2, "random", 4, np.random.default_rng(7))
    b = clip_indices(100, 8, 2, "random", 4, np.random.default_rng(7))
    assert np.array_equal(a, b)
    with pytest.raises(UnreadableClip):
        clip_indices(0, 4)


def test_epoch_sampler_partitions_resumes_and_is_deterministic():
    full = EpochSampler(10, shuffle=True, seed=3, rank=0, world_size=1)
    full.set_epoch(2)
    items = list(full)
    assert sorted(i for i, _ in items) == list(range(10))
    again = EpochSampler(10, shuffle=True, seed=3, rank=0, world_size=1)
    again.set_epoch(2)
    assert list(again) == items
    other_epoch = EpochSampler(10, shuffle=True, seed=3, rank=0, world_size=1)
    other_epoch.set_epoch(3)
    assert [i for i, _ in other_epoch] != [i for i, _ in items]
    ranks = [EpochSampler(10, True, 3, rank=r, world_size=3, batch_size=2) for r in range(3)]
    for s in ranks:
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    assert [len(p) for p in per_rank] == [4, 4, 4]  # padded to 12
    assert {i for p in per_rank for i, _ in p} == set(range(10))
    resumed = EpochSampler(10, True, 3, rank=0, world_size=1, batch_size=3)
    resumed.set_epoch(2)
    resumed.set_start_iteration(2)
    assert list(resumed) == items[6:] and len(resumed) == 4
    assert resumed.epoch_length() == 10  # the whole epoch, whatever was skipped (a resumed loop's step count)
    resumed.set_epoch(3)
    assert len(resumed) == 10  # the skip applies to one epoch only


def test_unpack_index_gives_reproducible_generators():
    _, r1 = unpack_index((4, 123))
    _, r2 = unpack_index((4, 123))
    assert r1.random() == r2.random()
    idx, r3 = unpack_index(5)
    _, r4 = unpack_index(5)
    assert idx == 5 and r3.random() == r4.random()


# --------------------------------------------------------------------------------------------------- frames


def test_load_frames_reads_requested_indices_and_resizes(tmp_path):
    folder = write_frame_folder(tmp_path / "v", 12, size=(48, 64))
    frames = load_frames(str(folder), [0, 3, 3, 11])
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8
    assert frame_ids(frames) == [0, 3, 3, 11]
    small = load_frames(str(folder), [1, 2], short_side=24)
    assert small.shape == (2, 24, 32, 3)
    assert count_frames(str(folder)) == 12


def test_missing_and_truncated_frames_are_counted_and_replaced(tmp_path):
    folder = write_frame_folder(tmp_path / "v", 10)
    os.remove(folder / "image_00004.jpg")
    data = (folder / "image_00006.jpg").read_bytes()
    (folder / "image_00006.jpg").write_bytes(data[: len(data) // 2])
    warnings = DataWarnings()
    frames = load_frames(str(folder), [2, 3, 4, 5, 6], warnings=warnings)
    assert frame_ids(frames) == [2, 2, 4, 4, 6]  # nearest readable frame (ties -> earlier)
    counts = warnings.counts()
    assert counts["missing_frame"] == 1 and counts["corrupt_frame"] == 1
    assert "1 missing frames" in warnings.summary()
    with pytest.raises(UnreadableClip):
        load_frames(str(tmp_path / "empty"), [0, 1])


def test_split_readers_handle_official_quirks(tmp_path):
    (tmp_path / "classInd.txt").write_bytes(b"1 Alpha\r\n2 Beta\r\n\r\n")
    assert read_class_index(str(tmp_path / "classInd.txt")) == ["Alpha", "Beta"]
    root = tmp_path / "frames"
    (tmp_path / "train.csv").write_text(f"{root}/Beta/v_Beta_g01_c01/,40\n{root}/alpha/v_Alpha_g02_c01/,7\n")
    entries = read_frame_csv(str(tmp_path / "train.csv"), ["Alpha", "Beta"])
    assert [(e.label, e.n_frames, e.video_id) for e in entries] == [
        (1, 40, "Beta/v_Beta_g01_c01"),
        (0, 7, "alpha/v_Alpha_g02_c01"),
    ]
    (tmp_path / "list.txt").write_text("/orig/path/v_x 33 5\n\n/orig/path/v_y 12 0\n")
    listed = read_video_list(str(tmp_path / "list.txt"), root=str(root), basename_only=True)
    assert listed[0] == VideoEntry(f"{root}/v_x", 33, 5, "frames/v_x")
    (tmp_path / "bad.csv").write_text("no-comma-here\n")
    with pytest.raises(UserError, match="expected"):
        read_frame_csv(str(tmp_path / "bad.csv"))
    with pytest.raises(UserError, match="not found"):
        read_frame_csv(str(tmp_path / "absent.csv"))


def test_frame_clip_dataset_modes_and_unreadable_videos(tmp_path):
    good = write_frame_folder(tmp_path / "A" / "good", 20)
    short = write_frame_folder(tmp_path / "A" / "short", 3)
    entries = [
        VideoEntry(str(good), 20, 0, "A/good"),
        VideoEntry(str(short), 3, 1, "A/short"),
        VideoEntry(str(tmp_path / "A" / "gone"), 9, 1, "A/gone"),
    ]
    warnings = DataWarnings()
    test_set = FrameClipDataset(entries, clip_len=4, stride=2, mode="test", num_clips=3, warnings=warnings)
    clip, label, index = test_set[0]
    assert clip.shape == (3, 4, 3, 24, 32) and label == 0 and index == 0
    first_clip_ids = (clip[0, :, 0].float().mean(dim=(1, 2)) / 8).round().int().tolist()
    assert first_clip_ids == [0, 2, 4, 6]  # uniform clip 0 starts at frame 0, stride 2
    short_clip, _, _ = test_set[1]
    assert short_clip.shape[:2] == (3, 4)
    assert test_set[2] is None
    assert warnings.counts()["unreadable_video"] == 1 and warnings.counts()["short_video"] >= 1
    train_set = FrameClipDataset(entries, 4, 2, "train", warnings=warnings)
    clip, label, index = train_set[(2, 99)]
    assert clip.shape == (4, 3, 24, 32) and index in (0, 1)  # replaced by a readable video
    batch = collate_skip_none([test_set[0], test_set[2]])
    assert batch[0].shape == (1, 3, 4, 3, 24, 32)


def test_warning_counts_cross_dataloader_workers(tmp_path):
    entries = [VideoEntry(str(tmp_path / f"gone{i}"), 5, 0, f"x/gone{i}") for i in range(6)]
    warnings = DataWarnings()
    dataset = FrameClipDataset(entries, 2, mode="val", warnings=warnings)
    loader = build_loader(dataset, batch_size=2, workers=2, collate_fn=collate_skip_none)
    assert [b for b in loader] == [None, None, None]
    assert warnings.counts()["unreadable_video"] == 6


def test_build_loader_leaves_global_rng_untouched(tmp_path):
    folder = write_frame_folder(tmp_path / "C" / "v", 8)
    dataset = FrameClipDataset([VideoEntry(str(folder), 8, 0, "C/v")] * 4, 2, mode="train")
    sampler = EpochSampler(4, seed=1, rank=0, world_size=1)
    torch.manual_seed(5)
    before = torch.get_rng_state()
    batches = list(build_loader(dataset, 2, sampler=sampler))
    assert torch.equal(before, torch.get_rng_state())
    assert len(batches) == 2 and batches[0][0].shape == (2, 2, 3, 24, 32)


# --------------------------------------------------------------------------------------------------- transforms


def test_cpu_transforms_are_clip_consistent():
    frame = torch.randint(0, 256, (1, 3, 40, 50), dtype=torch.uint8)
    clip = frame.repeat(6, 1, 1, 1)
    recipe = ClipCompose(
        [
            RandomResizedCrop(24, (0.2, 1.0)),
            RandomHorizontalFlip(),
            ColorJitter(0.4, 0.4, 0.4, 0.1),
            Normalize(),
            ToCTHW(),
        ]
    )
    for seed in range(5):
        out = recipe(clip, np.random.default_rng(seed))
        assert out.shape == (3, 6, 24, 24)
        assert torch.allclose(out[:, :1].expand_as(out), out)  # every frame got the same crop/flip/jitter
    per_frame = ColorJitter(0.8, 0.8, 0.8, 0.3, per_frame=True)(clip, np.random.default_rng(0))
    assert not torch.equal(per_frame[0], per_frame[1])
    gray = RandomGrayscale(p=0.5, per_frame=True)(clip, np.random.default_rng(1))
    is_gray = [bool((g[0] == g[1]).all() and (g[1] == g[2]).all()) for g in gray]
    assert any(is_gray) and not all(is_gray)
    a = recipe(clip, np.random.default_rng(3))
    b = recipe(clip, np.random.default_rng(3))
    assert torch.equal(a, b)


def test_gpu_augment_per_clip_vs_per_frame():
    x = torch.rand(4, 3, 1, 16, 16).repeat(1, 1, 5, 1, 1)
    consistent = GPUClipAugment(0.3, (0.4, 0.4, 0.4, 0.1), 1.0, 0.5)(x, torch.Generator().manual_seed(0))
    assert consistent.shape == x.shape
    assert torch.allclose(consistent[:, :, :1].expand_as(consistent), consistent, atol=1e-6)
    independent = GPUClipAugment(0.3, (0.4, 0.4, 0.4, 0.1), 1.0, 0.5, per_frame=True)(
        x, torch.Generator().manual_seed(0)
    )
    assert not torch.allclose(independent[:, :, :1].expand_as(independent), independent)
    plain = GPUClipAugment(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(x)
    assert torch.allclose(plain, (x - 0.5) / 0.25)


# --------------------------------------------------------------------------------------------------- video files


def write_lossless_video(path, n=120, fps=30, gop=10):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "rgb24"
        stream.options = {"qp": "0", "g": str(gop)}
        for i in range(n):
            img = np.zeros((24, 32, 3), np.uint8)
            img[..., 0] = i % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def test_decode_frames_exact_indices_with_seeking(tmp_path):
    path = write_lossless_video(tmp_path / "v.mp4")
    info = probe_video(path)
    assert (info.n_frames, info.width, info.height) == (120, 32, 24) and info.fps == 30
    wanted = [0, 1, 50, 51, 99, 119, 130]
    frames = decode_frames(path, wanted)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 50, 51, 99, 119, 119]
    assert decode_frames(path, [60, 61], short_side=12).shape == (2, 12, 16, 3)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00" * 4000)
    with pytest.raises(UnreadableClip):
        probe_video(str(bad))
    warnings = DataWarnings()
    entries = video_entries([path, str(bad)], [3, 4], warnings=warnings)
    assert [e.label for e in entries] == [3] and warnings.counts()["unreadable_video"] == 1


# --------------------------------------------------------------------------------------------------- checkpoints


class Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width))
        self.head = nn.Linear(width, 2)


def test_atomic_save_keeps_previous_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    ckpt.save_checkpoint({"v": torch.tensor([1.0])}, path)

    def exploding_save(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint({"v": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["v"].item() == 1.0
    assert os.listdir(tmp_path) == ["checkpoint.pth"]  # no temp file left behind


def test_rng_state_roundtrip_through_weights_only_checkpoint(tmp_path):
    seed_everything(11)
    _ = (random.random(), np.random.rand(), torch.rand(2))
    ckpt.save_checkpoint({"rng": capture_rng_state()}, tmp_path / "r.pth")
    expected = (random.random(), np.random.rand(), torch.rand(3))
    seed_everything(999)
    restore_rng_state(ckpt.load_checkpoint(tmp_path / "r.pth")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_key_report_prefixes_and_strictness(tmp_path):
    source = Tiny()
    state = ckpt.add_prefix(source.state_dict(), "module.")
    target = Tiny()
    report = ckpt.load_state_dict_reported(target, ckpt.strip_prefix(state), strict=True)
    assert report.clean and torch.equal(target.head.weight, source.head.weight)
    partial = {k: v for k, v in ckpt.strip_prefix(state).items() if not k.startswith("head.")}
    partial["extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match="2 missing"):
        ckpt.load_state_dict_reported(Tiny(), partial, strict=True)
    report = ckpt.load_state_dict_reported(Tiny(), partial, allow_missing=["head.*"], allow_unexpected=["extra."])
    assert sorted(report.missing) == ["head.bias", "head.weight"] and report.unexpected == ["extra.weight"]
    wrong = ckpt.strip_prefix(state)
    wrong["head.weight"] = torch.zeros(5, 4)
    with pytest.raises(UserError, match="shape mismatch"):
        ckpt.load_state_dict_reported(Tiny(), wrong)
    ckpt.save_checkpoint({"state_dict": state, "epoch": 3, "args": Namespace(net="x")}, tmp_path / "p.pth.tar")
    report = ckpt.load_backbone(Tiny(), str(tmp_path / "p.pth.tar"), required_prefixes=("backbone.",))
    assert all(k.startswith(("backbone.", "head.")) for k in report.loaded)
    ckpt.save_checkpoint({"state_dict": {"other.weight": torch.zeros(1)}}, tmp_path / "q.pth")
    with pytest.raises(UserError, match="did not provide"):
        ckpt.load_backbone(Tiny(), str(tmp_path / "q.pth"))


def test_load_checkpoint_rejects_unsafe_and_garbage_files(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable"):
        ckpt.load_checkpoint(tmp_path / "garbage.pth")
    torch.save({"fn": Tiny}, tmp_path / "unsafe.pth")
    with pytest.raises(UserError, match="allowlist"):
        ckpt.load_checkpoint(tmp_path / "unsafe.pth")
    torch.save({"acc": np.float64(0.5), "args": Namespace(lr=0.1)}, tmp_path / "numpy.pth")
    loaded = ckpt.load_checkpoint(tmp_path / "numpy.pth")
    assert float(loaded["acc"]) == 0.5 and loaded["args"].lr == 0.1


def test_run_state_resume_restores_everything(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.5)
    x = torch.randn(8, 3)
    model.head(model.backbone(x)).sum().backward()
    opt.step()
    sched.step()
    run = ckpt.RunState({"model": model, "optimizer": opt, "scheduler": sched}, epoch=4, global_step=40)
    args = Namespace(lr=0.1, d=torch.device("cpu"))
    run.save(str(tmp_path / "c.pth"), args, queue=torch.arange(3))
    expected_next = torch.rand(2)
    model2 = Tiny()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, 1, 0.5)
    run2 = ckpt.RunState({"model": model2, "optimizer": opt2, "scheduler": sched2}, epoch=0, global_step=0)
    loaded = run2.load(str(tmp_path / "c.pth"))
    assert torch.equal(torch.rand(2), expected_next)
    assert run2["epoch"] == 4 and run2["global_step"] == 40 and loaded["args"]["d"] == "cpu"
    assert torch.equal(loaded["queue"], torch.arange(3))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.05)
    assert torch.equal(
        opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"]
    )


def test_run_state_writes_the_original_keys_prefixes_and_order(tmp_path):
    """Per-method mapping: part name -> original key, a 'module.' prefix on save (stripped on load), the original
    files' key order, several argument keys, StatePart values; optional parts may be absent, others fail."""
    model, pointer = Tiny(), {"index": 5}
    index = ckpt.StatePart(lambda: pointer["index"], lambda v: pointer.update(index=int(v)))
    run = ckpt.RunState(
        {"model": model, "index": index}, keys={"model": "state_dict", "index": "queue_index"},
        prefixes={"model": "module."}, optional={"index"}, epoch=2,
    )  # fmt: skip
    run.save(str(tmp_path / "c.pth"), Namespace(lr=0.1), arg_keys=("opt", "args"), order=("epoch", "opt"), extra=1)
    saved = ckpt.load_checkpoint(str(tmp_path / "c.pth"))
    assert list(saved) == ["epoch", "opt", "state_dict", "queue_index", "rng", "args", "extra"]
    assert all(k.startswith("module.") for k in saved["state_dict"]) and saved["queue_index"] == 5
    assert saved["opt"] == saved["args"] == {"lr": 0.1} and isinstance(saved["rng"], list)
    fresh = Tiny()
    run2 = ckpt.RunState({"model": fresh, "index": index}, keys=run.keys, prefixes=run.prefixes, optional={"index"})
    pointer["index"] = 0
    run2.load(saved)
    assert pointer["index"] == 5 and torch.equal(fresh.head.weight, model.head.weight)
    del saved["queue_index"]
    run2.load(saved)  # optional: kept as it is
    with pytest.raises(UserError, match="no 'state_dict' entry"):
        run2.load({"queue_index": 1})


def test_checkpoint_writer_names_best_and_pruning(tmp_path):
    writer = ckpt.CheckpointWriter(
        str(tmp_path),
        latest_name=None,
        epoch_pattern="epoch{epoch}.pth.tar",
        best_name="model_best.pth.tar",
        keep_last=1,
    )
    for epoch in range(3):
        writer.save({"epoch": epoch}, epoch=epoch, is_best=(epoch == 1))
    assert sorted(os.listdir(tmp_path)) == ["epoch2.pth.tar", "model_best.pth.tar"]
    assert ckpt.load_checkpoint(tmp_path / "model_best.pth.tar")["epoch"] == 1
    assert writer.latest().endswith("epoch2.pth.tar")
    moco = ckpt.CheckpointWriter(
        str(tmp_path / "m"),
        latest_name="checkpoint.pth.tar",
        epoch_pattern="checkpoint_{epoch:04d}.pth.tar",
        best_name=None,
    )
    moco.save({"epoch": 7}, epoch=7)
    assert sorted(os.listdir(tmp_path / "m")) == ["checkpoint.pth.tar", "checkpoint_0007.pth.tar"]


# --------------------------------------------------------------------------------------------------- metrics


def test_metrics():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    target = torch.tensor([1, 1, 0, 0])
    top1, top2 = accuracy(logits, target, (1, 2))
    assert top1 == 50.0 and top2 == 75.0
    assert mean_class_accuracy([1, 0, 2, 0], [1, 1, 0, 0]) == pytest.approx(50.0)
    agg = VideoScoreAggregator()
    agg.add(["a", "a", "b"], torch.tensor([[1.0, 0.0], [0.0, 0.6], [0.2, 0.8]]), [0, 0, 1])
    scores = agg.video_scores()
    assert torch.allclose(scores["a"], torch.tensor([0.5, 0.3]))
    assert agg.compute((1,)) == {"top1": 100.0, "mean_class": 100.0, "videos": 2}


# --------------------------------------------------------------------------------------------------- distributed


def _ddp_worker(args, plan):
    ctx = runtime.setup_worker(plan)
    rank = ctx.rank
    x = torch.full((2, 3), float(rank))
    mean = dist.all_reduce_mean(torch.tensor([float(rank)]))
    gathered = dist.concat_all_gather(x)
    batch = torch.arange(4, dtype=torch.float32).view(2, 2) + 10 * rank
    shuffled, idx_unshuffle = dist.batch_shuffle(batch)
    restored = dist.batch_unshuffle(shuffled, idx_unshuffle)
    sampler = EpochSampler(7, shuffle=True, seed=0)
    sampler.set_epoch(1)
    torch.save(
        {
            "world": ctx.world_size,
            "distributed": ctx.distributed,
            "mean": mean,
            "gathered": gathered,
            "restored": restored,
            "batch": batch,
            "samples": [i for i, _ in sampler],
            "device": str(ctx.device),
        },
        os.path.join(args.out, f"rank{rank}.pt"),
    )
    dist.cleanup()


def test_run_context_is_immutable_and_describes_one_cpu_process():
    import dataclasses
    import pickle

    ctx = runtime.local_context("cpu", amp=True)  # --amp is a no-op on the CPU
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main, ctx.amp, ctx.gpu) == (
        0,
        1,
        False,
        True,
        False,
        None,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.rank = 1
    with ctx.autocast():
        assert not torch.is_autocast_enabled()
    assert ctx.as_dict() == {"rank": 0, "world_size": 1, "local_rank": 0, "distributed": False, "gpu": None,
                             "device": "cpu"}  # fmt: skip
    assert runtime.wrap_ddp(torch.nn.Linear(1, 1), ctx).__class__ is torch.nn.Linear
    plan = runtime.LaunchPlan(nprocs=2, gpu_ids=(0, 1), notes=("note",))
    assert pickle.loads(pickle.dumps(plan)) == plan  # travels to spawned workers unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.nprocs = 3
    assert ckpt.plain_args(Namespace(lr=0.1), ctx) == {"lr": 0.1, **ctx.as_dict()}


def test_ddp_two_gloo_processes(tmp_path):
    runtime.launch(_ddp_worker, Namespace(out=str(tmp_path)), runtime.LaunchPlan(nprocs=2))
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for res in results:
        assert res["world"] == 2 and res["distributed"] and res["device"] == "cpu"
        assert res["mean"].item() == pytest.approx(0.5)
        assert torch.equal(res["gathered"], torch.cat([torch.zeros(2, 3), torch.ones(2, 3)]))
        assert torch.equal(res["restored"], res["batch"])
    both = results[0]["samples"] + results[1]["samples"]
    assert len(both) == 8 and set(both) == set(range(7))  # padded by one wrap-around sample
    assert not set(results[0]["samples"][:3]) & set(results[1]["samples"][:3])


def test_parse_gpu_list():
    assert dist.parse_gpu_list("0,1") == [0, 1]
    assert dist.parse_gpu_list("") == [] and dist.parse_gpu_list("cpu") == []
    with pytest.raises(UserError):
        dist.parse_gpu_list("a,b")


# --------------------------------------------------------------------------------------------------- CLI errors


def run_snippet(code, *argv):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *argv], capture_output=True, text=True, cwd=REPO
    )


def test_bad_flags_and_paths_give_one_line_and_exit_code_2():
    code = """
        import sys
        from shared_utils.cli import ArgumentParser, run_cli, require_dir
        p = ArgumentParser(prog="tool")
        p.add_argument("--root", default="x")
        def main():
            args = p.parse_args()
            require_dir(args.root, "dataset root")
        run_cli(main)
    """
    bad_flag = run_snippet(code, "--nope")
    assert bad_flag.returncode == 2
    assert bad_flag.stderr.strip().splitlines() == ["tool: error: unrecognized arguments: --nope (see --help)"]
    bad_path = run_snippet(code, "--root", "/definitely/missing")
    assert bad_path.returncode == 2 and "Traceback" not in bad_path.stderr
    assert len(bad_path.stderr.strip().splitlines()) == 1
    assert "dataset root not found: '/definitely/missing'" in bad_path.stderr


# --------------------------------------------------------------------------------------------------- logging


def test_metric_logger_header_and_json_lines(tmp_path, capsys):
    from shared_utils.logger import MetricLogger, SmoothedValue, append_json_line, log_run_header

    meter = SmoothedValue(window_size=2)
    for v in (1.0, 2.0, 6.0):
        meter.update(v)
    assert meter.global_avg == 3.0 and meter.avg == 4.0 and meter.max == 6.0
    logger = MetricLogger()
    seen = []
    for i in logger.log_every(range(4), print_freq=2, header="Epoch: [0]"):
        logger.update(loss=torch.tensor(float(i)))
        seen.append(i)
    assert seen == [0, 1, 2, 3] and logger.averages() == {"loss": 1.5}
    out = capsys.readouterr().out
    assert "Epoch: [0] [0/4]" in out and "Epoch: [0] [2/4]" in out and "Total time" in out
    log_run_header(Namespace(lr=0.1, device=torch.device("cpu")), str(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("command: ") and out[1].startswith("git: ") and '"lr": 0.1' in out[2]
    assert (tmp_path / "args.json").read_text().count('"device": "cpu"') == 1
    append_json_line(str(tmp_path / "log.txt"), {"epoch": 0, "loss": 1.5})
    append_json_line(str(tmp_path / "log.txt"), {"epoch": 1, "loss": 1.0})
    assert (tmp_path / "log.txt").read_text().splitlines() == ['{"epoch": 0, "loss": 1.5}', '{"epoch": 1, "loss": 1.0}']


def test_fix_flag_is_opt_in_named_and_validated():
    from shared_utils.cli import ArgumentParser, add_fix_flag, fix_enabled

    parser = ArgumentParser("prog")
    add_fix_flag(parser, {"schedule": "drop lr every milestone", "ft_lr": "backbone at lr/10"})
    assert parser.parse_args([]).fix == [] and not fix_enabled(parser.parse_args([]), "schedule")
    args = parser.parse_args(["--fix", "schedule", "--fix", "ft_lr"])
    assert fix_enabled(args, "schedule") and fix_enabled(args, "ft_lr")
    assert sorted(parser.parse_args(["--fix", "all"]).fix) == ["ft_lr", "schedule"]
    assert parser.parse_args(["--fix", "ft_lr,schedule"]).fix == ["ft_lr", "schedule"]
    assert parser.parse_args([]).fix == []  # the default list is never mutated by an earlier parse
    with pytest.raises(SystemExit) as err:
        parser.parse_args(["--fix", "nonsense"])
    assert err.value.code == 2


def test_the_shared_floor_imports_no_method_package():
    """shared_utils sits under the four methods: no module of it imports one (statically or by name); the
    unified evaluation, which needs them, lives above them in `evaluation`."""
    import ast

    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared_utils")
    methods = {"memdpc", "vtdl", "videomoco", "cpd", "evaluation", "scripts", "process_data"}
    offenders = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        tree = ast.parse(open(os.path.join(folder, name)).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
                roots = ["import_module"]
            else:
                continue
            offenders += [f"{name}:{node.lineno} {root}" for root in roots if root in methods | {"import_module"}]
    assert offenders == []
