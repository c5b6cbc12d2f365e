"""R3D-18 (Hara et al. 3D ResNet, BasicBlock, shortcut 'B') with VTDL's heads (spec §5.2).

Keys equal the original's (`vtdl_keys.json`, `*/r3d`). Fine-tune head: spatial average over the whole map
(the original's fixed (1,7,7) kernel, equal at 224 px, crashed at 112 px), `cp` 1x1x1 conv, mean over time,
log_softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.width import scaled
from vtdl.heads import attach_pretrain_heads, run_pretrain_heads


def conv3x3x3(in_ch: int, out_ch: int, stride=1) -> nn.Conv3d:
    return nn.Conv3d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3x3(in_ch, planes, stride), nn.BatchNorm3d(planes)
        self.conv2, self.bn2 = conv3x3x3(planes, planes), nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class R3D(nn.Module):
    """forward -> pretraining (id [B,128], cls [B,200], feature [B,512]); fine-tuning log-probs [B,C];
    return_conv=True: layer4 map [B,512,T/16,H/32,W/32]. width_mult scales the stem and the four stages."""

    def __init__(self, num_classes: int = 101, with_classifier: bool = False, layers=(2, 2, 2, 2), width_mult=1.0):
        super().__init__()
        self.num_classes, self.with_classifier, self.width_mult = num_classes, with_classifier, width_mult
        planes = [scaled(c, width_mult) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv3d(3, planes[0], 7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(planes[0])
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        self.in_ch = planes[0]
        self.layer1 = self._make_layer(planes[0], layers[0], 1)
        self.layer2 = self._make_layer(planes[1], layers[1], 2)
        self.layer3 = self._make_layer(planes[2], layers[2], 2)
        self.layer4 = self._make_layer(planes[3], layers[3], 2)
        self.feature_dim = planes[3]  # 512 at width 1.0
        if with_classifier:
            self.cp = nn.Conv3d(planes[3], num_classes, 1, bias=False)
        else:
            attach_pretrain_heads(self, planes[3], (1, 1, 1))
        for m in self.modules():  # the constructor's own init (weights_init overwrites it when used)
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_ch != planes:
            downsample = nn.Sequential(
                nn.Conv3d(self.in_ch, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )
        layers = [BasicBlock(self.in_ch, planes, stride, downsample)]
        self.in_ch = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor, return_conv: bool = False):
        conv_map = self.trunk(x)
        if return_conv:
            return conv_map
        if not self.with_classifier:
            return run_pretrain_heads(self, conv_map)
        x = conv_map.mean(dim=(3, 4), keepdim=True)  # B, 512, T', 1, 1
        return F.log_softmax(self.cp(x).flatten(2).mean(2), dim=1)
