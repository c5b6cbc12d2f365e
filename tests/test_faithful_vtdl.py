"""VTDL runs the released recipe by default; each opt-in fix (--fix NAME) changes exactly its own behaviour.

One test per KEEP row of the deviation table in vtdl/README.md that a default could drift from, and one per fix.
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np
import pytest
import torch

from shared_utils import runtime
from shared_utils.checkpoint import CheckpointWriter
from shared_utils.data import DataWarnings
from vtdl import main as finetune_main
from vtdl import train_temporal_dis
from vtdl.dataset import FinetuneDataset, PretrainDataset
from vtdl.opts import (
    FINETUNE_FIXES,
    PRETRAIN_FIXES,
    get_args_parser,
    get_pretrain_args_parser,
    jitter_mode,
    start_range_len,
    val_clip_mode,
)

HMDB51_SH = (
    "--batch_size 16 --num_workers 8 --nce_k 3569 --softmax --moco --print_freq 100 --dataset hmdb51 "
    "--train_list a.txt --val_list b.txt"
)
README_FT = (
    "--method ft --train_list a.txt --val_list b.txt --dataset hmdb51 --arch i3d --mode rgb --lr 0.001 "
    "--lr_steps 10 20 25 30 35 40 --epochs 45 --batch_size 4 --data_length 64 --workers 8 --dropout 0.5 --gpus 2"
)


def pretrain_args(*extra: str):
    return get_pretrain_args_parser().parse_args([*HMDB51_SH.split(), *extra])


def ft_args(*extra: str):
    return get_args_parser().parse_args([*README_FT.split(), *extra])


def anchor_and_negative_starts(range_len: int, n_frames: int, draws: int = 400) -> tuple[collections.Counter, set]:
    dataset = PretrainDataset([], reader=None, transform=None, clip_len=16, stride=4, range_len=range_len)
    rng = np.random.default_rng(0)
    anchors, negatives = collections.Counter(), set()
    for _ in range(draws):
        anchor, negative = dataset.sample_frames(n_frames, rng)
        anchors[anchor[0]] += 1
        negatives.add(negative[0])
        assert anchor[:2] == [anchor[0], anchor[0] + 4] or n_frames < 8  # stride 4
    return anchors, negatives


# --------------------------------------------------------------------------------------------------- pretraining


def test_original_start_range_reserves_32_strides():
    """KEEP (spec §13.3): starts are drawn from 1..max(N - 32*4, 0)+1, so every video of at most 128 frames is
    sampled from frame 1 and its temporal negative from 1 + N//3; longer videos start uniformly in 1..N-127."""
    args = pretrain_args()
    assert start_range_len(args) == 32
    anchors, negatives = anchor_and_negative_starts(start_range_len(args), 100)
    assert set(anchors) == {1} and negatives == {1 + 100 // 3}
    anchors, negatives = anchor_and_negative_starts(start_range_len(args), 200, draws=3000)
    assert set(anchors) == set(range(1, 200 - 128 + 2))  # 1..73, all reachable
    assert min(negatives) >= 1 and max(negatives) <= 200 - 1


def test_fix_start_range_reserves_one_clip():
    args = pretrain_args("--fix", "start_range")
    assert start_range_len(args) == 16 == args.data_length
    anchors, _ = anchor_and_negative_starts(start_range_len(args), 100, draws=3000)
    assert set(anchors) == set(range(1, 100 - 64 + 2))  # 1..37
    assert start_range_len(pretrain_args("--fix", "start_range", "--data_length", "8")) == 8
    # an explicit --start_range_len wins over both
    assert start_range_len(pretrain_args("--start_range_len", "20")) == 20
    assert start_range_len(pretrain_args("--fix", "start_range", "--start_range_len", "20")) == 20


def test_pretraining_loader_uses_the_faithful_range_and_jitter(synth_dataset):
    """The dataset train_temporal_dis.py builds: range 32 and the one-of-four jitter unless fixed."""
    train_list = str(synth_dataset.list_dir / "ucf101" / "ucf101_rgb_train_split_1.txt")
    for extra, range_len, jitter in (
        ([], 32, "original"),
        (["--fix", "start_range,composed_jitter"], 8, "composed"),
        (["--fix", "composed_jitter"], 32, "composed"),
    ):
        args = pretrain_args(
            "--train_list", train_list, "--data_length", "8", "--spatial_size", "32", "--batch_size", "4", *extra
        )
        args.num_workers = 0
        dataset, _, _ = train_temporal_dis.build_loader_for(args, runtime.local_context("cpu"), DataWarnings())
        assert (dataset.range_len, dataset.transform.jitter, dataset.clip_len, dataset.stride) == (
            range_len,
            jitter,
            8,
            4,
        )


# --------------------------------------------------------------------------------------------------- fine-tuning


def test_readme_finetune_defaults_are_the_originals():
    """KEEP (spec §8, §13.18, §13.25): random validation start, best epoch kept, one-of-four jitter, wd 1e-8,
    x0.3 at every lr step (LR of epoch e = lr * 0.3 ** #{s <= e})."""
    args = ft_args()
    assert (val_clip_mode(args), jitter_mode(args), args.fix) == ("random", "original", [])
    assert (args.weight_decay, args.momentum, args.optim) == (1e-8, 0.9, "sgd")
    lrs = [finetune_main.lr_at(e, args) for e in (0, 9, 10, 19, 20, 25, 30, 35, 40, 44)]
    expected = [1e-3, 1e-3, 3e-4, 3e-4, 9e-5, 2.7e-5, 8.1e-6, 2.43e-6, 7.29e-7, 7.29e-7]
    assert lrs == pytest.approx(expected)


def test_validation_clip_is_random_unless_fixed():
    """The original's val clip: start drawn from 1..N-63 (64 frames, stride 1) every time; --fix center_val_clip:
    the centre clip. Videos of at most 64 frames start at frame 1 either way."""
    rng = np.random.default_rng(0)
    for args, expect_random in ((ft_args(), True), (ft_args("--fix", "center_val_clip"), False)):
        dataset = FinetuneDataset([], None, None, 64, 1, "val", val_clip_mode(args))
        starts = {dataset.clip_frames(200, rng)[0][0] for _ in range(2000)}
        if expect_random:
            assert starts == set(range(1, 200 - 64 + 2))
        else:
            assert len(starts) == 1 and 1 < starts.pop() < 200 - 64 + 1
        assert {dataset.clip_frames(64, rng)[0][0] for _ in range(20)} == {1}


def test_finetune_loaders_wire_the_fixes(synth_dataset):
    lists = synth_dataset.list_dir / "ucf101"
    flags = ["--train_list", str(lists / "ucf101_rgb_train_split_1.txt"), "--val_list"]
    flags += [str(lists / "ucf101_rgb_val_split_1.txt"), "--data_length", "8", "--spatial_size", "32"]
    for extra, jitter, val_clip in (([], "original", "random"), (["--fix", "all"], "composed", "center")):
        args = ft_args(*flags, *extra)
        finetune_main.check_common(args)
        ctx = runtime.local_context("cpu")
        train, _ = finetune_main.build_finetune_loader(args, ctx, args.train_list, "train", DataWarnings(), True)
        val, _ = finetune_main.build_finetune_loader(args, ctx, args.val_list, "val", DataWarnings(), False)
        assert train.dataset.transform.jitter == jitter and val.dataset.val_clip == val_clip


@pytest.mark.parametrize("report_last", [False, True])
def test_best_epoch_checkpoint_is_kept_unless_report_last(tmp_path, report_last):
    """KEEP (spec §8.3): fine_tune_rgb_model_best.pth.tar is written when val top-1 improves (the README's numbers
    are that best epoch's accuracy); --fix report_last writes only the latest file."""
    args = ft_args(*(["--fix", "report_last"] if report_last else []))
    args.arch = "i3d"
    writer = CheckpointWriter(
        str(tmp_path), "fine_tune_rgb_model_latest.pth.tar", None, "fine_tune_rgb_model_best.pth.tar"
    )
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    finetune_main.save(writer, model, optimizer, 1, 40.0, True, args, runtime.local_context("cpu"))
    assert (tmp_path / "fine_tune_rgb_model_latest.pth.tar").exists()
    assert (tmp_path / "fine_tune_rgb_model_best.pth.tar").exists() is not report_last
    # no improvement: best file untouched
    finetune_main.save(writer, model, optimizer, 2, 40.0, False, args, runtime.local_context("cpu"))
    best = tmp_path / "fine_tune_rgb_model_best.pth.tar"
    if not report_last:
        assert torch.load(best, weights_only=False)["epoch"] == 1


def test_every_fix_is_off_by_default_and_listed():
    assert pretrain_args().fix == [] and ft_args().fix == []
    assert set(PRETRAIN_FIXES) == {"start_range", "composed_jitter"}
    assert set(FINETUNE_FIXES) == {"composed_jitter", "center_val_clip", "report_last"}
    readme = open(os.path.join(os.path.dirname(finetune_main.__file__), "README.md")).read()
    for name in {**PRETRAIN_FIXES, **FINETUNE_FIXES}:
        assert f"| `{name}` |" in readme, f"fix {name} missing from the README fixes table"


@pytest.mark.parametrize(
    "parser, flag",
    [
        (get_pretrain_args_parser, "--color_jitter"),
        (get_args_parser, "--val_clip"),
        (get_args_parser, "--model_selection"),
    ],
)
def test_old_switches_are_gone(parser, flag):
    with pytest.raises(SystemExit):
        parser().parse_args([flag, "original"])


def test_reproduce_script_runs_the_original_commands():
    """make reproduce-vtdl calls the original scripts with no fix; the summary reports the best epoch (best_prec1)."""
    path = os.path.join(os.path.dirname(finetune_main.__file__), "..", "scripts", "reproduce_vtdl.sh")
    text = open(path).read()
    assert "--fix" not in text
    assert "best_prec1" in text
    for script in ("vtdl/scripts/$ds.sh", "vtdl/scripts/finetune/${ds}_i3d_ft.sh"):
        assert script in text
    for name in ("hmdb51.sh", "ucf101.sh"):
        body = open(os.path.join(os.path.dirname(finetune_main.__file__), "scripts", name)).read()
        assert not re.search(r"--fix|--start_range_len", body)


def test_pretraining_lr_schedule_is_the_originals():
    """KEEP (spec §6.4): 0.003 to epoch 120, then x0.1 after each of 120/160/200 (milestones strictly below the
    1-based epoch)."""
    args = pretrain_args()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    lrs = [train_temporal_dis.adjust_learning_rate(optimizer, e, args) for e in (1, 120, 121, 160, 161, 200, 201, 240)]
    assert lrs == pytest.approx([3e-3, 3e-3, 3e-4, 3e-4, 3e-5, 3e-5, 3e-6, 3e-6])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-6)
