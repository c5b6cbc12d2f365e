"""VideoMoCo units: flags, state-dict layouts, generator reference values, frame drop, temporal decay, queue and
momentum arithmetic, lr schedule, augmentation, clip sampling, split readers, one-line errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from argparse import Namespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared_utils.checkpoint import compare_keys, save_checkpoint
from shared_utils.cli import UserError, run_cli
from shared_utils.data import DataWarnings
from videomoco import train
from videomoco.augment import VideoMoCoAugment
from videomoco.dataset import hmdb51_split, num_clip_starts, random_clip, ucf101_split, uniform_clips
from videomoco.eval import build_eval_model, load_pretrained
from videomoco.loss import (
    contrastive_logits,
    contrastive_loss,
    decay_weights,
    generator_loss,
    paper_decay_log_weights,
    paper_queue_positions,
)
from videomoco.model import FrameDrop, MaskGenerator, VideoMoCo, drop_mask
from videomoco.opts import get_args_parser, get_eval_args_parser
from videomoco.resume import resume_run
from videomoco.train import adjust_learning_rate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Toy-sized models: one intra-op thread is fastest (and robust on a loaded 2-core box); spawned
    processes and subprocesses inherit OMP_NUM_THREADS."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


REFERENCE = os.path.join(REPO, "videomoco", "reference")  # copies of the spec's companion JSONs
KEYS = os.path.join(REFERENCE, "videomoco_keys.json")
REFS = os.path.join(REFERENCE, "videomoco_reference_values.json")

README_TRAIN = (
    "--log_dir L --ckp_dir C -a r2plus1d_18 --lr 0.005 -fpc 32 -b 32 -j 128 --epochs 200 --schedule 120 160 "
    "--dist_url tcp://localhost:10001 --multiprocessing_distributed --world_size 1 --rank 0 "
    "--resume checkpoint_0100.pth.tar DATA"
).split()


def recipe_b_fill(module: torch.nn.Module) -> None:
    """Spec section 12, recipe B: implementation-independent weights from CRC-32 phases of the key names."""
    state = {}
    for name, tensor in module.state_dict().items():
        if not tensor.is_floating_point():
            state[name] = torch.zeros_like(tensor)
            continue
        n = tensor.numel()
        i = np.arange(n, dtype=np.float64)
        if name == "queue":
            h = np.sin(12.9898 * i + 1.0) * 43758.5453
            queue = torch.from_numpy(2 * (h - np.floor(h)) - 1).view(tensor.shape)
            state[name] = (queue / queue.norm(dim=0, keepdim=True)).float()
            continue
        suffix = name.removeprefix("encoder_q.").removeprefix("encoder_k.")
        phase = (zlib.crc32(suffix.encode()) % 10007) / 10007 * 2 * math.pi
        h = np.sin(12.9898 * i + phase) * 43758.5453
        s = 2 * (h - np.floor(h)) - 1
        last = suffix.split(".")[-1]
        if last == "running_mean":
            v = np.zeros(n)
        elif last == "running_var":
            v = np.ones(n)
        elif last == "weight" and tensor.dim() == 1:
            v = 1 + 0.1 * s
        elif last == "bias" or last.startswith("bias_"):
            v = 0.01 * s
        else:
            v = s * math.sqrt(3 / (n / tensor.shape[0]))
        state[name] = torch.from_numpy(v).view(tensor.shape).float()
    module.load_state_dict(state)


def recipe_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    i = np.arange(2 * 3 * 32 * 112 * 112, dtype=np.float64)
    frac = lambda v: v - np.floor(v)  # noqa: E731
    x_q = torch.from_numpy(frac(np.sin(78.233 * i) * 43758.5453)).float().view(2, 3, 32, 112, 112)
    x_k = torch.from_numpy(frac(np.sin(78.233 * i + 0.5) * 43758.5453)).float().view(2, 3, 32, 112, 112)
    return x_q, x_k


def shapes(module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------------- flags


def test_parser_accepts_readme_command_with_original_defaults():
    args = get_args_parser().parse_args(README_TRAIN)
    assert (args.arch, args.lr, args.frame_per_clip, args.batch_size, args.workers) == (
        "r2plus1d_18",
        0.005,
        32,
        32,
        128,
    )
    assert (args.epochs, args.schedule, args.dist_url) == (200, [120, 160], "tcp://localhost:10001")
    assert args.multiprocessing_distributed and (args.world_size, args.rank) == (1, 0)
    assert (args.resume, args.log_dir, args.ckp_dir, args.data) == ("checkpoint_0100.pth.tar", "L", "C", "DATA")
    assert (args.moco_dim, args.moco_k, args.moco_m, args.moco_t) == (128, 65536, 0.999, 0.07)
    assert (args.temporal_decay, args.crop_size, args.step_between_clips, args.weight_decay) == (0.99999, 112, 1, 1e-4)
    assert (args.momentum, args.lr_decay, args.wp_lr, args.print_freq) == (0.9, 0.1, 0.0025, 10)
    assert not (args.mlp or args.aug_plus or args.cos or args.warmup)
    assert args.adversarial_start_epoch == 100 and args.dist_backend == "nccl"
    defaults = get_args_parser().parse_args(["D"])
    assert (defaults.arch, defaults.frame_per_clip, defaults.batch_size, defaults.lr) == ("r3d_18", 16, 256, 0.03)
    alias = get_args_parser().parse_args(["D", "--dist-url", "x", "--world-size", "2", "--moco_k", "8"])
    assert (alias.dist_url, alias.world_size, alias.moco_k) == ("x", 2, 8)
    ev = get_eval_args_parser().parse_args("--dist-url u --multiprocessing-distributed --world-size 1 -e D".split())
    assert ev.multiprocessing_distributed and ev.evaluate and ev.dist_url == "u"
    assert (ev.epochs, ev.crop_size, ev.frame_per_clip, ev.lr, ev.schedule) == (10, 224, 32, 0.005, [6, 8])
    assert (ev.clip_per_video, ev.batch_size, ev.weight_decay, ev.arch) == (10, 256, 1e-4, "r3d_18")


# --------------------------------------------------------------------------------------------------- state dicts


def test_state_dicts_and_released_layouts_match_keys_json(tmp_path):
    want = json.load(open(KEYS))
    assert shapes(MaskGenerator()) == want["netG_MaskGenerator"]
    D = VideoMoCo("r2plus1d_18", 128, 65536)
    assert shapes(D) == want["netD_MoCo_r2plus1d_18_dim128_K65536"]
    assert shapes(VideoMoCo("r2plus1d_18", 128, 65536, mlp=True)) == want["netD_MoCo_r2plus1d_18_dim128_K65536_mlp"]
    assert shapes(build_eval_model("r2plus1d_18", 101)) == want["eval_r2plus1d_18_num_class101"]
    assert D.count.dtype == torch.int32 and "count" not in D.state_dict()
    # a released-layout D checkpoint (DDP keys, shapes from the JSON, no optimizer/count) resumes and evaluates
    released = {"module." + k: torch.full(v, 0.5) for k, v in want["netD_MoCo_r2plus1d_18_dim128_K65536"].items()}
    released["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    path = save_checkpoint({"epoch": 100, "arch": "r2plus1d_18", "state_dict": released}, tmp_path / "ck.pth.tar")
    args = Namespace(start_epoch=0, resume=str(path), resumeG="", arch="r2plus1d_18")
    opt = torch.optim.SGD(D.encoder_q.parameters(), lr=0.1)
    run = resume_run(args, None, D, None, opt, str(tmp_path / "run"), seed=0, iters_per_epoch=10)
    assert (run.epoch, run.iteration, run.global_step) == (100, 0, 1000)
    assert torch.equal(D.encoder_q.stem[0].weight, torch.full_like(D.encoder_q.stem[0].weight, 0.5))
    model = build_eval_model("r2plus1d_18", 101)
    load_pretrained(model, str(path))
    assert torch.equal(model.layer4[1].conv2[1].weight, torch.full_like(model.layer4[1].conv2[1].weight, 0.5))
    report = compare_keys(
        model.state_dict(),
        {
            k[len("module.encoder_q.") :]: v
            for k, v in released.items()
            if k.startswith("module.encoder_q.") and ".fc." not in k
        },
    )
    assert report.missing == ["fc.weight", "fc.bias"] and not report.unexpected


# --------------------------------------------------------------------------------------------------- generator


def test_generator_reference_recipe_b():
    ref = json.load(open(REFS))["numcheck"]["B_deterministic_t0.99999"]
    G = MaskGenerator()
    recipe_b_fill(G)
    x_q, _ = recipe_inputs()
    x_fake, p = G(x_q)
    assert p.shape == (2, 32)
    torch.testing.assert_close(p.sum(1), torch.ones(2))
    torch.testing.assert_close(p[0], torch.tensor(ref["generator_softmax_sample0"]), rtol=0, atol=2e-6)
    mask = drop_mask(p, 8)
    assert [torch.nonzero(row).flatten().tolist() for row in mask] == ref["dropped_frame_indices"]
    j = ref["dropped_frame_indices"][0][0]
    assert torch.allclose(x_fake[0, :, j], x_q[0, :, j].mean().expand_as(x_q[0, :, j]))
    assert torch.equal(x_fake[0, :, 0], x_q[0, :, 0])


def test_frame_drop_keeps_count_fills_means_and_passes_straight_through_gradient():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 8, 5, 5)
    p = torch.rand(3, 8).softmax(1).requires_grad_()
    for k, largest in ((2, False), (5, True)):
        mask = drop_mask(p, k, largest)
        assert mask.sum(1).tolist() == [k] * 3
        ranks = p.detach().argsort(1, descending=largest)[:, :k]
        assert all(set(ranks[b].tolist()) == set(torch.nonzero(mask[b]).flatten().tolist()) for b in range(3))
        x_fake = FrameDrop.apply(x, p, k, largest)
        dropped = mask[:, None, :, None, None].expand_as(x)
        frame_mean = x.mean(dim=(1, 3, 4))[:, None, :, None, None].expand_as(x)
        assert torch.equal(x_fake[~dropped], x[~dropped])
        assert torch.allclose(x_fake[dropped], frame_mean[dropped])
    upstream = torch.randn_like(x)
    (grad_p,) = torch.autograd.grad((FrameDrop.apply(x, p, 2, False) * upstream).sum(), p)
    torch.testing.assert_close(grad_p, upstream.sum(dim=(1, 3, 4)))  # every frame, dropped or kept
    G = MaskGenerator(num_frames=4, crop_size=16, drop=1)
    x_fake, p = G(torch.randn(2, 3, 4, 16, 16))
    assert x_fake.shape == (2, 3, 4, 16, 16) and p.shape == (2, 4)
    x_fake.sum().backward()
    assert all(param.grad is not None for param in G.parameters())


# --------------------------------------------------------------------------------------------------- decay and loss


def test_temporal_decay_weights_for_known_ages():
    count = torch.tensor([0, 1, 2, 5, 2048], dtype=torch.int32)
    torch.testing.assert_close(decay_weights(count, 0.99), torch.tensor([1.0, 0.99, 0.9801, 0.99**5, 0.99**2048]))
    assert decay_weights(count, 0.99999)[-1].item() == pytest.approx(0.9797, abs=1e-4)  # spec: oldest key ~0.98
    assert paper_queue_positions(ptr=3, K=8).tolist() == [2, 1, 0, 7, 6, 5, 4, 3]  # 0 = newest (slot ptr-1)
    torch.testing.assert_close(
        paper_decay_log_weights(3, 8, 0.5), torch.tensor([2, 1, 0, 7, 6, 5, 4, 3], dtype=torch.float32) * math.log(0.5)
    )


def test_contrastive_loss_hand_computed_and_decay_forms():
    torch.manual_seed(0)
    q, k = F.normalize(torch.randn(2, 4), dim=1), F.normalize(torch.randn(2, 4), dim=1)
    queue = F.normalize(torch.randn(4, 6), dim=0)
    count = torch.tensor([0, 1, 2, 3, 1, 2], dtype=torch.int32)
    T, t = 0.07, 0.9
    plain = contrastive_logits(q, k, queue, T)
    code = contrastive_logits(q, k, queue, T, weights=decay_weights(count, t))
    paper = contrastive_logits(q, k, queue, T, log_weights=paper_decay_log_weights(2, 6, t))
    torch.testing.assert_close(code[:, 0], plain[:, 0])
    torch.testing.assert_close(code[:, 1:], plain[:, 1:] * t ** count.float())  # recipe C: column j scaled
    positions = torch.tensor([1, 0, 5, 4, 3, 2], dtype=torch.float32)
    for b in range(2):  # paper Eq. 6: -log e^{q.k/T} / (e^{q.k/T} + sum_i t^i e^{q.kappa_i/T})
        pos = math.exp(float(q[b] @ k[b]) / T)
        neg = sum(t ** positions[j].item() * math.exp(float(q[b] @ queue[:, j]) / T) for j in range(6))
        expected = -math.log(pos / (pos + neg))
        assert F.cross_entropy(paper[b : b + 1], torch.zeros(1, dtype=torch.long)).item() == pytest.approx(expected)
    assert contrastive_loss(plain).item() == pytest.approx(F.cross_entropy(plain, torch.zeros(2).long()).item())
    assert generator_loss(q, k).item() == pytest.approx(-100 * (q - k).abs().mean().item())


# --------------------------------------------------------------------------------------------------- MoCo arithmetic


def test_momentum_update_queue_enqueue_and_key_ages():
    torch.manual_seed(0)
    D = VideoMoCo("mc3_18", dim=8, K=8, m=0.9)
    for param in D.encoder_q.parameters():
        param.data.add_(1.0)
    before_q = [p.clone() for p in D.encoder_q.parameters()]
    before_k = [p.clone() for p in D.encoder_k.parameters()]
    D._momentum_update_key_encoder()
    for q, k0, k1 in zip(before_q, before_k, D.encoder_k.parameters()):
        torch.testing.assert_close(k1, 0.9 * k0 + 0.1 * q)
    keys = [F.normalize(torch.randn(2, 8), dim=1) for _ in range(5)]
    expected_counts = [[1, 1, 1, 1, 1, 1, 1, 1], [2, 2, 1, 1, 2, 2, 2, 2], [3, 3, 2, 2, 1, 1, 3, 3]]
    for step, key in enumerate(keys):
        D._dequeue_and_enqueue(key)
        ptr = (2 * step) % 8
        torch.testing.assert_close(D.queue[:, ptr : ptr + 2], key.T)
        assert int(D.queue_ptr) == (ptr + 2) % 8
        if step < 3:
            assert D.count.tolist() == expected_counts[step]
    assert D.count.tolist() == [1, 1, 4, 4, 3, 3, 2, 2]  # wrapped: slots 0-1 rewritten at step 5
    with pytest.raises(ValueError, match="must divide"):
        D._dequeue_and_enqueue(torch.randn(3, 8))
    x = torch.randn(2, 3, 4, 16, 16)
    q, q_real, logits, labels = D(x, x.flip(-1), t=0.5, im_q_real=x)
    assert logits.shape == (2, 9) and labels.tolist() == [0, 0] and q_real.requires_grad is False
    torch.testing.assert_close(q.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(D.queue.norm(dim=0), torch.ones(8))
    assert int(D.queue_ptr) == 4 and D.count[2:4].tolist() == [1, 1]


def test_learning_rate_schedules():
    args = Namespace(lr=0.005, lr_decay=0.1, schedule=[120, 160], cos=False, warmup=False, wp_lr=0.0025, epochs=200)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert [adjust_learning_rate([opt, None], e, args) for e in (0, 119, 120, 160)] == pytest.approx(
        [0.005, 0.005, 5e-4, 5e-5]
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-5)
    args.cos = True
    assert adjust_learning_rate([opt], 100, args) == pytest.approx(0.0025)
    args.cos, args.warmup = False, True
    assert adjust_learning_rate([opt], 60, args) == pytest.approx(0.0025 + 60 * 0.0025 / 120)
    assert [adjust_learning_rate([opt], e, args) for e in (120, 160)] == pytest.approx([0.005, 5e-4])


# --------------------------------------------------------------------------------------------------- benchmark hook


@pytest.mark.parametrize("adversarial", [False, True])
def test_benchmark_train_step_updates_d_and_queue_and_g(adversarial):
    from videomoco.benchmark import build_train_step

    step, info = build_train_step(
        torch.device("cpu"), 1, adversarial=adversarial, arch="mc3_18", frame_per_clip=4, crop_size=16, moco_k=8,
        moco_dim=16,
    )  # fmt: skip
    assert info["method"] == "videomoco" and info["batch_size"] == 1 and "mc3_18 4x16px, K=8" in info["config"]
    D = step.D
    before_q = D.encoder_q.fc.weight.detach().clone()
    before_k = D.encoder_k.fc.weight.detach().clone()
    before_g = step.G.mask_generator.fc[0].weight.detach().clone() if adversarial else None
    losses = [step(), step()]
    assert all(loss.ndim == 0 and torch.isfinite(loss) and loss > 0 for loss in losses)
    assert not torch.equal(D.encoder_q.fc.weight, before_q) and not torch.equal(D.encoder_k.fc.weight, before_k)
    assert int(D.queue_ptr) == 2 and D.count.tolist() == [2, 1] + [2] * 6  # two enqueues of one key
    assert (step.G is None) != adversarial
    if adversarial:
        assert not torch.equal(step.G.mask_generator.fc[0].weight, before_g)


# --------------------------------------------------------------------------------------------------- data


def test_augmentation_per_clip_and_per_frame():
    x = torch.rand(4, 3, 6, 12, 12)
    g = torch.Generator().manual_seed(0)
    out = VideoMoCoAugment(per_frame=False)(x, g)
    assert out.shape == x.shape and out.mean().abs() < 3
    plain = VideoMoCoAugment(aug_plus=True, per_frame=False)(x, torch.Generator().manual_seed(1))
    assert plain.shape == x.shape
    ramp = torch.linspace(0, 1, 12).expand(4, 3, 6, 12, 12).contiguous()  # flips are visible on a ramp
    flipped = lambda y: (y[..., 0] > y[..., -1]).all(dim=(1, 3))  # noqa: E731  per clip and frame: B, T
    aug = VideoMoCoAugment(per_frame=False)
    aug.main.grayscale_p, aug.main.jitter_p = 0.0, 0.0
    clip_flags = torch.cat([flipped(aug(ramp, torch.Generator().manual_seed(s))) for s in range(5)])
    assert ((clip_flags.all(1)) | (~clip_flags).all(1)).all()  # one decision per clip
    aug_frame = VideoMoCoAugment(per_frame=True)
    aug_frame.main.grayscale_p, aug_frame.main.jitter_p = 0.0, 0.0
    frame_flags = torch.cat([flipped(aug_frame(ramp, torch.Generator().manual_seed(s))) for s in range(5)])
    assert not ((frame_flags.all(1)) | (~frame_flags).all(1)).all()  # released: frames decide independently


def test_clip_sampling_matches_the_original_samplers():
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = random_clip(50, 16, 4, rng)
        assert idx[0] % 4 == 0 and np.array_equal(idx, idx[0] + np.arange(16)) and idx[-1] <= 49
    assert num_clip_starts(50, 16, 1) == 35 and num_clip_starts(10, 16, 1) == 1
    assert random_clip(10, 16, 1, rng).tolist() == list(range(10)) + [9] * 6  # short video: padded
    starts = uniform_clips(50, 16, 1, 10)[:, 0].tolist()
    assert starts == torch.linspace(0, 34, 10).floor().long().tolist()  # UniformClipSampler
    assert uniform_clips(17, 16, 1, 4)[:, 0].tolist() == [0, 0, 0, 1]  # repeats when fewer clips than asked


def test_ucf_and_hmdb_split_readers(tmp_path):
    videos = tmp_path / "videos"
    for cls in ("HandstandPushups", "Walk"):
        (videos / cls).mkdir(parents=True)
    for name in ("HandstandPushups/v_HandStandPushups_g01_c01.avi", "Walk/v_Walk_g01_c01.avi", "Walk/b.avi"):
        (videos / name).write_bytes(b"x")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "trainlist01.txt").write_bytes(
        b"handstandPushups/v_HandStandPushups_g01_c01.avi 1\r\nWalk/missing.avi 2\r\n"
    )
    (splits / "testlist01.txt").write_bytes(b"Walk/v_Walk_g01_c01.avi\r\n\r\n")
    warnings = DataWarnings()
    paths, labels, classes = ucf101_split(str(videos), str(splits), 1, True, "video", warnings)
    assert classes == ["HandstandPushups", "Walk"] and labels == [0]
    assert paths == [str(videos / "HandstandPushups/v_HandStandPushups_g01_c01.avi")]
    assert warnings.counts()["unreadable_video"] == 1
    with pytest.raises(UserError, match="none of the 1 videos listed in .*testlist01.txt"):
        ucf101_split(str(videos), str(splits), 1, False, "frames", warnings)  # no frame folder exists: one line
    (splits / "HandstandPushups_test_split2.txt").write_text("v_HandStandPushups_g01_c01.avi 2 \n")
    (splits / "Walk_test_split2.txt").write_text("v_Walk_g01_c01.avi 1 \nb.avi 0 \n")
    assert hmdb51_split(str(videos), str(splits), 2, True, "video", warnings)[1] == [1]
    paths, labels, _ = hmdb51_split(str(videos), str(splits), 2, False, "video", warnings)
    assert labels == [0] and paths[0].endswith("v_HandStandPushups_g01_c01.avi")


# --------------------------------------------------------------------------------------------------- errors


def run_script(script, *argv, cwd=REPO):
    return subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["/no/such/root"], "dataset root not found"),
        (["-a", "resnet50", "/tmp"], "invalid choice: 'resnet50'"),
        (["--resume", "/no/ckpt.pth.tar", "--train_subdir", ".", REPO], "--resume checkpoint not found"),
        (["--bogus", REPO], "unrecognized arguments: --bogus"),
        (["-b", "3", "--moco-k", "8", "--train_subdir", ".", REPO], "must divide the queue size"),
    ],
)
def test_train_errors_are_one_line_with_exit_code_2(argv, message, capsys, tmp_path):
    if argv[-1] == REPO:
        argv = argv[:-1] + ["--log_dir", str(tmp_path / "l"), "--ckp_dir", str(tmp_path / "c"), REPO]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train.main, get_args_parser().parse_args(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_eval_without_data_is_one_line_error_also_from_inside_the_folder():
    result = run_script("eval.py", cwd=os.path.join(REPO, "videomoco"))  # the README's bare `python eval.py`
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "eval.py: error: give the dataset root DIR (with data/ and anno/) or --video_dir and --split_dir"
    ]


def test_failed_start_writes_nothing_and_an_empty_list_says_so(synth_dataset, tmp_path, capsys):
    """An empty --train_list used to end in 'no readable video found' after writing videomoco_video_metadata.json
    ({}) into the dataset folder and args.json + a TensorBoard file into the log folder. Now: one line that names
    the empty list, and neither the dataset folder nor the log/checkpoint folders change."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(synth_dataset.video_root, raw / "UCF-101")
    empty, gone = tmp_path / "empty.txt", tmp_path / "gone.txt"
    empty.write_text("\n")
    gone.write_text("Nowhere/v_Nowhere_g01_c01.avi 1\n")  # a list that names no existing video
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    for listing, message in ((empty, "is empty"), (gone, "none of the 1 videos listed")):
        argv = [str(raw), "--train_subdir", "UCF-101", "--video_exts", "avi", "--train_list", str(listing),
                "--exact_dirs", "--log_dir", str(tmp_path / "log"), "--ckp_dir", str(tmp_path / "ckp"), "-a",
                "mc3_18", "-b", "2", "--moco-k", "8", "-j", "0"]  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            run_cli(train.main, get_args_parser().parse_args(argv))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_probe_cache_key_follows_path_size_mtime_and_version(tmp_path, monkeypatch):
    """Every input of a cached probe result invalidates it: another path, size, mtime or cache version."""
    from shared_utils import video

    clip = tmp_path / "a.avi"
    clip.write_bytes(b"x" * 10)
    key = video.probe_cache_key(str(clip))
    assert video.probe_cache_key(str(clip)) == key
    os.utime(clip, ns=(10**9, 10**9 + 1))
    touched = video.probe_cache_key(str(clip))
    assert touched != key
    clip.write_bytes(b"x" * 11)
    os.utime(clip, ns=(10**9, 10**9 + 1))
    assert video.probe_cache_key(str(clip)) not in (key, touched)  # same mtime, other size
    os.rename(clip, tmp_path / "b.avi")
    assert video.probe_cache_key(str(tmp_path / "b.avi")) != video.probe_cache_key(str(clip))
    current = video.probe_cache_key(str(tmp_path / "b.avi"))
    monkeypatch.setattr(video, "PROBE_CACHE_VERSION", video.PROBE_CACHE_VERSION + 1)
    assert video.probe_cache_key(str(tmp_path / "b.avi")) != current


def test_probe_cache_is_used_only_for_an_unchanged_file_and_never_written_without_data(synth_dataset, tmp_path):
    import shutil

    from shared_utils import video

    clip = tmp_path / "v.avi"
    shutil.copy(sorted(synth_dataset.video_root.rglob("*.avi"))[0], clip)
    cache = tmp_path / "cache" / "probe.json"
    real = video.probe_videos([str(clip)], cache_file=str(cache))[0]
    assert real is not None and real.n_frames == synth_dataset.num_frames
    stored = json.loads(cache.read_text())
    (key,) = stored
    stored[key]["n_frames"] = 999  # a cache hit returns what is stored
    cache.write_text(json.dumps(stored))
    assert video.probe_videos([str(clip)], cache_file=str(cache))[0].n_frames == 999
    os.utime(clip, ns=(5 * 10**9, 5 * 10**9))  # the file changed: probed again
    assert video.probe_videos([str(clip)], cache_file=str(cache))[0].n_frames == synth_dataset.num_frames
    nothing = tmp_path / "none" / "probe.json"
    assert video.probe_videos([str(tmp_path / "missing.avi")], cache_file=str(nothing)) == [None]
    assert not nothing.parent.exists()
