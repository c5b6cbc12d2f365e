"""Unified evaluation hook: `build_clip_encoder(ckpt, **overrides)` -> the VTDL backbone as a clip encoder.

Input: uint8 clips [B, T, H, W, 3] (RGB, T = num_frames taken every frame_stride frames, H = W = crop_size).
Output: the pooled last conv map [B, feature_dim] (I3D 1024, others 512), the feature VTDL's
feature_extractor.py uses. ImageNet normalisation and the [B, 3, T, H, W] layout happen inside.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from shared_utils.checkpoint import load_checkpoint
from shared_utils.transforms import IMAGENET_MEAN, IMAGENET_STD
from vtdl.model import build_backbone, checkpoint_state_dict, load_weight, weights_init


class VTDLClipEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, num_frames: int, frame_stride: int, crop_size: int):
        super().__init__()
        self.backbone = backbone
        self.num_frames, self.frame_stride, self.crop_size = num_frames, frame_stride, crop_size
        self.feature_dim = backbone.feature_dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1) * 255)

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.permute(0, 4, 1, 2, 3).float()  # B, 3, T, H, W
        x = (x - self.mean) / self.std
        conv_map = self.backbone(x, return_conv=True)  # B, D, T', H', W'
        return conv_map.mean(dim=(2, 3, 4))


def build_clip_encoder(ckpt: str | None = None, load_weights: bool = True, **overrides) -> VTDLClipEncoder:
    """ckpt: a VTDL pretraining checkpoint (ours or the authors' `ckpt_epoch_*.pth`) or a fine-tuned one; None
    gives the same architecture with the original's random initialisation. overrides: arch, data_length
    (num_frames), stride (frame_stride), spatial_size (crop_size), r2p1d_layers, width_mult, seed; defaults come from the
    checkpoint's saved args (pretraining: i3d, 16 frames, stride 4, 224 px). load_weights=False: that
    architecture and geometry, randomly initialised."""
    saved, state = {}, {}
    if ckpt:
        content = load_checkpoint(ckpt)
        for key in ("opt", "args"):  # the original stored a Namespace under 'opt'; ours a dict under both
            value = content.get(key)
            saved.update(vars(value) if isinstance(value, argparse.Namespace) else value or {})
        state, _ = checkpoint_state_dict(content)
    cfg = {"arch": "i3d", "data_length": 16, "stride": 4, "spatial_size": 224, "r2p1d_layers": "2,2,2,2"}
    cfg.update(width_mult=1.0, seed=0)
    cfg.update({k: saved[k] for k in cfg if k in saved})
    cfg.update(overrides)
    r2p1d_layers = cfg["r2p1d_layers"]
    if state and cfg["arch"] == "r2p1d" and "r2p1d_layers" not in overrides:
        r2p1d_layers = r2p1d_layers if any(".blocks." in k for k in state) else "1,1,1,1"
    with torch.random.fork_rng():  # a reproducible random init without touching the caller's RNG
        torch.manual_seed(int(cfg["seed"]))
        backbone = build_backbone(
            cfg["arch"], with_classifier=False, r2p1d_layers=r2p1d_layers, width_mult=float(cfg["width_mult"])
        )
        backbone.apply(weights_init)
    if ckpt and load_weights:
        load_weight(backbone, ckpt, cfg["arch"])
    encoder = VTDLClipEncoder(backbone, int(cfg["data_length"]), int(cfg["stride"]), int(cfg["spatial_size"]))
    return encoder.eval()
