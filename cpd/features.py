"""Unified evaluation hook: `build_clip_encoder(ckpt, **overrides)` -> the CPD video encoder as a clip-feature
extractor (the pooled 3D-ResNet output, 2048-d for ResNet-50, before the projection head)."""

from __future__ import annotations

import torch
from torch import nn

from cpd.dataset import MEAN, STD
from cpd.resnet import resnet3d
from shared_utils.checkpoint import extract_state_dict, load_checkpoint, load_state_dict_reported, strip_prefix

# Without saved args (e.g. the authors' released checkpoint): the README pretraining input, 32 // 4 frames at 224.
DEFAULTS = {"model_depth": 50, "resnet_shortcut": "A", "sample_duration": 32, "stride_size": 4, "sample_size": 224}
DEFAULTS["width_mult"] = 1.0  # demo-sized encoders (shared_utils.width); the original is 1.0


class CPDClipEncoder(nn.Module):
    """forward(clips uint8 [B, T, H, W, 3] RGB) -> float [B, feature_dim]: (x / 255 - 0.45) / 0.225, [B, 3, T, H, W],
    the ResNet's pooled features."""

    def __init__(
        self, depth: int, shortcut: str, num_frames: int, frame_stride: int, crop_size: int, width_mult: float = 1.0
    ) -> None:
        super().__init__()
        self.backbone = resnet3d(depth, num_classes=1, shortcut_type=shortcut, width_mult=width_mult)
        self.backbone.fc = nn.Identity()
        self.num_frames, self.frame_stride, self.crop_size = num_frames, frame_stride, crop_size
        self.feature_dim = self.backbone.feature_dim

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips.float().div(255.0).sub(MEAN).div(STD).permute(0, 4, 1, 2, 3)  # B, 3, T, H, W
        return self.backbone.forward_features(x.contiguous())


def build_clip_encoder(ckpt: str | None = None, load_weights: bool = True, **overrides) -> CPDClipEncoder:
    """The CPD visual encoder in eval mode. `ckpt`: a pretraining checkpoint of cpd/main.py or the authors'
    (`visual_encoder.*`), or a fine-tuning one (bare ResNet keys; its fc is dropped); None = random init.
    overrides: model_depth, resnet_shortcut, num_frames, frame_stride, crop_size, width_mult, seed (default: the
    checkpoint's args; frame_stride = --stride_size, the original's step at a 30-fps reference). load_weights=False: that
    architecture and geometry, randomly initialised."""
    config, state = dict(DEFAULTS), None
    if ckpt is not None:
        loaded = load_checkpoint(ckpt)
        config.update({k: v for k, v in (loaded.get("args") or {}).items() if k in DEFAULTS})
        state = strip_prefix(extract_state_dict(loaded, ("state_dict", "model")), ("module.",))
        visual = {k[len("visual_encoder.") :]: v for k, v in state.items() if k.startswith("visual_encoder.")}
        state = {k: v for k, v in (visual or state).items() if not k.startswith("fc.")}
    config.update({k: v for k, v in overrides.items() if k in DEFAULTS})
    with torch.random.fork_rng():  # a reproducible random init (the baseline) without touching the caller's RNG
        torch.manual_seed(int(overrides.get("seed", 0)))
        encoder = CPDClipEncoder(
            int(config["model_depth"]),
            str(config["resnet_shortcut"]),
            int(overrides.get("num_frames", config["sample_duration"] // config["stride_size"])),
            int(overrides.get("frame_stride", config["stride_size"])),
            int(overrides.get("crop_size", config["sample_size"])),
            float(config["width_mult"]),
        )
    if state is not None and load_weights:
        load_state_dict_reported(encoder.backbone, state, strict=True, name=f"cpd encoder '{ckpt}'")
    return encoder.eval()
