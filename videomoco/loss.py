"""VideoMoCo's losses: the contrastive loss of D with temporally decayed negatives, and the generator loss.

Notation: q [B, C] query embeddings (L2-normalised; in the adversarial phase the frame-dropped query), k [B, C]
positive keys, queue [C, K] negative keys kappa_j, T the temperature, t the decay base.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def decay_weights(count: torch.Tensor, t: float) -> torch.Tensor:
    """Released-code decay: w_j = t^{age_j} [K] (float32), age_j = iterations since slot j was written
    (0 for never-written initial keys at the first step)."""
    return torch.pow(torch.tensor(float(t), dtype=torch.float32, device=count.device), count.float())


def paper_queue_positions(ptr: int, K: int, device=None) -> torch.Tensor:
    """Position i_j of each slot counted from the newest key (0 = the key written last, just before `ptr`)."""
    slots = torch.arange(K, device=device)
    return torch.remainder(ptr - 1 - slots, K)


def paper_decay_log_weights(ptr: int, K: int, t: float, device=None) -> torch.Tensor:
    """Paper Eq. (6): the negative term is t^{i} exp(q.kappa_i / T); as a logit offset that is i * ln t [K]."""
    if t <= 0:
        raise ValueError(f"decay base must be positive, got {t}")
    return paper_queue_positions(ptr, K, device).to(torch.float32) * math.log(t)


def contrastive_logits(
    q: torch.Tensor,
    k: torch.Tensor,
    queue: torch.Tensor,
    T: float,
    weights: torch.Tensor | None = None,
    log_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [B, 1 + K] of the (K+1)-way softmax whose target is column 0.

    released code:  l_pos = q.k / T,  l_neg[:, j] = q.(w_j kappa_j) / T          (weights = w)
    paper Eq. (6):  l_neg[:, j] = q.kappa_j / T + ln(t^{i_j})                     (log_weights = i ln t)
    so that CE(logits, 0) = -log exp(q.k/T) / (exp(q.k/T) + sum_j w_j-weighted negative terms).
    """
    q = q.float()
    l_pos = (q * k.float()).sum(dim=1, keepdim=True)  # B, 1
    if weights is not None:
        queue = queue * weights[None, :]
    l_neg = q @ queue  # B, K
    logits = torch.cat([l_pos, l_neg], dim=1) / T
    if log_weights is not None:
        logits = torch.cat([logits[:, :1], logits[:, 1:] + log_weights[None, :]], dim=1)
    return logits


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """L_D = mean_b CE(logits_b, 0)."""
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)


def generator_loss(q_fake: torch.Tensor, q_real: torch.Tensor, weight: float = 100.0) -> torch.Tensor:
    """L_G = -weight * mean_{b, c} |q_fake - q_real| over the [B, C] normalised embeddings: G is rewarded for
    making the frame-dropped clip's embedding differ from the original's."""
    return -weight * (q_fake.float() - q_real.float()).abs().mean()
