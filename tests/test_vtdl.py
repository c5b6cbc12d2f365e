"""VTDL: key layouts, the method's pieces (TCA, temporal negative, queue, loss), data sampling, the fixes, and
tiny end-to-end runs of pretraining -> fine-tuning -> test -> feature extraction, resume, DDP and errors."""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from shared_utils import runtime
from shared_utils.checkpoint import load_checkpoint
from shared_utils.cli import UserError
from shared_utils.data import DataWarnings
from vtdl import dataset as D
from vtdl.features import build_clip_encoder
from vtdl.loss import NCECriterion, NCESoftmaxLoss, ins_prob
from vtdl.model import VTDL, build_backbone, load_weight
from vtdl.opts import get_args_parser, get_pretrain_args_parser, start_range_len
from vtdl.tca import intra_video_mixup, sample_tca_params, tca
from vtdl.train_temporal_dis import compute_loss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(REPO, "vtdl", "reference")  # copies of the spec's vtdl_keys.json / reference values
PY = sys.executable
TINY = ["--data_length", "8", "--spatial_size", "32"]

# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions run far faster on one thread than on two contended ones (2-core CI)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_video_frames(folder: str, n: int, direction: int, template: str = "image_{:05d}.jpg") -> None:
    """A bright square moving right (direction 1) or left (-1); the blue channel encodes the frame number."""
    os.makedirs(folder, exist_ok=True)
    for t in range(n):
        img = np.full((40, 48, 3), 60, np.uint8)
        x = (2 * t) % 40 if direction > 0 else 40 - (2 * t) % 40
        img[10:22, x : x + 8] = 220
        img[:4, :4, 0] = 4 * (t + 1)  # BGR: channel 0 is blue; read back as frame id
        cv2.imwrite(os.path.join(folder, template.format(t + 1)), img, [cv2.IMWRITE_JPEG_QUALITY, 100])


@pytest.fixture(scope="module")
def frames_data(tmp_path_factory):
    """2 classes x 3 videos (20/27/34 frames) in process_data's layout + VTDL lists (video 0 of each class = val)."""
    root = tmp_path_factory.mktemp("vtdl_data")
    lists = root / "lists" / "ucf101"
    lists.mkdir(parents=True)
    train, val = [], []
    for c in range(2):
        for v in range(3):
            folder = root / "frames" / f"Class{c}" / f"v_Class{c}_g{v + 1:02d}_c01"
            n = 20 + 7 * v
            write_video_frames(str(folder), n, 1 if c == 0 else -1)
            (val if v == 0 else train).append(f"{folder} {n} {c}\n")
    (lists / "ucf101_rgb_train_split_1.txt").write_text("".join(train))
    (lists / "ucf101_rgb_val_split_1.txt").write_text("".join(val))
    return argparse.Namespace(
        root=root, train=str(lists / "ucf101_rgb_train_split_1.txt"), val=str(lists / "ucf101_rgb_val_split_1.txt")
    )


def run_py(script: str, args: list[str], cwd: str | None = None, env: dict | None = None, timeout: int = 240):
    full_env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run(
        [PY, os.path.join(REPO, "vtdl", script), *args],
        capture_output=True,
        text=True,
        cwd=cwd or os.path.join(REPO, "vtdl"),
        env=full_env,
        timeout=timeout,
    )


def pretrain_args(data, out, *extra) -> list[str]:
    return [
        "--softmax",
        "--moco",
        "--batch_size",
        "2",
        "--nce_k",
        "6",
        "--dataset",
        "ucf101",
        "--train_list",
        data.train,
        "--stride",
        "2",
        "--epochs",
        "2",
        "--print_freq",
        "1",
        "--num_workers",
        "0",
        "--output_dir",
        str(out),
        "--no_tensorboard",
        *TINY,
        *extra,
    ]


def ft_args(data, *extra) -> list[str]:
    return [
        "--method",
        "ft",
        "--mode",
        "rgb",
        "--dataset",
        "hmdb51",
        "--arch",
        "i3d",
        "--train_list",
        data.train,
        "--val_list",
        data.val,
        "-b",
        "2",
        "--workers",
        "0",
        "--dropout",
        "0.5",
        "--gpus",
        "2",
        "-p",
        "1",
        *TINY,
        *extra,
    ]


# ------------------------------------------------------------------------------------------------ key layouts

LAYOUTS = {
    "i3d": ({"arch": "i3d"}, {"arch": "i3d"}),
    "r3d": ({"arch": "r3d"}, {"arch": "r3d"}),
    "r2p1d": ({"arch": "r2p1d", "r2p1d_layers": (1, 1, 1, 1)}, {"arch": "r2p1d", "r2p1d_layers": (2, 2, 2, 2)}),
    "c3d": ({"arch": "c3d", "c3d_pretrain_heads": False}, {"arch": "c3d"}),
}


@pytest.fixture(scope="module")
def keys_json():
    with open(os.path.join(REFERENCE, "vtdl_keys.json")) as handle:
        return json.load(handle)


def shapes(state) -> dict:
    return {k: list(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("arch", ["i3d", "r3d", "r2p1d", "c3d"])
def test_state_dict_keys_and_shapes_equal_the_original(arch, keys_json):
    pretrain_kw, finetune_kw = LAYOUTS[arch]
    pretrain = shapes(build_backbone(num_classes=101, with_classifier=False, **pretrain_kw).state_dict())
    finetune = shapes(build_backbone(num_classes=101, with_classifier=True, **finetune_kw).state_dict())
    assert list(pretrain.items()) == list(keys_json[f"backbone_pretrain/{arch}"].items())
    assert list(finetune.items()) == list(keys_json[f"backbone_finetune_ucf101/{arch}"].items())
    assert {"module." + k: v for k, v in pretrain.items()} == keys_json[f"pretrain_ckpt.model/{arch}"]
    assert {"module.base_model." + k: v for k, v in finetune.items()} == keys_json[f"finetune_ckpt.state_dict/{arch}"]


def test_contrast_layout_per_dataset(keys_json):
    for dataset, k in (("hmdb51", 3569), ("ucf101", 5000), ("kinetics", 12500)):
        moco = VTDL(torch.nn.Identity(), 10, k, 0.07, True)
        assert shapes(moco.contrast_state_dict()) == keys_json[f"pretrain_ckpt.contrast/{dataset}"]
    args = get_pretrain_args_parser().parse_args([])
    assert args.nce_t == 0.07 and args.alpha == 0.999 and args.learning_rate == 0.003


def fake_released_checkpoint(layout: dict, prefix_strip: str = "") -> dict:
    gen = torch.Generator().manual_seed(0)
    return {k: (torch.randn(v, generator=gen) if v else torch.tensor(0)) for k, v in layout.items()}


def test_released_checkpoint_layouts_load_without_missing_keys(tmp_path, keys_json, capsys):
    """An authors'-format pretraining file (module. keys, contrast, Namespace 'opt') initialises fine-tuning with
    every trunk tensor, under any file name; an authors'-format fine-tune file loads completely for testing."""
    model_sd = fake_released_checkpoint(keys_json["pretrain_ckpt.model/i3d"])
    pre = {
        "opt": argparse.Namespace(arch="i3d"),
        "model": model_sd,
        "model_ema": model_sd,
        "epoch": 48,
        "contrast": {"params": torch.tensor([-1.0]), "memory": torch.zeros(3569, 128)},
    }
    path = str(tmp_path / "renamed_pretrain.pth")  # not 'ckpt*': the original silently ignored such files
    torch.save(pre, path)
    model = build_backbone("i3d", 51, with_classifier=True)
    report = load_weight(model, path, "i3d")
    assert report.missing == ["conv3d_0c_1x1_custom.conv3d.weight"] and len(report.loaded) == 342
    assert torch.equal(model.mixed_5c.branch_0.conv3d.weight, model_sd["module.mixed_5c.branch_0.conv3d.weight"])
    ft_sd = fake_released_checkpoint(keys_json["finetune_ckpt.state_dict/i3d"])
    path_ft = str(tmp_path / "fine_tune_rgb_model_latest.pth.tar")
    torch.save({"epoch": 45, "arch": "i3d", "state_dict": ft_sd, "best_prec1": 52.7}, path_ft)
    model = build_backbone("i3d", 101, with_classifier=True)
    report = load_weight(model, path_ft, "i3d", require_classifier=True)
    assert report.clean and len(report.loaded) == 343
    with pytest.raises(UserError, match="classifier|weights"):  # a pretraining file cannot be tested
        load_weight(build_backbone("i3d", 51, with_classifier=True), path, "i3d", require_classifier=True)
    with pytest.raises(UserError, match="matches no weight"):
        load_weight(build_backbone("r3d", 51, with_classifier=True), path, "r3d")
    # the original's R(2+1)D depth mismatch: a 1,1,1,1 pretraining file initialises the 2,2,2,2 fine-tune model
    shallow = build_backbone("r2p1d", with_classifier=False, r2p1d_layers=(1, 1, 1, 1)).state_dict()
    torch.save({"model": {"module." + k: v for k, v in shallow.items()}}, tmp_path / "r2p1d.pth")
    report = load_weight(build_backbone("r2p1d", 51, with_classifier=True), str(tmp_path / "r2p1d.pth"), "r2p1d")
    assert len(report.loaded) == 144 and all(".blocks." in k or k.startswith("linear.") for k in report.missing)


# ------------------------------------------------------------------------------------------------ method pieces


def test_tca_original_draws_and_motion_preserved():
    lam, idx = sample_tca_params(np.random.RandomState(0), 4, 16, 0.1)
    assert lam == pytest.approx(0.05488135039, abs=1e-11) and idx.tolist() == [5, 0, 3, 11]
    x = torch.randn(4, 3, 16, 6, 6)
    before = x.clone()
    y = intra_video_mixup(x, lam, idx)
    assert torch.equal(x, before)  # new tensor, input untouched
    for i, m in enumerate(idx):
        manual = (1 - lam) * x[i] + lam * x[i, :, m : m + 1]
        assert torch.allclose(y[i], manual, atol=1e-6)
    # every temporal difference is scaled by exactly (1 - lam): motion kept, appearance perturbed
    assert torch.allclose(y.diff(dim=2), (1 - lam) * x.diff(dim=2), atol=1e-5)
    lams = [sample_tca_params(np.random.RandomState(s), 2, 16)[0] for s in range(200)]
    assert 0 <= min(lams) and max(lams) < 0.1
    assert tca(x, np.random.RandomState(0)).shape == x.shape


def test_frame_walk_and_temporal_negative_starts():
    ref = json.load(open(os.path.join(REFERENCE, "vtdl_reference_values.json")))["data_pipeline_synthetic"]
    # the original's frame walk (stride 4, wrap to frame 1) reproduces its recorded frame lists
    for item, (n, s_a, s_n) in {
        "pretrain_item_0": (40, 1, 14),
        "pretrain_item_1": (100, 1, 34),
        "pretrain_item_2": (200, 16, 71),
    }.items():
        assert D.walk(n, s_a, 16, 4) == ref[item]["frame_ids_anchor"] == ref[item]["frame_ids_positive"]
        assert D.walk(n, s_n, 16, 4) == ref[item]["frame_ids_negative"]
    assert D.walk(40, 1, 64, 1)[-4:] == ref["ft_train_item_0"]["last_ids"]
    rng = np.random.default_rng(0)
    for n in (20, 40, 100, 128):  # original range (32 x stride): anchor always frame 1, negative 1 + N // 3
        assert D.triplet_starts(n, 32, 4, rng) == (1, 1 + n // 3)
    for _ in range(300):  # fixed range (clip length 16 x 4): anchor start uses the whole video
        n = int(rng.integers(70, 400))
        s_a, s_n = D.triplet_starts(n, 16, 4, rng)
        assert 1 <= s_a <= n - 64 + 1 and 1 <= s_n <= n and s_n != s_a
        assert abs(s_n - s_a) >= 2 or s_n == (s_a + n // 3) % n or s_n == 1
    starts = {D.triplet_starts(200, 16, 4, rng)[0] for _ in range(400)}
    assert max(starts) > 129  # beyond the original's 128-frame-limited range (max start 73)


def test_pretrain_item_same_frames_for_anchor_and_positive(frames_data):
    entries = D.read_list(frames_data.train)
    reader = D.build_reader(entries, None, 32, DataWarnings())
    assert reader.template == "image_{:05d}.jpg"
    data = D.PretrainDataset(entries, reader, D.TrainTransform(32, aug="NULL"), clip_len=8, stride=2, range_len=8)
    (anchor, positive, negative), label, index = data[(3, 123)]
    assert anchor.shape == (3, 8, 32, 32) and label == entries[3].label and index == 3
    assert torch.equal(anchor, positive)  # same frames; without augmentation identical
    assert not torch.equal(anchor, negative)
    aug = D.PretrainDataset(entries, reader, D.TrainTransform(32), clip_len=8, stride=2, range_len=8)
    (a2, p2, _), _, _ = aug[(3, 123)]
    assert not torch.equal(a2, p2)  # independent spatial augmentation of the same frames
    n = entries[3].n_frames
    frames_a, frames_n = aug.sample_frames(n, np.random.default_rng(5))
    assert frames_a[0] != frames_n[0] and len(frames_a) == 8


def test_original_frame_layouts(tmp_path):
    """The authors' lists (their absolute paths; only the basename is used under --frame_root) with the original
    templates img_%05d.jpg (HMDB51) and frame%06d.jpg (UCF101 jpegs_256) are read; a wrong template is an error."""
    for template, name in (("img_{:05d}.jpg", "brush_hair_x"), ("frame{:06d}.jpg", "v_ApplyEyeMakeup_g08_c01")):
        write_video_frames(str(tmp_path / "frames" / name), 12, 1, template)
        listing = tmp_path / f"{name}.txt"
        listing.write_text(f"/home/wjp/Data/somewhere/{name} 12 0\n")
        entries = D.read_list(str(listing), frame_root=str(tmp_path / "frames"))
        assert entries[0].path == str(tmp_path / "frames" / name)
        reader = D.build_reader(entries, None, 32, DataWarnings())
        assert reader.template == template
        frames = reader(entries[0], [1, 5, 12])
        assert frames.shape[0] == 3 and [int(round(f[:2, :2, 2].mean() / 4)) for f in frames] == [1, 5, 12]
        with pytest.raises(UserError, match="no first frame"):
            D.build_reader(entries, "image_{:05d}.jpg", 32, DataWarnings())


def test_memory_moco_logits_queue_and_loss():
    torch.manual_seed(0)
    moco = VTDL(torch.nn.Identity(), 10, K=5, T=0.5, use_softmax=True, dim=4)  # the queue and logits alone
    queue = moco.memory.clone()
    q, k, n = (torch.nn.functional.normalize(torch.randn(3, 4), dim=1) for _ in range(3))
    logits = moco.contrast(q, k, n)
    assert logits.shape == (3, 5 + 2)
    assert torch.allclose(logits[:, 0], (q * k).sum(1) / 0.5)
    assert torch.allclose(logits[:, 1:6], q @ queue.t() / 0.5)
    assert torch.allclose(logits[:, 6], (q * n).sum(1) / 0.5)
    assert torch.equal(moco.memory[:3], k) and torch.equal(moco.memory[3:], queue[3:]) and moco.index == 3
    moco.contrast(q, k)  # no temporal negative: K + 1 columns; the pointer wraps modulo K
    assert moco.index == 1 and torch.equal(moco.memory[0], k[2])
    loss = NCESoftmaxLoss()(logits)
    manual = -torch.log(torch.exp(logits[:, 0]) / torch.exp(logits).sum(1)).mean()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    assert ins_prob(logits).item() == pytest.approx(logits[:, 0].mean().item())
    fixed = torch.tensor([[2.0, 0.0, 0.0]])  # CE against column 0: log(e^2 + 2) - 2
    assert NCESoftmaxLoss()(fixed).item() == pytest.approx(math.log(math.exp(2) + 2) - 2, rel=1e-6)
    probs = torch.tensor([[0.5, 0.1, 0.2]])  # NCE with m = 2 noise columns, Pn = 1/n_data = 0.1
    nce = -(math.log(0.5 / 0.7) + math.log(0.2 / 0.3) + math.log(0.2 / 0.4))
    assert NCECriterion(10)(probs).item() == pytest.approx(nce, rel=1e-5)


def tiny_step_args(**kw):
    base = dict(no_tca=False, tca_lambda=0.1, no_temporal_negative=False, amp=False)
    return argparse.Namespace(**(base | kw))


@pytest.mark.parametrize("arch", ["i3d", "r3d", "r2p1d", "c3d"])
def test_pretraining_step_every_backbone(arch):
    """One VTDL step per backbone (C3D could not be pretrained by the original): q, k, n are unit vectors,
    logits have K + 2 columns, only the query encoder gets gradients (cls_head none), the EMA moves the key."""
    torch.manual_seed(0)
    model = build_backbone(arch, r2p1d_layers=(1, 1, 1, 1))
    moco = VTDL(model, 10, 7, 0.07, True, m=0.9)
    anchor, positive, negative = (torch.randn(2, 3, 8, 32, 32) for _ in range(3))
    loss, logits = compute_loss(
        moco,
        NCESoftmaxLoss(),
        anchor,
        positive,
        negative,
        np.random.RandomState(0),
        tiny_step_args(),
        runtime.local_context("cpu"),
    )
    assert logits.shape == (2, 9) and torch.isfinite(loss)
    assert logits[:, 0].abs().max() <= 1 / 0.07 + 1e-4
    loss.backward()
    assert model.id_head[2].weight.grad is not None and model.cls_head[2].weight.grad is None
    assert all(p.grad is None for p in moco.encoder_k.parameters())
    before = moco.encoder_k.id_head[2].bias.clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    moco.momentum_update()
    assert torch.allclose(moco.encoder_k.id_head[2].bias, 0.9 * before + 0.1 * model.id_head[2].bias)
    _, no_tn = compute_loss(
        moco,
        NCESoftmaxLoss(),
        anchor,
        positive,
        negative,
        np.random.RandomState(0),
        tiny_step_args(no_temporal_negative=True),
        runtime.local_context("cpu"),
    )
    assert no_tn.shape == (2, 8)


def test_fixes_i3d_112px_and_uniform_log_softmax():
    """I3D/R3D fine-tune heads accept 112-px clips (the original's fixed 7x7 pooling crashed); R(2+1)D/C3D raw
    logits go through log_softmax before NLL unless --raw_logits_nll."""
    from vtdl.main import finetune_loss

    torch.manual_seed(0)
    for arch in ("i3d", "r3d"):
        model = build_backbone(arch, 51, with_classifier=True).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 16, 112, 112))
        assert out.shape == (1, 51) and out.exp().sum().item() == pytest.approx(1.0, rel=1e-4)
    logits, target = torch.tensor([[3.0, 1.0]]), torch.tensor([0])
    fixed = finetune_loss(logits, target, argparse.Namespace(raw_logits_nll=False)).item()
    original = finetune_loss(logits, target, argparse.Namespace(raw_logits_nll=True)).item()
    assert fixed == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6) and original == pytest.approx(-3.0)


def test_colour_jitter_original_applies_exactly_one_adjustment():
    """One of the four PIL adjustments (what the original's ColorJitter ended up applying), with its factor, on
    every frame; uint8 like PIL: brightness, contrast and saturation to one level, hue to ~one level on average."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    clip = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (2, 3, 8, 8), dtype=np.uint8))
    images = [Image.fromarray(np.ascontiguousarray(f.permute(1, 2, 0).numpy())) for f in clip]
    for seed in range(12):
        rng = np.random.default_rng(seed)
        b, c, s, h = rng.uniform(0.5, 1.5), rng.uniform(0.5, 1.5), rng.uniform(0.75, 1.25), rng.uniform(-0.5, 0.5)
        which = int(rng.integers(4))
        op, factor = (
            [(TF.adjust_brightness, b), (TF.adjust_contrast, c), (TF.adjust_saturation, s)][which]
            if (which < 3)
            else (TF.adjust_hue, h)
        )
        expected = np.stack([np.asarray(op(img, float(factor))) for img in images]).astype(int)
        out = D.one_of_four_jitter(clip, np.random.default_rng(seed)).permute(0, 2, 3, 1).numpy().astype(int)
        diff = np.abs(out - expected)
        assert (diff.max() <= 1) if which < 3 else (diff.mean() < 1.5), (seed, which)


def test_parser_original_commands_and_aliases():
    readme_ft = (
        "--method ft --train_list ../datasets/lists/hmdb51/hmdb51_rgb_train_split_1.txt --val_list "
        "../datasets/lists/hmdb51/hmdb51_rgb_val_split_1.txt --dataset hmdb51 --arch i3d --mode rgb --lr "
        "0.001 --lr_steps 10 20 25 30 35 40 --epochs 45 --batch_size 4 --data_length 64 --workers 8 "
        "--dropout 0.5 --gpus 2 --logs_path ../experiments/logs/hmdb51_i3d_ft --print-freq 100 --weights "
        "../experiments/TemporalDis/hmdb51/models/04-16-2328_aug_CJ/ckpt_epoch_48.pth"
    ).split()
    args = get_args_parser().parse_args(readme_ft)
    assert (args.lr, args.batch_size, args.data_length, args.dropout, args.print_freq) == (0.001, 4, "64", 0.5, 100)
    assert args.weight_decay == 1e-8 and args.stride == 1 and args.spatial_size == "224" and args.test_clips == 10
    old = get_args_parser().parse_args(["--batch-size", "3", "--do", "0.3", "--wd", "1e-5", "--start_epoch", "2"])
    assert (old.batch_size, old.dropout, old.weight_decay, old.start_epoch) == (3, 0.3, 1e-5, 2)
    script = (
        "--batch_size 16 --num_workers 8 --nce_k 3569 --softmax --moco --print_freq 100 --dataset hmdb51 "
        "--train_list a.txt --val_list b.txt"
    ).split()
    pre = get_pretrain_args_parser().parse_args(script)
    assert (pre.batch_size, pre.nce_k, pre.softmax, pre.moco, pre.epochs, pre.save_freq) == (
        16,
        3569,
        True,
        True,
        240,
        3,
    )
    assert (pre.arch, pre.data_length, pre.stride, pre.spatial_size, pre.fix) == ("i3d", 16, 4, 224, [])
    assert start_range_len(pre) == 32  # the original's start range (spec §13.3)
    with pytest.raises(SystemExit) as exc:
        get_pretrain_args_parser().parse_args(["--arch", "resnet"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------------------------ end to end


def test_pipeline_pretrain_finetune_test_features(synth_dataset, tmp_path):
    """On the session synth_dataset (process_data lists): 2 pretraining iterations -> fine-tuning from the
    checkpoint -> test (10-clip style and original) -> feature extraction -> the clip-encoder hook."""
    from vtdl import feature_extractor, main, test, train_temporal_dis

    lists = synth_dataset.list_dir / "ucf101"
    data = argparse.Namespace(
        train=str(lists / "ucf101_rgb_train_split_1.txt"), val=str(lists / "ucf101_rgb_val_split_1.txt")
    )
    n_val = len(synth_dataset.classes) * synth_dataset.test_per_class
    pt = tmp_path / "pt"
    train_temporal_dis.cli(pretrain_args(data, pt, "--epochs", "1", "--save_freq", "1", "--iters_per_epoch", "2"))
    ckpt = load_checkpoint(str(pt / "ckpt_epoch_1.pth"))
    assert set(ckpt) >= {"opt", "model", "model_ema", "contrast", "optimizer", "epoch", "contrast_index"}
    assert ckpt["epoch"] == 1 and ckpt["contrast_index"] == 4 and ckpt["contrast"]["memory"].shape == (6, 128)
    assert all(k.startswith("module.") for k in ckpt["model"])
    log = [json.loads(line) for line in open(pt / "log.txt")]
    assert log[0]["epoch"] == 1 and math.isfinite(log[0]["ins_loss"]) and 0 < log[0]["ins_prob"] <= 1 / 0.07

    ft = tmp_path / "ft"
    common = ["--dataset", "ucf101", "--iters_per_epoch", "2"]
    main.cli(ft_args(data, *common, "--epochs", "1", "--weights", str(pt / "current.pth"), "--output_dir", str(ft)))
    ft_ckpt = load_checkpoint(str(ft / "fine_tune_rgb_model_latest.pth.tar"))
    assert ft_ckpt["epoch"] == 1 and ft_ckpt["arch"] == "i3d"
    assert ft_ckpt["state_dict"]["module.base_model.conv3d_0c_1x1_custom.conv3d.weight"].shape == (101, 1024, 7, 1, 1)
    record = json.loads(open(ft / "log.txt").read().splitlines()[-1])
    # the original's model selection: _best is written when the val accuracy beats best_prec1 (starting at 0)
    assert (ft / "fine_tune_rgb_model_best.pth.tar").exists() == (record["val_top1"] > 0)
    assert record["best_prec1"] == record["val_top1"]
    assert record["val_videos"] == n_val and 0 <= record["val_top1"] <= 100
    assert record["val_top1"] * n_val / 100 == pytest.approx(round(record["val_top1"] * n_val / 100))  # per video
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(ft / "tb"))

    weights = str(ft / "fine_tune_rgb_model_latest.pth.tar")
    for protocol in ("clips", "original"):
        out = tmp_path / f"test_{protocol}"
        test.cli(
            ft_args(
                data,
                *common,
                "--weights",
                weights,
                "--output_dir",
                str(out),
                "--eval_protocol",
                protocol,
                "--clip_size",
                "8",
                "--test_clips",
                "3",
            )
        )
        result = json.load(open(out / "test_results.json"))
        assert result["videos"] == n_val and result["clips"] == (3 if protocol == "clips" else 2)
        assert set(result) >= {"top1", "top5", "mean_class"} and 0 <= result["top1"] <= result["top5"] <= 100
        confusion = np.load(out / "confusion.npy")
        assert np.load(out / "video_pred.npy").shape == (n_val,) and confusion.sum() == n_val
        assert result["top1"] == pytest.approx(100 * np.trace(confusion) / n_val)  # = the confusion matrix's
        rows = confusion.sum(1) > 0
        assert result["mean_class"] == pytest.approx(100 * np.mean(np.diag(confusion)[rows] / confusion.sum(1)[rows]))

    feat = tmp_path / "feat" / "val_features.npy"
    feature_extractor.cli(
        ft_args(
            data,
            *common,
            "--weights",
            str(pt / "current.pth"),
            "--feature_path",
            str(feat),
            "--eval_indict",
            "feature_extract",
        )
    )
    features = np.load(feat)
    assert features.shape == (n_val, 1024) and features.dtype == np.float32 and np.isfinite(features).all()
    labels = np.load(tmp_path / "feat" / "val_features_labels.npy")
    assert sorted(set(labels.tolist())) == list(range(len(synth_dataset.classes)))
    ids = open(tmp_path / "feat" / "val_features_video_ids.txt").read().split()
    assert len(ids) == n_val and ids[0].split("/")[0] in synth_dataset.classes
    encoder = build_clip_encoder(str(pt / "current.pth"))
    assert (encoder.num_frames, encoder.frame_stride, encoder.crop_size, encoder.feature_dim) == (8, 2, 32, 1024)
    clips = torch.randint(0, 255, (2, 8, 32, 32, 3), dtype=torch.uint8)
    assert encoder(clips).shape == (2, 1024)


def checkpoint_tensors(path: str) -> dict:
    ckpt = load_checkpoint(path)
    out = {f"model.{k}": v for k, v in ckpt["model"].items()}
    out |= {f"ema.{k}": v for k, v in ckpt["model_ema"].items()}
    out |= {f"contrast.{k}": v for k, v in ckpt["contrast"].items()}
    for i, state in ckpt["optimizer"]["state"].items():
        out[f"opt.{i}"] = state["momentum_buffer"]
    return out | {"index": torch.tensor(ckpt["contrast_index"]), "step": torch.tensor(ckpt["global_step"])}


def test_resume_mid_epoch_and_at_epoch_end_is_exact(frames_data, tmp_path):
    """2 epochs x 2 iterations straight == stopped after iteration 3 (mid-epoch) and resumed == stopped after
    epoch 1 and resumed: weights, key encoder, queue + pointer and optimizer state are bit-identical."""
    from vtdl import train_temporal_dis

    straight, mid, end = tmp_path / "straight", tmp_path / "mid", tmp_path / "end"
    train_temporal_dis.cli(pretrain_args(frames_data, straight, "--save_freq", "100"))
    train_temporal_dis.cli(pretrain_args(frames_data, mid, "--save_freq", "100", "--stop_at_iter", "3"))
    assert load_checkpoint(str(mid / "current.pth"))["iteration"] == 1  # stopped inside epoch 2
    train_temporal_dis.cli(pretrain_args(frames_data, mid, "--save_freq", "100"))
    train_temporal_dis.cli(pretrain_args(frames_data, end, "--save_freq", "100", "--epochs", "1"))
    train_temporal_dis.cli(pretrain_args(frames_data, end, "--save_freq", "100"))
    reference = checkpoint_tensors(str(straight / "current.pth"))
    assert reference["step"].item() == 4 and reference["index"].item() == 8 % 6
    for run in (mid, end):
        resumed = checkpoint_tensors(str(run / "current.pth"))
        assert resumed.keys() == reference.keys()
        assert all(torch.equal(resumed[k], reference[k]) for k in reference), run.name


def test_finetune_resume_is_exact(frames_data, tmp_path):
    from vtdl import main

    main.cli(ft_args(frames_data, "--epochs", "2", "--output_dir", str(tmp_path / "a")))
    main.cli(ft_args(frames_data, "--epochs", "1", "--output_dir", str(tmp_path / "b")))
    main.cli(ft_args(frames_data, "--epochs", "2", "--output_dir", str(tmp_path / "b")))  # auto-resume
    a = load_checkpoint(str(tmp_path / "a" / "fine_tune_rgb_model_latest.pth.tar"))
    b = load_checkpoint(str(tmp_path / "b" / "fine_tune_rgb_model_latest.pth.tar"))
    assert a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_finetune_max_iters_stops_after_exactly_n_optimiser_steps(frames_data, tmp_path):
    """--max_iters N in fine-tuning = the run's total optimiser steps, as in the other methods: 3 of the 2 x 2
    steps, counted on the optimiser itself; the latest checkpoint is written inside epoch 2 (no epoch-2 log line)
    and the same command without the cap ends bit-identical to the uninterrupted run."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from vtdl import main

    straight, capped = tmp_path / "straight", tmp_path / "capped"
    main.cli(ft_args(frames_data, "--epochs", "2", "--output_dir", str(straight)))
    steps = []
    handle = register_optimizer_step_post_hook(lambda optimizer, args, kwargs: steps.append(optimizer))
    try:
        main.cli(ft_args(frames_data, "--epochs", "2", "--max_iters", "3", "--output_dir", str(capped)))
    finally:
        handle.remove()
    assert len(steps) == 3
    partial = load_checkpoint(str(capped / "fine_tune_rgb_model_latest.pth.tar"))
    assert (partial["epoch"], partial["iteration"], partial["global_step"]) == (1, 1, 3)
    assert [json.loads(line)["epoch"] for line in open(capped / "log.txt")] == [0]
    main.cli(ft_args(frames_data, "--epochs", "2", "--output_dir", str(capped)))  # resumes inside epoch 2
    a = load_checkpoint(str(straight / "fine_tune_rgb_model_latest.pth.tar"))
    b = load_checkpoint(str(capped / "fine_tune_rgb_model_latest.pth.tar"))
    assert a["global_step"] == b["global_step"] == 4 and a["epoch"] == b["epoch"] == 2
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    for i, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][i]["momentum_buffer"])
    drop_time = lambda path: [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in open(path)]  # noqa: E731
    assert drop_time(straight / "log.txt") == drop_time(capped / "log.txt")  # the resumed epoch's averages too


def test_ddp_two_gloo_processes(frames_data, tmp_path):
    """--gpus 0,1 on CPU spawns 2 gloo processes sharing a global batch of 4; keys of both ranks are enqueued."""
    out = tmp_path / "ddp"
    proc = run_py(
        "train_temporal_dis.py",
        pretrain_args(frames_data, out, "--gpus", "0,1", "--device", "cpu", "--batch_size", "4", "--epochs", "1"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 process(es)" in proc.stdout and "gloo" in proc.stdout
    ckpt = load_checkpoint(str(out / "current.pth"))
    assert ckpt["global_step"] == 1 and ckpt["contrast_index"] == 4  # 1 iteration x global batch 4
    assert ckpt["args"]["world_size"] == 2
    log = [json.loads(line) for line in open(out / "log.txt")]
    assert len(log) == 1 and math.isfinite(log[0]["ins_loss"])


def test_clear_errors(frames_data, tmp_path, capsys):
    from vtdl import main, train_temporal_dis

    def one_line_exit(fn, argv, pattern):
        with pytest.raises(SystemExit) as exc:
            fn(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and pattern in err[0], err

    one_line_exit(
        train_temporal_dis.cli,
        pretrain_args(frames_data, tmp_path / "x", "--train_list", str(tmp_path / "none.txt")),
        "not found",
    )
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text(f"{tmp_path}/missing_video 30 0\n" * 4)
    one_line_exit(
        train_temporal_dis.cli,
        pretrain_args(frames_data, tmp_path / "y", "--train_list", str(bad_list)),
        "frame folder not found",
    )
    one_line_exit(main.cli, ["--method", "pt"], "only 'ft'")
    one_line_exit(main.cli, ft_args(frames_data, "--weights", str(tmp_path / "nope.pth")), "not found")
    one_line_exit(main.cli, ft_args(frames_data, "--mode", "flow"), "only rgb")
    env = dict(os.environ, DATA_ROOT=str(tmp_path / "no_data"))
    for script in ("ucf101.sh", "TemporalDisc/hmdb51.sh", "TemporalDis/kinetics.sh"):
        proc = subprocess.run(
            ["bash", os.path.join(REPO, "vtdl", "scripts", script)], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "not found" in proc.stderr and "DATA_ROOT" in proc.stderr


def test_kinetics_videos_decoded_with_pyav(tmp_path):
    """Kinetics lists ('<relative video> <label>') are decoded with PyAV through the frames pipeline."""
    import av

    for i in range(2):
        path = tmp_path / "train_256" / "cls" / f"vid{i}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv420p"
            for t in range(30 + 10 * i):
                img = np.full((40, 48, 3), 40 + 5 * t, np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    (tmp_path / "list.txt").write_text("train_256/cls/vid0.mp4 3\ntrain_256/cls/vid1.mp4 5\n")
    entries = D.read_list(str(tmp_path / "list.txt"), root=str(tmp_path))
    reader = D.build_reader(entries, None, 32, DataWarnings())
    assert reader.template is None and reader.num_frames(entries[1]) == 40
    data = D.PretrainDataset(entries, reader, D.TrainTransform(32), clip_len=8, stride=2, range_len=8)
    (anchor, positive, negative), label, _ = data[(1, 7)]
    assert anchor.shape == positive.shape == negative.shape == (3, 8, 32, 32) and label == 5


def test_benchmark_train_step_updates_the_query_encoder():
    from vtdl.benchmark import build_train_step

    step, info = build_train_step(torch.device("cpu"), batch_size=2, spatial_size=32, frames=8)
    params = dict(info["model"].named_parameters())
    before = {name: p.detach().clone() for name, p in params.items()}
    loss = step()
    assert torch.isfinite(loss) and loss.ndim == 0 and info["batch_size"] == 2
    unchanged = sorted(name for name, p in params.items() if torch.equal(before[name], p))
    assert unchanged == ["cls_head.2.bias", "cls_head.2.weight"]  # the unused classifier only
