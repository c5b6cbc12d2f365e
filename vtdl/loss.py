"""VTDL's contrastive criteria (spec §6.2, §6.3).

Softmax form (all scripts, `--softmax`): with unit-norm query q, key k, queue memory M [K, D], temporal
negative n (same video, other time) and temperature T,

    logits_i = [q_i.k_i, q_i.M_1 .. q_i.M_K, q_i.n_i] / T        (B, K + 2)
    L = -1/B sum_i log softmax(logits_i)[0]                     (cross-entropy against class 0)

NCE form (no `--softmax`): P = exp(logits) / Z, Z frozen from the first batch, and the NCE objective below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NCESoftmaxLoss(nn.Module):
    """Cross-entropy of logits [B, 1 + negatives] against the positive in column 0 (mean over the batch)."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits.float(), target)


class NCECriterion(nn.Module):
    """Noise-contrastive estimation over P [B, 1 + m] (column 0 = data), noise distribution Pn = 1/n_data:

        L = -1/B [ sum_i log(P_i0 / (P_i0 + m Pn + eps)) + sum_{i, j>=1} log(m Pn / (P_ij + m Pn + eps)) ]

    n_data is the number of training SAMPLES (the original passed the number of batches, spec §13.11).
    """

    eps = 1e-7

    def __init__(self, n_data: int) -> None:
        super().__init__()
        self.n_data = n_data

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        batch, m = probs.shape[0], probs.shape[1] - 1
        noise = m / self.n_data
        pos = torch.log(probs[:, 0] / (probs[:, 0] + noise + self.eps))
        neg = torch.log(noise / (probs[:, 1:] + noise + self.eps))
        return -(pos.sum() + neg.sum()) / batch


def ins_prob(logits: torch.Tensor) -> torch.Tensor:
    """The original's 'Ins Prob' / `prob` curve: mean of column 0 of the logits, i.e. mean(q.k)/T — a scaled
    logit (at most 1/T = 14.29), NOT a probability. Kept under its original name for comparability."""
    return logits[:, 0].detach().float().mean()


def positive_probability(logits: torch.Tensor) -> torch.Tensor:
    """The actual softmax probability of the positive, averaged over the batch (logged beside ins_prob)."""
    return logits.detach().float().softmax(dim=1)[:, 0].mean()
