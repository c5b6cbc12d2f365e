"""Implementation-independent weights and inputs of the spec's Recipe B (cpd.md §13), used by the tests to check
this model and loss against values measured on the original code."""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch import nn


def hash_noise(n: int, phase: float) -> np.ndarray:
    """s_i = 2 frac(sin(12.9898 i + phase) * 43758.5453) - 1, i = 0..n-1, in float64 (torch's vectorised sin;
    it agrees with numpy's to 1 ulp, far below the float32 cast that follows)."""
    h = torch.sin(torch.arange(n, dtype=torch.float64) * 12.9898 + phase) * 43758.5453
    return (2.0 * (h - torch.floor(h)) - 1.0).numpy()


def name_phase(name: str) -> float:
    return (zlib.crc32(name.encode("utf-8")) % 10007) / 10007 * 2 * math.pi


@torch.no_grad()
def fill_recipe_b(module: nn.Module) -> None:
    """Overwrite every state-dict entry by the Recipe-B rule (by the entry's name in `module`)."""
    state = module.state_dict()
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            tensor.zero_()
            continue
        last = name.rsplit(".", 1)[-1]
        if last == "running_mean":
            tensor.zero_()
            continue
        if last == "running_var":
            tensor.fill_(1.0)
            continue
        s = hash_noise(tensor.numel(), name_phase(name))
        if last == "weight" and tensor.dim() == 1:
            value = 1.0 + 0.1 * s
        elif last == "bias":
            value = 0.01 * s
        else:
            fan_in = tensor.numel() / tensor.shape[0]
            value = s * math.sqrt(3.0 / fan_in)
        tensor.copy_(torch.from_numpy(value.astype(np.float32)).view_as(tensor))


@torch.no_grad()
def fill_recipe_b_memory(model: nn.Module) -> None:
    """Memory banks sigma * s with phases 1.0 (video) and 2.0 (text); Z_v = Z_t = -1."""
    sigma = 1.0 / math.sqrt(256 / 3)
    for name, phase in (("vis_memory", 1.0), ("text_memory", 2.0)):
        memory = getattr(model, name)
        value = (sigma * hash_noise(memory.numel(), phase)).astype(np.float32)
        memory.copy_(torch.from_numpy(value).view_as(memory))
    model.Z_v.fill_(-1.0)
    model.Z_t.fill_(-1.0)


def recipe_b_video(shape=(2, 3, 8, 112, 112), phase: float = 0.0) -> torch.Tensor:
    """x = (frac(sin(78.233 i + phase) * 43758.5453) - 0.45) / 0.225 in float64, cast to float32, row-major."""
    n = int(np.prod(shape))
    h = np.sin(78.233 * np.arange(n, dtype=np.float64) + phase) * 43758.5453
    u = h - np.floor(h)
    return torch.from_numpy(((u - 0.45) / 0.225).astype(np.float32)).view(*shape)


def recipe_b_noise(idx: torch.Tensor, n_data: int, k: int) -> torch.Tensor:
    """sel_j = (j * 2654435761) mod n_data for j = 0..B(K+1)-1, shape [B, K+1], column 0 = idx."""
    bs = idx.shape[0]
    j = torch.arange(bs * (k + 1), dtype=torch.int64)
    sel = ((j * 2654435761) % n_data).view(bs, k + 1)
    sel[:, 0] = idx
    return sel


RECIPE_B_CAPTION_IDS = [
    [101, 1037, 2158, 2003, 2652, 1037, 2858, 2006, 1996, 3509, 102],
    [101, 5613, 2012, 1996, 3509, 1001, 2621, 1001, 4569, 1001, 2189, 2007, 2026, 2814, 999, 102],
]


def recipe_b_text(max_len: int = 64) -> torch.Tensor:
    out = torch.zeros(len(RECIPE_B_CAPTION_IDS), max_len, dtype=torch.long)
    for i, ids in enumerate(RECIPE_B_CAPTION_IDS):
        out[i, : len(ids)] = torch.tensor(ids)
    return out
