"""R(2+1)D (Tran et al.) with VTDL's heads (spec §5.3). Keys equal the original's (`vtdl_keys.json`, `*/r2p1d`).

The original pretrains R(2+1)D-10 (layers 1,1,1,1) and fine-tunes R(2+1)D-18 (2,2,2,2), so half the fine-tuned
blocks start random (spec §13.15); both depths are available via `layers`. The fine-tune head returns raw logits
as the original did; the training loss applies log_softmax (spec §13.16).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.width import scaled
from vtdl.heads import attach_pretrain_heads, run_pretrain_heads


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


class SpatioTemporalConv(nn.Module):
    """(1,k,k) spatial conv -> BN -> ReLU -> (k,1,1) temporal conv; the middle width M keeps the parameter
    count of a full k^3 conv: M = floor(kt*k^2*in*out / (k^2*in + kt*out))."""

    def __init__(self, in_ch: int, out_ch: int, kernel, stride=1, padding=0):
        super().__init__()
        kt, kh, kw = _triple(kernel)
        st, sh, sw = _triple(stride)
        pt, ph, pw = _triple(padding)
        mid = math.floor(kt * kh * kw * in_ch * out_ch / (kh * kw * in_ch + kt * out_ch))
        self.spatial_conv = nn.Conv3d(in_ch, mid, (1, kh, kw), (1, sh, sw), (0, ph, pw), bias=False)
        self.bn = nn.BatchNorm3d(mid)
        self.temporal_conv = nn.Conv3d(mid, out_ch, (kt, 1, 1), (st, 1, 1), (pt, 0, 0), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_conv(F.relu(self.bn(self.spatial_conv(x))))


class SpatioTemporalResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, downsample: bool = False):
        super().__init__()
        self.downsample = downsample
        if downsample:
            self.downsampleconv = SpatioTemporalConv(in_ch, out_ch, 1, stride=2)
            self.downsamplebn = nn.BatchNorm3d(out_ch)
        self.conv1 = SpatioTemporalConv(in_ch, out_ch, kernel, stride=2 if downsample else 1, padding=kernel // 2)
        self.bn1 = nn.BatchNorm3d(out_ch)
        self.conv2 = SpatioTemporalConv(out_ch, out_ch, kernel, padding=kernel // 2)
        self.bn2 = nn.BatchNorm3d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.downsample:
            x = self.downsamplebn(self.downsampleconv(x))
        return F.relu(x + res)


class SpatioTemporalResLayer(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, layer_size: int, downsample: bool = False):
        super().__init__()
        self.block1 = SpatioTemporalResBlock(in_ch, out_ch, kernel, downsample)
        self.blocks = nn.ModuleList(SpatioTemporalResBlock(out_ch, out_ch, kernel) for _ in range(layer_size - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)
        for block in self.blocks:
            x = block(x)
        return x


class R2Plus1D(nn.Module):
    """forward -> pretraining (id [B,128], cls [B,200], feature [B,512]); fine-tuning raw logits [B,C];
    return_conv=True: conv5 map [B,512,T/8,H/16,W/16]. width_mult scales the stem and the four stages."""

    def __init__(self, num_classes: int = 101, with_classifier: bool = False, layers=(2, 2, 2, 2), width_mult=1.0):
        super().__init__()
        self.num_classes, self.with_classifier, self.layers = num_classes, with_classifier, tuple(layers)
        self.width_mult = width_mult
        c64, c128, c256, c512 = (scaled(c, width_mult) for c in (64, 128, 256, 512))
        self.conv1 = SpatioTemporalConv(3, c64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3))
        self.bn1 = nn.BatchNorm3d(c64)
        self.conv2 = SpatioTemporalResLayer(c64, c64, 3, layers[0])
        self.conv3 = SpatioTemporalResLayer(c64, c128, 3, layers[1], downsample=True)
        self.conv4 = SpatioTemporalResLayer(c128, c256, 3, layers[2], downsample=True)
        self.conv5 = SpatioTemporalResLayer(c256, c512, 3, layers[3], downsample=True)
        self.feature_dim = c512  # 512 at width 1.0
        if with_classifier:
            self.pool = nn.AdaptiveAvgPool3d(1)
            self.linear = nn.Linear(c512, num_classes)
        else:
            attach_pretrain_heads(self, c512, (1, 1, 1))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))

    def forward(self, x: torch.Tensor, return_conv: bool = False):
        conv_map = self.trunk(x)
        if return_conv:
            return conv_map
        if not self.with_classifier:
            return run_pretrain_heads(self, conv_map)
        return self.linear(self.pool(conv_map).flatten(1))
