"""Checkpoint I/O: atomic writes, weights_only loading, prefix handling, a printed key report, and the run state
(`RunState`) through which every method saves and resumes.

Every write goes to a temporary file in the target directory, is fsynced and then renamed over the target, so an
interrupted write never replaces the previous good file.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from shared_utils import dist
from shared_utils.cli import fail, require_file
from shared_utils.rng import capture_rng_state, restore_rng_state

# --------------------------------------------------------------------------------------------------- writing


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: str, write_fn) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def save_checkpoint(obj: object, path: str | os.PathLike) -> str:
    """torch.save `obj` to `path` atomically (temp file + fsync + rename). Returns the path."""
    path = os.fspath(path)
    _atomic_write(path, lambda handle: torch.save(obj, handle))
    return path


def atomic_copy(src: str, dst: str) -> str:
    """Copy a finished checkpoint file to `dst` atomically (no re-serialisation)."""
    with open(src, "rb") as source:
        _atomic_write(dst, lambda handle: shutil.copyfileobj(source, handle, length=16 << 20))
    return dst


# --------------------------------------------------------------------------------------------------- loading


def _safe_globals() -> list:
    """What released checkpoints legitimately pickle besides tensors: argparse args and numpy scalars."""
    allowed: list = [argparse.Namespace, np.dtype, np.ndarray]
    for mod_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            module = __import__(mod_name, fromlist=["scalar", "_reconstruct"])
            allowed += [module.scalar, module._reconstruct]
            break
        except (ImportError, AttributeError):
            continue
    for name in ("Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType", "Float16DType"):
        dtype_cls = getattr(np.dtypes, name, None)
        if dtype_cls is not None:
            allowed.append(dtype_cls)
    return allowed


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """torch.load(weights_only=True) with a small allowlist; unreadable files give one clear error line."""
    path = require_file(path, "checkpoint")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        match = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if match:
            fail(f"checkpoint '{path}' holds objects outside the weights_only allowlist: {match.group(1)}")
        fail(f"checkpoint '{path}' is not a readable PyTorch file (the unpickler rejected its contents)")
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        fail(f"checkpoint '{path}' is not a readable PyTorch file ({type(err).__name__}: {str(err)[:200]})")
    if not isinstance(obj, Mapping):
        fail(f"checkpoint '{path}' holds a {type(obj).__name__}, expected a dict")
    return dict(obj)


def require_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> str:
    """Fail with one line, before a run writes anything, when `path` is not a readable checkpoint. Memory-mapped,
    so checking a large file is cheap; files mmap cannot open are loaded in full (which reports what is wrong)."""
    path = require_file(path, what)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any failure: the full load below gives the one-line reason, or succeeds
        load_checkpoint(path)
    return path


def extract_state_dict(ckpt: Mapping, keys: Iterable[str] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: the first of `keys` present, else the checkpoint itself."""
    for key in keys:
        if key in ckpt and isinstance(ckpt[key], Mapping):
            return dict(ckpt[key])
    if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return dict(ckpt)
    fail(f"no state dict found in checkpoint (looked for {', '.join(keys)}; keys present: {', '.join(list(ckpt)[:8])})")


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefixes: Iterable[str] = ("module.",)) -> dict:
    """Remove any of `prefixes` (repeatedly, e.g. 'module.module.') from the start of every key."""
    prefixes = tuple(prefixes)
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in prefixes:
                if prefix and key.startswith(prefix):
                    key = key[len(prefix) :]
                    changed = True
        out[key] = value
    return out


def add_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict:
    return {prefix + key: value for key, value in state_dict.items()}


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module under DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


@dataclass
class KeyReport:
    """How a state dict matched a model."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, name: str = "checkpoint", limit: int = 10) -> str:
        lines = [
            f"[{name}] loaded {len(self.loaded)} keys; missing {len(self.missing)}; "
            f"unexpected {len(self.unexpected)}; shape mismatch {len(self.mismatched)}"
        ]
        for label, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                shown = ", ".join(keys[:limit]) + (f", ... (+{len(keys) - limit})" if len(keys) > limit else "")
                lines.append(f"  {label}: {shown}")
        for key, want, got in self.mismatched[:limit]:
            lines.append(f"  shape mismatch: {key}: model {list(want)} vs checkpoint {list(got)}")
        return "\n".join(lines)


def compare_keys(model_state: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor]) -> KeyReport:
    report = KeyReport()
    for key, target in model_state.items():
        if key not in state_dict:
            report.missing.append(key)
        elif tuple(state_dict[key].shape) != tuple(target.shape):
            report.mismatched.append((key, tuple(target.shape), tuple(state_dict[key].shape)))
        else:
            report.loaded.append(key)
    report.unexpected = [key for key in state_dict if key not in model_state]
    return report


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) or key.startswith(pattern) for pattern in patterns)


def load_state_dict_reported(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    strict: bool = True,
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
    name: str = "checkpoint",
    verbose: bool = True,
) -> KeyReport:
    """Load what matches, print a key report, and fail (one line) on any problem not explicitly allowed.

    allow_missing / allow_unexpected are fnmatch patterns or key prefixes. With strict=False nothing fails
    (the report is still printed). Shape mismatches always fail under strict=True.
    """
    model = unwrap_model(model)
    model_state = model.state_dict()
    report = compare_keys(model_state, state_dict)
    if verbose:
        print(report.summary(name))
    if strict:
        bad_missing = [k for k in report.missing if not _matches(k, allow_missing)]
        bad_unexpected = [k for k in report.unexpected if not _matches(k, allow_unexpected)]
        if bad_missing or bad_unexpected or report.mismatched:
            problems = []
            if bad_missing:
                problems.append(f"{len(bad_missing)} missing (e.g. {bad_missing[0]})")
            if bad_unexpected:
                problems.append(f"{len(bad_unexpected)} unexpected (e.g. {bad_unexpected[0]})")
            if report.mismatched:
                key, want, got = report.mismatched[0]
                problems.append(f"{len(report.mismatched)} shape mismatches (e.g. {key}: {list(want)} vs {list(got)})")
            fail(f"{name} does not fit the model: " + "; ".join(problems))
    loadable = {k: state_dict[k] for k in report.loaded}
    model.load_state_dict(loadable, strict=False)
    return report


def load_backbone(
    model: nn.Module,
    path: str,
    state_keys: Iterable[str] = ("state_dict", "model"),
    strip_prefixes: Iterable[str] = ("module.",),
    rename: dict[str, str] | None = None,
    required_prefixes: Iterable[str] = ("backbone.",),
    name: str = "pretrained weights",
) -> KeyReport:
    """Initialise `model` from a pretraining checkpoint: unwrap, strip prefixes, optionally rename prefixes
    (old -> new), load non-strictly, and fail unless EVERY model key under `required_prefixes` was loaded."""
    ckpt = load_checkpoint(path)
    state = strip_prefix(extract_state_dict(ckpt, state_keys), strip_prefixes)
    for old, new in (rename or {}).items():
        state = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state.items()}
    report = load_state_dict_reported(model, state, strict=False, name=name)
    required = tuple(required_prefixes)
    not_loaded = [k for k in report.missing + [m[0] for m in report.mismatched] if k.startswith(required)]
    if not_loaded:
        fail(f"{name} '{path}' did not provide {len(not_loaded)} required weights (e.g. {not_loaded[0]})")
    if not any(k.startswith(required) for k in report.loaded):
        fail(f"{name} '{path}' provided no weights under {', '.join(required)}")
    return report


# --------------------------------------------------------------------------------------------------- training state


def plain_args(args: argparse.Namespace | Mapping | None, run: object | None = None) -> dict:
    """vars(args) reduced to plain python types, so the checkpoint loads with weights_only=True. `run` (a
    `runtime.RunContext`) adds the process the run was: rank, world size, distributed, device."""
    if args is None:
        return {}
    items = vars(args).items() if isinstance(args, argparse.Namespace) else dict(args).items()
    if run is not None:
        items = {**dict(items), **run.as_dict()}.items()

    def plain(value):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        return str(value)

    return {str(k): plain(v) for k, v in items}


def _epoch_regex(pattern: str) -> re.Pattern:
    parts = re.split(r"\{epoch[^}]*\}", pattern)
    if len(parts) != 2:
        raise ValueError(f"epoch_pattern must contain exactly one {{epoch...}} field: {pattern!r}")
    return re.compile("^" + re.escape(parts[0]) + r"(\d+)" + re.escape(parts[1]) + "$")


class CheckpointWriter:
    """Writes `latest`, per-epoch and `best` files into one directory, atomically, keeping the last N epochs.

    Names are the original repos' (e.g. MemDPC: epoch_pattern='epoch{epoch}.pth.tar', best_name=
    'model_best.pth.tar'; VideoMoCo: 'checkpoint_{epoch:04d}.pth.tar'). Only rank 0 should write.
    """

    def __init__(
        self,
        directory: str,
        latest_name: str | None = "checkpoint.pth",
        epoch_pattern: str | None = "checkpoint_{epoch:04d}.pth",
        best_name: str | None = "model_best.pth",
        keep_last: int | None = None,
    ) -> None:
        self.directory = directory
        self.latest_name = latest_name
        self.epoch_pattern = epoch_pattern
        self.best_name = best_name
        self.keep_last = keep_last
        os.makedirs(directory, exist_ok=True)
        self.remove_stale_temp_files()

    def remove_stale_temp_files(self) -> list[str]:
        """Delete temp files left by a writer killed mid-write (the targets they were meant for are intact)."""
        removed = []
        for name in os.listdir(self.directory):
            if name.startswith(".") and name.endswith(".tmp"):
                os.remove(self.path(name))
                removed.append(name)
        return removed

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def epoch_path(self, epoch: int) -> str:
        assert self.epoch_pattern is not None
        return self.path(self.epoch_pattern.format(epoch=epoch))

    def save(self, state: Mapping, epoch: int | None = None, is_best: bool = False, latest: bool = True) -> list[str]:
        """Serialise once, then copy atomically to the other names. Returns the files written."""
        written: list[str] = []
        if latest and self.latest_name:
            first = save_checkpoint(dict(state), self.path(self.latest_name))
        elif epoch is not None and self.epoch_pattern:
            first = save_checkpoint(dict(state), self.epoch_path(epoch))
        else:
            first = save_checkpoint(dict(state), self.path(self.best_name or "checkpoint.pth"))
        written.append(first)
        if epoch is not None and self.epoch_pattern and self.epoch_path(epoch) != first:
            written.append(atomic_copy(first, self.epoch_path(epoch)))
        if is_best and self.best_name and self.path(self.best_name) != first:
            written.append(atomic_copy(first, self.path(self.best_name)))
        self._prune()
        return written

    def epoch_files(self) -> list[tuple[int, str]]:
        if not self.epoch_pattern or not os.path.isdir(self.directory):
            return []
        regex = _epoch_regex(self.epoch_pattern)
        found = []
        for name in os.listdir(self.directory):
            match = regex.match(name)
            if match:
                found.append((int(match.group(1)), self.path(name)))
        return sorted(found)

    def _prune(self) -> None:
        if self.keep_last is None:
            return
        files = self.epoch_files()
        for _, path in files[: max(0, len(files) - self.keep_last)]:
            os.remove(path)

    def latest(self) -> str | None:
        """The file to auto-resume from: `latest` if present, else the newest epoch file."""
        if self.latest_name and os.path.isfile(self.path(self.latest_name)):
            return self.path(self.latest_name)
        files = self.epoch_files()
        return files[-1][1] if files else None


# --------------------------------------------------------------------------------------------------- run state


def _components(prefix: str) -> tuple[str, ...]:
    """'module.base_model.' -> ('module.', 'base_model.'): on load each is stripped wherever it leads, so files
    written with or without the DDP / model wrappers load alike."""
    return tuple(part + "." for part in prefix.split(".") if part)


class StatePart:
    """A stateful part given by two functions, for state that is not an object with state_dict() (a queue pointer,
    a module's buffers stored under an original key): `get()` returns what the checkpoint holds, `put(value)`
    restores it."""

    def __init__(self, get: Callable[[], object], put: Callable[[object], None]) -> None:
        self.get, self.put = get, put

    def state_dict(self) -> object:
        return self.get()

    def load_state_dict(self, state: object) -> None:
        self.put(state)


class RunState:
    """Everything exact resume needs, saved and restored the same way by every method.

    parts: {name: object with state_dict() / load_state_dict()} (models, optimizers, schedulers, queues,
    `StatePart`s); modules are unwrapped from DDP. keys: part name -> the checkpoint key of the method's original
    files (default: the name); prefixes: part name -> a prefix added to its state-dict keys on save and stripped
    on load, each dotted component wherever it leads ('module.' where the original files were written from a
    DDP model); optional: parts a file may lack
    (the original's files, older runs) - they keep their current state. counters (epoch, iteration, global_step,
    ...): plain numbers under their own names, read with run['epoch']; their defaults stay where a file has none. A checkpoint also holds 'rng' (every rank's
    RNG state, entry r for rank r) and the plain run arguments under each of `arg_keys`.
    """

    def __init__(
        self,
        parts: Mapping[str, object],
        keys: Mapping[str, str] | None = None,
        prefixes: Mapping[str, str] | None = None,
        optional: Iterable[str] = (),
        **counters: int | float,
    ) -> None:
        self.parts = dict(parts)
        self.keys = {name: dict(keys or {}).get(name, name) for name in self.parts}
        self.prefixes = dict(prefixes or {})
        self.optional = set(optional)
        self.counters = dict(counters)

    def __getitem__(self, name: str) -> int | float:
        return self.counters[name]

    def __setitem__(self, name: str, value: int | float) -> None:
        self.counters[name] = value

    def state_dict(
        self, args=None, ctx=None, arg_keys: Iterable[str] = ("args",), order: Iterable[str] = (), **extra: object
    ) -> dict:
        """The checkpoint dict: parts under their keys, counters, 'rng', args, then `extra` entries; keys listed in
        `order` come first, in that order (the original files' layout). A collective: call it on every rank."""
        entries: dict = {}
        for name, part in self.parts.items():
            state = (unwrap_model(part) if isinstance(part, nn.Module) else part).state_dict()
            prefix = self.prefixes.get(name)
            entries[self.keys[name]] = add_prefix(state, prefix) if prefix else state
        entries.update(self.counters)
        entries["rng"] = dist.all_gather_object(capture_rng_state())
        entries.update({key: plain_args(args, ctx) for key in arg_keys})
        entries.update(extra)
        ordered = {key: entries[key] for key in order if key in entries}
        return ordered | {key: value for key, value in entries.items() if key not in ordered}

    def save(
        self,
        target: CheckpointWriter | str,
        args=None,
        ctx=None,
        epoch: int | None = None,
        is_best: bool = False,
        **kwargs: object,
    ) -> None:
        """state_dict(args, ctx, **kwargs) written atomically by rank 0: through a CheckpointWriter (latest, the
        epoch file when `epoch` is given, best) or to one path. Call on every rank (the RNG gather)."""
        state = self.state_dict(args, ctx, **kwargs)
        if not dist.is_main_process():
            return
        if isinstance(target, CheckpointWriter):
            target.save(state, epoch=epoch, is_best=is_best)
        else:
            save_checkpoint(state, target)

    def load(self, source: Mapping | str | os.PathLike, restore_rng: bool = True, rng_fallback: str = "none") -> dict:
        """Restore every part (one missing from the file fails unless optional), the counters the file holds and
        this rank's RNG (see restore_rng). Returns the checkpoint dict."""
        ckpt = load_checkpoint(source) if isinstance(source, (str, os.PathLike)) else dict(source)
        for name, part in self.parts.items():
            key = self.keys[name]
            if ckpt.get(key) is None:
                if name in self.optional:
                    continue
                fail(f"checkpoint has no '{key}' entry (keys: {', '.join(list(ckpt)[:12])})")
            state = ckpt[key]
            prefix = self.prefixes.get(name)
            state = strip_prefix(state, _components(prefix)) if prefix else state
            (unwrap_model(part) if isinstance(part, nn.Module) else part).load_state_dict(state)
        for name, value in self.counters.items():
            if ckpt.get(name) is not None:  # absent or None (some original files): the default stays
                self.counters[name] = type(value)(ckpt[name])
        if restore_rng:
            self.restore_rng(ckpt.get("rng"), rng_fallback)
        return ckpt

    @staticmethod
    def restore_rng(rng: list | dict | None, fallback: str = "none") -> bool:
        """This rank's entry of a per-rank list (a dict: a single-process file); False when there is none. A file
        of another number of processes: fallback 'none' restores nothing (with a note), 'first' the first entry."""
        rng = [rng] if isinstance(rng, dict) else rng
        if rng and (len(rng) == dist.get_world_size() or fallback == "first"):
            restore_rng_state(rng[dist.get_rank()] if len(rng) == dist.get_world_size() else rng[0])
            return True
        if rng:
            print(f"note: the checkpoint holds RNG states for {len(rng)} processes; RNG not restored")
        return False
