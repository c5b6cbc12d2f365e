"""MemDPC (bidirectional, with a learnable memory bank) for pretraining and LC, the classifier used for evaluation.

Module names, parameter shapes and the construction order follow the original code (spec §3.3-3.5), so the
authors' checkpoints load by name and a seeded construction reproduces the original initial weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from memdpc.backbone import feature_map_size, select_resnet
from memdpc.convrnn import ConvGRU, complete_gru_aliases
from memdpc.loss import dense_scores, dpc_loss, positive_index, topk_fraction
from shared_utils.checkpoint import strip_prefix
from shared_utils.cli import fail
from shared_utils.transforms import device_normalize


def _orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights (in named_parameters order, which fixes the RNG order) and zero biases."""
    for name, param in module.named_parameters():
        if "bias" in name:
            nn.init.constant_(param, 0.0)
        elif "weight" in name:
            nn.init.orthogonal_(param, gain)


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _Encoder(nn.Module):
    """Shared by both models: the backbone applied block-wise, pooled over the block's remaining time steps."""

    channels_last = False

    def encode(self, block: torch.Tensor, relu_before_pool: bool = False) -> torch.Tensor:
        """[B, N, C, SL, H, W] -> [B, N, D, s, s] (D = feature size, s = spatial extent)."""
        b, n = block.shape[:2]
        x = block.reshape(b * n, *block.shape[2:])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        feature = self.backbone(x)
        if relu_before_pool:
            feature = F.relu(feature)
        feature = F.avg_pool3d(feature, (self.last_duration, 1, 1), stride=1)
        if feature.shape[2] != 1:
            fail(f"--seq_len {block.shape[3]} leaves {feature.shape[2]} time steps after pooling; use seq_len 5-8")
        return feature.reshape(b, n, *feature.shape[1:2], *feature.shape[3:]).contiguous()


class MemDPC(_Encoder):
    """Bidirectional MemDPC (the original `MemDPC_BD`).

    forward(block [B, N, 3, SL, H, W]) -> (loss, [loss_f, loss_b] ([1] each, detached),
    [acc_f, acc_b] ([1, 2] each: top-1, top-5 fractions), context_feature [B, 1, D, s, s]).
    """

    def __init__(
        self,
        sample_size: int,
        num_seq: int = 8,
        seq_len: int = 5,
        pred_step: int = 3,
        network: str = "resnet18",
        mem_size: int = 1024,
        cross_gpu_negatives: bool = False,
        channels_last: bool = False,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 < pred_step < num_seq:
            fail(f"--pred_step must be between 1 and --num_seq - 1 (got pred_step {pred_step}, num_seq {num_seq})")
        print(f"Using MemDPC-BiDirectional model with {network} and mem_size {mem_size}")
        self.sample_size, self.num_seq, self.seq_len, self.pred_step = sample_size, num_seq, seq_len, pred_step
        self.last_duration, self.last_size = feature_map_size(sample_size, seq_len)
        print(f"final feature map has size {self.last_size}x{self.last_size}")
        self.backbone, self.param = select_resnet(network, width_mult=width_mult)
        self.width_mult = width_mult
        dim = self.param["feature_size"]
        self.param.update(num_layers=1, hidden_size=dim, membanks_size=mem_size)
        self.mb = nn.Parameter(torch.randn(mem_size, dim))  # memory bank, written only through backprop
        print(f"MEM Bank has size {mem_size}x{dim}")
        self.agg_f = ConvGRU(dim, dim, kernel_size=1, num_layers=1)
        self.agg_b = ConvGRU(dim, dim, kernel_size=1, num_layers=1)
        self.network_pred = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=1), nn.ReLU(inplace=True), nn.Conv2d(dim, mem_size, kernel_size=1)
        )
        self.relu = nn.ReLU(inplace=False)
        for module in (self.agg_f, self.agg_b, self.network_pred):
            _orthogonal_init(module, 0.1)
        self.cross_gpu_negatives, self.channels_last = cross_gpu_negatives, channels_last

    def read_memory(self, hidden: torch.Tensor) -> torch.Tensor:
        """Predicted feature = softmax-attention over the memory slots: [B, D, s, s] -> [B, D, s, s]."""
        attention = F.softmax(self.network_pred(hidden), dim=1)  # B, M, s, s
        return torch.einsum("bmhw,mc->bchw", attention, self.mb)

    def predict(self, agg: ConvGRU, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aggregate the first N-P blocks, then roll out P predictions, each fed back as the next input.
        Returns (predictions [B, P, D, s, s], context after the context blocks [B, 1, D, s, s])."""
        n = feature.shape[1]
        _, hidden = agg(self.relu(feature[:, : n - self.pred_step]))
        context = hidden.clone()
        hidden = hidden[:, -1]
        preds = []
        for step in range(self.pred_step):
            if step > 0:
                _, hidden = agg(self.relu(preds[-1]).unsqueeze(1), hidden.unsqueeze(0))
                hidden = hidden[:, -1]
            preds.append(self.read_memory(hidden))
        return torch.stack(preds, dim=1), context

    def direction_loss(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=pred.device.type, enabled=False):
            score = dense_scores(_full_precision(pred), _full_precision(target), self.cross_gpu_negatives)
            positive = positive_index(score, self.cross_gpu_negatives)
            return dpc_loss(score, positive), topk_fraction(score, positive)

    def forward(self, block: torch.Tensor):
        block = device_normalize(block, channel_dim=2)  # uint8 pretraining blocks [B, N, C, SL, H, W] -> float
        feature = self.encode(block)  # B, N, D, s, s (before ReLU)
        n, p = feature.shape[1], self.pred_step
        pred_f, context = self.predict(self.agg_f, feature)
        feature_b = torch.flip(feature, dims=(1,))
        pred_b, _ = self.predict(self.agg_b, feature_b)  # shares network_pred and mb with the forward direction
        loss_f, acc_f = self.direction_loss(pred_f, feature[:, n - p :])
        loss_b, acc_b = self.direction_loss(pred_b, feature_b[:, n - p :])
        loss = loss_f + loss_b
        return loss, [loss_f.detach().reshape(1), loss_b.detach().reshape(1)], [acc_f, acc_b], context


MemDPC_BD = MemDPC  # the original class name


class LC(_Encoder):
    """Linear classifier on the concatenated final states of both ConvGRUs (spec §3.4).

    forward(block [B, N, 3, SL, H, W]) -> (logits [B, 1, num_class], context [B, 1, 2D]).
    train_what='last' runs the backbone and GRUs without gradient (linear probe).
    """

    def __init__(
        self,
        sample_size: int,
        num_seq: int = 8,
        seq_len: int = 5,
        network: str = "resnet18",
        dropout: float = 0.5,
        num_class: int = 101,
        train_what: str = "all",
        relu_before_pool: bool = True,
        channels_last: bool = False,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        self.sample_size, self.num_seq, self.seq_len = sample_size, num_seq, seq_len
        self.num_class, self.train_what = num_class, train_what
        self.last_duration, self.last_size = feature_map_size(sample_size, seq_len)
        self.backbone, self.param = select_resnet(network, width_mult=width_mult)
        self.width_mult = width_mult
        dim = self.param["feature_size"]
        self.param.update(num_layers=1, hidden_size=dim)
        self.agg_f = ConvGRU(dim, dim, kernel_size=1, num_layers=1)
        self.agg_b = ConvGRU(dim, dim, kernel_size=1, num_layers=1)
        _orthogonal_init(self.agg_f, 1.0)
        _orthogonal_init(self.agg_b, 1.0)
        self.final_bn = nn.BatchNorm1d(dim * 2)
        self.final_bn.weight.data.fill_(1)
        self.final_bn.bias.data.zero_()
        self.final_fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim * 2, num_class))
        _orthogonal_init(self.final_fc, 1.0)
        self.relu_before_pool, self.channels_last = relu_before_pool, channels_last

    def context(self, block: torch.Tensor) -> torch.Tensor:
        """[B, N, 3, SL, H, W] -> [B, 1, 2D]: spatially averaged last outputs of the forward and backward GRUs."""
        feature = self.encode(block, relu_before_pool=self.relu_before_pool)  # B, N, D, s, s
        if not self.relu_before_pool:  # ablation: ReLU after pooling, as pretraining feeds the GRU
            feature = F.relu(feature)
        out_f, _ = self.agg_f(feature)
        out_b, _ = self.agg_b(torch.flip(feature, dims=(1,)))
        context_f = out_f[:, -1].mean(dim=(-2, -1)).unsqueeze(1)  # B, 1, D
        context_b = out_b[:, -1].mean(dim=(-2, -1)).unsqueeze(1)
        return torch.cat([context_f, context_b], dim=-1)

    def forward(self, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_what != "last"):
            context = self.context(block)
        context = self.final_bn(context.transpose(-1, -2)).transpose(-1, -2)
        output = self.final_fc(context).view(block.shape[0], -1, self.num_class)
        return output, context


def clean_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip `module.` (DataParallel/DDP checkpoints) and complete the two ConvGRU key spellings."""
    return complete_gru_aliases(strip_prefix(state_dict, ("module.",)))
