"""VideoMoCo's modules: the frame-scoring generator G, the frame-drop op, and the MoCo discriminator D.

State-dict keys follow the released code (`videomoco_keys.json`): G under `mask_generator.`, D as `encoder_q.`,
`encoder_k.` (torchvision video ResNets), `queue`, `queue_ptr`. The per-slot key age `count` is a registered
buffer (it moves with `.to()`), kept out of the state dict so the released checkpoints load without missing
keys; training checkpoints store it separately.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DNoTemporal, Conv3DSimple, VideoResNet

from shared_utils import dist
from shared_utils.checkpoint import strip_prefix
from shared_utils.split_bn import shuffled_forward, split_batchnorm
from shared_utils.width import scaled
from videomoco.loss import contrastive_logits, decay_weights, paper_decay_log_weights


def video_resnet(arch: str, num_classes: int, width_mult: float = 1.0) -> nn.Module:
    """torchvision `r3d_18` / `mc3_18` / `r2plus1d_18`, randomly initialised, fc 512 -> num_classes.
    width_mult != 1.0: the same modules and keys with every stage's channels scaled (demo-sized models)."""
    if width_mult == 1.0:
        return getattr(torchvision.models.video, arch)(num_classes=num_classes)
    return ScaledVideoResNet(arch, num_classes, width_mult)


CONV_MAKERS = {
    "r3d_18": [Conv3DSimple] * 4,
    "mc3_18": [Conv3DSimple] + [Conv3DNoTemporal] * 3,
    "r2plus1d_18": [Conv2Plus1D] * 4,
}


def _stem(arch: str, width_mult: float) -> nn.Sequential:
    """torchvision's BasicStem / R2Plus1dStem (same indices: conv, bn, relu[, conv, bn, relu]) at a scaled width."""
    out = scaled(64, width_mult)
    if arch != "r2plus1d_18":
        conv = nn.Conv3d(3, out, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        return nn.Sequential(conv, nn.BatchNorm3d(out), nn.ReLU(inplace=True))
    mid = scaled(45, width_mult)
    return nn.Sequential(
        nn.Conv3d(3, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, out, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(out),
        nn.ReLU(inplace=True),
    )


class ScaledVideoResNet(VideoResNet):
    """torchvision's 18-layer VideoResNet (its forward, _make_layer, keys and init) with the stem and the four
    stages (64, 128, 256, 512 planes) scaled by width_mult; fc takes the scaled 512."""

    def __init__(self, arch: str, num_classes: int, width_mult: float) -> None:
        nn.Module.__init__(self)
        planes = [scaled(c, width_mult) for c in (64, 128, 256, 512)]
        self.stem = _stem(arch, width_mult)
        self.inplanes = planes[0]
        for i, (conv_maker, width) in enumerate(zip(CONV_MAKERS[arch], planes)):
            setattr(
                self, f"layer{i + 1}", self._make_layer(BasicBlock, conv_maker, width, 2, stride=1 if i == 0 else 2)
            )
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(planes[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


def pretrained_backbone(state_dict: dict) -> dict:
    """Plain backbone keys from a VideoMoCo D state dict: keep `[module.]encoder_q.*` except its fc (the
    projection head, also the --mlp one), strip the prefix; the key encoder, queue and G are dropped."""
    state = strip_prefix(state_dict, ("module.",))
    prefix = "encoder_q."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and not k.startswith(prefix + "fc")}


# --------------------------------------------------------------------------------------------------- generator


def generator_embedding_side(crop_size: int) -> int:
    """Spatial side of G's last feature map: three Conv_BN (-1 each), then three 2x2 average pools."""
    side = crop_size - 3
    for _ in range(3):
        side //= 2
    return side


class GeneratorMask(nn.Module):
    """Frame-importance network of the released code (`Generator_Mask`): a clip [B, 3, T, H, W] read as a
    3T-channel image -> Conv_BN x3 (one shared module) -> ASPP -> conv2 -> (conv1, conv1, avgpool) x3 (one shared
    conv1) -> the T channels as a length-T sequence -> BiLSTM -> last step -> fc -> softmax over T frames.
    T = 32 and 112x112 give the released shapes (C_in 96, LSTM input 169)."""

    def __init__(self, num_frames: int = 32, crop_size: int = 112, hidden_dim: int = 128) -> None:
        super().__init__()
        c_in, t = 3 * num_frames, num_frames
        side = generator_embedding_side(crop_size)
        if side < 1:
            raise ValueError(f"crop size {crop_size} is too small for the generator (needs >= 11)")
        # Registration order = the released construction order (it fixes the default-init RNG stream).
        self.Conv_BN = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, stride=1, padding=1, dilation=2, bias=False),
            nn.BatchNorm2d(c_in, eps=1e-3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, stride=1, padding=1),
        )
        self.conv = nn.Conv2d(c_in, c_in, 1)  # ASPP image-pooling branch
        self.conv1 = nn.Sequential(nn.Conv2d(t, t, 3, padding=1), nn.BatchNorm2d(t), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(c_in, t, 3, padding=1), nn.BatchNorm2d(t), nn.ReLU(inplace=True))
        self.atrous_block1 = nn.Conv2d(c_in, c_in, 1)
        self.atrous_block6 = nn.Conv2d(c_in, c_in, 3, padding=6, dilation=6)
        self.atrous_block12 = nn.Conv2d(c_in, c_in, 3, padding=12, dilation=12)
        self.atrous_block18 = nn.Conv2d(c_in, c_in, 3, padding=18, dilation=18)
        self.conv_1x1_output = nn.Conv2d(5 * c_in, c_in, 1)
        self.rnn = nn.LSTM(side * side, hidden_dim // 2, num_layers=1, batch_first=True, bidirectional=True)
        self.fc = nn.Sequential(nn.Linear(hidden_dim, num_frames))
        self.num_frames = num_frames

    def aspp(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = self.conv(F.adaptive_avg_pool2d(x, 1))
        pooled = F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)
        branches = [pooled, self.atrous_block1(x), self.atrous_block6(x), self.atrous_block12(x)]
        branches.append(self.atrous_block18(x))
        return self.conv_1x1_output(torch.cat(branches, dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape  # B, 3, T, H, W
        if t != self.num_frames:
            raise ValueError(f"generator built for {self.num_frames} frames got a clip of {t}")
        y = x.reshape(b, c * t, h, w)  # channel index = c * T + t
        for _ in range(3):
            y = self.Conv_BN(y)
        y = self.conv2(self.aspp(y))
        for _ in range(3):
            y = F.avg_pool2d(self.conv1(self.conv1(y)), 2, 2)
        out, _ = self.rnn(y.flatten(2))  # B, T, hidden
        return F.softmax(self.fc(out[:, -1]), dim=1)  # B, T


class FrameDrop(torch.autograd.Function):
    """x_fake = x with the k selected frames of each clip replaced by that frame's scalar mean (over C, H, W).

    Backward (released straight-through estimator): no gradient to x; dL/dp[b, j] = sum over (C, H, W) of
    dL/dx_fake[b, :, j] for every frame j, dropped or kept."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: torch.Tensor, k: int, largest: bool) -> torch.Tensor:
        mask = drop_mask(p, k, largest)  # B, T
        frame_mean = x.mean(dim=(1, 3, 4))  # B, T
        fill = frame_mean[:, None, :, None, None].expand_as(x)
        ctx.p_dtype = p.dtype
        return torch.where(mask[:, None, :, None, None], fill, x)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        return None, grad_out.sum(dim=(1, 3, 4)).to(ctx.p_dtype), None, None


def drop_mask(p: torch.Tensor, k: int, largest: bool = False) -> torch.Tensor:
    """Boolean [B, T]: True for the k frames with the smallest (or largest) scores of each row of p."""
    idx = p.detach().topk(k, dim=1, largest=largest).indices
    return torch.zeros(p.shape, dtype=torch.bool, device=p.device).scatter_(1, idx, True)


class MaskGenerator(nn.Module):
    """G: scores the frames of the (augmented, normalised) query clip and drops k of them.

    forward(x [B, 3, T, H, W]) -> (x_fake [B, 3, T, H, W], p [B, T])."""

    def __init__(self, num_frames: int = 32, crop_size: int = 112, drop: int = 8, drop_select: str = "lowest"):
        super().__init__()
        if not 0 < drop < num_frames:
            raise ValueError(f"cannot drop {drop} of {num_frames} frames")
        self.mask_generator = GeneratorMask(num_frames, crop_size)
        self.drop = drop
        self.largest = drop_select == "highest"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.mask_generator(x)
        return FrameDrop.apply(x, p, self.drop, self.largest), p


# --------------------------------------------------------------------------------------------------- MoCo (D)


class VideoMoCo(nn.Module):
    """D: a query encoder, a momentum key encoder, and a queue of K keys whose ages are tracked for the decay.

    forward(im_q, im_k, t, im_q_real=None) -> (q, q_real, logits, labels). In the adversarial phase im_q is the
    frame-dropped clip x_fake and im_q_real the original query (its embedding only feeds L_G, so it is computed
    without a graph: it does not depend on G and the released code never lets L_G reach the encoder)."""

    def __init__(
        self,
        arch: str = "r3d_18",
        dim: int = 128,
        K: int = 65536,
        m: float = 0.999,
        T: float = 0.07,
        mlp: bool = False,
        decay_mode: str = "code",
        width_mult: float = 1.0,
        bn_splits: int = 1,
    ) -> None:
        super().__init__()
        self.K, self.m, self.T, self.decay_mode, self.bn_splits = K, m, T, decay_mode, bn_splits
        self.encoder_q = split_batchnorm(video_resnet(arch, dim, width_mult), bn_splits)
        self.encoder_k = split_batchnorm(video_resnet(arch, dim, width_mult), bn_splits)
        if mlp:  # MoCo v2 head: keys fc.0 / fc.2
            for encoder in (self.encoder_q, self.encoder_k):
                dim_mlp = encoder.fc.weight.shape[1]
                encoder.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), encoder.fc)
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        # iterations since each slot was written (int32: ages reach K / global batch)
        self.register_buffer("count", torch.zeros(K, dtype=torch.int32), persistent=False)

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q (parameters only; BN statistics are the key encoder's own)."""
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.mul_(self.m).add_(param_q.data, alpha=1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys of all ranks at the pointer; every slot ages by one, the written ones restart at 1."""
        keys = dist.concat_all_gather(keys)
        n = keys.shape[0]
        ptr = int(self.queue_ptr)
        if self.K % n:
            raise ValueError(f"global batch {n} must divide the queue size {self.K}")
        self.queue[:, ptr : ptr + n] = keys.T.to(self.queue.dtype)
        self.count += 1
        self.count[ptr : ptr + n] = 1
        self.queue_ptr[0] = (ptr + n) % self.K

    @torch.no_grad()
    def key_features(self, im_k: torch.Tensor) -> torch.Tensor:
        """Momentum update, then keys with shuffle-BN (shuffle across ranks and split-BN sub-batches, encode,
        unshuffle)."""
        self._momentum_update_key_encoder()
        return F.normalize(shuffled_forward(self.encoder_k, im_k, self.bn_splits).float(), dim=1)

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor, t: float = 1.0, im_q_real: torch.Tensor | None = None):
        q_real = None
        if im_q_real is not None:  # first, as in the released code (BN running statistics see it first)
            with torch.no_grad():
                q_real = F.normalize(self.encoder_q(im_q_real).float(), dim=1)
        q = F.normalize(self.encoder_q(im_q).float(), dim=1)  # B, dim
        k = self.key_features(im_k)  # B, dim
        queue = self.queue.clone().detach()  # dim, K
        if self.decay_mode == "paper":
            log_w = paper_decay_log_weights(int(self.queue_ptr), self.K, t, device=q.device)
            logits = contrastive_logits(q, k, queue, self.T, log_weights=log_w)
        else:
            logits = contrastive_logits(q, k, queue, self.T, weights=decay_weights(self.count, t))
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._dequeue_and_enqueue(k)
        return q, q_real, logits, labels
