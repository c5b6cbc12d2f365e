"""VideoMoCo end to end on the synthetic dataset: D-only then adversarial pretraining + evaluation, exact resume
(queue, ages, generator, both optimizers), and DDP with two gloo processes (shuffle-BN, synchronised G and D)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from argparse import Namespace

import pytest
import torch
import torch.nn.functional as F

from shared_utils import dist, runtime
from shared_utils.checkpoint import load_checkpoint, strip_prefix
from videomoco import train
from videomoco.augment import VideoMoCoAugment
from videomoco.features import build_clip_encoder
from videomoco.model import MaskGenerator, VideoMoCo
from videomoco.opts import get_args_parser

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


TINY = "-a mc3_18 -fpc 4 -cs 16 --moco-dim 16 -j 0 --seed 0 -p 1 --exact_dirs --no_tensorboard".split()


def pretrain_argv(data, out, *extra, frames=False) -> list[str]:
    source = [str(data.frame_root), "--train_subdir", ".", "--data_format", "frames"] if frames else [
        str(data.raw_root), "--train_subdir", "UCF-101", "--video_exts", "avi",
        "--metadata_cache", str(out / "probe_cache.json"),  # the session dataset stays untouched
    ]  # fmt: skip
    trainlist = str(data.split_dir / "trainlist01.txt")  # 12 videos -> 2 iterations of 6
    dirs = ["--log_dir", str(out / "log"), "--ckp_dir", str(out / "ckp")]
    return source + ["--train_list", trainlist, "-b", "6", "--moco-k", "12", *TINY, *dirs, *extra]


def plain_state(ckpt: dict, key: str) -> dict:
    return strip_prefix(ckpt[key], ("module.",))


def assert_same_tensors(a, b, path="") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a} != {b}"


def test_two_d_only_then_two_adversarial_iterations_then_eval(synth_dataset, tmp_path, capsys):
    argv = pretrain_argv(synth_dataset, tmp_path, "--epochs", "2", "--adversarial_start_epoch", "1", "--save_freq", "1")
    argv.remove("--no_tensorboard")
    train.main(get_args_parser().parse_args(argv))
    out = capsys.readouterr().out
    assert "Epoch: [0] D-only [1/2]" in out and "Epoch: [1] adversarial [1/2]" in out
    ckp = tmp_path / "ckp"
    d1, d2 = (load_checkpoint(ckp / "netD" / f"checkpoint_000{e}.pth.tar") for e in (1, 2))
    g1, g2 = (load_checkpoint(ckp / "netG" / f"checkpoint_000{e}.pth.tar") for e in (1, 2))
    assert (d1["epoch"], d2["epoch"], d2["global_step"], d2["arch"]) == (1, 2, 4, "mc3_18")
    torch.manual_seed(0)  # the worker seeds, then builds G first: G's initial weights
    initial_g = MaskGenerator(4, 16, 1).state_dict()
    assert all(torch.equal(initial_g[k], v) for k, v in plain_state(g1, "state_dict").items())  # D-only: G idle
    moved = [
        k
        for k, v in plain_state(g2, "state_dict").items()
        if v.is_floating_point() and not torch.equal(v, initial_g[k])
    ]
    assert "mask_generator.fc.0.weight" in moved and "mask_generator.rnn.weight_ih_l0" in moved
    q1, q2 = plain_state(d1, "state_dict"), plain_state(d2, "state_dict")
    assert not torch.equal(q1["encoder_q.fc.weight"], q2["encoder_q.fc.weight"])
    assert int(q2["queue_ptr"]) == 0 and d2["count"].tolist() == [2] * 6 + [1] * 6  # 4 enqueues of 6 into 12
    records = [json.loads(line) for line in open(tmp_path / "log" / "log.txt")]
    assert [r["adversarial"] for r in records] == [False, True] and "loss_g" in records[1]
    assert "loss_g" not in records[0] and all(r["loss_d"] > 0 for r in records)
    events = b"".join(p.read_bytes() for p in (tmp_path / "log").glob("events.out.tfevents.*"))
    for tag in (b"moco_train/loss_d", b"moco_train/loss_g", b"moco_train/lr", b"moco_train_avg/acc1"):
        assert tag in events
    # the unified clip-encoder hook loads the checkpoint's query encoder (without its projection head)
    encoder = build_clip_encoder(str(ckp / "netD" / "checkpoint_0002.pth.tar"))
    assert (encoder.num_frames, encoder.frame_stride, encoder.crop_size, encoder.feature_dim) == (4, 1, 16, 512)
    assert torch.equal(encoder.backbone.layer1[0].conv1[0].weight, q2["encoder_q.layer1.0.conv1.0.weight"])
    features = encoder(torch.randint(0, 256, (2, 4, 16, 16, 3), dtype=torch.uint8))
    assert features.shape == (2, 512) and torch.isfinite(features).all()
    random_init = build_clip_encoder(None, arch="mc3_18", frame_per_clip=4, crop_size=16)
    assert not torch.equal(random_init.backbone.layer1[0].conv1[0].weight, q2["encoder_q.layer1.0.conv1.0.weight"])
    # evaluation as the original's script, run from inside the folder
    eval_argv = [
        "eval.py", "-a", "mc3_18", "--pretrained", str(ckp / "netD" / "checkpoint_0002.pth.tar"),
        "--video_dir", str(synth_dataset.video_root), "--split_dir", str(synth_dataset.split_dir),
        "-fpc", "4", "-cs", "16", "-b", "6", "--epochs", "1", "-cpv", "2", "--train_clips_per_video", "1",
        "-j", "0", "--seed", "0", "--exact_dirs", "--log_dir", str(tmp_path / "elog"), "--ckp_dir", str(tmp_path / "eckp"),
        "--metadata_cache", str(tmp_path / "probe_cache.json"),
    ]  # fmt: skip
    env = dict(os.environ, TQDM_DISABLE="1")
    result = subprocess.run(
        [sys.executable, *eval_argv], cwd=os.path.join(REPO, "videomoco"), capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "missing 2; unexpected 0; shape mismatch 0" in result.stdout and "missing: fc.weight, fc.bias" in result.stdout
    )
    test_line = [line for line in result.stdout.splitlines() if line.startswith("test: clip Acc@1")][0]
    assert test_line.endswith("8 of 8 listed videos") and " * Acc@1 " in result.stdout
    assert (tmp_path / "eckp" / "checkpoint_0001.pth.tar").is_file()
    assert (tmp_path / "eckp" / "best_checkpoint.pth.tar").is_file()
    assert len(json.load(open(tmp_path / "probe_cache.json"))) == 20  # train + test videos of split 1, probed once
    assert not list(synth_dataset.video_root.glob("*.json"))
    record = json.loads(open(tmp_path / "elog" / "log.txt").read().splitlines()[-1])
    assert record["test_videos"] == 8 and 0 <= record["test_acc1"] <= 100
    assert f" * Acc@1 {record['test_acc1']:.3f}" in result.stdout  # the printed video accuracy is the logged one
    assert record["test_acc1"] * 8 / 100 == pytest.approx(round(record["test_acc1"] * 8 / 100))  # per video, not clip


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(synth_dataset, tmp_path):
    common = ("--epochs", "2", "--adversarial_start_epoch", "1")
    train.main(get_args_parser().parse_args(pretrain_argv(synth_dataset, tmp_path / "a", *common, frames=True)))
    stopped = pretrain_argv(synth_dataset, tmp_path / "b", *common, "--max_iters", "3", frames=True)
    train.main(get_args_parser().parse_args(stopped))  # stops inside the adversarial epoch
    latest_b = tmp_path / "b" / "ckp" / "netD" / "checkpoint.pth.tar"
    partial = load_checkpoint(latest_b)
    assert (partial["epoch"], partial["iteration"], partial["global_step"]) == (1, 1, 3)
    assert partial["generator"] is not None and partial["optimizer_g"]["state"]  # G momentum after one G step
    train.main(get_args_parser().parse_args(pretrain_argv(synth_dataset, tmp_path / "b", *common, frames=True)))
    a = load_checkpoint(tmp_path / "a" / "ckp" / "netD" / "checkpoint.pth.tar")
    b = load_checkpoint(latest_b)
    for key in ("state_dict", "generator", "optimizer", "optimizer_g", "count", "epoch", "iteration", "global_step"):
        assert_same_tensors(a[key], b[key], key)
    assert int(a["state_dict"]["module.queue_ptr"]) == 0 and a["epoch"] == 2


# --------------------------------------------------------------------------------------------------- DDP


def _ddp_worker(args, plan) -> None:
    ctx = runtime.setup_worker(plan)
    rank = ctx.rank
    torch.manual_seed(0)  # same initial weights everywhere; DDP would broadcast rank 0's anyway
    D = VideoMoCo("mc3_18", dim=8, K=8, m=0.99)
    torch.manual_seed(100 + rank)
    x_k = torch.randn(2, 3, 4, 16, 16) * (1 + 3 * rank)  # ranks differ in scale: BN statistics differ per shard
    # shuffle-BN: the key of every sample is computed on a shard mixing both ranks' samples
    torch.manual_seed(1)
    k = D.key_features(x_k)
    torch.manual_seed(1)
    idx = torch.randperm(4)  # what rank 0 drew and broadcast
    x_all = dist.concat_all_gather(x_k)
    with torch.no_grad():
        k_shards = dist.concat_all_gather(F.normalize(D.encoder_k(x_all[idx.view(2, 2)[rank]]), dim=1))
        expected = k_shards[torch.argsort(idx)][2 * rank : 2 * rank + 2]
        unshuffled = F.normalize(D.encoder_k(x_k), dim=1)
    # two adversarial training steps through DDP with a manually synchronised G
    args.channels_last, args.g_loss_weight, args.g_grad = False, 100.0, "released"
    torch.manual_seed(0)
    G = MaskGenerator(4, 16, 1)
    D_ddp = torch.nn.parallel.DistributedDataParallel(D)
    opt_d = torch.optim.SGD(D.encoder_q.parameters(), lr=0.5, momentum=0.9)
    opt_g = torch.optim.SGD(G.parameters(), lr=0.5, momentum=0.9)
    aug = VideoMoCoAugment()
    for step in range(2):
        torch.manual_seed(10 * step + rank)
        batch = (torch.rand(2, 3, 4, 16, 16), torch.rand(2, 3, 4, 16, 16))
        stats = train.train_step(G, D_ddp, aug, batch, opt_g, opt_d, True, 0.99, args, ctx)
    torch.save(
        {
            "k": k,
            "expected": expected,
            "unshuffled": unshuffled,
            "D": {n: p.detach() for n, p in D.encoder_q.named_parameters()},
            "G": {n: p.detach() for n, p in G.named_parameters()},
            "queue": D.queue.clone(),
            "ptr": int(D.queue_ptr),
            "count": D.count.clone(),
            "stats": stats,
        },
        os.path.join(args.out, f"rank{rank}.pt"),
    )
    dist.cleanup()


def test_ddp_two_gloo_processes_shuffle_bn_and_synchronised_updates(tmp_path):
    runtime.launch(_ddp_worker, Namespace(out=str(tmp_path)), runtime.LaunchPlan(nprocs=2))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for res in (r0, r1):
        torch.testing.assert_close(res["k"], res["expected"], rtol=1e-4, atol=1e-5)  # keys from shuffled shards
        assert not torch.allclose(res["k"], res["unshuffled"], atol=1e-3)  # ... which BN makes a difference
        assert res["ptr"] == 0 and "loss_g" in res["stats"]  # 2 enqueues of the global batch 4 into K = 8
    assert_same_tensors(r0["D"], r1["D"])  # DDP-averaged L_D gradients
    assert_same_tensors(r0["G"], r1["G"])  # G's all-reduced gradients
    assert torch.equal(r0["queue"], r1["queue"]) and torch.equal(r0["count"], r1["count"])
    assert r0["count"].tolist() == [2, 2, 2, 2, 1, 1, 1, 1]


@pytest.mark.slow
def test_multiprocessing_distributed_flag_runs_two_cpu_processes(synth_dataset, tmp_path):
    argv = pretrain_argv(synth_dataset, tmp_path, "--epochs", "1", "--adversarial_start_epoch", "0")
    argv += ["--multiprocessing_distributed", "--nproc_per_node", "2", "--world_size", "1", "--rank", "0"]
    argv += ["--dist_url", "tcp://localhost:10001"]
    env = dict(os.environ, TQDM_DISABLE="1")
    result = subprocess.run(
        [sys.executable, "videomoco/train.py", *argv], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ckp" / "netD" / "checkpoint_0001.pth.tar")
    assert ckpt["args"]["world_size"] == 2 and ckpt["args"]["distributed"] and len(ckpt["rng"]) == 2
    assert int(ckpt["state_dict"]["module.queue_ptr"]) == 0 and ckpt["global_step"] == 2  # 12 videos / (2 x 3)


def test_kill_9_mid_epoch_then_same_command_resumes_to_the_uninterrupted_result(synth_dataset, tmp_path):
    """--save_every_iters 1 refreshes netD/checkpoint.pth.tar after every iteration; after SIGKILL the same command
    resumes from it (DataLoader workers on) and ends with the weights, queue, ages and optimizers of a run that was
    never interrupted."""
    common = ("--epochs", "2", "--adversarial_start_epoch", "1", "-b", "3", "--save_every_iters", "1", "-j", "2")
    env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1")

    def command(out):
        return [sys.executable, "videomoco/train.py", *pretrain_argv(synth_dataset, out, *common, frames=True)]

    assert subprocess.run(command(tmp_path / "a"), cwd=REPO, env=env, capture_output=True).returncode == 0
    latest = tmp_path / "b" / "ckp" / "netD" / "checkpoint.pth.tar"
    proc = subprocess.Popen(command(tmp_path / "b"), cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    try:
        while proc.poll() is None:  # kill inside the adversarial epoch (4 iterations of 3 videos)
            time.sleep(0.05)
            if latest.is_file():
                state = load_checkpoint(latest)
                if (state["epoch"], state["iteration"]) >= (1, 1):
                    break
        proc.kill()  # SIGKILL
    finally:
        proc.wait()
    assert proc.returncode == -9
    partial = load_checkpoint(latest)
    assert partial["epoch"] == 1 and 1 <= partial["iteration"] < 4  # the kill came mid-epoch
    resumed = subprocess.run(command(tmp_path / "b"), cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"starting at epoch 1, iteration {partial['iteration']}" in resumed.stdout
    a = load_checkpoint(tmp_path / "a" / "ckp" / "netD" / "checkpoint_0002.pth.tar")
    b = load_checkpoint(tmp_path / "b" / "ckp" / "netD" / "checkpoint_0002.pth.tar")
    for key in ("state_dict", "generator", "optimizer", "optimizer_g", "count", "global_step"):
        assert_same_tensors(a[key], b[key], key)  # state_dict holds the queue and queue_ptr
