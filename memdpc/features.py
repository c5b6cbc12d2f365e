"""Clip encoder hook for the unified evaluation (evaluation.evaluate) and the demo.

The feature is LC's context vector: backbone -> both ConvGRUs over the N blocks -> spatially averaged last states,
forward and backward concatenated (2 x 256 = 512 for R18/R34), taken before LC's final BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from memdpc.model import LC, clean_state_dict
from shared_utils.checkpoint import extract_state_dict, load_checkpoint, load_state_dict_reported
from shared_utils.cli import fail
from shared_utils.transforms import IMAGENET_MEAN, IMAGENET_STD

DEFAULTS = {"net": "resnet18", "img_dim": 128, "num_seq": 8, "seq_len": 5, "ds": 3, "width_mult": 1.0}


class MemDPCClipEncoder(nn.Module):
    """uint8 clips [B, T = num_seq*seq_len, H, W, 3] -> features [B, 2D] (ImageNet normalisation inside)."""

    def __init__(self, lc: LC, num_seq: int, seq_len: int, ds: int, img_dim: int) -> None:
        super().__init__()
        self.lc = lc
        self.num_seq, self.seq_len = num_seq, seq_len
        self.num_frames, self.frame_stride, self.crop_size = num_seq * seq_len, ds, img_dim
        self.feature_dim = 2 * lc.param["feature_size"]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1))

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        b, t, h, w, _ = clips.shape
        if t != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames per clip, got {t}")
        x = clips.to(self.mean.device).permute(0, 1, 4, 2, 3).float().div_(255)  # B, T, 3, H, W
        x = (x - self.mean) / self.std
        blocks = x.reshape(b, self.num_seq, self.seq_len, 3, h, w).transpose(2, 3)  # B, N, 3, SL, H, W
        return self.lc.context(blocks).squeeze(1)


def _infer_net(state: dict) -> str:
    if any(".conv3." in k for k in state):
        return "resnet50"
    return "resnet34" if "backbone.layer1.2.conv1.weight" in state else "resnet18"


def build_clip_encoder(ckpt: str | None = None, load_weights: bool = True, **overrides) -> MemDPCClipEncoder:
    """ckpt=None: random initialisation; else a checkpoint of memdpc/main.py or memdpc/test.py, or the authors'
    released layout. The checkpoint's saved args (net, img_dim, num_seq, seq_len, ds, width_mult) are the defaults; overrides
    win. Prints the key report; fails if backbone or GRU weights are missing. load_weights=False: the checkpoint's
    architecture and geometry, randomly initialised (the random-init baseline of the same encoder)."""
    config, state = dict(DEFAULTS), None
    if ckpt:
        checkpoint = load_checkpoint(ckpt)
        state = clean_state_dict(extract_state_dict(checkpoint, ("state_dict", "model")))
        saved = checkpoint.get("args") or {}
        config.update({k: saved[k] for k in DEFAULTS if k in saved})
        if "net" not in saved:
            config["net"] = _infer_net(state)
    seed = int(overrides.pop("seed", 0))
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        fail(f"unknown MemDPC encoder override(s): {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)}, seed)")
    config.update(overrides)
    with torch.random.fork_rng():  # a reproducible random init (the baseline) without touching the caller's RNG
        torch.manual_seed(seed)
        lc = LC(
            config["img_dim"],
            config["num_seq"],
            config["seq_len"],
            config["net"],
            dropout=0.0,
            num_class=1,
            width_mult=float(config["width_mult"]),
        )
    if state is not None and load_weights:
        report = load_state_dict_reported(lc, state, strict=False, name=f"memdpc encoder '{ckpt}'")
        missing = [k for k in report.missing + [m[0] for m in report.mismatched] if k.startswith(("backbone.", "agg_"))]
        if missing:
            fail(f"'{ckpt}' lacks {len(missing)} backbone/GRU weights (e.g. {missing[0]})")
    encoder = MemDPCClipEncoder(lc, config["num_seq"], config["seq_len"], config["ds"], config["img_dim"])
    return encoder.eval()
