"""Unified evaluation hook: `build_clip_encoder(ckpt, **overrides)` -> VideoMoCo's query encoder as a clip encoder.

Input: uint8 clips [B, T, H, W, 3] (RGB, T = frame_per_clip consecutive frames, H = W = crop_size).
Output: the pooled backbone feature before the projection head [B, 512] (what eval.py fine-tunes from).
ImageNet normalisation and the [B, 3, T, H, W] layout happen inside.
"""

from __future__ import annotations

import torch
from torch import nn

from shared_utils.checkpoint import extract_state_dict, load_checkpoint, load_state_dict_reported, strip_prefix
from shared_utils.cli import fail
from shared_utils.transforms import IMAGENET_MEAN, IMAGENET_STD
from videomoco.model import pretrained_backbone, video_resnet
from videomoco.opts import ARCHS


class VideoMoCoClipEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, num_frames: int, crop_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.num_frames, self.frame_stride, self.crop_size = num_frames, 1, crop_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1) * 255)

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.permute(0, 4, 1, 2, 3).float()  # B, 3, T, H, W
        return self.backbone((x - self.mean) / self.std)  # B, 512


def build_clip_encoder(ckpt: str | None = None, load_weights: bool = True, **overrides) -> VideoMoCoClipEncoder:
    """ckpt: a D checkpoint of train.py (or the authors' release: `state_dict` with `module.encoder_q.*`) or a
    fine-tuned eval.py checkpoint; None gives the same architecture randomly initialised (torchvision init).
    overrides: arch, frame_per_clip (num_frames), crop_size, width_mult, seed; defaults come from the checkpoint's saved
    args, else r2plus1d_18 / 32 frames / 112 px (the released model). load_weights=False: that architecture
    and geometry, randomly initialised."""
    cfg = {"arch": "r2plus1d_18", "frame_per_clip": 32, "crop_size": 112, "width_mult": 1.0, "seed": 0}
    state = {}
    if ckpt:
        content = load_checkpoint(ckpt)
        saved = content.get("args") or {}
        cfg.update({k: saved[k] for k in cfg if k in saved})
        cfg["arch"] = content.get("arch", cfg["arch"])
        state = extract_state_dict(content, ("state_dict", "model"))
    cfg.update(overrides)
    if cfg["arch"] not in ARCHS:
        fail(f"unknown arch '{cfg['arch']}' (choose from: {', '.join(ARCHS)})")
    torch.manual_seed(int(cfg["seed"]))
    backbone = video_resnet(cfg["arch"], 400, float(cfg["width_mult"]))
    if ckpt and load_weights:
        weights = pretrained_backbone(state)
        if not weights:  # a fine-tuned eval.py checkpoint: plain backbone keys and its classifier
            weights = {k: v for k, v in strip_prefix(state, ("module.",)).items() if not k.startswith("fc.")}
        load_state_dict_reported(
            backbone, weights, strict=True, allow_missing=("fc.weight", "fc.bias"), name=f"VideoMoCo '{ckpt}'"
        )
    encoder = VideoMoCoClipEncoder(backbone, int(cfg["frame_per_clip"]), int(cfg["crop_size"]))
    return encoder.eval()
