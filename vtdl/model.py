"""Backbone choice, the original's initialisation and checkpoint loading, and VTDL's MoCo (spec §5, §6, §8.1)."""

from __future__ import annotations

import copy
import math
import os

import torch
from torch import nn

from shared_utils import dist
from shared_utils.checkpoint import compare_keys, load_checkpoint, strip_prefix, unwrap_model
from shared_utils.cli import fail
from shared_utils.split_bn import shuffled_forward, split_batchnorm
from shared_utils.width import check_saved_width
from vtdl.c3d import C3D
from vtdl.heads import EMBED_DIM
from vtdl.i3d import I3D
from vtdl.r2p1d import R2Plus1D
from vtdl.r3d import R3D

NUM_CLASSES = {"ucf101": 101, "hmdb51": 51, "kinetics": 400, "something_something_v1": 174}
CLASSIFIER_KEYS = {"i3d": ("conv3d_0c_1x1_custom.",), "r3d": ("cp.",), "r2p1d": ("linear.",), "c3d": ("linear.",)}
PRETRAIN_HEAD_KEYS = ("id_head.", "cls_head.")


def parse_layers(spec) -> tuple[int, ...]:
    layers = tuple(int(v) for v in str(spec).split(",")) if not isinstance(spec, (tuple, list)) else tuple(spec)
    if len(layers) != 4 or min(layers) < 1:
        fail(f"--r2p1d_layers expects four positive integers such as 2,2,2,2, got '{spec}'")
    return layers


def build_backbone(
    arch: str,
    num_classes: int = 101,
    with_classifier: bool = False,
    dropout: float = 0.5,
    r2p1d_layers=(2, 2, 2, 2),
    c3d_pretrain_heads: bool = True,
    width_mult: float = 1.0,
) -> nn.Module:
    """The original's model_config: with_classifier=False gives the pretraining heads (id/cls/feature).
    width_mult scales the backbone's channels (1.0: the original network); the heads take its feature_dim."""
    common = {"num_classes": num_classes, "with_classifier": with_classifier, "width_mult": width_mult}
    if arch == "i3d":
        return I3D(dropout_prob=dropout, **common)
    if arch == "r3d":
        return R3D(**common)
    if arch == "r2p1d":
        return R2Plus1D(layers=parse_layers(r2p1d_layers), **common)
    if arch == "c3d":
        return C3D(pretrain_heads=c3d_pretrain_heads, **common)
    fail(f"unknown --arch '{arch}' (choose from: i3d, r3d, r2p1d, c3d)")


def weights_init(module: nn.Module) -> None:
    """The original's init, applied with model.apply: convs Xavier-uniform (gain sqrt 2), conv biases 0.1 (the
    original crashed on them, spec §13.14), BN weight ~ N(1, 0.02); Linear layers keep PyTorch's default."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        nn.init.xavier_uniform_(module.weight, gain=math.sqrt(2.0))
        if module.bias is not None:
            nn.init.constant_(module.bias, 0.1)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
        nn.init.normal_(module.weight, 1.0, 0.02)


class VTDL(nn.Module):
    """VTDL's MoCo (spec §6.1-6.2): the query encoder, its momentum copy (the key encoder) and the queue of the
    last K keys.

    forward(anchor, positive, negative=None) -> logits [B, 1 + K (+ 1)] = [l_pos, l_queue, (l_tn)] / T. The
    temporal negative goes through the query encoder WITH gradient, in its own BN batch (the original's second
    call); the key through the key encoder without a graph, shuffled across processes (shuffle-BN, identity in one
    process unless `bn_splits` > 1 simulates it: shared_utils.split_bn). The keys are enqueued after the logits. The momentum update is its own step, `momentum_update()`,
    called after the optimiser step as in the original (moving it into forward would change the saved key encoder).

    Buffers `params` ([-1]: NCE normaliser, unset) and `memory` [K, D] (U(-s, s), s = 1/sqrt(D/3)) are the
    original MemoryMoCo's; `index` (the queue pointer, lost by the original on resume) is a plain attribute. The
    checkpoint keeps the original entries: the training script maps encoder_q -> `model`, encoder_k -> `model_ema`
    and `contrast_state_dict()` -> `contrast`.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_data: int,
        K: int,
        T: float = 0.07,
        use_softmax: bool = False,
        m: float = 0.999,
        dim: int = EMBED_DIM,
        bn_splits: int = 1,
    ) -> None:
        super().__init__()
        self.n_data, self.K, self.T, self.use_softmax, self.m = n_data, K, T, use_softmax, m
        self.bn_splits = bn_splits
        self.encoder_q = split_batchnorm(encoder, bn_splits)
        self.encoder_k = copy.deepcopy(encoder)  # key = query at the start (weights and BN statistics)
        self.encoder_k.requires_grad_(False)
        self.index = 0
        stdv = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("params", torch.tensor([-1.0]))
        self.register_buffer("memory", torch.rand(K, dim).mul_(2 * stdv).add_(-stdv))  # K, D

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None = None):
        q = self.encoder_q(anchor)[0]  # B, 128 (unit norm)
        n = self.encoder_q(negative)[0] if negative is not None else None  # B, 128
        with torch.no_grad():  # no graph through the key encoder
            k = self.key_features(positive)  # B, 128
        with torch.autocast(q.device.type, enabled=False):  # the logits in float32 under AMP
            return self.contrast(q.float(), k.float(), None if n is None else n.float())

    def key_features(self, positive: torch.Tensor) -> torch.Tensor:
        """Keys with shuffle-BN: shuffle across processes (and split-BN sub-batches), encode (BN in train mode:
        batch statistics), unshuffle. forward calls it under no_grad."""
        return shuffled_forward(self.encoder_k, positive, self.bn_splits)

    def contrast(self, q: torch.Tensor, k: torch.Tensor, n: torch.Tensor | None = None) -> torch.Tensor:
        """q, k, n [B, D] (unit norm) -> logits [B, 1 + K (+ 1)] / T; then the keys (gathered over ranks) are
        enqueued. With use_softmax=False: exp(logits) / Z with Z frozen from the first call."""
        queue = self.memory.clone().detach()  # K, D (before this batch is enqueued)
        l_pos = (q * k).sum(dim=1, keepdim=True)  # B, 1
        l_neg = q @ queue.t()  # B, K
        columns = [l_pos, l_neg] if n is None else [l_pos, l_neg, (q * n).sum(dim=1, keepdim=True)]
        logits = torch.cat(columns, dim=1).float() / self.T
        if not self.use_softmax:
            logits = torch.exp(logits)
            if self.params[0] < 0:
                self.params[0] = dist.all_reduce_mean(logits.mean().detach()) * self.n_data
                print(f"normalization constant Z is set to {self.params[0].item():.1f}")
            logits = logits / self.params[0]
        self.enqueue(k)
        return logits

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor) -> None:
        keys = dist.concat_all_gather(k.detach().float())  # world*B, D
        rows = (torch.arange(keys.shape[0], device=keys.device) + self.index) % self.K
        self.memory.index_copy_(0, rows, keys.to(self.memory.dtype))
        self.index = int((self.index + keys.shape[0]) % self.K)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """Key encoder EMA on parameters only: p_k <- m p_k + (1 - m) p_q (BN buffers stay the key encoder's own)."""
        q_params = [p.detach() for p in self.encoder_q.parameters()]
        k_params = list(self.encoder_k.parameters())
        if len(q_params) != len(k_params):
            raise ValueError("query and key encoders differ")
        torch._foreach_mul_(k_params, self.m)
        torch._foreach_add_(k_params, q_params, alpha=1 - self.m)

    def contrast_state_dict(self) -> dict:
        """The original's `contrast` checkpoint entry: MemoryMoCo's buffers `params` and `memory`."""
        return {"params": self.params.detach(), "memory": self.memory.detach()}

    @torch.no_grad()
    def load_contrast_state_dict(self, state: dict) -> None:
        """Restore `params` and `memory` from a `contrast` entry (same shapes: the same --nce_k)."""
        for name in ("params", "memory"):
            buffer = getattr(self, name)
            if name not in state or tuple(state[name].shape) != tuple(buffer.shape):
                got = tuple(state[name].shape) if name in state else "missing"
                raise RuntimeError(f"contrast.{name}: checkpoint {got} vs model {tuple(buffer.shape)}")
            buffer.copy_(state[name])


# --------------------------------------------------------------------------------------------------- loading


def checkpoint_state_dict(ckpt: dict, use_key_encoder: bool = False) -> tuple[dict, str]:
    """(bare state dict, kind) of a VTDL checkpoint: pretraining (`model`/`model_ema`, 'module.' keys),
    fine-tuning (`state_dict`, 'module.base_model.' keys) or a bare state dict."""
    if "model" in ckpt and isinstance(ckpt["model"], dict):
        sd = ckpt["model_ema"] if use_key_encoder and "model_ema" in ckpt else ckpt["model"]
        return strip_prefix(sd, ("module.",)), "pretrain"
    if "state_dict" in ckpt and isinstance(ckpt["state_dict"], dict):
        return strip_prefix(ckpt["state_dict"], ("module.", "base_model.")), "finetune"
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return strip_prefix(ckpt, ("module.", "base_model.")), "state_dict"
    fail(f"checkpoint holds no model weights (keys: {', '.join(list(ckpt)[:8])})")


def load_weight(model: nn.Module, path: str, arch: str, require_classifier: bool = False, verbose: bool = True):
    """Initialise `model` from a VTDL checkpoint whatever its file name (the original recognised pretraining
    files only by a 'ckpt' prefix and otherwise silently trained from scratch, spec §13.28).

    Every trunk tensor must load. Heads absent from the checkpoint or of another shape (a new classifier, the
    pretraining heads) may stay as initialised, and so may the extra R(2+1)D blocks when a 1,1,1,1 pretraining
    checkpoint meets a deeper model (the original's depth mismatch). require_classifier: the classifier must
    load too (testing a fine-tuned model). Prints the key report; returns it.
    """
    if not path or not os.path.isfile(path):
        fail(f"--weights checkpoint not found: '{path}'")
    content = load_checkpoint(path)
    model = unwrap_model(model)
    check_saved_width(content, getattr(model, "width_mult", 1.0), f"'{path}'")
    state, kind = checkpoint_state_dict(content)
    report = compare_keys(model.state_dict(), state)
    heads = PRETRAIN_HEAD_KEYS + (() if require_classifier else CLASSIFIER_KEYS[arch])
    depth_mismatch = arch == "r2p1d" and not any(".blocks." in k for k in state)
    bad = [k for k in report.missing if not k.startswith(heads) and not (depth_mismatch and ".blocks." in k)]
    bad += [k for k, _, _ in report.mismatched if not k.startswith(heads)]
    if verbose:
        print(report.summary(f"{kind} weights {os.path.basename(path)}"))
    if not report.loaded:
        fail(f"'{path}' matches no weight of the {arch} model (wrong --arch or not a VTDL checkpoint)")
    if bad:
        what = "weights" if require_classifier else "trunk weights"
        fail(
            f"'{path}' does not provide {len(bad)} {arch} {what} (e.g. {bad[0]}; wrong --arch, or not fine-tuned "
            f"for --dataset?)"
        )
    if depth_mismatch and any(".blocks." in k for k in report.missing) and verbose:
        print("note: the checkpoint is a 1,1,1,1 R(2+1)D; the extra blocks keep their initialisation")
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report
