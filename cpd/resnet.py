"""3D ResNet with SlowOnly-style inflation (CPD spec §3): no temporal down-sampling, temporal kernels only in
layer3/layer4, parameter-free shortcut "A" (spatial sub-sampling + zero channels). State-dict names are the
original ones (`conv1`, `bn1`, `layer1.0.conv1`, ..., `fc`), so released weights load unchanged."""

from __future__ import annotations

import torch
from torch import nn

from shared_utils.width import scaled

DEPTHS = {
    10: ("basic", [1, 1, 1, 1]),
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
}


def shortcut_a(x: torch.Tensor, planes: int, stride: int, grad: bool) -> torch.Tensor:
    """Input sub-sampled spatially by `stride` with zero channels appended up to `planes`.

    The original builds it from `x.data` (no gradient through the shortcut); `grad=True` lets gradients flow.
    Zeros are created like the input (dtype/device), so the shortcut also works under autocast.
    """
    out = x[:, :, :, ::stride, ::stride] if stride > 1 else x  # = avg_pool3d(kernel 1, stride (1, s, s))
    if not grad:
        out = out.detach()
    pad = planes - out.shape[1]
    if pad > 0:
        out = torch.cat([out, out.new_zeros(out.shape[0], pad, *out.shape[2:])], dim=1)
    return out


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, temporal=False, shortcut=None, shortcut_grad=False):
        super().__init__()
        kt = 3 if temporal else 1
        self.conv1 = nn.Conv3d(inplanes, planes, (kt, 3, 3), (1, stride, stride), (kt // 2, 1, 1), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), 1, (0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        _attach_shortcut(self, shortcut, inplanes, planes * self.expansion, stride, shortcut_grad)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + _shortcut(self, x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, temporal=False, shortcut=None, shortcut_grad=False):
        super().__init__()
        kt = 3 if temporal else 1
        self.conv1 = nn.Conv3d(inplanes, planes, (kt, 1, 1), 1, (kt // 2, 0, 0), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        _attach_shortcut(self, shortcut, inplanes, planes * self.expansion, stride, shortcut_grad)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + _shortcut(self, x))


def _attach_shortcut(block, kind, inplanes, outplanes, stride, grad):
    """kind None: identity; 'A': zero-padding shortcut; 'B': 1x1x1 conv + BN with stride (1, s, s).

    Shortcut B's conv strides only spatially: the original strode time too and crashed (spec §12.2).
    """
    block.stride, block.outplanes, block.shortcut_kind, block.shortcut_grad = stride, outplanes, kind, grad
    if kind == "B":
        block.downsample = nn.Sequential(
            nn.Conv3d(inplanes, outplanes, 1, (1, stride, stride), bias=False), nn.BatchNorm3d(outplanes)
        )


def _shortcut(block, x):
    if block.shortcut_kind is None:
        return x
    if block.shortcut_kind == "A":
        return shortcut_a(x, block.outplanes, block.stride, block.shortcut_grad)
    return block.downsample(x)


class ResNet(nn.Module):
    """3D ResNet; forward(x [B, 3, T, S, S]) -> [B, n_classes] (or [B, 2048/512] when fc is Identity).
    width_mult scales the stem and the four stages (64, 128, 256, 512 planes); 1.0 is the original."""

    def __init__(self, depth=50, num_classes=256, shortcut_type="A", dp=0.0, shortcut_grad=False, width_mult=1.0):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"model_depth must be one of {sorted(DEPTHS)}, got {depth}")
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"resnet_shortcut must be A or B, got {shortcut_type!r}")
        kind, layers = DEPTHS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.width_mult = width_mult
        planes = [scaled(c, width_mult) for c in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.conv1 = nn.Conv3d(3, planes[0], (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
        args = (block, shortcut_type, shortcut_grad)
        self.layer1 = self._make_layer(*args, planes[0], layers[0], 1, False)
        self.layer2 = self._make_layer(*args, planes[1], layers[1], 2, False)
        self.layer3 = self._make_layer(*args, planes[2], layers[2], 2, True)
        self.layer4 = self._make_layer(*args, planes[3], layers[3], 2, True)
        self.avgpool = nn.AdaptiveAvgPool3d(1)  # = the original's (T, ceil(S/32), ceil(S/32)) kernel at its size
        self.dropout = nn.Dropout(dp)
        self.feature_dim = planes[3] * block.expansion  # 2048 (ResNet-50) / 512 at width 1.0
        self.fc = nn.Linear(self.feature_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, shortcut_type, shortcut_grad, planes, blocks, stride, temporal):
        out = planes * block.expansion
        first_shortcut = shortcut_type if (stride != 1 or self.inplanes != out) else None
        layers = [block(self.inplanes, planes, stride, temporal, first_shortcut, shortcut_grad)]
        self.inplanes = out
        layers += [block(out, planes, 1, temporal, None, shortcut_grad) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.dropout(self.forward_features(x)))


def resnet3d(depth=50, **kwargs) -> ResNet:
    return ResNet(depth, **kwargs)


def fine_tuning_parameters(model: nn.Module, ft_begin_index: int) -> list[nn.Parameter]:
    """Parameters to train: all (0), `layer{k}`..`layer4` + fc (k = 1..4), or only fc (5, linear probe).

    The others get requires_grad=False (their BatchNorm layers stay in train mode, as in the original).
    """
    if not 0 <= ft_begin_index <= 5:
        raise ValueError(f"ft_begin_index must be in 0..5, got {ft_begin_index}")
    if ft_begin_index == 0:
        return [p for p in model.parameters()]
    keep = [f"layer{k}" for k in range(ft_begin_index, 5)] + ["fc"]
    chosen = []
    for name, p in model.named_parameters():
        trainable = any(key in name for key in keep)
        p.requires_grad_(trainable)
        if trainable:
            chosen.append(p)
    return chosen
