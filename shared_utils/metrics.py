"""Top-k accuracy, clip -> video score aggregation, mean-class accuracy."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Sequence

import torch


@torch.no_grad()
def accuracy(output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)) -> list[float]:
    """Top-k accuracy in percent of logits/scores [N, C] against integer targets [N]."""
    maxk = min(max(topk), output.shape[1])
    _, pred = output.topk(maxk, dim=1, largest=True, sorted=True)
    correct = pred.eq(target.reshape(-1, 1))
    n = max(target.numel(), 1)
    return [correct[:, : min(k, maxk)].any(dim=1).float().sum().item() * 100.0 / n for k in topk]


def mean_class_accuracy(predictions: Iterable[int], labels: Iterable[int]) -> float:
    """Mean over classes of per-class top-1 accuracy, in percent (classes absent from labels are skipped)."""
    predictions, labels = list(predictions), list(labels)
    per_class: dict[int, list[int]] = {}
    for pred, label in zip(predictions, labels, strict=True):
        hits = per_class.setdefault(int(label), [0, 0])
        hits[0] += int(pred == label)
        hits[1] += 1
    if not per_class:
        return 0.0
    return 100.0 * sum(h / t for h, t in per_class.values()) / len(per_class)


class VideoScoreAggregator:
    """Averages per-clip (per-view) scores into one score vector per video."""

    def __init__(self) -> None:
        self._sums: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self._counts: dict[Hashable, int] = {}
        self._labels: dict[Hashable, int] = {}

    def add(self, video_ids: Sequence[Hashable], scores: torch.Tensor, labels: Sequence[int] | None = None) -> None:
        scores = scores.detach().float().cpu()
        for i, vid in enumerate(video_ids):
            if vid in self._sums:
                self._sums[vid] += scores[i]
                self._counts[vid] += 1
            else:
                self._sums[vid] = scores[i].clone()
                self._counts[vid] = 1
            if labels is not None:
                self._labels[vid] = int(labels[i])

    def __len__(self) -> int:
        return len(self._sums)

    def video_scores(self) -> OrderedDict[Hashable, torch.Tensor]:
        return OrderedDict((vid, total / self._counts[vid]) for vid, total in self._sums.items())

    def counts(self) -> dict[Hashable, int]:
        return dict(self._counts)

    def compute(self, topk: Sequence[int] = (1, 5)) -> dict[str, float]:
        """Video-level top-k and mean-class accuracy (needs labels)."""
        scores = self.video_scores()
        if not scores:
            return {f"top{k}": 0.0 for k in topk} | {"mean_class": 0.0, "videos": 0}
        vids = list(scores)
        stacked = torch.stack([scores[v] for v in vids])
        target = torch.tensor([self._labels[v] for v in vids])
        accs = accuracy(stacked, target, topk)
        result = {f"top{k}": a for k, a in zip(topk, accs, strict=True)}
        result["mean_class"] = mean_class_accuracy(stacked.argmax(1).tolist(), target.tolist())
        result["videos"] = len(vids)
        return result
