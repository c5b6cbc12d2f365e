"""MemDPC runs the released recipe by default; each opt-in fix (--fix NAME) changes exactly its own behaviour.

One test per KEEP row of the deviation table in memdpc/README.md that a default could drift from, and one per fix.
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest
import torch

from memdpc import engine
from memdpc import main as pretrain_main
from memdpc import test as eval_main
from memdpc.augment import Scale
from memdpc.dataset import build_dataset, val_subset
from memdpc.model import LC
from memdpc.opts import EVAL_FIXES, PRETRAIN_FIXES, get_args_parser, get_eval_args_parser, scale_interpolation
from shared_utils import runtime
from shared_utils.frames import VideoEntry

README_UCF = "--gpu 0,1 --net resnet18 --dataset ucf101 --batch_size 16 --img_dim 128 --epochs 500"
README_K400 = "--gpu 0,1,2,3 --net resnet34 --dataset k400 --batch_size 16 --img_dim 224 --epochs 200"
README_FT = "--gpu 0,1 --net resnet34 --dataset ucf101 --batch_size 16 --img_dim 224 --epochs 500 --train_what ft "
README_FT += "--schedule 300 400"
README_LINEAR = "--net resnet34 --epochs 100 --train_what last --schedule 60 80 --dropout 0.5"


def lr_per_iteration(args, milestones: list[int], iterations: int, one_epoch_late: bool = False) -> list[float]:
    """The LR each optimizer step (or epoch) sees under the entry points' scheduler, stepped as they step it."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=args.lr)
    scheduler = engine.make_scheduler(optimizer, milestones, args, one_epoch_late=one_epoch_late)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() without optimizer.step()
        for _ in range(iterations):
            seen.append(optimizer.param_groups[0]["lr"])
            scheduler.step()
    return seen


# --------------------------------------------------------------------------------------------------- schedules


def test_readme_pretraining_commands_drop_the_lr_once_and_stay_at_a_tenth():
    """KEEP (spec §5, quirk 4): UCF101 1e-3 for epochs 0-299 then 1e-4 to epoch 499 (never 1e-5); K400 1e-4 from
    epoch 120 to 199. The milestones are the original's, in iterations (x iterations per epoch)."""
    assert pretrain_main.MILESTONES == {"ucf101": [300, 400], "k400": [120, 160]}
    per_epoch = 3
    ucf = get_args_parser().parse_args(README_UCF.split())
    lrs = lr_per_iteration(ucf, [m * per_epoch for m in (300, 400)], 500 * per_epoch)
    at_epoch = {e: lrs[e * per_epoch] for e in (0, 299, 300, 399, 400, 499)}
    assert at_epoch == pytest.approx({0: 1e-3, 299: 1e-3, 300: 1e-4, 399: 1e-4, 400: 1e-4, 499: 1e-4})
    assert lrs[300 * per_epoch - 1] == pytest.approx(1e-3)  # the drop is at the first iteration of epoch 300
    k400 = get_args_parser().parse_args(README_K400.split())
    lrs = lr_per_iteration(k400, [m * per_epoch for m in (120, 160)], 200 * per_epoch)
    assert [lrs[e * per_epoch] for e in (119, 120, 160, 199)] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4])


def test_fix_schedule_drops_at_every_milestone():
    per_epoch = 2
    args = get_args_parser().parse_args([*README_UCF.split(), "--fix", "schedule"])
    lrs = lr_per_iteration(args, [m * per_epoch for m in (300, 400)], 500 * per_epoch)
    assert [lrs[e * per_epoch] for e in (299, 300, 399, 400, 499)] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_readme_eval_schedules_drop_once_one_epoch_late():
    """KEEP (quirks 4, 5): the evaluation LR is stepped after each epoch with the epoch index, so milestone 60 takes
    effect in epoch 61; the second milestone never lowers it further. --fix schedule: x0.1 again from epoch 81."""
    linear = get_eval_args_parser().parse_args(README_LINEAR.split())
    lrs = lr_per_iteration(linear, linear.schedule, linear.epochs, one_epoch_late=True)
    assert [lrs[e] for e in (0, 60, 61, 80, 81, 99)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4])
    fixed = get_eval_args_parser().parse_args([*README_LINEAR.split(), "--fix", "schedule"])
    lrs = lr_per_iteration(fixed, fixed.schedule, fixed.epochs, one_epoch_late=True)
    assert [lrs[e] for e in (60, 61, 80, 81, 99)] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    ft = get_eval_args_parser().parse_args(README_FT.split())
    lrs = lr_per_iteration(ft, ft.schedule, ft.epochs, one_epoch_late=True)
    assert [lrs[e] for e in (300, 301, 400, 401, 499)] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4, 1e-4])


# --------------------------------------------------------------------------------------------------- fine-tuning


def tiny_lc(args) -> LC:
    return LC(32, num_seq=2, seq_len=5, network="resnet18", dropout=0.5, num_class=5, train_what=args.train_what)


def test_readme_finetune_trains_every_parameter_at_one_lr():
    """KEEP (quirk 6): --train_what ft puts every parameter at --lr 1e-3 (the original's lr/10 match found nothing)."""
    args = get_eval_args_parser().parse_args(README_FT.split())
    model = tiny_lc(args)
    optimizer = torch.optim.Adam(eval_main.param_groups(model, args), lr=args.lr, weight_decay=args.wd)
    lrs = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert len(lrs) == len(list(model.parameters()))
    assert set(lrs.values()) == {1e-3}


def test_fix_ft_lr_gives_exactly_backbone_and_grus_a_tenth():
    args = get_eval_args_parser().parse_args([*README_FT.split(), "--fix", "ft_lr"])
    model = tiny_lc(args)
    optimizer = torch.optim.Adam(eval_main.param_groups(model, args), lr=args.lr, weight_decay=args.wd)
    lrs = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        slow = name.startswith(("backbone.", "agg_f.", "agg_b."))
        assert lrs[id(param)] == pytest.approx(1e-4 if slow else 1e-3), name
    # the linear probe is untouched by the fix: only the head is optimised
    probe = get_eval_args_parser().parse_args([*README_LINEAR.split(), "--fix", "ft_lr"])
    head = eval_main.param_groups(tiny_lc(probe), probe)
    assert len(head) == 1 and len(head[0]["params"]) == 4  # final_bn weight/bias, final_fc weight/bias


def class_list_root(tmp_path) -> str:
    os.makedirs(tmp_path / "ucf101")
    (tmp_path / "ucf101" / "ClassInd.txt").write_text("".join(f"class{i:03d}\n" for i in range(101)))
    return str(tmp_path)


def test_fix_lc_relu_order_moves_only_the_relu(tmp_path):
    """KEEP (quirk 7): the classifier applies ReLU before the temporal pooling; --fix lc_relu_order after it."""
    root = class_list_root(tmp_path)
    flags = ["--net", "resnet18", "--img_dim", "32", "--num_seq", "2", "--csv_root", root]
    default = eval_main.build_model(get_eval_args_parser().parse_args(flags))
    fixed = eval_main.build_model(get_eval_args_parser().parse_args([*flags, "--fix", "lc_relu_order"]))
    assert default.relu_before_pool and not fixed.relu_before_pool
    fixed.load_state_dict(default.state_dict())
    default.eval(), fixed.eval()
    block = torch.randn(1, 2, 3, 5, 32, 32)
    with torch.no_grad():
        a, b = default(block)[0], fixed(block)[0]
        feature = default.encode(block)  # pre-ReLU pooled features: some are negative, so the order matters
    assert (feature < 0).any()
    assert not torch.allclose(a, b)


# --------------------------------------------------------------------------------------------------- data


def test_fix_bilinear_scale_switches_only_the_rescale(synth_dataset):
    """KEEP (quirk 14): the 224 -> img_dim rescale is nearest neighbour; --fix bilinear_scale makes it bilinear in the
    pretraining, fine-tuning and test transforms and changes nothing else."""
    lists = str(synth_dataset.list_dir)
    flags = ["--csv_root", lists, "--img_dim", "32", "--num_seq", "4", "--ds", "1"]
    for parser, purpose in ((get_args_parser(), "pretrain"), (get_eval_args_parser(), "eval")):
        for fix, expected in (([], "nearest"), (["--fix", "bilinear_scale"], "bilinear")):
            args = parser.parse_args([*flags, *fix])
            assert scale_interpolation(args) == expected
            ops = build_dataset(args, "train", purpose).transform.ops
            scales = [op for op in ops if isinstance(op, Scale)]
            assert [op.interpolation for op in scales] == [expected]
            assert [type(op).__name__ for op in ops] == [
                type(op).__name__ for op in build_dataset(parser.parse_args(flags), "train", purpose).transform.ops
            ]


def test_validation_subset_is_the_originals_pandas_draw():
    """KEEP (quirk 10): val = pandas sample(frac=0.3) of the filtered test rows after np.random.seed(--seed), i.e.
    RandomState(seed).permutation(n)[:round(0.3 n)]; K400 uses random_state=666 whatever the seed."""
    entries = [VideoEntry(f"v{i}", 200, 0, f"v{i}") for i in range(10)]
    assert [e.path for e in val_subset(entries, "ucf101", 0)] == ["v2", "v8", "v4"]  # permutation 2 8 4 9 1 ...
    assert [e.path for e in val_subset(entries, "k400", 0)] == [e.path for e in val_subset(entries, "k400", 3)]
    assert [e.path for e in val_subset(entries, "k400", 0)] == ["v5", "v7", "v0"]
    many = [VideoEntry(f"v{i}", 200, 0, f"v{i}") for i in range(3783)]
    assert len(val_subset(many, "ucf101", 0)) == round(0.3 * 3783)


def test_eval_experiment_folder_is_named_as_the_original():
    """Checkpoint naming: the original appends _pt=<path> whenever --pretrain is set, 'random' (the default) too."""
    args = get_eval_args_parser().parse_args(README_FT.split())
    plan = runtime.LaunchPlan(nprocs=2, gpu_ids=(0, 1))
    name = os.path.basename(eval_main.experiment_dir(args, plan))
    assert name == "ucf101-224-sp1_resnet34_lc_bs32_lr0.001_wd0.001_ds3_seq8_len5_dp0.9_train-ft_pt=random"
    args.pretrain = "log_tmp/x/model/epoch9.pth.tar"
    assert eval_main.experiment_dir(args, plan).endswith("_pt=log_tmp-x-model-epoch9.pth.tar")


def test_every_fix_is_off_by_default_and_listed():
    assert get_args_parser().parse_args([]).fix == []
    assert get_eval_args_parser().parse_args([]).fix == []
    assert set(PRETRAIN_FIXES) == {"schedule", "bilinear_scale"}
    assert set(EVAL_FIXES) == {"schedule", "bilinear_scale", "ft_lr", "lc_relu_order"}
    assert sorted(get_eval_args_parser().parse_args(["--fix", "all"]).fix) == sorted(EVAL_FIXES)
    readme = open(os.path.join(os.path.dirname(pretrain_main.__file__), "README.md")).read()
    for name in {**PRETRAIN_FIXES, **EVAL_FIXES}:
        assert f"| `{name}` |" in readme, f"fix {name} missing from the README fixes table"


def script_commands(path: str) -> list[str]:
    """The script's lines with backslash continuations joined."""
    return open(path).read().replace("\\\n", " ").splitlines()


def test_reproduce_script_extracts_frames_as_the_original_pipeline():
    """The real-data branch of make reproduce-memdpc extracts UCF101 at native resolution with JPEG quality 100 (the
    original extract_ff.py), K400 from the short-side-256 videos, and runs the README commands without --fix."""
    path = os.path.join(os.path.dirname(pretrain_main.__file__), "..", "scripts", "reproduce_memdpc.sh")
    lines = script_commands(path)
    extract = [line for line in lines if "process_data.extract_frames" in line]
    assert len(extract) == 2
    for line in extract:
        assert re.search(r"--short_side 0\b", line) and re.search(r"--quality 100\b", line), line
    resize = [line for line in lines if "process_data.resize_video" in line]
    assert len(resize) == 1 and "--short_side 256" in resize[0]
    text = "\n".join(lines)
    assert "--fix" not in text and "legacy" not in text
    assert 'PRE_FLAGS="--gpu $GPUS --net resnet18 --dataset ucf101 --batch_size 16 --img_dim 128 --epochs 500"' in text
    assert '--train_what ft --epochs 500 --schedule 300 400"' in text


def test_original_sampling_range_and_test_clip_starts():
    """KEEP (spec §2.5): train/val starts uniform in {0..n-121}; frames start + 3k, k < 40."""
    from memdpc.dataset import BlockDataset

    dataset = BlockDataset([], 8, 5, 3, transform=None, template="")
    rng = np.random.default_rng(0)
    starts = {int(dataset.frame_indices(200, rng)[0]) for _ in range(3000)}
    assert starts == set(range(0, 80))
    idx = dataset.frame_indices(200, rng)
    assert (np.diff(idx) == 3).all() and len(idx) == 40 and idx[-1] <= 200 - 3
    assert dataset.frame_indices(121, rng).tolist() == [3 * k for k in range(40)]  # one possible start only


@pytest.mark.parametrize("flag", ["--legacy_schedule", "--legacy_ft_lr", "--lc_pool_then_relu"])
def test_old_switches_are_gone(flag):
    """The faithful recipe is the default now; the old 'restore the original' switches would be no-ops."""
    with pytest.raises(SystemExit):
        get_eval_args_parser().parse_args([flag])


def test_cli_fix_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--fix", "ft_lr"])  # an evaluation fix, not a pretraining one
    assert "unknown fix 'ft_lr'" in capsys.readouterr().err


def test_pretraining_validation_is_augmented_like_training_and_drawn_from_the_test_split(synth_dataset):
    """KEEP (quirk 10): pretraining validation uses the training augmentation, on 30% of the TEST split."""
    args = get_args_parser().parse_args(["--csv_root", str(synth_dataset.list_dir), "--img_dim", "32", "--num_seq", "4",
                                         "--ds", "1"])  # fmt: skip
    train, val = build_dataset(args, "train", "pretrain"), build_dataset(args, "val", "pretrain")
    assert [type(op).__name__ for op in val.transform.ops] == [type(op).__name__ for op in train.transform.ops]
    assert not {e.path for e in val.entries} & {e.path for e in train.entries}
    test_videos = len(synth_dataset.classes) * synth_dataset.test_per_class
    assert len(val.entries) == max(1, round(0.3 * test_videos))
