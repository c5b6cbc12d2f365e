"""The unified evaluation protocol: kNN voting, retrieval recall, linear probe, feature extraction."""

from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from shared_utils.data import DataWarnings
from shared_utils.evaluate import (
    FeatureSet,
    extract_features,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    retrieval_recall,
)
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


SMALL = {
    "memdpc": {"img_dim": 32, "num_seq": 3, "seq_len": 5, "ds": 1},
    "vtdl": {"arch": "r3d", "data_length": 8, "spatial_size": 32},
    "videomoco": {"arch": "mc3_18", "frame_per_clip": 4, "crop_size": 32},
    "cpd": {"model_depth": 10, "num_frames": 4, "crop_size": 32},
}


@pytest.mark.parametrize("method", list(SMALL))
def test_random_init_baseline_is_reproducible_and_leaves_the_global_rng_alone(method):
    """The demo's random-init row must be the same encoder on every run (seed 0), another with seed=1."""
    build = importlib.import_module(f"{method}.features").build_clip_encoder
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = build(None, **SMALL[method]), build(None, **SMALL[method])
    other = build(None, seed=1, **SMALL[method])
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert not torch.equal(next(a.parameters()), next(other.parameters()))
    if method != "videomoco":  # VideoMoCo's builder seeds the global RNG, like its train.py --seed
        assert torch.equal(torch.get_rng_state(), before)
