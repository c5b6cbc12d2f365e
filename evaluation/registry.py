"""The clip-encoder hook of each method, by name: `build_clip_encoder(method, ckpt, load_weights, **overrides)`.

Each hook takes uint8 clips [B, T, H, W, 3] and returns features [B, D] (see `<method>/features.py`). The imports
happen at call time, so evaluating one method never imports the others.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def _memdpc() -> Callable[..., nn.Module]:
    from memdpc.features import build_clip_encoder

    return build_clip_encoder


def _vtdl() -> Callable[..., nn.Module]:
    from vtdl.features import build_clip_encoder

    return build_clip_encoder


def _videomoco() -> Callable[..., nn.Module]:
    from videomoco.features import build_clip_encoder

    return build_clip_encoder


def _cpd() -> Callable[..., nn.Module]:
    from cpd.features import build_clip_encoder

    return build_clip_encoder


HOOKS: dict[str, Callable[[], Callable[..., nn.Module]]] = {
    "memdpc": _memdpc,
    "vtdl": _vtdl,
    "videomoco": _videomoco,
    "cpd": _cpd,
}
METHODS = tuple(HOOKS)


def build_clip_encoder(method: str, ckpt: str | None, load_weights: bool = True, **overrides) -> nn.Module:
    """The method's clip encoder in eval mode (ckpt None: its random initialisation)."""
    return HOOKS[method]()(ckpt, load_weights=load_weights, **overrides)
