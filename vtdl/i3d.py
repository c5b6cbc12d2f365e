"""I3D (Inception-v1 inflated to 3D, TF "SAME" padding) with VTDL's pretraining or fine-tuning head (spec §5.1).

Parameter names and shapes equal the original's (`vtdl_keys.json`, layouts `*/i3d`), so released checkpoints load.
Fix (spec §13.17): the fine-tune head pooled with a fixed (2,7,7) kernel and crashed on 112-px inputs; here the
spatial pooling covers the whole map (identical at 224 px, where the map is 7x7) and the temporal window is 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.width import scaled
from vtdl.heads import attach_pretrain_heads, run_pretrain_heads

# Mixed block widths: [branch_0, branch_1 reduce, branch_1, branch_2 reduce, branch_2, branch_3]
MIXED = {
    "mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}


def tf_same_pads(kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> tuple[int, ...]:
    """F.pad order (W front, W back, H front, H back, T front, T back) of TF 'SAME' with a size-independent
    total of max(k - s, 0) per dim, the smaller half in front (as the DeepMind port computes it)."""
    pads = []
    for k, s in reversed(list(zip(kernel, stride))):
        total = max(k - s, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3Dpy(nn.Module):
    """conv3d (no bias) -> BN -> ReLU with TF-SAME padding; keys `conv3d.weight`, `batch3d.*`."""

    def __init__(self, in_ch, out_ch, kernel=(1, 1, 1), stride=(1, 1, 1), activation=True, use_bn=True):
        super().__init__()
        pads = tf_same_pads(kernel, stride)
        self.symmetric = len(set(pads)) == 1
        self.pads = pads
        self.conv3d = nn.Conv3d(in_ch, out_ch, kernel, stride, padding=pads[0] if self.symmetric else 0, bias=False)
        self.batch3d = nn.BatchNorm3d(out_ch) if use_bn else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = F.pad(x, self.pads)
        x = self.conv3d(x)
        if self.batch3d is not None:
            x = self.batch3d(x)
        return F.relu(x) if self.activation else x


class MaxPool3dTFPadding(nn.Module):
    """Zero 'SAME' padding then max pooling with ceil_mode (inputs are post-ReLU, so zeros never win wrongly)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.pads = tf_same_pads(kernel, stride)
        self.pool = nn.MaxPool3d(kernel, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, self.pads))


class Mixed(nn.Module):
    """Inception block; output channels = b0 + b1 + b2 + b3 (branch_2 uses 3x3x3 as in the port)."""

    def __init__(self, in_ch: int, widths: list[int]):
        super().__init__()
        self.branch_0 = Unit3Dpy(in_ch, widths[0])
        self.branch_1 = nn.Sequential(Unit3Dpy(in_ch, widths[1]), Unit3Dpy(widths[1], widths[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3Dpy(in_ch, widths[3]), Unit3Dpy(widths[3], widths[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPool3dTFPadding((3, 3, 3), (1, 1, 1)), Unit3Dpy(in_ch, widths[5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


class I3D(nn.Module):
    """forward(x [B,C,T,H,W]) -> pretraining: (id_out [B,128], cls [B,200], feature [B,2048]);
    fine-tuning: log-probabilities [B, num_classes]; return_conv=True: the mixed_5c map [B,1024,T/8,H/32,W/32].
    width_mult scales every conv's (and inception branch's) channels; 1.0 is the original, feature_dim 1024."""

    def __init__(
        self,
        num_classes: int = 101,
        modality: str = "rgb",
        dropout_prob: float = 0.0,
        with_classifier: bool = False,
        width_mult: float = 1.0,
    ):
        super().__init__()
        self.num_classes, self.with_classifier, self.width_mult = num_classes, with_classifier, width_mult
        in_ch = 2 if modality == "flow" else 3
        c64, c192 = scaled(64, width_mult), scaled(192, width_mult)
        self.conv3d_1a_7x7 = Unit3Dpy(in_ch, c64, (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3Dpy(c64, c64)
        self.conv3d_2c_3x3 = Unit3Dpy(c64, c192, (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPool3dTFPadding((1, 3, 3), (1, 2, 2))
        channels = c192  # each Mixed block takes the concatenated branches of the previous one
        for name, (_, widths) in MIXED.items():
            if name == "mixed_4b":
                self.maxPool3d_4a_3x3 = MaxPool3dTFPadding((3, 3, 3), (2, 2, 2))
            elif name == "mixed_5b":
                self.maxPool3d_5a_2x2 = MaxPool3dTFPadding((2, 2, 2), (2, 2, 2))
            branch_widths = [scaled(w, width_mult) for w in widths]
            setattr(self, name, Mixed(channels, branch_widths))
            channels = sum(branch_widths[i] for i in (0, 2, 4, 5))
        self.feature_dim = channels  # 1024 at width 1.0
        if with_classifier:
            self.dropout = nn.Dropout(dropout_prob)
            self.conv3d_0c_1x1_custom = Unit3Dpy(channels, num_classes, (7, 1, 1), activation=False, use_bn=False)
        else:
            attach_pretrain_heads(self, channels, (2, 1, 1))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for name in (
            "conv3d_1a_7x7",
            "maxPool3d_2a_3x3",
            "conv3d_2b_1x1",
            "conv3d_2c_3x3",
            "maxPool3d_3a_3x3",
            "mixed_3b",
            "mixed_3c",
            "maxPool3d_4a_3x3",
            "mixed_4b",
            "mixed_4c",
            "mixed_4d",
            "mixed_4e",
            "mixed_4f",
            "maxPool3d_5a_2x2",
            "mixed_5b",
            "mixed_5c",
        ):
            x = getattr(self, name)(x)
        return x

    def classify(self, conv_map: torch.Tensor) -> torch.Tensor:
        """AvgPool (2 frames x whole map, stride 1) -> dropout -> temporal conv (7,1,1) -> mean over time."""
        t = min(2, conv_map.shape[2])
        x = F.avg_pool3d(conv_map, (t, conv_map.shape[3], conv_map.shape[4]), stride=1)  # B, 1024, T', 1, 1
        x = self.conv3d_0c_1x1_custom(self.dropout(x))  # B, C, T', 1, 1
        return F.log_softmax(x.flatten(2).mean(2), dim=1)

    def forward(self, x: torch.Tensor, return_conv: bool = False):
        conv_map = self.trunk(x)
        if return_conv:
            return conv_map
        if self.with_classifier:
            return self.classify(conv_map)
        return run_pretrain_heads(self, conv_map)
