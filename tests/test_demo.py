"""The demo's scoring (margins and their standard errors, feature health, held-out instance discrimination) and its
recipes (every command parses with its method's own parser, so a renamed flag fails here, not after minutes)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from evaluation.evaluate import FeatureSet  # noqa: E402
from scripts import demo  # noqa: E402
from scripts.demo_scoring import (  # noqa: E402
    feature_health,
    instance_discrimination,
    paired_margin,
    video_text_ranking,
)


def test_paired_margin_is_the_mean_difference_with_its_paired_standard_error():
    ssl = np.array([1, 1, 0, 1, 0, 1, 1, 0], float)
    rnd = np.array([0, 1, 0, 0, 0, 1, 0, 1], float)
    margin, se = paired_margin(ssl, rnd)
    diff = ssl - rnd  # 1, 0, 0, 1, 0, 0, 1, -1
    assert margin == pytest.approx(100 * diff.mean()) == pytest.approx(25.0)
    assert se == pytest.approx(100 * np.sqrt(((diff - diff.mean()) ** 2).sum() / 7 / 8))
    same = paired_margin(ssl, ssl)
    assert same == (0.0, 0.0)  # identical predictions: no margin, no uncertainty


def test_feature_health_flags_a_degenerate_baseline():
    torch.manual_seed(0)
    healthy = feature_health(torch.randn(200, 64))
    constant = feature_health(torch.ones(200, 64) + 1e-6 * torch.randn(200, 64))
    one_direction = feature_health(torch.randn(200, 1) * torch.randn(1, 64))
    assert healthy["effective_rank"] > 40 and healthy["feature_std"] > 0.05
    assert constant["feature_std"] < 1e-5
    assert one_direction["effective_rank"] < 1.5


def test_instance_discrimination_on_held_out_clips():
    torch.manual_seed(0)
    videos = torch.randn(50, 1, 16)
    same = FeatureSet(videos.expand(50, 2, 16).clone(), torch.zeros(50), [str(i) for i in range(50)])
    assert instance_discrimination(same)["value"] == pytest.approx(100.0)
    assert instance_discrimination(same)["chance"] == pytest.approx(2.0)
    unrelated = FeatureSet(torch.randn(50, 2, 16), torch.zeros(50), [str(i) for i in range(50)])
    assert instance_discrimination(unrelated)["value"] < 20.0  # chance level, not a perfect score
    # first vs LAST clip: a third, middle clip that matches would not count
    mixed = torch.cat([videos, torch.randn(50, 1, 16), torch.randn(50, 1, 16)], dim=1)
    assert instance_discrimination(FeatureSet(mixed, torch.zeros(50), []))["value"] < 20.0


def test_video_text_ranking_scores_own_caption_and_same_motion_against_their_chance():
    labels = torch.tensor([0, 0, 1, 1])
    f_t = torch.eye(4)
    # video 0 finds its caption, video 1 the other class-0 caption, videos 2 and 3 a caption of the wrong class
    f_v = torch.eye(4)[[0, 0, 1, 0]]
    out = video_text_ranking(f_v, f_t, labels)
    assert out["value"] == pytest.approx(25.0) and out["chance"] == pytest.approx(25.0)
    assert out["same_motion"] == pytest.approx(50.0) and out["same_motion_chance"] == pytest.approx(50.0)


@pytest.mark.parametrize("method", sorted(demo.RECIPES))
def test_every_demo_recipe_parses_with_its_entry_points_parser(method):
    from cpd.opts import get_args_parser as cpd_parser
    from memdpc.opts import get_args_parser as memdpc_parser
    from videomoco.opts import get_args_parser as videomoco_parser
    from vtdl.opts import get_pretrain_args_parser as vtdl_parser

    parsers = {"memdpc": memdpc_parser, "vtdl": vtdl_parser, "videomoco": videomoco_parser, "cpd": cpd_parser}
    fill = {"py": "python", "data": "/d", "run": "/r", "seed": 3, "epochs": 7}
    argv = demo.RECIPES[method].argv.format(**fill).split()[2:]  # drop the interpreter and the script
    args = parsers[method]().parse_args(argv)
    assert args.width_mult == 0.25  # the demo-sized model, never the default
    seed = getattr(args, "seed", None) if method != "cpd" else args.manual_seed
    assert seed == 3
    assert set(demo.RECIPES[method].epochs) == set(demo.PRESETS)


def test_snapshotter_copies_each_rewrite_of_the_checkpoint(tmp_path):
    latest = tmp_path / "latest.pth"
    watcher = demo.Snapshotter(str(latest), str(tmp_path / "snaps"))
    last = watcher.poll(0.0)
    assert watcher.copies == []  # nothing written yet
    for step in range(3):
        latest.write_bytes(f"state {step}".encode())
        os.utime(latest, ns=(time.time_ns(), time.time_ns() + step))
        last = watcher.poll(last)
        last = watcher.poll(last)  # an unchanged file is not copied twice
    assert [open(p, "rb").read() for p in watcher.copies] == [b"state 0", b"state 1", b"state 2"]


class _ColourEncoder(torch.nn.Module):
    """A trainable stand-in clip encoder with the hook interface (num_frames, frame_stride, crop_size)."""

    num_frames, frame_stride, crop_size = 4, 1, 16

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4, 8)

    def forward(self, clips):  # uint8 B, T, H, W, 3
        return self.proj(clips.float().mean(dim=(2, 3)).flatten(1) / 255)


def test_demo_scoring_runs_on_the_split_lists_and_the_supervised_loop_shuffles(synth_dataset, monkeypatch):
    """The demo's own split reader and scoring path on a real process_data output; the supervised bound draws
    a new class-mixed order every epoch (the lists are sorted by class, an unshuffled loop learns nothing)."""
    from scripts import demo_scoring

    train, test, classes = demo.load_entries(str(synth_dataset.list_dir.parent))
    assert len(classes) == 4 and len(train) == 12 and len(test) == 8
    assert [e.label for e in train] == sorted(e.label for e in train)  # why the loop must shuffle
    scores, instance = demo_scoring.evaluate_encoder(_ColourEncoder().eval(), train, test, 2, "stub")
    assert len(scores.linear) == len(scores.knn1) == len(test) and instance["chance"] == pytest.approx(100 / 8)

    orders, real_build = [], demo_scoring.build_loader

    def recording_loader(*args, **kwargs):
        loader = real_build(*args, **kwargs)

        class Recording:
            def __iter__(self):
                orders.append([])
                for batch in loader:
                    orders[-1] += batch[1].tolist()
                    yield batch

        return Recording()

    monkeypatch.setattr(demo_scoring, "build_loader", recording_loader)
    encoder = demo_scoring.train_supervised(_ColourEncoder(), train, len(classes), iters=9, batch_size=4)
    epochs = [o for o in orders if len(o) == 12]  # (the first, 1-sample peek measures the feature size)
    assert len(epochs) == 3 and 0 <= encoder.supervised_train_acc <= 100
    sorted_labels = [e.label for e in train]
    assert all(sorted(o) == sorted_labels for o in epochs)  # every video once per epoch
    assert all(o != sorted_labels for o in epochs) and epochs[0] != epochs[1] != epochs[2]


def test_learning_curve_spaces_its_snapshots_and_ends_on_the_already_scored_final_checkpoint(monkeypatch):
    """Evenly spaced snapshots over the run; the last one is the final checkpoint, scored once by the caller."""
    from scripts import demo_scoring

    encoded = []

    class _Scores:
        def summary(self):
            return {"linear_top1": 1.0, "knn1_top1": 2.0}

    def fake_evaluate(encoder, train, test, num_clips, desc):
        encoded.append(encoder)
        return _Scores(), {"value": 3.0}

    monkeypatch.setattr(demo_scoring, "build_encoder", lambda method, path, random_init: path)
    monkeypatch.setattr(demo_scoring, "evaluate_encoder", fake_evaluate)
    monkeypatch.setattr(demo, "checkpoint_epoch", lambda path: float(path.split("_")[1]))
    snapshots = [f"snap_{i}" for i in range(1, 13)]
    final = {"epoch": 12.0, "linear_top1": 9.0, "knn1_top1": 9.0, "instance": 9.0}
    args = type("Args", (), {"curve_points": 4, "num_clips": 2})()
    points = demo.learning_curve("vtdl", snapshots, [], [], args, final)
    assert encoded == ["snap_1", "snap_5", "snap_8"]  # snapshot 12 (= the final checkpoint) is not re-encoded
    assert [p["epoch"] for p in points] == [1.0, 5.0, 8.0, 12.0] and points[-1] is final
    assert demo.learning_curve("vtdl", snapshots[:1], [], [], args, final) == [final]
