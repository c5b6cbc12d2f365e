"""Result gathering across processes and the accuracy numbers printed by main.py / test.py."""

from __future__ import annotations

import numpy as np
import torch

from shared_utils import dist
from shared_utils.metrics import accuracy, mean_class_accuracy


def gather_by_index(indices: list[int], scores: list[torch.Tensor], labels: list[int]):
    """Merge per-process (dataset index, score vector, label) triples; duplicates from the distributed sampler's
    padding are dropped. Returns (indices [N], scores [N, C] float, labels [N]) sorted by index."""
    local = (list(map(int, indices)), [s.detach().float().cpu() for s in scores], list(map(int, labels)))
    merged: dict[int, tuple[torch.Tensor, int]] = {}
    for idx, sc, lb in dist.all_gather_object(local):
        for i, s, y in zip(idx, sc, lb, strict=True):
            merged.setdefault(i, (s, y))
    order = sorted(merged)
    if not order:
        return np.zeros(0, np.int64), torch.zeros(0, 0), torch.zeros(0, dtype=torch.long)
    stacked = torch.stack([merged[i][0] for i in order])
    return np.array(order), stacked, torch.tensor([merged[i][1] for i in order])


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Top-1/3/5 (percent of videos), mean-class accuracy and the confusion matrix [true, predicted]."""
    if scores.numel() == 0:
        return {
            "top1": 0.0,
            "top3": 0.0,
            "top5": 0.0,
            "mean_class": 0.0,
            "videos": 0,
            "confusion": np.zeros((num_classes, num_classes), np.int64),
        }
    top1, top3, top5 = accuracy(scores, labels, (1, 3, 5))
    pred = scores.argmax(1)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels.numpy(), pred.numpy()), 1)
    return {
        "top1": top1,
        "top3": top3,
        "top5": top5,
        "videos": int(labels.numel()),
        "mean_class": mean_class_accuracy(pred.tolist(), labels.tolist()),
        "confusion": confusion,
    }
