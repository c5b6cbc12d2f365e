"""Wiring of the training loops and shared layers, with tiny stand-in modules (seconds in all): what each loop
calls, in which order and on which tensors, checked against hand computations. These are the tests that
`make mutate` (scripts/mutate.py, tests/mutations.toml) relies on to catch single-line breaks of the loops."""

from __future__ import annotations

import copy
import os
from argparse import Namespace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.evaluate import FeatureSet, knn_predict, retrieval_recall
from shared_utils import dist, runtime
from shared_utils.data import EpochSampler


def params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def assert_all_close(got, want, **kw) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **kw)


# --------------------------------------------------------------------------------------------------- VTDL


class TinyVTDLEncoder(nn.Module):
    """Stands in for a VTDL backbone: clip [B, 3, T, H, W] -> (unit-norm embedding [B, D],)."""

    def __init__(self, dim: int = 8, t: int = 4, side: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * t * side * side, dim)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor):
        return (F.normalize(self.bn(self.fc(x.flatten(1))), dim=1),)


def vtdl_args(**kw) -> Namespace:
    base = dict(
        no_tca=False, tca_lambda=0.1, no_temporal_negative=False, amp=False,
        iters_per_epoch=0, seed=0, print_freq=1000, save_every_iters=0, max_iters=0, alpha=0.9,
    )  # fmt: skip
    return Namespace(**(base | kw))


def vtdl_state(seed: int = 0):
    from vtdl.loss import NCESoftmaxLoss
    from vtdl.model import VTDL

    torch.manual_seed(seed)
    moco = VTDL(TinyVTDLEncoder(), 20, K=6, T=0.07, use_softmax=True, m=0.9, dim=8)
    with torch.no_grad():  # a key encoder that is not the query encoder, so the EMA is visible
        for p in moco.encoder_k.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return {
        "model": moco,
        "criterion": NCESoftmaxLoss(),
        "optimizer": torch.optim.SGD(moco.encoder_q.parameters(), lr=0.5),
        "global_step": 0,
    }


def vtdl_queue(dim: int, n_data: int, K: int, T: float = 0.07, use_softmax: bool = False):
    """VTDL's queue and logits alone (an encoder without parameters)."""
    from vtdl.model import VTDL

    return VTDL(nn.Identity(), n_data, K=K, T=T, use_softmax=use_softmax, dim=dim)


def vtdl_batch(b: int = 2, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 3, 4, 4, 4, generator=gen) for _ in range(3)]


def test_vtdl_loop_steps_query_then_ema_of_key_and_enqueues_its_keys():
    """One train_one_epoch iteration: SGD moves the query encoder, then k <- m k + (1 - m) q_new exactly, and the
    queue holds the key encoder's (pre-EMA) embeddings of the positives at rows 0..B-1."""
    from vtdl.train_temporal_dis import train_one_epoch

    state = vtdl_state()
    moco = state["model"]
    anchor, positive, negative = vtdl_batch()
    q0, k0 = params(moco.encoder_q), params(moco.encoder_k)
    want_keys = copy.deepcopy(moco.encoder_k).train()(positive)[0]
    status = train_one_epoch(
        state, [((anchor, positive, negative), 0, 0)], 1, 0, vtdl_args(alpha=0.9), runtime.local_context("cpu")
    )
    q1, k1 = params(moco.encoder_q), params(moco.encoder_k)
    assert status == "done" and state["global_step"] == 1
    assert all(not torch.equal(a, b) for a, b in zip(q0, q1))  # the optimizer stepped every parameter
    assert_all_close(k1, [0.9 * k + 0.1 * q for k, q in zip(k0, q1)])
    assert moco.index == 2
    torch.testing.assert_close(moco.memory[:2], want_keys)


def test_vtdl_loss_routes_gradients_through_query_and_temporal_negative_only():
    """TCA is applied to the anchor; the temporal negative is encoded WITH gradient, the key without."""
    from vtdl.tca import tca
    from vtdl.train_temporal_dis import compute_loss

    state = vtdl_state()
    anchor, positive, negative = (x.requires_grad_() for x in vtdl_batch())
    args = vtdl_args()
    moco = state["model"]
    memory = moco.memory.clone()
    loss, logits = compute_loss(
        moco, state["criterion"], anchor, positive, negative, np.random.RandomState(0), args,
        runtime.local_context("cpu"),
    )  # fmt: skip
    g_anchor, g_positive, g_negative = torch.autograd.grad(loss, [anchor, positive, negative], allow_unused=True)
    assert g_positive is None  # keys: no graph
    assert g_negative is not None and g_negative.abs().sum() > 0
    assert g_anchor is not None and g_anchor.abs().sum() > 0
    with torch.no_grad():  # the same logits by hand (encoder outputs do not depend on BN running stats here)
        q = moco.encoder_q(tca(anchor.detach(), np.random.RandomState(0), 0.1))[0]
        n = moco.encoder_q(negative.detach())[0]
        k = moco.encoder_k(positive.detach())[0]
    want = torch.cat([(q * k).sum(1, keepdim=True), q @ memory.t(), (q * n).sum(1, keepdim=True)], dim=1) / 0.07
    torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)
    want_loss = F.cross_entropy(want, torch.zeros(2, dtype=torch.long))
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-4)


def test_vtdl_nce_normaliser_is_set_once_from_the_first_batch():
    torch.manual_seed(0)
    moco = vtdl_queue(4, n_data=50, K=5, T=0.5, use_softmax=False)
    q, k, q2, k2 = (F.normalize(torch.randn(3, 4), dim=1) for _ in range(4))
    queue = moco.memory.clone()
    raw = torch.exp(torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / 0.5)
    out = moco.contrast(q, k)
    z = raw.mean().item() * 50
    assert moco.params[0].item() == pytest.approx(z, rel=1e-5)
    torch.testing.assert_close(out, raw / z)
    moco.contrast(q2, k2)
    assert moco.params[0].item() == pytest.approx(z, rel=1e-5)  # frozen after the first call


def test_vtdl_lr_steps_after_each_decay_epoch():
    from vtdl.train_temporal_dis import adjust_learning_rate

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=9.0)
    args = Namespace(lr_decay_epochs="2,4", learning_rate=1.0, lr_decay_rate=0.1)
    lrs = [adjust_learning_rate(opt, epoch, args) for epoch in range(1, 6)]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01]) and opt.param_groups[0]["lr"] == pytest.approx(0.01)


def test_vtdl_checkpoint_holds_queue_pointer_and_resume_restores_it(tmp_path):
    from shared_utils.checkpoint import CheckpointWriter, load_checkpoint
    from shared_utils.logger import MetricLogger
    from vtdl.train_temporal_dis import resume, save

    state = vtdl_state()
    moco = state["model"]
    moco.enqueue(F.normalize(torch.randn(3, 8), dim=1))
    state["writer"] = CheckpointWriter(str(tmp_path), "current.pth", "ckpt_epoch_{epoch}.pth", None)
    state["meters"], state["global_step"] = MetricLogger(), 7
    save(state, Namespace(seed=0), runtime.local_context("cpu"), 1, 5)
    ckpt = load_checkpoint(str(tmp_path / "current.pth"))
    assert ckpt["contrast_index"] == 3 and ckpt["iteration"] == 5 and ckpt["global_step"] == 7
    assert torch.equal(ckpt["contrast"]["memory"], moco.memory)
    assert torch.equal(ckpt["model_ema"]["module.fc.weight"], moco.encoder_k.fc.weight)
    fresh = vtdl_state(seed=1)
    assert resume(fresh, str(tmp_path / "current.pth")) == (2, 5)
    assert fresh["model"].index == 3 and fresh["global_step"] == 7
    assert torch.equal(fresh["model"].memory, moco.memory)
    assert_all_close(params(fresh["model"].encoder_k), params(moco.encoder_k))


def test_vtdl_pretrain_item_augments_anchor_and_positive_independently():
    """Anchor and positive: the same frames through two independent transform calls (each its own draws);
    the temporal negative: other frames."""
    from vtdl.dataset import PretrainDataset

    calls = []

    def transform(frames, rng):
        calls.append(frames)
        return frames.float() + float(rng.random())

    class Reader:
        def num_frames(self, entry):
            return 64

        def __call__(self, entry, ids):
            return np.stack([np.full((2, 2, 3), i % 256, dtype=np.uint8) for i in ids])

    entry = SimpleNamespace(path="v", label=3)
    item = PretrainDataset([entry], Reader(), transform, clip_len=4, stride=2, range_len=8)[(0, 123)]
    (anchor, positive, negative), label, _ = item
    assert label == 3 and len(calls) == 3
    assert torch.equal(calls[0], calls[1]) and not torch.equal(calls[0], calls[2])  # same frames, other start
    assert not torch.equal(anchor, positive)  # the two draws differ


# --------------------------------------------------------------------------------------------------- VideoMoCo


def videomoco_args(**kw) -> Namespace:
    base = dict(channels_last=False, g_loss_weight=100.0, g_grad="released")
    return Namespace(**(base | kw))


class TinyVideoNet(nn.Module):
    """Stands in for a torchvision video ResNet inside VideoMoCo's D (same `fc` head attribute)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4)))


def tiny_d(seed: int = 0):
    from videomoco import model

    torch.manual_seed(seed)
    real, model.video_resnet = model.video_resnet, lambda arch, dim, *width: TinyVideoNet(dim)
    try:
        D = model.VideoMoCo("mc3_18", dim=8, K=8, m=0.9, T=0.07)
    finally:
        model.video_resnet = real
    with torch.no_grad():
        for p in D.encoder_k.parameters():
            p.add_(0.05 * torch.randn_like(p))
    D.count.copy_(torch.arange(8, dtype=torch.int32) + 1)  # keys of known ages, so the decay is visible
    return D


def videomoco_batch(seed: int = 2):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 4, 16, 16, generator=gen), torch.rand(2, 3, 4, 16, 16, generator=gen)


class RecordingAug:
    def __init__(self) -> None:
        self.inputs = []

    def __call__(self, x):
        self.inputs.append(x.clone())
        return x


def test_videomoco_d_step_ema_with_pre_step_query_decayed_loss_and_enqueue():
    """A D-only train_step: the loss is CE of the decayed logits (t^age scales the negatives), the key encoder
    moves to m k + (1 - m) q with the query BEFORE the SGD step, the batch's keys are enqueued, and the query
    and the key clip are augmented separately."""
    from videomoco.train import train_step

    D = tiny_d()
    x_q, x_k = videomoco_batch()
    twin = copy.deepcopy(D)
    queue, count = D.queue.clone(), D.count.clone()
    q_ref, _, logits_ref, _ = twin(x_q, x_k, 0.5)
    k_ref = F.normalize(twin.encoder_k(x_k).float(), dim=1)
    with torch.no_grad():  # hand logits: the query against the key and the age-decayed queue
        q_hand = F.normalize(copy.deepcopy(D).encoder_q(x_q).float(), dim=1)
        l_neg = q_hand @ (queue * 0.5 ** count.float()[None, :])
    torch.testing.assert_close(logits_ref[:, 1:].detach(), l_neg / 0.07, rtol=1e-4, atol=1e-4)
    q0, k0 = params(D.encoder_q), params(D.encoder_k)
    aug = RecordingAug()
    opt_d = torch.optim.SGD(D.encoder_q.parameters(), lr=0.5)
    out = train_step(None, D, aug, (x_q, x_k), None, opt_d, False, 0.5, videomoco_args(), runtime.local_context("cpu"))
    assert out["loss_d"] == pytest.approx(F.cross_entropy(logits_ref, torch.zeros(2).long()).item(), rel=1e-5)
    assert len(aug.inputs) == 2 and torch.equal(aug.inputs[0], x_q) and torch.equal(aug.inputs[1], x_k)
    assert_all_close(params(D.encoder_k), [0.9 * k + 0.1 * q for k, q in zip(k0, q0)])
    assert any(not torch.equal(a, b) for a, b in zip(q0, params(D.encoder_q)))
    torch.testing.assert_close(D.queue[:, :2], k_ref.T.detach(), rtol=1e-4, atol=1e-5)
    assert int(D.queue_ptr) == 2 and D.count.tolist() == [1, 1] + (count[2:] + 1).tolist()
    assert q_ref.shape == (2, 8)


def generator_step_case():
    """G, D, a batch and a deep copy of G and D run forward on it (x_fake -> D): the reference for G's gradient."""
    from videomoco.model import MaskGenerator

    torch.manual_seed(3)
    G, D = MaskGenerator(num_frames=4, crop_size=16, drop=1), tiny_d()
    x_q, x_k = videomoco_batch()
    G2, D2 = copy.deepcopy(G), copy.deepcopy(D)
    x_fake, _ = G2(x_q)
    return G, D, (x_q, x_k), list(G2.parameters()), D2(x_fake, x_k, 0.5, im_q_real=x_q)


def run_generator_step(G, D, batch, args) -> dict:
    """One adversarial train_step at lr 0 (the step keeps the gradients for inspection)."""
    from videomoco.train import train_step

    opt_g = torch.optim.SGD(G.parameters(), lr=0.0)
    opt_d = torch.optim.SGD(D.encoder_q.parameters(), lr=0.0)
    return train_step(G, D, lambda x: x, batch, opt_g, opt_d, True, 0.5, args, runtime.local_context("cpu"))


@pytest.mark.parametrize("g_grad", ["released", "pure"])
def test_videomoco_adversarial_step_generator_gradients(g_grad):
    """G's gradient = grad L_G (+ grad L_D through the straight-through frame drop with --g_grad released),
    from a D fed the frame-dropped query; D's own step sees L_D only."""
    from videomoco.loss import generator_loss

    G, D, batch, g_params, (q, q_real, logits, labels) = generator_step_case()
    loss_g = generator_loss(q, q_real, 100.0)
    grad_lg = torch.autograd.grad(loss_g, g_params, retain_graph=True)
    grad_ld = torch.autograd.grad(F.cross_entropy(logits, labels), g_params)
    assert sum(g.abs().sum() for g in grad_ld) > 0  # L_D reaches G through the frame drop
    want = [a + b for a, b in zip(grad_lg, grad_ld)] if g_grad == "released" else list(grad_lg)
    out = run_generator_step(G, D, batch, videomoco_args(g_grad=g_grad))
    assert out["loss_g"] == pytest.approx(loss_g.item(), rel=1e-5) and out["loss_g"] < 0
    assert_all_close([p.grad for p in G.parameters()], want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("g_grad", ["released", "pure"])
def test_videomoco_released_generator_step_carries_the_discriminator_gradient(g_grad):
    """With L_G switched off (weight 0), G's gradient is exactly grad L_D through the frame drop (released) or
    nothing (--fix pure_g_grad): the part of the released G step that the test above cannot resolve, because
    grad L_G is orders of magnitude larger there."""
    G, D, batch, g_params, (_, _, logits, labels) = generator_step_case()
    grad_ld = torch.autograd.grad(F.cross_entropy(logits, labels), g_params)
    scale = max(float(g.abs().max()) for g in grad_ld)
    assert scale > 0  # L_D reaches G (tiny through the straight-through drop: the tolerance is relative to it)
    want = list(grad_ld) if g_grad == "released" else [torch.zeros_like(g) for g in grad_ld]
    run_generator_step(G, D, batch, videomoco_args(g_grad=g_grad, g_loss_weight=0.0))
    assert_all_close([p.grad for p in G.parameters()], want, rtol=1e-4, atol=1e-4 * scale)


def test_videomoco_video_accuracy_is_the_mean_of_its_clip_logits():
    from videomoco.eval import evaluate

    class Logits(nn.Module):  # clip -> its first three pixel values as 3-class logits
        def forward(self, clips):
            return clips[:, 0, 0, 0, :3]

    def video(rows):
        clips = torch.zeros(len(rows), 3, 2, 2, 3)
        clips[:, 0, 0, 0, :] = torch.tensor(rows)
        return clips[None]  # 1 video, cpv clips

    # video 0: its first clip says class 0, the mean says class 1 (its label); video 1: the mean says class 2
    loader = [
        (video([[3.0, 0, 0], [0, 4.0, 0], [0, 4.0, 0]]), torch.tensor([1]), torch.tensor([0])),
        (video([[0, 0, 1.0], [0, 2.0, 0]]), torch.tensor([0]), torch.tensor([1])),
    ]
    stats = evaluate(Logits(), loader, videomoco_args(), runtime.local_context("cpu"))
    means = torch.tensor([[1.0, 8 / 3, 0], [0, 1.0, 0.5]])
    assert stats["acc1"] == pytest.approx(50.0) and stats["videos"] == 2
    assert stats["loss"] == pytest.approx(F.cross_entropy(means, torch.tensor([1, 0])).item(), rel=1e-6)
    assert stats["clip_acc1"] == pytest.approx(100 * 2 / 5)


def test_videomoco_checkpoint_keeps_the_key_ages(tmp_path):
    from videomoco.resume import LATEST, RunState, _writers, save_run

    D = tiny_d()
    opt_d = torch.optim.SGD(D.encoder_q.parameters(), lr=0.1)
    run = RunState(seed=0, epoch=0, iteration=2, global_step=2, iters_per_epoch=4)
    run.writer_d, run.writer_g = _writers(str(tmp_path))
    args = Namespace(arch="mc3_18", save_freq=1, epochs=2)
    save_run(run, None, D, None, opt_d, args, runtime.local_context("cpu"), epoch_done=False)
    ckpt = torch.load(tmp_path / "netD" / LATEST, weights_only=True)
    assert torch.equal(ckpt["count"], D.count) and ckpt["iteration"] == 2
    assert torch.equal(ckpt["state_dict"]["module.queue"], D.queue)


# --------------------------------------------------------------------------------------------------- VTDL test


def test_vtdl_multi_clip_score_is_the_mean_softmax_of_its_clips():
    from vtdl.test import multi_clip

    class Logits(nn.Module):
        def forward(self, x):
            return x[:, 0, 0, 0, :3]

    clips = torch.zeros(3, 1, 1, 1, 3)
    clips[:, 0, 0, 0] = torch.tensor([[2.0, 0, 0], [0, 3.0, 0], [0, 1.0, 1.0]])
    got = multi_clip(clips, Logits(), Namespace(batch_size=2, amp=False), runtime.local_context("cpu"))
    torch.testing.assert_close(got, F.softmax(clips[:, 0, 0, 0], dim=1).mean(0))


# --------------------------------------------------------------------------------------------------- MemDPC


class FakeMemDPC(nn.Module):
    """Returns what MemDPC returns; the loss depends on one weight, so optimizer steps are visible."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, block):
        loss = ((self.w * block.mean()) - 3.0).pow(2).sum()
        accs = [torch.zeros(1, 2), torch.zeros(1, 2)]
        return loss, [loss.detach().reshape(1)] * 2, accs, None


class Blocks(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, item):
        index = int(item[0]) if isinstance(item, tuple) else int(item)
        return torch.full((2, 3), float(index + 1)), 0, index


def test_memdpc_loop_steps_optimizer_and_scheduler_every_iteration():
    from memdpc import engine
    from memdpc.main import train_one_epoch

    args = Namespace(
        batch_size=2, workers=0, iters_per_epoch=0, amp=False, print_freq=0, save_every_iters=0, max_iters=0
    )
    loader = engine.make_loader(Blocks(), args, shuffle=False, seed=0)
    model = FakeMemDPC()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    run = {"iteration": 0, "epoch_step": 0, "tb_train": None}
    w = 1.0
    for step, start in enumerate(range(0, 8, 2)):  # the same SGD steps by hand
        block_mean = np.mean([start + 1, start + 2])
        w -= 0.1 * 0.5**step * 2 * (w * block_mean - 3.0) * block_mean
    train_one_epoch(model, loader, optimizer, scheduler, 0, args, runtime.local_context("cpu"), run)
    assert run["iteration"] == 4 and optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)
    assert model.w.item() == pytest.approx(w, rel=1e-5)


def test_memdpc_memory_bank_is_learned_through_the_attention_read():
    from memdpc.model import MemDPC

    torch.manual_seed(0)
    parts = SimpleNamespace(network_pred=nn.Conv2d(5, 6, 1), mb=nn.Parameter(torch.randn(6, 5)))
    hidden = torch.randn(2, 5, 2, 2)
    out = MemDPC.read_memory(parts, hidden)
    attention = F.softmax(parts.network_pred(hidden), dim=1)
    torch.testing.assert_close(out, torch.einsum("bmhw,mc->bchw", attention, parts.mb))
    out.pow(2).sum().backward()
    assert parts.mb.grad is not None and parts.mb.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------- CPD


class FakeText(nn.Module):
    def __init__(self, hidden: int = 6, vocab: int = 20) -> None:
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden)
        self.emb = nn.Embedding(vocab, hidden)

    def forward(self, input_ids, attention_mask=None):
        return (self.emb(input_ids),)


class FakeVisual(nn.Module):
    feature_dim = 5

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3 * 2 * 2 * 2, 5)
        self.fc = nn.Identity()

    def forward(self, v):
        return self.fc(self.net(v.flatten(1)))


def tiny_cpd(m: float = 0.8, n_data: int = 6):
    from cpd.model import CPD

    torch.manual_seed(0)
    return CPD(FakeVisual(), FakeText(), n_data, emb_dim=4, K=3, T=0.07, m=m)


def cpd_batch(idx=(1, 4)):
    gen = torch.Generator().manual_seed(5)
    v = torch.randn(len(idx), 3, 2, 2, 2, generator=gen)
    t = torch.tensor([[2, 5, 7, 0], [3, 9, 0, 0]])[: len(idx)]
    return v, t, torch.tensor(idx)


def test_cpd_memory_momentum_update_and_normaliser_z():
    model = tiny_cpd(m=0.8)
    v, t, idx = cpd_batch()
    vis, text = model.vis_memory.clone(), model.text_memory.clone()
    torch.manual_seed(1)
    sel = model.sample_noise(idx)
    torch.manual_seed(1)
    out_v, out_t = model(v, t, idx)
    assert torch.equal(sel[:, 0], idx)
    with torch.no_grad():
        f_v, f_t = model.encode_video(v), model.encode_text(t)
    raw_v = torch.exp(torch.bmm(text[sel], f_v[:, :, None]) / 0.07)
    raw_t = torch.exp(torch.bmm(vis[sel], f_t[:, :, None]) / 0.07)
    assert model.Z_v.item() == pytest.approx(raw_v.mean().item() * 6, rel=1e-5)
    assert model.Z_t.item() == pytest.approx(raw_t.mean().item() * 6, rel=1e-5)
    torch.testing.assert_close(out_v, raw_v / model.Z_v)
    torch.testing.assert_close(out_t, raw_t / model.Z_t)
    for memory, before, f in ((model.vis_memory, vis, f_v), (model.text_memory, text, f_t)):
        torch.testing.assert_close(memory[idx], F.normalize(0.8 * before[idx] + 0.2 * f, dim=1))
        others = [i for i in range(6) if i not in idx.tolist()]
        assert torch.equal(memory[others], before[others])
    z_v = model.Z_v.item()
    model(v, t, idx)
    assert model.Z_v.item() == z_v  # set once


def cpd_loop_args(**kw) -> Namespace:
    base = dict(ft_bert_ep=2, text_eval_mode=False, print_frq=1000, channels_last=False, amp=False,
                clip_gradient=100.0, save_every_iters=0, iters_per_epoch=0, max_iters=0)  # fmt: skip
    return Namespace(**(base | kw))


class Sink:
    def add_scalar(self, *a, **k):
        pass

    def log(self, *a, **k):
        pass


@pytest.mark.parametrize("epoch, trains_text", [(2, False), (3, True)])
def test_cpd_text_encoder_gets_gradients_only_after_ft_bert_ep(epoch, trains_text):
    from cpd.main import train_one_epoch
    from cpd.model import pretraining_param_groups

    model = tiny_cpd()
    optimizer = torch.optim.SGD(pretraining_param_groups(model, 0.1), lr=0.1)
    state = {"global_step": 0, "start_iter": 0}
    ctx = runtime.local_context("cpu")
    train_one_epoch(model, [cpd_batch()], optimizer, epoch, cpd_loop_args(ft_bert_ep=2), ctx, state, Sink(), Sink())
    grad = model.textual_encoder.emb.weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == trains_text
    assert model.vis_emb.weight.grad is not None and state["global_step"] == 1


def test_cpd_text_lr_unfreezes_bert_lr_lead_epochs_before_ft_bert_ep():
    from cpd.main import adjust_learning_rate
    from cpd.model import pretraining_param_groups, text_groups

    model = tiny_cpd()
    optimizer = torch.optim.SGD(pretraining_param_groups(model, 0.1), lr=0.1)
    args = Namespace(ft_bert_ep=5, bert_lr_lead=2, lr_steps=[4], bert_lr_scale=0.5, lr_bert=1e-3)
    text_lrs = []
    for epoch in range(1, 6):
        adjust_learning_rate(optimizer, model, epoch, args)
        text_lrs.append(text_groups(optimizer, model)[0]["lr"])
    assert text_lrs == pytest.approx([0, 0, 5e-4, 5e-5, 5e-5])
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(0.01)


# --------------------------------------------------------------------------------------------------- shared layer


def test_epoch_sampler_resume_skips_exactly_the_done_batches():
    full = list(EpochSampler(10, shuffle=True, seed=3, batch_size=2))
    resumed = EpochSampler(10, shuffle=True, seed=3, batch_size=2)
    resumed.set_start_iteration(2)
    assert list(resumed) == full[4:] and len(resumed) == 6


def test_knn_is_invariant_to_the_scale_of_each_feature():
    torch.manual_seed(0)
    train = FeatureSet(torch.randn(12, 5), torch.arange(12) % 3, [str(i) for i in range(12)])
    test = FeatureSet(torch.randn(6, 5), torch.arange(6) % 3, [str(i) for i in range(6)])
    scaled_train = FeatureSet(train.features * (torch.rand(12, 1) * 10 + 0.1), train.labels, train.video_ids)
    scaled_test = FeatureSet(test.features * (torch.rand(6, 1) * 10 + 0.1), test.labels, test.video_ids)
    for k in (1, 5):
        torch.testing.assert_close(
            knn_predict(scaled_train, scaled_test, k), knn_predict(train, test, k), rtol=1e-5, atol=0
        )


def test_retrieval_is_invariant_to_a_shift_of_all_features():
    """Features are centred by the train mean: a common offset changes nothing (without centring, a large
    offset makes every feature point the same way and the ranking arbitrary)."""
    torch.manual_seed(0)
    centres = torch.eye(4) * 3
    labels = torch.arange(16) % 4
    train = FeatureSet(centres[labels] + 0.3 * torch.randn(16, 4), labels, [str(i) for i in range(16)])
    test = FeatureSet(centres[labels[:8]] + 0.3 * torch.randn(8, 4), labels[:8], [str(i) for i in range(8)])
    offset = torch.tensor([40.0, -25.0, 30.0, 10.0])
    shifted = [FeatureSet(s.features + offset, s.labels, s.video_ids) for s in (train, test)]
    plain = retrieval_recall(train, test, ks=(1, 5))
    assert plain["R@1"] == pytest.approx(100.0)
    assert retrieval_recall(*shifted, ks=(1, 5)) == pytest.approx(plain)
    # two classes on one ray, told apart only by their distance from the mean: found only after centring
    gen = torch.Generator().manual_seed(1)
    ray = lambda n, r: torch.stack([r + 0.1 * torch.rand(n, generator=gen), 0.5 * torch.randn(n, generator=gen)], 1)  # noqa: E731
    labels = torch.tensor([0] * 6 + [1] * 6)
    bank = FeatureSet(torch.cat([ray(6, 1.0), ray(6, 9.0)]), labels, [str(i) for i in range(12)])
    queries = FeatureSet(torch.cat([ray(6, 1.0), ray(6, 9.0)]), labels, [str(i) for i in range(12)])
    assert retrieval_recall(bank, queries, ks=(1,))["R@1"] == pytest.approx(100.0)


def _wiring_worker(args, plan):
    """Two gloo ranks with different RNG streams: shuffle-BN, the all-gather of keys into the queues."""
    from videomoco.model import VideoMoCo

    rank = runtime.setup_worker(plan).rank
    torch.manual_seed(100 + rank)
    x = (torch.arange(4, dtype=torch.float32) + 4 * rank)[:, None].repeat(1, 3)  # sample ids 0..7
    shuffled, idx_unshuffle = dist.batch_shuffle(x)
    undone = dist.batch_unshuffle(shuffled * 10, idx_unshuffle)
    contrast = vtdl_queue(3, 10, K=16)
    contrast.enqueue(x)
    moco = SimpleNamespace(K=16, queue=torch.zeros(3, 16), queue_ptr=torch.zeros(1, dtype=torch.long),
                           count=torch.zeros(16, dtype=torch.int32))  # fmt: skip
    VideoMoCo._dequeue_and_enqueue(moco, x)
    torch.save(
        {"x": x, "shuffled": shuffled, "undone": undone, "vtdl_memory": contrast.memory, "vtdl_index": contrast.index,
         "moco_queue": moco.queue, "moco_ptr": int(moco.queue_ptr)},
        os.path.join(args.out, f"rank{rank}.pt"),
    )  # fmt: skip
    dist.cleanup()


def test_two_ranks_shuffle_bn_and_gather_keys_into_every_queue(tmp_path):
    runtime.launch(_wiring_worker, Namespace(out=str(tmp_path)), runtime.LaunchPlan(nprocs=2, use_cuda=False))
    res = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    ids = [r["shuffled"][:, 0].long().tolist() for r in res]
    assert sorted(ids[0] + ids[1]) == list(range(8))  # one permutation shared by the ranks (a partition)
    assert any(ids[r] != res[r]["x"][:, 0].long().tolist() for r in range(2))  # not the identity
    assert ids[0] != list(range(4)) and set(ids[0]) != set(range(4))  # samples moved across ranks
    everything = torch.cat([r["x"] for r in res])
    for r in res:
        assert torch.equal(r["undone"], r["x"] * 10)  # the permutation is undone on each rank
        assert torch.equal(r["vtdl_memory"][:8], everything) and r["vtdl_index"] == 8
        assert torch.equal(r["moco_queue"][:, :8], everything.T) and r["moco_ptr"] == 8
