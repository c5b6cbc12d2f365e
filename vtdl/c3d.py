"""C3D with BatchNorm (spec §5.4). Keys equal the original's (`vtdl_keys.json`, `*/c3d`).

The original had no pretraining head for C3D and could not pretrain it (spec §13.14). With `pretrain_heads=True`
this module gets the same `id_head`/`cls_head` as R3D (512 -> 128 / 200), which is what VTDL pretraining uses;
`pretrain_heads=False, with_classifier=False` is the original's bare C3D returning the pooled 512-d feature.
The fine-tune head returns raw logits; the training loss applies log_softmax (spec §13.16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils.width import scaled
from vtdl.heads import attach_pretrain_heads, run_pretrain_heads

# (name, in, out, pool after: kernel or None)
LAYERS = [
    ("1", 3, 64, (1, 2, 2)),
    ("2", 64, 128, (2, 2, 2)),
    ("3a", 128, 256, None),
    ("3b", 256, 256, (2, 2, 2)),
    ("4a", 256, 512, None),
    ("4b", 512, 512, (2, 2, 2)),
    ("5a", 512, 512, None),
    ("5b", 512, 512, None),
]


class C3D(nn.Module):
    """width_mult scales every conv's output channels (the RGB input stays 3); 1.0 is the original."""

    def __init__(
        self, num_classes: int = 101, with_classifier: bool = False, pretrain_heads: bool = True, width_mult=1.0
    ):
        super().__init__()
        self.num_classes, self.with_classifier, self.width_mult = num_classes, with_classifier, width_mult
        self.pretrain_heads = pretrain_heads and not with_classifier
        for name, in_ch, out_ch, _pool in LAYERS:
            in_ch = in_ch if name == "1" else scaled(in_ch, width_mult)
            setattr(self, f"conv{name}", nn.Conv3d(in_ch, scaled(out_ch, width_mult), 3, padding=1, bias=True))
            setattr(self, f"bn{name}", nn.BatchNorm3d(scaled(out_ch, width_mult)))
        self.feature_dim = scaled(512, width_mult)
        self.pool5 = nn.AdaptiveAvgPool3d(1)
        if with_classifier:
            self.linear = nn.Linear(self.feature_dim, num_classes)
        elif self.pretrain_heads:
            attach_pretrain_heads(self, self.feature_dim, (1, 1, 1))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for name, _in, _out, pool in LAYERS:
            x = F.relu(getattr(self, f"bn{name}")(getattr(self, f"conv{name}")(x)))
            if pool is not None:
                x = F.max_pool3d(x, pool, pool)
        return x

    def forward(self, x: torch.Tensor, return_conv: bool = False):
        conv_map = self.trunk(x)
        if return_conv:
            return conv_map
        if self.pretrain_heads:
            return run_pretrain_heads(self, conv_map)
        pooled = self.pool5(conv_map).flatten(1)
        return self.linear(pooled) if self.with_classifier else pooled
