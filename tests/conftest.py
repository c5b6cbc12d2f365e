"""Shared fixtures: a tiny synthetic UCF101-format dataset built through the real process_data pipeline
(synth -> extract_frames with flow -> write_splits), once per test session."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# Tiny models on a few cores: a large intra-op thread pool only adds overhead (and oversubscribes a shared CI
# box). Set before torch is first imported by a test module; an explicit user setting wins.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(max(1, min(4, os.cpu_count() or 1))))


@dataclass(frozen=True)
class SynthDataset:
    """Paths and facts of a dataset made by `make_synth_dataset`.

    raw_root/      UCF-101/<Class>/v_<Class>_gXX_cYY.avi, ucfTrainTestlist/, captions.tsv
    frame_root/    <Class>/<stem>/image_%05d.jpg (num_frames files of width x height)
    flow_root/     <Class>/<stem>/flow_%05d.jpg (num_frames - 1 files)
    list_dir/      ucf101/{ClassInd.txt, train_split0N.csv, test_split0N.csv, ucf101_rgb_{train,val}_split_N.txt,
                   ucf101_0N.json}; hmdb51/ the same videos through the HMDB51 split format (hmdb51_N.json)
    """

    raw_root: Path
    video_root: Path
    split_dir: Path
    captions_file: Path
    frame_root: Path
    flow_root: Path
    list_dir: Path
    classes: list[str]  # ClassInd order (label = index)
    num_frames: int
    width: int  # of the extracted frames
    height: int
    train_per_class: int = 3
    test_per_class: int = 2
    splits: list[int] = field(default_factory=list)  # official-style splits written (1, 2, ...)

    def list_file(self, name: str) -> Path:
        """A file of the write_splits output, e.g. list_file('train_split01.csv')."""
        return self.list_dir / "ucf101" / name


def make_synth_dataset(
    root: str | os.PathLike,
    classes: int = 4,
    train_per_class: int = 3,
    test_per_class: int = 2,
    frames: int = 40,
    width: int = 64,
    height: int = 48,
    short_side: int = 0,
    flow: bool = True,
    seed: int = 0,
    workers: int = 1,
) -> SynthDataset:
    """Build a synthetic dataset under `root` with the real pipeline and describe it.

    Groups hold `test_per_class` clips and split k tests on group k, so 3 train + 2 test per class gives
    splits 1 and 2 (group 3 holds one clip). short_side=0 keeps the video size for the frames."""
    from process_data.extract_frames import extract
    from process_data.synth import generate
    from process_data.write_splits import write_splits

    root = Path(root)
    raw = root / "raw"
    made = generate(
        str(raw), classes, train_per_class, test_per_class, frames, width, height, seed=seed, workers=workers,
        verbose=False,
    )  # fmt: skip
    extract(
        str(raw / "UCF-101"), str(root / "frames"), short_side=short_side, quality=95, flow=flow,
        flow_root=str(root / "flow"), workers=workers, verbose=False,
    )  # fmt: skip
    write_splits("ucf101", str(raw / "ucfTrainTestlist"), str(root / "frames"), str(root / "lists"), verbose=False)
    # The same videos in HMDB51's split format (synth writes both), so HMDB51 code paths are testable too.
    write_splits(
        "hmdb51", str(raw / "testTrainMulti_7030_splits"), str(root / "frames"), str(root / "lists"), verbose=False
    )
    if short_side:
        scale = short_side / min(width, height)
        width, height = (round(width * scale), short_side) if height <= width else (short_side, round(height * scale))
    return SynthDataset(
        raw_root=raw,
        video_root=raw / "UCF-101",
        split_dir=raw / "ucfTrainTestlist",
        captions_file=raw / "captions.tsv",
        frame_root=root / "frames",
        flow_root=root / "flow",
        list_dir=root / "lists",
        classes=list(made["classes"]),
        num_frames=frames,
        width=width,
        height=height,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        splits=list(made["splits"]),
    )


@pytest.fixture(scope="session")
def synth_dataset(tmp_path_factory) -> SynthDataset:
    """4 motion classes x (3 train + 2 test) videos of 40 frames, 64x48 px, frames at native size + flow,
    lists for splits 1 and 2. SHARED by the whole session: read it, never modify it — a test that needs to
    corrupt or delete files must copy what it needs into its own tmp_path first."""
    return make_synth_dataset(tmp_path_factory.mktemp("synth_dataset"))


@pytest.fixture(scope="session")
def make_synth(tmp_path_factory):
    """Factory for tests that need another size: `make_synth(classes=2, frames=24, ...)` builds a fresh
    dataset (same keyword arguments as make_synth_dataset) in a new temporary folder and returns it."""

    def build(**kwargs) -> SynthDataset:
        return make_synth_dataset(tmp_path_factory.mktemp("synth_custom"), **kwargs)

    return build


def corrupt_file(path: str | os.PathLike, mode: str = "truncate", keep: float = 0.4) -> Path:
    """Damage a COPY you own (never a file of `synth_dataset`): 'truncate' keeps the first `keep` fraction of
    the bytes (container header intact, most frames gone), 'garbage' replaces the content by random bytes."""
    path = Path(path)
    data = path.read_bytes()
    if mode == "truncate":
        path.write_bytes(data[: int(len(data) * keep)])
    elif mode == "garbage":
        path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(max(len(data), 4096))))
    else:
        raise ValueError(f"unknown corruption mode {mode!r}")
    return path


@pytest.fixture
def corrupt():
    """The corrupt_file helper as a fixture: `corrupt(copied_video, 'truncate')`."""
    return corrupt_file


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is as fast and does not oversubscribe a shared 2-core CPU; the previous
    thread count is restored afterwards (test modules opt in with `pytestmark = usefixtures("one_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
