"""VideoMoCo faithful defaults: the README commands run the released recipe (learning rates at chosen epochs,
sampling, protocol), and every `--fix` changes exactly its own behaviour (README fixes table)."""

from __future__ import annotations

import copy
import os
import re
from argparse import Namespace

import numpy as np
import pytest
import torch

from shared_utils import runtime
from shared_utils.data import DataWarnings
from shared_utils.frames import VideoEntry
from shared_utils.logger import make_tb_writer
from videomoco import eval as vm_eval
from videomoco import train
from videomoco.augment import VideoMoCoAugment
from videomoco.dataset import PretrainClips, long_enough
from videomoco.opts import EVAL_FIXES, TRAIN_FIXES, aug_per_frame, fix_on, get_args_parser, get_eval_args_parser

README_TRAIN = (
    "--log_dir L --ckp_dir C -a r2plus1d_18 --lr 0.005 -fpc 32 -b 32 -j 128 --epochs 200 --schedule 120 160 "
    "--dist_url tcp://localhost:10001 --multiprocessing_distributed --world_size 1 --rank 0 "
    "--resume checkpoint_0100.pth.tar DATA"
).split()
README_EVAL = "-a r2plus1d_18 --pretrained C/netD/checkpoint_0200.pth.tar DATA".split()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def lr_at(args, epochs) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return [train.adjust_learning_rate([opt], e, args) for e in epochs]


# --------------------------------------------------------------------------------------------------- KEEP rows


def test_readme_pretraining_command_is_the_released_recipe():
    args = get_args_parser().parse_args(README_TRAIN)
    assert args.fix == [] and not any(fix_on(args, name) for name in TRAIN_FIXES)
    # not passed by the README, hence the released defaults
    assert (args.crop_size, args.step_between_clips, args.temporal_decay) == (112, 1, 0.99999)
    assert (args.moco_dim, args.moco_k, args.moco_m, args.moco_t, args.mlp, args.aug_plus) == (
        128, 65536, 0.999, 0.07, False, False,
    )  # fmt: skip
    assert (args.momentum, args.weight_decay, args.cos, args.warmup) == (0.9, 1e-4, False, False)
    assert (args.drop_ratio, args.g_loss_weight, args.adversarial_start_epoch) == (0.25, 100.0, 100)
    assert train.num_dropped(args) == 8 and train.decay_base(args, 100) == 0.99999 and train.decay_base(args, 0)
    # resumed at epoch 100: lr 0.005 until 119, x0.1 at 120 and 160, per epoch (never per iteration)
    assert lr_at(args, (100, 119, 120, 159, 160, 199)) == pytest.approx([5e-3, 5e-3, 5e-4, 5e-4, 5e-5, 5e-5])
    assert not train.uses_generator(args, 99) and train.uses_generator(args, 100)


def test_readme_evaluation_is_the_released_eval_py():
    args = get_eval_args_parser().parse_args(README_EVAL)
    assert args.fix == [] and not any(fix_on(args, name) for name in EVAL_FIXES)
    assert (args.epochs, args.crop_size, args.frame_per_clip, args.clip_per_video) == (10, 224, 32, 10)
    assert (args.batch_size, args.weight_decay, args.train_clips_per_video, args.split) == (256, 1e-4, 10, "1")
    assert lr_at(args, range(10)) == pytest.approx([5e-3] * 6 + [5e-4] * 2 + [5e-5] * 2)  # milestones 6, 8


def entries(*lengths: int) -> list[VideoEntry]:
    return [VideoEntry(f"c/v{i}.avi", n, 0, f"c/v{i}") for i, n in enumerate(lengths)]


def test_videos_shorter_than_one_clip_are_left_out_as_videoclips_does():
    warnings = DataWarnings()
    kept = long_enough(entries(31, 32, 100), 32, warnings)
    assert [e.n_frames for e in kept] == [32, 100]  # VideoClips: a 31-frame video has no 32-frame clip
    assert warnings.counts()["short_video_left_out"] == 1
    padded = long_enough(entries(31, 32, 100), 32, DataWarnings(), pad=True)
    assert [e.n_frames for e in padded] == [31, 32, 100]


class RecordingReader:
    """Frames whose pixel values are their frame index; records the indices asked for."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, entry, indices):
        self.calls.append([int(i) for i in indices])
        values = np.asarray(indices, dtype=np.uint8)[:, None, None, None]
        return np.ascontiguousarray(np.broadcast_to(values, (len(indices), 24, 32, 3)))


@pytest.mark.parametrize("two_clips", [False, True])
def test_query_and_key_share_their_frames_unless_two_clips(two_clips):
    reader = RecordingReader()
    data = PretrainClips(entries(200), reader, fpc=8, step=1, crop=16, two_clips=two_clips)
    views = [data[(0, seed)] for seed in range(6)]
    for view_q, view_k, index in views:
        assert index == 0 and view_q.shape == view_k.shape == (3, 8, 16, 16) and view_q.dtype == torch.uint8
        frames_q = view_q[0, :, 8, 8].float()  # the frame index of each of the 8 frames
        assert torch.equal(frames_q - frames_q[0], torch.arange(8.0))  # consecutive frames of one clip
    assert all(len(call) == 8 * (2 if two_clips else 1) for call in reader.calls)  # one decode per view pair
    same = [torch.equal(q[0, :, 8, 8], k[0, :, 8, 8]) for q, k, _ in views]
    assert all(same) if not two_clips else not all(same)


def eval_args(*extra: str) -> Namespace:
    return get_eval_args_parser().parse_args([*README_EVAL, *extra, "-j", "0", "-b", "2"])


def test_fine_tuning_keeps_batchnorm_in_eval_mode_and_bn_train_fix_updates_statistics(tmp_path):
    def running_mean_after(args) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.BatchNorm3d(3), torch.nn.Flatten(), torch.nn.LazyLinear(4))
        model(torch.zeros(1, 3, 2, 4, 4))  # materialise the lazy layer before the optimizer sees it
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = [(torch.randn(2, 3, 2, 4, 4) + 5, torch.tensor([0, 1]), torch.tensor([0, 1]))]
        writer = make_tb_writer(str(tmp_path), enabled=False)
        vm_eval.train_one_epoch(model, loader, optimizer, 0, args, runtime.local_context("cpu"), writer)
        return model[0].running_mean.clone()

    assert torch.equal(running_mean_after(eval_args()), torch.zeros(3))  # pretrained statistics untouched
    assert (running_mean_after(eval_args("--fix", "bn_train")) > 0.4).all()
    assert (running_mean_after(eval_args("--protocol", "standard")) > 0.4).all()  # the older spelling


@pytest.mark.parametrize("extra, resize", [((), False), (("--fix", "test_resize"), True)])
def test_test_clips_are_cropped_from_the_native_frame_unless_test_resize(extra, resize):
    args = eval_args(*extra)
    sets = {mode: (entries(64, 64), 2, ["c"]) for mode in ("train", "test")}
    _, _, test_loader = vm_eval.build_loaders(args, runtime.local_context("cpu"), sets, DataWarnings(), seed=0)
    assert test_loader.dataset.resize_test is resize
    assert fix_on(args, "bn_train") is False  # test_resize alone leaves the fine-tuning BN mode as released


def test_fine_tuning_draws_up_to_ten_distinct_clips_per_video_and_epoch_as_random_clip_sampler():
    # 50 frames -> 19 candidate 32-frame clips; 36 frames -> 5 (RandomClipSampler gives min(5, 10) items)
    data = vm_eval.EvalClips(entries(50, 36), None, fpc=32, step=1, crop=8, mode="train", repeats=10, seed=3)
    assert len(data) == 15

    def starts(epoch):
        data.set_epoch(epoch)
        picks = [data.train_clip_indices(i) for i in range(len(data))]
        for _, idx in picks:
            assert idx.tolist() == list(range(idx[0], idx[0] + 32))  # consecutive frames, never padded
        return [sorted(int(idx[0]) for video, idx in picks if video == v) for v in (0, 1)]

    first, second = starts(0), starts(1)
    assert len(set(first[0])) == 10 and set(first[0]) <= set(range(19))  # distinct clips of video 0
    assert first[1] == [0, 1, 2, 3, 4]  # all 5 clips of the short video, each once
    assert first[0] != second[0] and starts(0) == first  # a new draw per epoch, reproducible


# --------------------------------------------------------------------------------------------------- opt-in fixes


@pytest.mark.parametrize("name", sorted(TRAIN_FIXES))
def test_each_pretraining_fix_switches_only_itself(name):
    args = get_args_parser().parse_args([*README_TRAIN, "--fix", name])
    assert [other for other in TRAIN_FIXES if fix_on(args, other)] == [name]


@pytest.mark.parametrize("name", sorted(EVAL_FIXES))
def test_each_evaluation_fix_switches_only_itself(name):
    args = get_eval_args_parser().parse_args([*README_EVAL, "--fix", name])
    assert [other for other in EVAL_FIXES if fix_on(args, other)] == [name]


@pytest.mark.parametrize(
    "older, name",
    [
        (["--g_grad", "pure"], "pure_g_grad"),
        (["--decay_mode", "paper"], "paper_decay"),
        (["--drop_select", "highest"], "drop_highest"),
        (["--two_clips"], "two_clips"),
    ],
)
def test_older_spellings_switch_the_same_fix(older, name):
    args = get_args_parser().parse_args([*README_TRAIN, *older])
    assert [other for other in TRAIN_FIXES if fix_on(args, other)] == [name]


@pytest.mark.parametrize(
    "extra, per_frame", [((), True), (("--aug_per_frame",), True), (("--fix", "per_clip_aug"), False)]
)
def test_gpu_augmentation_is_drawn_per_frame_by_default_as_released(extra, per_frame):
    """The released code ran kornia on B*T flattened frames: every frame draws its own flip (and jitter, gray).
    That is the default; `--fix per_clip_aug` draws once per clip."""
    args = get_args_parser().parse_args([*README_TRAIN, *extra])
    assert aug_per_frame(args) is per_frame
    aug = VideoMoCoAugment(args.aug_plus, aug_per_frame(args), 12)
    aug.main.grayscale_p, aug.main.jitter_p = 0.0, 0.0
    ramp = torch.linspace(0, 1, 12).expand(4, 3, 6, 12, 12).contiguous()  # a flip is visible on a ramp
    flags = torch.cat([(aug(ramp, torch.Generator().manual_seed(s))[..., 0] > 0.5).all(dim=(1, 3)) for s in range(4)])
    one_per_clip = (flags.all(1) | (~flags).all(1)).all()  # B clips x T frames: all frames agree within a clip
    assert bool(one_per_clip) is not per_frame


def toy_pretrain_args(*extra: str) -> Namespace:
    argv = ["DATA", "-a", "mc3_18", "-fpc", "4", "-cs", "16", "--moco-k", "8", "--moco-dim", "8", *extra]
    return get_args_parser().parse_args(argv)


def test_model_fixes_change_the_decay_form_and_the_dropped_frames(monkeypatch):
    built = {}

    def recorder(name):
        def build(*args, **kwargs):
            built[name] = args
            stub = torch.nn.Module()  # stands in for the network: only the constructor arguments matter
            stub.encoder_q = torch.nn.Linear(1, 1)
            return stub

        return build

    monkeypatch.setattr(train, "MaskGenerator", recorder("G"))
    monkeypatch.setattr(train, "VideoMoCo", recorder("D"))
    for extra, decay, select in [
        ((), "code", "lowest"),
        (("--fix", "paper_decay"), "paper", "lowest"),
        (("--fix", "drop_highest"), "code", "highest"),
        (("--decay_mode", "paper", "--drop_select", "highest"), "paper", "highest"),
    ]:
        train.build_models(toy_pretrain_args(*extra), runtime.local_context("cpu"))
        assert built["D"][6] == decay and built["G"][-1] == select, extra  # (arch, dim, K, m, T, mlp, decay, width)
        assert built["G"][:3] == (4, 16, 1)  # 4 frames at 16 px, 25 % of 4 = 1 dropped


def test_pure_g_grad_removes_only_the_contrastive_share_of_the_generator_gradient():
    torch.manual_seed(0)
    models = train.build_models(toy_pretrain_args(), runtime.local_context("cpu"))

    def grads(*extra: str):
        args = toy_pretrain_args(*extra)
        G, D = copy.deepcopy(models[0]), copy.deepcopy(models[1])
        D_ddp = D
        opt_g = torch.optim.SGD(G.parameters(), lr=0.0)  # lr 0: the gradients stay to be compared
        opt_d = torch.optim.SGD(D.encoder_q.parameters(), lr=0.0)
        torch.manual_seed(1)
        batch = (torch.rand(2, 3, 4, 16, 16), torch.rand(2, 3, 4, 16, 16))
        ctx = runtime.local_context("cpu")
        train.train_step(G, D_ddp, VideoMoCoAugment(), batch, opt_g, opt_d, True, 0.99, args, ctx)
        return [p.grad.clone() for p in G.parameters()], [p.grad.clone() for p in D.encoder_q.parameters()]

    g_released, d_released = grads()
    g_pure, d_pure = grads("--fix", "pure_g_grad")
    for a, b in zip(d_released, d_pure):
        torch.testing.assert_close(a, b)  # D's gradient is grad L_D either way
    assert any(not torch.allclose(a, b) for a, b in zip(g_released, g_pure))  # G loses grad L_D


def test_reproduce_script_runs_the_readme_commands_without_fixes_on_real_data():
    script = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "reproduce_videomoco.sh"
    )
    real = re.split(r"\n# -+ real data\n", open(script).read())[1]  # the SMOKE=0 part
    assert "--fix" not in real and "--protocol" not in real and "--aug" not in real  # faithful recipe, unchanged
    readme = "-a r2plus1d_18 --lr 0.005 -fpc 32 -b 32 -j 128 --epochs 200 --schedule 120 160"
    assert readme in real and "videomoco/eval.py" in real
