"""NCE loss of CPD (spec §5; Wu et al. 2018 eq. 5-6 as used in CMC)."""

from __future__ import annotations

import torch
from torch import nn

EPS = 1e-7


def nce_loss(x: torch.Tensor, n_data: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative NCE terms of the scores `x` [B, K + 1, 1] (column 0 = the positive).

    With Pn = 1 / n_data:  L_pos = -(1/B) sum_b log( x[b,0] / (x[b,0] + K Pn + eps) ),
                           L_neg = -(1/B) sum_b sum_{k>=1} log( K Pn / (x[b,k] + K Pn + eps) ).
    Evaluated in float32 in the original's order (the constant K*Pn + eps formed in double and cast once, the
    numerator a float32 tensor filled with K*Pn): the negative term sums ~16k values of -log(1 - delta) with
    delta ~ 1e-4, which a different order changes by ~1e-5 relative. Returns two 1-element tensors.
    """
    x = x.float()
    bsz, k = x.shape[0], x.shape[1] - 1
    pn = 1.0 / float(n_data)
    p_pos = x.select(1, 0)  # B, 1
    log_d1 = torch.div(p_pos, p_pos.add(k * pn + EPS)).log_()
    p_neg = x.narrow(1, 1, k)  # B, K, 1
    log_d0 = torch.div(p_neg.clone().fill_(k * pn), p_neg.add(k * pn + EPS)).log_()
    loss_pos = -log_d1.sum(0) / bsz
    loss_neg = -log_d0.view(-1, 1).sum(0) / bsz
    return loss_pos, loss_neg


class NCECriterion(nn.Module):
    """CPD's criterion: returns (L_pos, L_neg); the pretraining loss sums them for both directions."""

    def __init__(self, n_data: int) -> None:
        super().__init__()
        self.n_data = int(n_data)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return nce_loss(x, self.n_data)


def cpd_loss(out_v: torch.Tensor, out_t: torch.Tensor, n_data: int) -> tuple[torch.Tensor, dict[str, float]]:
    """L = L_pos(P_v) + L_neg(P_v) + L_pos(P_t) + L_neg(P_t) (plain sum) and the four terms for logging."""
    l_vp, l_vn = nce_loss(out_v, n_data)
    l_tp, l_tn = nce_loss(out_t, n_data)
    loss = l_vp + l_vn + l_tp + l_tn
    terms = {"l_vp": l_vp.item(), "l_vn": l_vn.item(), "l_tp": l_tp.item(), "l_tn": l_tn.item()}
    return loss.squeeze(0), terms


@torch.no_grad()
def nce_accuracy(out_v: torch.Tensor) -> float:
    """Percentage of the batch whose positive (column 0) has the largest video-anchor score."""
    pred = out_v.squeeze(-1).argmax(dim=1)
    return (pred == 0).float().mean().item() * 100.0
