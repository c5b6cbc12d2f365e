"""Dense predictive coding loss (MemDPC paper, Eq. 4; spec §4) and its top-k accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared_utils import dist


def dense_scores(pred: torch.Tensor, target: torch.Tensor, cross_gpu_negatives: bool = False) -> torch.Tensor:
    """Dot-product scores between every predicted and every target feature.

    pred, target: [B, P, C, H, W] (B videos, P predicted steps, C channels, HxW positions).
    Row i = prediction (b, t, h, w), column j = target (b, t, h, w), flattened with b slowest and w fastest.
    Returns [B*P*H*W, B*P*H*W] (raw dot products: no normalisation, no temperature), or with cross_gpu_negatives
    [B*P*H*W, world_size*B*P*H*W], the columns of every rank concatenated in rank order (an extension; the paper's
    pool is the per-GPU batch).
    """
    channels = pred.shape[2]
    rows = pred.permute(0, 1, 3, 4, 2).reshape(-1, channels)  # B*P*H*W, C
    cols = target.permute(2, 0, 1, 3, 4).reshape(channels, -1)  # C, B*P*H*W
    if cross_gpu_negatives and dist.get_world_size() > 1:
        cols = dist.all_gather_with_grad(cols.t().contiguous()).t()
    return rows @ cols


def positive_index(score: torch.Tensor, cross_gpu_negatives: bool = False) -> torch.Tensor:
    """Index of each row's positive: its own column (offset by rank when columns come from every rank)."""
    n = score.shape[0]
    offset = dist.get_rank() * n if cross_gpu_negatives and dist.get_world_size() > 1 else 0
    return torch.arange(offset, offset + n, device=score.device)


def dpc_loss(score: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """InfoNCE: L = -1/N sum_i log( exp(S_ii) / sum_j exp(S_ij) ), i.e. cross-entropy of each row of the score
    matrix S [N, M] against its positive column. Positives: same video, same future step, same position; negatives:
    every other (video, step, position) in the pool."""
    if score.dtype in (torch.float16, torch.bfloat16):
        score = score.float()
    return F.cross_entropy(score, positive)


@torch.no_grad()
def topk_fraction(score: torch.Tensor, positive: torch.Tensor, topk=(1, 5)) -> torch.Tensor:
    """[1, len(topk)]: fraction of rows whose positive is among the k highest scores (the original's metric)."""
    maxk = min(max(topk), score.shape[1])
    ranked = score.topk(maxk, dim=1).indices  # N, maxk
    hit = ranked.eq(positive[:, None])
    return torch.stack([hit[:, : min(k, maxk)].any(dim=1).float().mean() for k in topk]).unsqueeze(0)
