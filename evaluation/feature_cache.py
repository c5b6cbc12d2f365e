"""The unified evaluation's feature cache: one file per (encoder, list, protocol) under `<out>/features/`.

A cache file stores its key (every input the features depend on, see `feature_cache_key`) and is used only when
the stored key equals the key of the current run; anything else (other weights, overrides, lists, frame folders,
clip geometry, code, torch version or device type, a damaged file) is a miss and the features are recomputed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence

import torch

from shared_utils.frames import VideoEntry

CACHE_FORMAT = 2  # bump when the layout of a cache file or the meaning of a key field changes
# Source files whose code shapes the features besides the method's own package: the protocol (this package) and
# the shared sampling, decoding and transforms.
EVALUATION_CODE = ("evaluate.py", "feature_cache.py", "registry.py")
SHARED_FEATURE_CODE = (
    "frames.py",
    "frame_files.py",
    "transforms.py",
    "data.py",
    "checkpoint.py",
)


def _sha(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def feature_code_version(method: str) -> str:
    """Hash of the source of the method's package (its feature hook and the networks it builds) and of the shared
    sampling / decoding / transform code: editing any of them invalidates the feature caches."""
    package = os.path.dirname(importlib.util.find_spec(method).origin)
    evaluation = os.path.dirname(os.path.abspath(__file__))
    shared = os.path.dirname(importlib.util.find_spec("shared_utils").origin)
    files = [
        os.path.join(folder, name) for folder, _, names in os.walk(package) for name in names if name.endswith(".py")
    ]
    files += [os.path.join(evaluation, name) for name in EVALUATION_CODE]
    files += [os.path.join(shared, name) for name in SHARED_FEATURE_CODE]
    parts = []
    for path in sorted(files):
        with open(path, "rb") as handle:
            parts += [os.path.relpath(path, os.path.dirname(package)).encode(), handle.read()]
    return _sha(*parts)[:16]


def list_digest(list_files: Sequence[str], entries: Sequence[VideoEntry]) -> str:
    """Hash of the list files' bytes and of every listed frame folder's identity on disk (path, frame count,
    label, folder mtime): other lists, another frame root or re-extracted frames give another digest."""
    parts = []
    for path in list_files:
        with open(path, "rb") as handle:
            parts += [os.path.abspath(path).encode(), handle.read()]
    for e in entries:
        try:
            stamp = os.stat(e.path).st_mtime_ns
        except OSError:
            stamp = -1
        parts.append(f"{os.path.abspath(e.path)}|{e.n_frames}|{e.label}|{stamp}\n".encode())
    return _sha(*parts)[:16]


def feature_cache_key(args, encoder, weights_id: str, lists: str, subset: str, template: str) -> dict:
    """Everything the cached features depend on; a cache file is used only when its stored key equals this."""
    return {
        "format": CACHE_FORMAT,
        "method": args.method,
        "weights": weights_id,
        "ckpt": os.path.abspath(args.ckpt) if args.ckpt else None,
        "random_init": bool(args.random_init),
        "overrides": sorted(args.override),
        "dataset": args.dataset,
        "split": args.split,
        "subset": subset,
        "lists": lists,
        "num_clips": args.num_clips,
        "clip": [encoder.num_frames, encoder.frame_stride, encoder.crop_size],
        "template": template,
        "code": feature_code_version(args.method),
        "torch": torch.__version__,
        "device": torch.device(args.device).type,
    }


def cache_path(out: str, key: dict) -> str:
    name = f"{key['method']}-{key['dataset']}{key['split']}-{key['subset']}-{key['num_clips']}clips"
    return os.path.join(out, "features", f"{name}-{_sha(json.dumps(key, sort_keys=True).encode())[:16]}.pt")


def load_cached(path: str, key: dict) -> dict | None:
    """{'features', 'labels', 'video_ids'} of the cache file at `path` if its stored key equals `key`, else None."""
    if not os.path.isfile(path):
        return None
    try:
        blob = torch.load(path, weights_only=True)
    except Exception:  # a damaged or foreign file is a cache miss, never an error
        return None
    if not isinstance(blob, dict) or blob.get("key") != json.dumps(key, sort_keys=True):
        return None
    return blob


def store(path: str, key: dict, features: torch.Tensor, labels: torch.Tensor, video_ids: list[str]) -> None:
    """Write a cache file atomically (temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    blob = {"key": json.dumps(key, sort_keys=True), "features": features, "labels": labels, "video_ids": video_ids}
    torch.save(blob, path + ".tmp")
    os.replace(path + ".tmp", path)
