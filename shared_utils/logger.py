"""Logging: smoothed meters, a MetricLogger with a tqdm bar, TensorBoard, JSON lines, the run header."""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator

import torch

from shared_utils import dist
from shared_utils.checkpoint import plain_args


def progress_enabled() -> bool:
    """tqdm bars on rank 0 unless TQDM_DISABLE=1 is set."""
    return dist.is_main_process() and os.environ.get("TQDM_DISABLE", "0") not in ("1", "true", "True")


def progress(iterable: Iterable, desc: str = "", total: int | None = None, leave: bool = False, **kwargs) -> Iterable:
    """A tqdm bar over `iterable` on rank 0 (plain iterable elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(
        iterable, desc=desc, total=total, leave=leave, disable=not progress_enabled(), dynamic_ncols=True, **kwargs
    )


def log_line(message: str) -> None:
    """Print without breaking an active tqdm bar."""
    from tqdm.auto import tqdm

    if dist.is_main_process():
        tqdm.write(message, file=sys.stdout)


class SmoothedValue:
    """Tracks a series of values: windowed median/avg and the global average."""

    def __init__(self, window_size: int = 20, fmt: str = "{median:.4f} ({global_avg:.4f})") -> None:
        self.deque: deque[float] = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0
        self.fmt = fmt

    def update(self, value: float, n: int = 1) -> None:
        self.deque.append(float(value))
        self.count += n
        self.total += float(value) * n

    def synchronize_between_processes(self) -> None:
        """Sum count/total over ranks (the window stays local)."""
        if dist.get_world_size() == 1:
            return
        packed = torch.tensor([self.count, self.total], dtype=torch.float64)
        packed = dist.all_reduce_sum(packed)
        self.count, self.total = int(packed[0].item()), float(packed[1].item())

    @property
    def median(self) -> float:
        return float(torch.tensor(list(self.deque)).median().item()) if self.deque else 0.0

    @property
    def avg(self) -> float:
        return sum(self.deque) / len(self.deque) if self.deque else 0.0

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def max(self) -> float:
        return max(self.deque) if self.deque else 0.0

    @property
    def value(self) -> float:
        return self.deque[-1] if self.deque else 0.0

    def __str__(self) -> str:
        return self.fmt.format(
            median=self.median, avg=self.avg, global_avg=self.global_avg, max=self.max, value=self.value
        )


class MetricLogger:
    """Named meters + `log_every`, which drives a tqdm bar and prints a line every `print_freq` iterations."""

    def __init__(self, delimiter: str = "  ") -> None:
        self.meters: defaultdict[str, SmoothedValue] = defaultdict(SmoothedValue)
        self.delimiter = delimiter

    def update(self, n: int = 1, **kwargs: float | torch.Tensor) -> None:
        for name, value in kwargs.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.meters[name].update(float(value), n=n)

    def add_meter(self, name: str, meter: SmoothedValue) -> None:
        self.meters[name] = meter

    def __getattr__(self, attr: str) -> SmoothedValue:
        meters = self.__dict__.get("meters", {})
        if attr in meters:
            return meters[attr]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{attr}'")

    def __str__(self) -> str:
        return self.delimiter.join(f"{name}: {meter}" for name, meter in self.meters.items())

    def synchronize_between_processes(self) -> None:
        for meter in self.meters.values():
            meter.synchronize_between_processes()

    def totals(self) -> dict[str, list[float]]:
        """{name: [total, count]}: what a mid-epoch checkpoint stores so the resumed epoch averages stay exact."""
        return {name: [meter.total, meter.count] for name, meter in self.meters.items()}

    def restore_totals(self, saved: dict[str, list[float]]) -> None:
        """Inverse of totals(): continue the running epoch averages of a mid-epoch checkpoint."""
        for name, (total, count) in saved.items():
            meter = self.meters[name]
            meter.total, meter.count = float(total), int(count)

    def averages(self) -> dict[str, float]:
        return {name: meter.global_avg for name, meter in self.meters.items()}

    def log_every(self, iterable: Iterable, print_freq: int, header: str = "", total: int | None = None) -> Iterator:
        """Yield from `iterable`; every `print_freq` iterations print meters, lr-free timing, ETA and memory."""
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        iter_time = SmoothedValue(fmt="{avg:.4f}")
        data_time = SmoothedValue(fmt="{avg:.4f}")
        start = end = time.time()
        bar = progress(iterable, desc=header, total=total)
        i = 0
        for obj in bar:
            data_time.update(time.time() - end)
            yield obj
            iter_time.update(time.time() - end)
            if print_freq > 0 and (i % print_freq == 0 or (total is not None and i == total - 1)):
                eta = ""
                if total is not None:
                    eta_s = iter_time.global_avg * (total - i - 1)
                    eta = f"eta: {datetime.timedelta(seconds=int(eta_s))}  "
                mem = ""
                if torch.cuda.is_available() and torch.cuda.is_initialized():
                    mem = f"  max mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}MB"
                count = f"[{i}/{total}]" if total is not None else f"[{i}]"
                log_line(f"{header} {count}  {eta}{self}  time: {iter_time}  data: {data_time}{mem}")
            i += 1
            end = time.time()
        elapsed = time.time() - start
        log_line(f"{header} Total time: {datetime.timedelta(seconds=int(elapsed))} ({elapsed / max(i, 1):.4f} s / it)")


class _NullWriter:
    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def add_text(self, *args, **kwargs) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def make_tb_writer(log_dir: str | None, enabled: bool = True):
    """A tensorboardX SummaryWriter on rank 0, a no-op writer elsewhere or when disabled."""
    if not enabled or not log_dir or not dist.is_main_process():
        return _NullWriter()
    from tensorboardX import SummaryWriter

    os.makedirs(log_dir, exist_ok=True)
    return SummaryWriter(logdir=log_dir)


def git_sha() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty else "")


def log_run_header(args, output_dir: str | None = None, filename: str = "args.json") -> None:
    """First log lines of every run: command line, git SHA, args (also written to output_dir/args.json)."""
    print("command: " + " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"git: {git_sha()}")
    print("args: " + json.dumps(plain_args(args), sort_keys=True))
    if output_dir:
        write_args_json(args, output_dir, filename)


def write_args_json(args, output_dir: str, filename: str = "args.json") -> None:
    """output_dir/args.json on rank 0 (runs that validate their data first call this once it passed)."""
    if dist.is_main_process():
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, filename), "w") as handle:
            json.dump(plain_args(args), handle, indent=2, sort_keys=True)


def append_json_line(path: str, record: dict) -> None:
    """Append one JSON record (rank 0 only)."""
    if not dist.is_main_process():
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def check_finite(loss: torch.Tensor | float, step: int) -> None:
    """Stop training on a non-finite loss, with the step in the message."""
    value = float(loss.detach().item() if isinstance(loss, torch.Tensor) else loss)
    if not math.isfinite(value):
        raise FloatingPointError(f"loss is {value} at step {step}; stopping")
