"""Samplers, loaders and shared warning counters.

Determinism contract: `EpochSampler` yields `(index, sample_seed)` pairs, where sample_seed is a pure function of
(seed, epoch, position in the epoch's global order). Datasets draw all clip-sampling and augmentation randomness
from `unpack_index(item)`'s generator, so a sample's content does not depend on the number of workers, and a run
resumed mid-epoch (`set_start_iteration`) sees exactly the samples the uninterrupted run would have seen.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from shared_utils import dist
from shared_utils.rng import derive_seed, sample_rng

# --------------------------------------------------------------------------------------------------- warnings


class DataWarnings:
    """Named counters shared by the main process and its DataLoader workers.

    Each kind's first few occurrences per process are printed with the path; every occurrence is counted, and
    `summary()` reports the totals. Create it in the process that builds the dataset (before workers start).
    """

    KINDS = {
        "missing_frame": "missing frames (replaced by the nearest readable frame)",
        "corrupt_frame": "corrupt frames (replaced by the nearest readable frame)",
        "unreadable_video": "unreadable or empty videos (skipped)",
        "short_video": "videos shorter than one clip (padded)",
        "short_video_left_out": "videos shorter than one clip (left out, as the original's clip index)",
        "decode_error": "clips that failed to decode (another video was used or the clip was skipped)",
    }
    PRINT_LIMIT = 5

    def __init__(self, kinds: dict[str, str] | None = None) -> None:
        self.kinds = dict(self.KINDS if kinds is None else kinds)
        self._names = list(self.kinds)
        self._counts = multiprocessing.Array("q", len(self._names))
        self._printed: dict[str, int] = {}

    def warn(self, kind: str, message: str = "") -> None:
        index = self._names.index(kind)
        with self._counts.get_lock():
            self._counts[index] += 1
        printed = self._printed.get(kind, 0)
        if printed < self.PRINT_LIMIT and message:
            suffix = " (further ones are only counted)" if printed == self.PRINT_LIMIT - 1 else ""
            sys.stderr.write(f"warning: {message}{suffix}\n")
            self._printed[kind] = printed + 1

    def counts(self) -> dict[str, int]:
        with self._counts.get_lock():
            return {name: int(self._counts[i]) for i, name in enumerate(self._names)}

    def reset(self) -> None:
        with self._counts.get_lock():
            for i in range(len(self._names)):
                self._counts[i] = 0

    def total(self) -> int:
        return sum(self.counts().values())

    def summary(self) -> str:
        """'data warnings: 2 missing frames (...), 1 unreadable ...' or '' when nothing happened."""
        parts = [f"{n} {self.kinds[k]}" for k, n in self.counts().items() if n]
        return ("data warnings: " + "; ".join(parts)) if parts else ""

    def __getstate__(self) -> dict:
        return {"kinds": self.kinds, "_names": self._names, "_counts": self._counts, "_printed": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


# --------------------------------------------------------------------------------------------------- sampling


class EpochSampler(Sampler):
    """Shuffling, distributed, resumable sampler yielding `(index, sample_seed)`.

    Like DistributedSampler: the epoch's global order is padded (by wrap-around) or truncated (drop_last) to a
    multiple of world_size and rank r takes positions r, r+W, ... . `set_start_iteration(i)` skips the first
    i*batch_size samples of this rank for the current epoch only (mid-epoch resume).
    """

    def __init__(
        self,
        num_samples: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        batch_size: int = 1,
    ) -> None:
        self.num_samples = int(num_samples)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = dist.get_rank() if rank is None else rank
        self.world_size = dist.get_world_size() if world_size is None else world_size
        self.drop_last = drop_last
        self.batch_size = batch_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.start = 0

    def set_start_iteration(self, iteration: int) -> None:
        self.start = int(iteration) * self.batch_size

    def epoch_length(self) -> int:
        """Items this rank draws in a whole epoch; len() counts only what is left after set_start_iteration."""
        return self._per_rank()

    def _per_rank(self) -> int:
        if self.drop_last:
            return self.num_samples // self.world_size
        return -(-self.num_samples // self.world_size)

    def global_order(self) -> torch.Tensor:
        if self.shuffle:
            gen = torch.Generator().manual_seed(derive_seed("order", self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=gen)
        else:
            order = torch.arange(self.num_samples)
        total = self._per_rank() * self.world_size
        if total > len(order) and len(order) > 0:
            order = torch.cat([order, order.repeat(total // len(order) + 1)])[:total]
        return order[:total]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.global_order()
        positions = range(self.rank, len(order), self.world_size)
        for local_pos, global_pos in enumerate(positions):
            if local_pos < self.start:
                continue
            yield int(order[global_pos]), derive_seed("sample", self.seed, self.epoch, global_pos)

    def __len__(self) -> int:
        return max(self._per_rank() - self.start, 0)


def unpack_index(item: int | tuple[int, int] | Sequence[int]) -> tuple[int, np.random.Generator]:
    """(index, generator) from an EpochSampler item; a bare index gets a fixed generator (deterministic eval)."""
    if isinstance(item, (tuple, list)):
        index, seed = int(item[0]), int(item[1])
    else:
        index = int(item)
        seed = derive_seed("index", index)
    return index, sample_rng(seed)


def collate_skip_none(batch: list) -> object | None:
    """default_collate over the samples that are not None; None when nothing is left."""
    batch = [sample for sample in batch if sample is not None]
    return default_collate(batch) if batch else None


def _seed_worker(worker_id: int) -> None:
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler | None = None,
    workers: int = 0,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader that never draws from the global torch RNG (a private generator), so creating an iterator
    mid-run does not perturb the training RNG stream that exact resume restores."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    kwargs = {}
    if workers > 0:
        kwargs["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        pin_memory=pin_memory,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    )
