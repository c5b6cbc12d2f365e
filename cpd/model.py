"""The CPD pretraining module (spec §4): 3D-ResNet video encoder + transformer text encoder, projection heads,
two memory banks, NCE scores against memory rows drawn uniformly, and the momentum memory update."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cpd.opts import fix_on
from cpd.resnet import ResNet, resnet3d
from cpd.text import hidden_size, load_text_encoder
from shared_utils import dist


class CPD(nn.Module):
    """forward(v [B, 3, T, S, S], t [B, L] token ids, idx [B] memory rows or None, updbert) ->
    (P_v / Z_v, P_t / Z_t), each [B, K + 1, 1] (training) or the normalised embeddings (f_v, f_t) [B, D] (idx None)."""

    def __init__(
        self,
        visual_encoder: ResNet,
        textual_encoder: nn.Module,
        n_data: int,
        emb_dim: int = 256,
        K: int = 16392,
        T: float = 0.07,
        m: float = 0.5,
        dp: float = 0.0,
        text_attention_mask: bool = False,
    ) -> None:
        super().__init__()
        self.n_data, self.K, self.T, self.m = int(n_data), int(K), float(T), float(m)
        self.text_attention_mask = text_attention_mask
        self.visual_encoder = visual_encoder
        self.visual_encoder.fc = nn.Dropout(dp) if dp > 0 else nn.Identity()
        self.textual_encoder = textual_encoder
        self.vis_emb = nn.Linear(visual_encoder.feature_dim, emb_dim)
        self.text_emb = nn.Sequential(
            nn.Linear(hidden_size(textual_encoder), 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Linear(512, emb_dim),
        )
        # Buffers come first in the state dict (Z_v, Z_t, vis_memory, text_memory), as in the original.
        self.register_buffer("Z_v", torch.tensor([-1.0]))
        self.register_buffer("Z_t", torch.tensor([-1.0]))
        stdv = 1.0 / math.sqrt(emb_dim / 3)
        self.register_buffer("vis_memory", torch.rand(self.n_data, emb_dim).mul_(2 * stdv).add_(-stdv))
        self.register_buffer("text_memory", torch.rand(self.n_data, emb_dim).mul_(2 * stdv).add_(-stdv))

    # ------------------------------------------------------------------------------------------- encoders
    def encode_video(self, v: torch.Tensor) -> torch.Tensor:
        """f_v = normalize(vis_emb(backbone(v))) [B, D] (no squeeze: a batch of one works)."""
        return F.normalize(self.vis_emb(self.visual_encoder(v)).float(), dim=1)

    def encode_text(self, t: torch.Tensor, updbert: bool = False) -> torch.Tensor:
        """Masked mean of the last hidden states over non-[PAD] tokens ([CLS]/[SEP] included) -> text_emb -> normalize."""
        mask = (t != 0).long()  # B, L
        with torch.set_grad_enabled(updbert and torch.is_grad_enabled()):
            hidden = self.textual_encoder(input_ids=t, attention_mask=mask if self.text_attention_mask else None)[0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # B, L, 1
        pooled = (hidden * weights).sum(1) / weights.sum(1)  # B, H
        return F.normalize(self.text_emb(pooled).float(), dim=1)

    # ------------------------------------------------------------------------------------------- NCE
    def sample_noise(self, idx: torch.Tensor) -> torch.Tensor:
        """[B, K + 1] memory rows drawn uniformly with replacement (the original's alias sampler with uniform
        weights, including its Bernoulli draw); column 0 = the positives `idx`."""
        n = idx.shape[0] * (self.K + 1)
        kk = torch.zeros(n, dtype=torch.long, device=idx.device).random_(0, self.n_data)
        keep = torch.bernoulli(torch.ones(n, device=idx.device)).long()  # alias prob = 1 for uniform weights
        sel = (kk * keep).view(idx.shape[0], self.K + 1)
        sel[:, 0] = idx
        return sel

    def _scores(self, memory: torch.Tensor, f: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
        """exp(<memory[sel[b, k]], f[b]> / T) -> [B, K + 1, 1] (memory rows detached)."""
        bs, dim = f.shape
        weight = torch.index_select(memory, 0, sel.view(-1)).detach().view(bs, self.K + 1, dim)
        return torch.exp(torch.div(torch.bmm(weight, f.view(bs, dim, 1)), self.T))

    @torch.no_grad()
    def _set_z(self, z: torch.Tensor, out: torch.Tensor, name: str) -> None:
        if z.item() < 0:
            z.copy_(dist.all_reduce_mean((out.mean() * self.n_data).reshape(1)))
            print(f"normalization constant {name} is set to {z.item():.1f}")

    @torch.no_grad()
    def update_memory(self, f_v: torch.Tensor, f_t: torch.Tensor, idx: torch.Tensor) -> None:
        """mem[i] <- normalize(m * mem[i] + (1 - m) * f[i]) with every rank's features; the last write of a
        repeated index wins (as index_copy_ on the CPU)."""
        idx = dist.concat_all_gather(idx)
        f_v, f_t = dist.concat_all_gather(f_v.detach()), dist.concat_all_gather(f_t.detach())
        last = _last_occurrence(idx)
        idx, f_v, f_t = idx[last], f_v[last], f_t[last]
        for memory, f in ((self.vis_memory, f_v), (self.text_memory, f_t)):
            pos = torch.index_select(memory, 0, idx).mul_(self.m).add_(torch.mul(f, 1 - self.m))
            norm = pos.pow(2).sum(1, keepdim=True).pow(0.5)
            memory.index_copy_(0, idx, pos.div(norm))

    def forward(self, v, t, idx=None, updbert=False):
        f_v = self.encode_video(v)  # B, D
        f_t = self.encode_text(t, updbert)  # B, D
        if idx is None:
            return f_v, f_t
        with torch.autocast(v.device.type, enabled=False):  # scores, Z and memory in float32 under --amp
            sel = self.sample_noise(idx)  # B, K+1
            out_v = self._scores(self.text_memory, f_v, sel)  # video anchor vs text memory
            out_t = self._scores(self.vis_memory, f_t, sel)  # text anchor vs video memory
            self._set_z(self.Z_v, out_v, "Z_v")
            self._set_z(self.Z_t, out_t, "Z_t")
            out_v, out_t = torch.div(out_v, self.Z_v), torch.div(out_t, self.Z_t)
            self.update_memory(f_v, f_t, idx)
        return out_v, out_t


def _last_occurrence(idx: torch.Tensor) -> torch.Tensor:
    """Positions of the last occurrence of every distinct value of idx, in order of position."""
    n = idx.shape[0]
    order = torch.arange(n, device=idx.device)
    # a later duplicate overwrites an earlier one: scatter positions, keep the max per value
    last = torch.full((int(idx.max()) + 1,), -1, dtype=torch.long, device=idx.device)
    last.scatter_reduce_(0, idx, order, reduce="amax")
    keep = last[idx] == order
    return order[keep]


# ----------------------------------------------------------------------------------------------- builders


def build_visual_encoder(args, n_classes: int | None = None, dp: float | None = None) -> ResNet:
    if args.model != "resnet":
        raise ValueError(f"--model must be 'resnet', got {args.model!r}")
    return resnet3d(
        args.model_depth,
        num_classes=args.n_classes if n_classes is None else n_classes,
        shortcut_type=args.resnet_shortcut,
        dp=args.dp if dp is None else dp,
        shortcut_grad=fix_on(args, "shortcut_grad"),
        width_mult=getattr(args, "width_mult", 1.0),
    )


def build_model(args, n_data: int, textual_encoder: nn.Module | None = None) -> CPD:
    """The pretraining module: ResNet (its fc replaced), text encoder, heads, memory banks of n_data rows."""
    visual = build_visual_encoder(args)  # dp > 0: dropout before the replaced fc AND as the fc, as the original
    text = textual_encoder if textual_encoder is not None else load_text_encoder(args.text_model)
    return CPD(
        visual, text, n_data, args.emb_dim, args.nce_k, args.nce_t, args.nce_m, args.dp, fix_on(args, "text_mask")
    )


def pretraining_param_groups(model: CPD, lr: float) -> list[dict]:
    """One group per parameter tensor, as the original (so its optimizer state loads): text encoder lr 0
    (frozen until the curriculum unfreezes it), everything else `lr`."""
    text_ids = {id(p) for p in model.textual_encoder.parameters()}
    return [{"params": [p], "lr": 0.0 if id(p) in text_ids else lr} for p in model.parameters()]


def text_groups(optimizer: torch.optim.Optimizer, model: CPD) -> list[dict]:
    text_ids = {id(p) for p in model.textual_encoder.parameters()}
    return [g for g in optimizer.param_groups if any(id(p) in text_ids for p in g["params"])]
