"""The unified evaluation protocol: kNN voting, retrieval recall, linear probe, feature extraction."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from evaluation.evaluate import (
    FeatureSet,
    extract_features,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    retrieval_recall,
)
from shared_utils.data import DataWarnings
from shared_utils.frames import VideoEntry


def fs(features, labels):
    return FeatureSet(
        torch.tensor(features, dtype=torch.float32), torch.tensor(labels), [str(i) for i in range(len(labels))]
    )


def test_knn_weighted_voting_matches_hand_computation():
    train = fs([[1, 0], [0.8, 0.6], [0, 1]], [0, 1, 1])
    test = fs([[0.96, 0.28]], [0])  # cos sims: 0.96, 0.936, 0.28
    scores = knn_predict(train, test, k=2, temperature=0.1, num_classes=2)
    assert torch.allclose(scores, torch.tensor([[np.exp(9.6), np.exp(9.36)]], dtype=torch.float32))
    assert knn_accuracy(train, test, k=1) == 100.0
    three = knn_predict(train, test, k=3, temperature=10.0, num_classes=2)  # flat weights: class 1 wins 2 votes
    assert three.argmax().item() == 1


def test_retrieval_recall_counts_any_same_class_hit():
    train = fs([[1, 0], [0, 1], [-1, 0], [0, -1]], [0, 1, 2, 3])
    test = fs([[0.9, 0.1], [0.1, -0.9]], [0, 1])
    recall = retrieval_recall(train, test, ks=(1, 2, 4))
    assert recall == {"R@1": 50.0, "R@2": 50.0, "R@4": 100.0}


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(3, 8))
    y = rng.integers(0, 3, size=120)
    x = centers[y] + rng.normal(size=(120, 8))
    train, test = fs(x[:80], y[:80]), fs(x[80:], y[80:])
    assert linear_probe_accuracy(train, test) >= 90.0
    shuffled = fs(x[:80], rng.permutation(y[:80]))
    assert linear_probe_accuracy(shuffled, test) < 70.0


class MeanColourEncoder(nn.Module):
    """Feature = per-channel mean of the clip (a fixed function, enough to check the plumbing)."""

    num_frames, frame_stride, crop_size, feature_dim = 4, 2, 16, 3

    def forward(self, clips):
        assert clips.dtype == torch.uint8 and clips.shape[1:] == (4, 16, 16, 3)
        return clips.float().mean(dim=(1, 2, 3))


def test_extract_features_averages_clips_and_skips_unreadable(tmp_path):
    entries = []
    for v, value in enumerate((40, 200)):
        folder = tmp_path / f"c{v}" / f"v{v}"
        folder.mkdir(parents=True)
        for i in range(12):
            cv2.imwrite(str(folder / f"image_{i + 1:05d}.jpg"), np.full((24, 32, 3), value, np.uint8))
        entries.append(VideoEntry(str(folder), 12, v, f"c{v}/v{v}"))
    entries.append(VideoEntry(str(tmp_path / "gone"), 12, 1, "c1/gone"))
    warnings = DataWarnings()
    feats = extract_features(MeanColourEncoder(), entries, num_clips=3, batch_size=2, warnings=warnings)
    assert feats.video_ids == ["c0/v0", "c1/v1"] and feats.labels.tolist() == [0, 1]
    assert feats.features.shape == (2, 3)
    assert feats.features[0].tolist() == pytest.approx([40] * 3, abs=2) and feats.features[1].tolist() == pytest.approx(
        [200] * 3, abs=2
    )
    assert warnings.counts()["unreadable_video"] == 1
    # a video that brightens over time: its clips differ, and the video feature is their mean (not one clip)
    ramp = tmp_path / "c0" / "ramp"
    ramp.mkdir()
    for i in range(12):
        cv2.imwrite(str(ramp / f"image_{i + 1:05d}.jpg"), np.full((24, 32, 3), 10 + 20 * i, np.uint8))
    entry = [VideoEntry(str(ramp), 12, 0, "c0/ramp")]
    clips = extract_features(MeanColourEncoder(), entry, num_clips=3, batch_size=1, per_clip=True).features[0]
    video = extract_features(MeanColourEncoder(), entry, num_clips=3, batch_size=1).features[0]
    assert clips[0, 0] + 20 < clips[-1, 0]  # the first and the last clip really differ
    assert video.tolist() == pytest.approx(clips.mean(dim=0).tolist(), abs=1e-4)


SMALL = {
    "memdpc": {"img_dim": 32, "num_seq": 3, "seq_len": 5, "ds": 1},
    "vtdl": {"arch": "r3d", "data_length": 8, "spatial_size": 32},
    "videomoco": {"arch": "mc3_18", "frame_per_clip": 4, "crop_size": 32},
    "cpd": {"model_depth": 10, "num_frames": 4, "crop_size": 32},
}


def test_registry_lists_every_method_hook():
    from evaluation.registry import METHODS

    assert set(METHODS) == set(SMALL)


@pytest.mark.parametrize("method", list(SMALL))
def test_random_init_baseline_is_reproducible_and_leaves_the_global_rng_alone(method):
    """The demo's random-init row must be the same encoder on every run (seed 0), another with seed=1."""
    from evaluation.registry import build_clip_encoder

    def build(ckpt, **kw):
        return build_clip_encoder(method, ckpt, **kw)

    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build(None, **SMALL[method]), build(None, **SMALL[method])
    other = build(None, seed=1, **SMALL[method])
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(next(a.parameters()), next(other.parameters()))
    if method != "videomoco":  # VideoMoCo's builder seeds the global RNG, like its train.py --seed
        assert torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------------------------- the feature cache


@pytest.fixture
def mean_colour_memdpc(monkeypatch):
    """evaluation.evaluate with --method memdpc builds MeanColourEncoder (fast; the cache logic is the same)."""
    import memdpc.features

    monkeypatch.setattr(
        memdpc.features, "build_clip_encoder", lambda ckpt, load_weights=True, **kw: MeanColourEncoder()
    )


def copy_lists(source, target, keep_test=None):
    """A copy of the ucf101 lists of `source` under target/ucf101/ (optionally only the first keep_test test rows)."""
    import shutil

    folder = target / "ucf101"
    folder.mkdir(parents=True)
    for name in ("ClassInd.txt", "train_split01.csv", "test_split01.csv"):
        shutil.copy(source / "ucf101" / name, folder / name)
    if keep_test is not None:
        rows = (folder / "test_split01.csv").read_text().splitlines()[:keep_test]
        (folder / "test_split01.csv").write_text("\n".join(rows) + "\n")
    return target


def run_evaluate(list_dir, out, *extra):
    from evaluation.evaluate import evaluate, get_args_parser

    flags = ["--method", "memdpc", "--list_dir", str(list_dir), "--num_clips", "1", "--out", str(out), "--device",
             "cpu", *extra]  # fmt: skip
    return evaluate(get_args_parser().parse_args(flags))


def test_feature_cache_never_serves_another_datasets_features(synth_dataset, tmp_path, mean_colour_memdpc):
    """Two datasets both called ucf101, one --out: the second evaluation must score its own videos (the cache used
    to be keyed by method, checkpoint, dataset name, split and clip count only, and served A's features for B)."""
    a = copy_lists(synth_dataset.list_dir, tmp_path / "A")
    b = copy_lists(synth_dataset.list_dir, tmp_path / "B", keep_test=3)
    first = run_evaluate(a, tmp_path / "out")
    assert first["videos"]["test"] == first["videos"]["listed_test"] == 8
    second = run_evaluate(b, tmp_path / "out")
    assert second["videos"]["listed_test"] == 3 and second["videos"]["test"] == 3
    again = run_evaluate(b, tmp_path / "out")  # an unchanged input is still served from the cache
    assert again["results"] == second["results"]
    assert len(list((tmp_path / "out" / "features").iterdir())) == 4  # train + test of A and of B


def test_feature_cache_key_changes_with_every_input(synth_dataset, tmp_path):
    """Each input the features depend on gives another key (a miss); the same inputs give the same key."""
    import argparse
    import os

    from evaluation import feature_cache
    from shared_utils.frames import read_frame_csv

    csv = synth_dataset.list_file("test_split01.csv")
    entries = read_frame_csv(str(csv))
    base = dict(method="memdpc", ckpt="", random_init=False, override=[], dataset="ucf101", split=1, num_clips=2,
                device="cpu")  # fmt: skip

    def key(encoder=MeanColourEncoder(), template="image_{:05d}.jpg", weights="w", lists=None, **changes):
        args = argparse.Namespace(**{**base, **changes})
        lists = lists or feature_cache.list_digest([str(csv)], entries)
        return json.dumps(feature_cache.feature_cache_key(args, encoder, weights, lists, "test", template))

    reference = key()
    assert key() == reference
    other_geometry = type("Enc", (MeanColourEncoder,), {"crop_size": 24})()
    variants = {
        "weights": key(weights="other"),
        "override": key(override=["img_dim=64"]),
        "random_init": key(random_init=True),
        "ckpt path": key(ckpt="x.pth"),
        "num_clips": key(num_clips=3),
        "split": key(split=2),
        "device": key(device="cuda"),
        "clip geometry": key(encoder=other_geometry),
        "template": key(template="img_{:05d}.jpg"),
        "list contents": key(lists=feature_cache.list_digest([str(csv)], entries[:-1])),
        "list file": key(lists=feature_cache.list_digest([str(synth_dataset.list_file("train_split01.csv"))], entries)),
    }
    for name, value in variants.items():
        assert value != reference, name
    # another frame root / re-extracted frames: the frame folders' identity on disk is part of the list digest
    moved = [VideoEntry(e.path.replace(str(synth_dataset.frame_root), "/elsewhere"), e.n_frames, e.label,
                        e.video_id) for e in entries]  # fmt: skip
    assert feature_cache.list_digest([str(csv)], moved) != feature_cache.list_digest([str(csv)], entries)
    folder = tmp_path / "video"
    folder.mkdir()
    one = [VideoEntry(str(folder), 1, 0, "c/video")]
    before = feature_cache.list_digest([str(csv)], one)
    os.utime(folder, ns=(1, 1))  # what re-extracting (a renamed-in folder) does to the folder's mtime
    assert feature_cache.list_digest([str(csv)], one) != before


def test_feature_cache_code_version_follows_the_method_source(tmp_path, monkeypatch):
    from evaluation import feature_cache

    assert feature_cache.feature_code_version("memdpc") == feature_cache.feature_code_version("memdpc")
    assert feature_cache.feature_code_version("memdpc") != feature_cache.feature_code_version("vtdl")
    package = tmp_path / "fakemethod"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "features.py").write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = feature_cache.feature_code_version("fakemethod")
    (package / "features.py").write_text("A = 2\n")
    assert feature_cache.feature_code_version("fakemethod") != before


def test_feature_cache_file_with_another_key_is_a_miss(tmp_path):
    from evaluation import feature_cache

    path = str(tmp_path / "features" / "f.pt")
    feature_cache.store(path, {"a": 1}, torch.zeros(2, 3), torch.tensor([0, 1]), ["x", "y"])
    assert feature_cache.load_cached(path, {"a": 1})["video_ids"] == ["x", "y"]
    assert feature_cache.load_cached(path, {"a": 2}) is None
    (tmp_path / "features" / "f.pt").write_bytes(b"garbage")
    assert feature_cache.load_cached(path, {"a": 1}) is None
