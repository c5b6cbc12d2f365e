"""R-2D3D ResNets: 2D (1x3x3) residual blocks in the first two stages, 3D (3x3x3) blocks in the last two.

Parameter names and the order in which modules are constructed follow the original implementation, so released
weights load by name and a seeded construction draws the same initial values (spec §3.1, §12 Recipe A).
Differences from a standard ResNet: layer4 has 256 (not 512) planes and its very last block has no final ReLU,
so the feature map is unbounded.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shared_utils.cli import fail
from shared_utils.width import scaled


def _conv_2d(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """A 1x3x3 convolution: spatial only, stride applied in H and W."""
    return nn.Conv3d(in_planes, out_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False)


def _conv_3d(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class _Residual(nn.Module):
    """Shared forward of the four block kinds: body + shortcut, then ReLU unless this is the network's last block."""

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self._body(x) + shortcut
        return self.relu(out) if self.use_final_relu else out


class BasicBlock2d(_Residual):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, use_final_relu=True):
        super().__init__()
        self.conv1 = _conv_2d(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv_2d(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.use_final_relu = use_final_relu

    def _body(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class BasicBlock3d(BasicBlock2d):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, use_final_relu=True):
        nn.Module.__init__(self)
        self.conv1 = _conv_3d(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv_3d(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.use_final_relu = use_final_relu


class Bottleneck2d(_Residual):
    """1x1x1 -> 1x3x3 (stride in H, W) -> 1x1x1 x4. (The original's forward referenced a missing attribute; this
    one works, which makes R-2D3D-50 usable.)"""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, use_final_relu=True):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = self._middle_conv(planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.use_final_relu = use_final_relu

    @staticmethod
    def _middle_conv(planes: int, stride: int) -> nn.Conv3d:
        return _conv_2d(planes, planes, stride)

    def _body(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class Bottleneck3d(Bottleneck2d):
    expansion = 4

    @staticmethod
    def _middle_conv(planes: int, stride: int) -> nn.Conv3d:
        return _conv_3d(planes, planes, stride)


class ResNet2d3d_full(nn.Module):  # noqa: N801 - the original class name
    """Stem (1x7x7 conv + 1x3x3 max-pool) and four stages; input [B, 3, T, H, W] -> [B, 256*exp, ceil(T/4), H/32, W/32].

    width_mult scales every stage's planes (64, 128, 256, 256; shared_utils.width.scaled); 1.0 is the original.
    """

    def __init__(self, blocks: list[type], layers: list[int], in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        planes = [scaled(c, width_mult) for c in (64, 64, 128, 256, 256)]  # stem, layer1..layer4
        self.inplanes = planes[0]
        self.conv1 = nn.Conv3d(in_channels, planes[0], (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.layer1 = self._make_layer(blocks[0], planes[1], layers[0])
        self.layer2 = self._make_layer(blocks[1], planes[2], layers[1], stride=2)
        self.layer3 = self._make_layer(blocks[2], planes[3], layers[2], stride=2)
        self.layer4 = self._make_layer(blocks[3], planes[4], layers[3], stride=2, is_final=True)
        self.out_channels = self.inplanes  # planes[4] x the last block's expansion
        # A second initialisation pass, in module order, exactly as the original (it consumes the RNG again).
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm3d):
                module.weight.data.fill_(1)
                module.bias.data.zero_()

    def _make_layer(self, block, planes, blocks, stride=1, is_final=False) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            # 2D blocks downsample in space only; 3D blocks in time too. Built BEFORE the first block (RNG order).
            ds_stride = (1, stride, stride) if block in (BasicBlock2d, Bottleneck2d) else stride
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * block.expansion, 1, stride=ds_stride, bias=False),
                nn.BatchNorm3d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, use_final_relu=not (is_final and i == blocks - 1)))
        if is_final and blocks == 1:
            layers[0].use_final_relu = False
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


ARCHS = {
    "resnet18": ([BasicBlock2d, BasicBlock2d, BasicBlock3d, BasicBlock3d], [2, 2, 2, 2], 256),
    "resnet34": ([BasicBlock2d, BasicBlock2d, BasicBlock3d, BasicBlock3d], [3, 4, 6, 3], 256),
    "resnet50": ([Bottleneck2d, Bottleneck2d, Bottleneck3d, Bottleneck3d], [3, 4, 6, 3], 1024),
}


def select_resnet(network: str, in_channels: int = 3, width_mult: float = 1.0) -> tuple[ResNet2d3d_full, dict]:
    """(backbone, {'feature_size': C}) for 'resnet18' / 'resnet34' / 'resnet50'; unknown names are a user error.
    C is the original's (256 or 1024) at width_mult 1.0, and scales with it otherwise."""
    if network not in ARCHS:
        fail(f"unknown --net '{network}' (choose from: {', '.join(ARCHS)})")
    blocks, layers, _ = ARCHS[network]
    backbone = ResNet2d3d_full(blocks, layers, in_channels, width_mult)
    return backbone, {"feature_size": backbone.out_channels}


def feature_map_size(img_dim: int, seq_len: int) -> tuple[int, int]:
    """(last_duration, last_size): the backbone's temporal and spatial output extent (spec §3.1)."""
    return int(math.ceil(seq_len / 4)), int(math.ceil(img_dim / 32))
