"""MemDPC training loops on the synthetic dataset: CLI pipeline, overfitting, exact resume, DDP semantics, flow."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import memdpc.main as pretrain_main
import memdpc.test as eval_main
from memdpc.dataset import build_dataset
from memdpc.features import build_clip_encoder
from memdpc.model import MemDPC
from memdpc.opts import get_args_parser, get_eval_args_parser
from shared_utils import dist, runtime
from shared_utils.checkpoint import load_checkpoint
from shared_utils.data import EpochSampler
from shared_utils.rng import seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


MEMDPC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "memdpc")
# A tiny configuration: 3 blocks of 5 frames at stride 2 (30 of the 40 synthetic frames: one test clip per video),
# 32 px, 1 predicted step.
TINY = "--gpu cpu -j 0 --img_dim 32 --num_seq 3 --seq_len 5 --ds 2 --batch_size 2 --print_freq 1 --seed 0".split()


def pretrain_args(data, out, *extra):
    flags = [*TINY, "--pred_step", "1", "--csv_root", str(data.list_dir), "--output_dir", str(out), *extra]
    return get_args_parser().parse_args(flags)


def read_log(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def run_script(script, *flags):
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, script, *flags], cwd=MEMDPC_DIR, env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


# --------------------------------------------------------------------------------------------------- pipeline


def test_cli_pipeline_pretrain_finetune_ten_crop_test(synth_dataset, tmp_path, capsys):
    lists = str(synth_dataset.list_dir)
    out = run_script("main.py", *TINY, "--pred_step", "1", "--csv_root", lists, "--epochs", "1",
                     "--iters_per_epoch", "2", "--output_dir", str(tmp_path / "pre"))  # fmt: skip
    assert out.splitlines()[0].startswith("command: ") and "Epoch: [0/1] Loss" in out
    (record,) = read_log(tmp_path / "pre" / "log.txt")
    assert record["iteration"] == 2 and 0 < record["train_loss"] < 20
    assert f"Epoch: [0/1] Loss {record['train_loss']:.6f}" in out  # the printed and the logged epoch loss agree
    assert record["train_loss"] != record["val_loss"]  # two passes over different clips, not one value copied
    model_dir = tmp_path / "pre" / "model"
    assert sorted(os.listdir(model_dir)) == ["epoch0.pth.tar", "latest.pth.tar", "model_best.pth.tar"]
    for writer in ("train", "val"):
        assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "pre" / "img" / writer))

    flags = [*TINY, "--csv_root", lists, "--epochs", "1", "--iters_per_epoch", "2", "--train_what", "ft",
             "--pretrain", str(model_dir / "epoch0.pth.tar"), "--output_dir", str(tmp_path / "ft"), "--no_tensorboard"]  # fmt: skip
    capsys.readouterr()
    # in-process (the scripts' own start-up is tested above and below)
    eval_main.main(get_eval_args_parser().parse_args(flags))
    out = capsys.readouterr().out
    # The key report: LC's final_bn/final_fc (7) are new, MemDPC's mb + network_pred.* (5) are unused.
    assert "missing 7; unexpected 5; shape mismatch 0" in out
    ckpt = tmp_path / "ft" / "model" / "model_best.pth.tar"
    assert ckpt.is_file()

    out = run_script("test.py", *TINY, "--csv_root", lists, "--test", str(ckpt), "--ten_crop")
    assert "[center]" in out and "[five]" in out and "[ten]" in out
    with open(f"{ckpt}-prob-ten.json") as handle:
        probs = json.load(handle)
    assert len(probs) == len(synth_dataset.classes) * synth_dataset.test_per_class  # every test video is scored
    for entry in probs.values():
        assert len(entry["mean_prob"][0]) == len(synth_dataset.classes)
        assert sum(entry["mean_prob"][0]) == pytest.approx(1.0, abs=1e-4)
    with open(f"{ckpt}-acc-ten.json") as handle:
        acc = json.load(handle)
    hits = [max(range(len(e["mean_prob"][0])), key=e["mean_prob"][0].__getitem__) == e["label"] for e in probs.values()]
    assert acc["ten"]["videos"] == len(probs)
    assert acc["ten"]["top1"] == pytest.approx(100 * sum(hits) / len(hits))  # argmax of the mean view probabilities

    encoder = build_clip_encoder(str(model_dir / "epoch0.pth.tar"))
    assert (encoder.num_frames, encoder.frame_stride, encoder.crop_size, encoder.feature_dim) == (15, 2, 32, 512)
    feats = encoder(torch.randint(0, 256, (2, 15, 32, 32, 3), dtype=torch.uint8))
    assert feats.shape == (2, 512) and torch.isfinite(feats).all()


def test_flow_stream_and_two_stream_fusion(synth_dataset, tmp_path):
    """--modality flow reads the n-1 flow JPEGs; --fuse averages the per-video probabilities of two JSONs."""
    args = get_args_parser().parse_args([*TINY, "--csv_root", str(synth_dataset.list_dir), "--modality", "flow"])
    train = build_dataset(args, "train", "pretrain")
    assert train.template == "flow_{:05d}.jpg" and train.entries[0].n_frames == synth_dataset.num_frames - 1
    assert str(synth_dataset.flow_root) in train.entries[0].path
    block, _, _ = train[(0, 1)]
    assert block.shape == (3, 3, 5, 32, 32)

    results = {}
    for modality in ("rgb", "flow"):
        flags = [*TINY, "--csv_root", str(synth_dataset.list_dir), "--modality", modality, "--test", "random",
                 "--center_crop", "--output_dir", str(tmp_path / modality)]  # fmt: skip
        eval_main.main(get_eval_args_parser().parse_args(flags))
        results[modality] = str(tmp_path / modality / "random-prob-center.json")
        assert os.path.isfile(results[modality])
    fused_path = tmp_path / "fused.json"
    fuse_args = get_eval_args_parser().parse_args(
        ["--fuse", results["rgb"], results["flow"], "--fuse_out", str(fused_path)]
    )
    result = eval_main.fuse(fuse_args)
    assert result["videos"] == len(synth_dataset.classes) * synth_dataset.test_per_class
    streams = [json.load(open(results[m])) for m in ("rgb", "flow")]
    fused = json.load(open(fused_path))
    rgb_key = next(iter(streams[0]))
    flow_key = next(k for k in streams[1] if k.endswith(rgb_key.split(os.sep)[-1]))
    expected = (torch.tensor(streams[0][rgb_key]["mean_prob"]) + torch.tensor(streams[1][flow_key]["mean_prob"])) / 2
    assert torch.allclose(torch.tensor(fused[rgb_key]["mean_prob"]), expected)


# --------------------------------------------------------------------------------------------------- learning


def test_overfitting_a_fixed_batch_drives_the_loss_down():
    torch.manual_seed(0)
    model = MemDPC(32, num_seq=5, seq_len=5, pred_step=2)
    x = torch.randn(2, 5, 3, 5, 32, 32)  # B*P*S = 2*2*1 candidates per row
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = model(x)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(2 * math.log(4), rel=0.3)  # ~ln(B*P*S) per direction at initialisation
    assert losses[-1] < 0.25 * losses[0], losses


class _Crash(Exception):
    pass


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(synth_dataset, tmp_path, monkeypatch):
    extra = ["--epochs", "2", "--iters_per_epoch", "2", "--save_every_iters", "1", "--no_tensorboard"]
    pretrain_main.main(pretrain_args(synth_dataset, tmp_path / "straight", *extra))

    real_check = pretrain_main.check_finite

    def crash_after_three_steps(loss, step):
        if step == 3:  # 3 optimizer steps done: epoch 1, step 1; latest.pth.tar was written after step 3
            raise _Crash()
        real_check(loss, step)

    monkeypatch.setattr(pretrain_main, "check_finite", crash_after_three_steps)
    with pytest.raises(_Crash):
        pretrain_main.main(pretrain_args(synth_dataset, tmp_path / "resumed", *extra))
    dist.cleanup()
    latest = load_checkpoint(tmp_path / "resumed" / "model" / "latest.pth.tar")
    assert (latest["next_epoch"], latest["epoch_step"], latest["iteration"]) == (1, 1, 3)
    monkeypatch.setattr(pretrain_main, "check_finite", real_check)
    pretrain_main.main(pretrain_args(synth_dataset, tmp_path / "resumed", *extra))  # auto-resumes from latest

    final = [load_checkpoint(tmp_path / run / "model" / "latest.pth.tar") for run in ("straight", "resumed")]
    assert final[0]["iteration"] == final[1]["iteration"] == 4
    for key, value in final[0]["state_dict"].items():
        assert torch.equal(value, final[1]["state_dict"][key]), key
    assert final[0]["optimizer"]["state"][0]["exp_avg"].equal(final[1]["optimizer"]["state"][0]["exp_avg"])
    logs = [read_log(tmp_path / run / "log.txt") for run in ("straight", "resumed")]
    assert [r["train_loss"] for r in logs[0]] == pytest.approx([r["train_loss"] for r in logs[1]], rel=1e-6)


def test_max_iters_stops_inside_an_epoch_and_the_run_resumes_exactly(synth_dataset, tmp_path):
    """--max_iters 3 of 2 x 2 steps: the latest checkpoint is written inside epoch 1 and no epoch-1 line is logged;
    the same command without the cap ends where an uninterrupted run does."""
    extra = ["--epochs", "2", "--iters_per_epoch", "2", "--no_tensorboard"]
    pretrain_main.main(pretrain_args(synth_dataset, tmp_path / "straight", *extra))
    pretrain_main.main(pretrain_args(synth_dataset, tmp_path / "capped", *extra, "--max_iters", "3"))
    latest = load_checkpoint(tmp_path / "capped" / "model" / "latest.pth.tar")
    assert (latest["next_epoch"], latest["epoch_step"], latest["iteration"]) == (1, 1, 3)
    assert [r["epoch"] for r in read_log(tmp_path / "capped" / "log.txt")] == [0]
    pretrain_main.main(pretrain_args(synth_dataset, tmp_path / "capped", *extra))
    final = [load_checkpoint(tmp_path / run / "model" / "latest.pth.tar") for run in ("straight", "capped")]
    assert final[0]["iteration"] == final[1]["iteration"] == 4
    for key, value in final[0]["state_dict"].items():
        assert torch.equal(value, final[1]["state_dict"][key]), key


# --------------------------------------------------------------------------------------------------- DDP


def sub_batches(dataset, rank, batch, steps, seed=0):
    sampler = EpochSampler(len(dataset), shuffle=True, seed=seed, rank=rank, world_size=2, drop_last=True,
                           batch_size=batch)  # fmt: skip
    sampler.set_epoch(0)
    items = list(sampler)
    return [torch.stack([dataset[it][0] for it in items[k * batch : (k + 1) * batch]]) for k in range(steps)]


def test_ddp_two_gloo_processes_equal_the_mean_of_per_gpu_losses(synth_dataset, tmp_path):
    """With per-GPU negatives (the paper), 2 ranks x batch b give the mean of two independent sub-batch losses
    (each with its own BN statistics and dropout stream) - not the loss of one batch of 2b."""
    args = pretrain_args(synth_dataset, tmp_path / "ddp", "--epochs", "1", "--iters_per_epoch", "2", "--no_tensorboard")
    runtime.launch(pretrain_main.worker, args, runtime.LaunchPlan(nprocs=2, use_cuda=False))
    (record,) = read_log(tmp_path / "ddp" / "log.txt")
    ddp_state = load_checkpoint(tmp_path / "ddp" / "model" / "latest.pth.tar")["state_dict"]

    args = pretrain_args(synth_dataset, tmp_path / "ref")
    seed_everything(args.seed)
    model = pretrain_main.build_model(args)
    rng = []
    for rank in range(2):
        torch.manual_seed(args.seed + rank)
        rng.append(torch.get_rng_state())
    data = build_dataset(args, "train", "pretrain")
    batches = [sub_batches(data, rank, args.batch_size, 2) for rank in range(2)]
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.wd)
    model.train()
    with torch.no_grad():  # one process with the whole batch of 2b: a copy, so the reference's state is untouched
        saved = torch.get_rng_state()
        joint = copy.deepcopy(model)(torch.cat([batches[0][0], batches[1][0]]))[0].item()
        torch.set_rng_state(saved)
    ref_losses = []
    for step in range(2):
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        per_rank = {}
        for rank in (1, 0):  # rank 0 last: DDP keeps (broadcasts) rank 0's BN running statistics
            if rank == 0:  # new tensors (not in-place copies: the rank-1 graph still holds the old ones)
                for mod_name, module in model.named_modules():
                    for name in module._buffers:
                        module._buffers[name] = buffers[f"{mod_name}.{name}" if mod_name else name].clone()
            torch.set_rng_state(rng[rank])
            per_rank[rank] = model(batches[rank][step])[0]
            rng[rank] = torch.get_rng_state()
        loss = (per_rank[0] + per_rank[1]) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ref_losses.append(loss.item())
    assert record["train_loss"] == pytest.approx(sum(ref_losses) / 2, rel=1e-5)
    assert abs(joint - ref_losses[0]) > 1e-2  # a batch of 2b in one process is a different objective (more negatives)
    for key, value in model.state_dict().items():
        assert torch.allclose(value.float(), ddp_state[key].float(), atol=1e-4), key


def _cross_gpu_worker(args, plan):
    runtime.setup_worker(plan)
    from memdpc.loss import dense_scores, positive_index

    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(4, 2, 8, 2, 2, generator=gen), torch.randn(4, 2, 8, 2, 2, generator=gen)
    rank = dist.get_rank()
    local = dense_scores(pred[2 * rank : 2 * rank + 2], target[2 * rank : 2 * rank + 2], cross_gpu_negatives=True)
    full = dense_scores(pred, target)
    rows = full[16 * rank : 16 * rank + 16]
    assert torch.allclose(local, rows, atol=1e-5)
    assert positive_index(local, True).tolist() == list(range(16 * rank, 16 * rank + 16))
    dist.cleanup()


def test_cross_gpu_negatives_extension_gathers_every_rank(tmp_path):
    import argparse

    runtime.launch(_cross_gpu_worker, argparse.Namespace(), runtime.LaunchPlan(nprocs=2, use_cuda=False))
