"""Shuffle-BN on one process: BatchNorm statistics per sub-batch ("split BN"), as MoCo's single-GPU demo does.

MoCo-style methods (VideoMoCo, VTDL) rely on shuffle-BN: the key batch is permuted across GPUs, so a query and
its key are normalised with the statistics of different clips; otherwise the batch statistics leak which clips
belong together and the contrastive task is partly solved through them. With one process the cross-GPU shuffle is
a no-op. `split_batchnorm(module, n)` makes every BatchNorm layer of `module` normalise each of n contiguous
sub-batches with its own statistics (n simulated GPUs; state-dict keys and shapes unchanged, eval mode unchanged),
and `shuffled_forward` permutes the key batch across those sub-batches. n = 1 leaves everything as it was.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from shared_utils import dist
from shared_utils.cli import fail

BN_SPLITS_HELP = (
    "simulated shuffle-BN on one process: BatchNorm statistics per sub-batch of B/N clips and the keys shuffled "
    "across the sub-batches (MoCo's single-GPU demo); 1 = the original (statistics over the whole per-process "
    "batch; shuffle-BN is a no-op on one process)"
)


def add_bn_splits_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add `--bn_splits N` (int, default 1 = the original) to `parser` (or an argument group)."""
    parser.add_argument("--bn_splits", default=1, type=_positive_int, help=BN_SPLITS_HELP)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {text})")
    return value


def check_bn_splits(batch_per_process: int, splits: int) -> None:
    """One clear line (exit 2) before any work when the per-process batch does not split evenly."""
    if batch_per_process % splits:
        fail(f"--bn_splits {splits} must divide the batch of each process ({batch_per_process} clips)")


class _SplitBatchNormMixin:
    """Training-mode forward over `bn_splits` contiguous sub-batches; running statistics = their mean update."""

    bn_splits: int = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.bn_splits == 1 or not self.track_running_stats:
            return super().forward(x)
        if x.shape[0] % self.bn_splits:
            raise ValueError(f"split BatchNorm: batch {x.shape[0]} is not divisible by {self.bn_splits} splits")
        self._check_input_dim(x)
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        outputs, means, variances = [], [], []
        for chunk in x.chunk(self.bn_splits):
            mean, var = self.running_mean.clone(), self.running_var.clone()
            outputs.append(F.batch_norm(chunk, mean, var, self.weight, self.bias, True, momentum, self.eps))
            means.append(mean)
            variances.append(var)
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(variances).mean(0))
        return torch.cat(outputs)


_SPLIT_CLASSES: dict[type, type] = {}


def _split_class(cls: type) -> type:
    if cls not in _SPLIT_CLASSES:
        _SPLIT_CLASSES[cls] = type(f"Split{cls.__name__}", (_SplitBatchNormMixin, cls), {})
    return _SPLIT_CLASSES[cls]


def split_batchnorm(module: nn.Module, splits: int) -> nn.Module:
    """Every BatchNorm1d/2d/3d of `module` (in place) normalises `splits` sub-batches separately in training."""
    if splits < 1:
        raise ValueError(f"bn_splits must be >= 1, got {splits}")
    if splits == 1:
        return module
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and not isinstance(layer, nn.SyncBatchNorm):
            layer.__class__ = _split_class(type(layer))
            layer.bn_splits = splits
    return module


def shuffled_forward(encoder: nn.Module, x: torch.Tensor, splits: int = 1) -> torch.Tensor:
    """encoder(x) with shuffle-BN: permuted across ranks (dist.batch_shuffle) and, with split BN, across this
    process's sub-batches; the outputs come back in the order of x. Returns the encoder's first output when it
    returns a tuple. The caller decides about gradients (the key encoders run it under no_grad)."""
    shuffled, idx_unshuffle = dist.batch_shuffle(x)
    local = torch.randperm(x.shape[0], device=x.device) if splits > 1 else None
    if local is not None:
        shuffled = shuffled[local]
    out = encoder(shuffled)
    out = out[0] if isinstance(out, tuple | list) else out
    if local is not None:
        out = out[torch.argsort(local)]
    return dist.batch_unshuffle(out, idx_unshuffle)
