"""Pretraining heads shared by the four backbones (the original builds them inside each backbone).

Key names are the original's: `id_head.2.*` (Linear C->128) and `cls_head.2.*` (Linear C->200); the index 2
comes from Sequential(AdaptiveAvgPool3d, Flatten, Linear). `feature_head` has no parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EMBED_DIM = 128  # the MoCo embedding width (the queue is [K, 128])
CLUSTER_DIM = 200  # cls_head width (DeepCluster pseudo labels; that stage is commented out in the original)


def pooled_linear(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(1), nn.Linear(in_dim, out_dim))


def attach_pretrain_heads(owner: nn.Module, channels: int, feature_pool: tuple[int, int, int]) -> None:
    """Add id_head / cls_head / feature_head to `owner`. cls_head never gets a gradient (unused by the loss),
    so it is frozen here: same values as the original (SGD skipped it) and DDP needs no unused-parameter search."""
    owner.id_head = pooled_linear(channels, EMBED_DIM)
    owner.cls_head = pooled_linear(channels, CLUSTER_DIM)
    owner.cls_head.requires_grad_(False)
    owner.feature_head = nn.Sequential(nn.AdaptiveAvgPool3d(feature_pool), nn.Flatten(1))


def run_pretrain_heads(owner: nn.Module, conv_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(id_out [B,128] unit norm, cls [B,200], feature [B,F] unit norm) from the last conv map [B,C,T,H,W]."""
    id_out = F.normalize(owner.id_head(conv_map), dim=1)
    cls = owner.cls_head(conv_map)
    feature = F.normalize(owner.feature_head(conv_map), dim=1)
    return id_out, cls, feature
