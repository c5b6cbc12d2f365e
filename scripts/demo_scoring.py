"""Scoring for `make demo`: the unified protocol's features, per-video predictions, paired SSL - random margins with
their standard errors, a feature-health check of every baseline, and a supervised upper bound.

Everything here runs in-process on the functions of evaluation.evaluate, so the demo scores exactly what
`python -m evaluation` scores (same clips, same kNN and linear probe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.evaluate import (
    EvalClipTransform,
    FeatureSet,
    extract_features,
    knn_predict,
    linear_probe_predict,
    retrieval_recall,
)
from evaluation.registry import build_clip_encoder
from shared_utils.data import DataWarnings, EpochSampler, build_loader, collate_skip_none
from shared_utils.frames import FrameClipDataset, VideoEntry


@dataclass
class Scores:
    """Per-test-video correctness (0/1) for the two headline probes, plus summary numbers."""

    linear: np.ndarray
    knn1: np.ndarray
    knn200: float
    recall1: float
    health: dict

    def summary(self) -> dict:
        return {
            "linear_top1": 100 * float(self.linear.mean()),
            "knn1_top1": 100 * float(self.knn1.mean()),
            "knn200_top1": self.knn200,
            "R@1": self.recall1,
            **self.health,
        }


def feature_health(features: torch.Tensor) -> dict:
    """Is a feature set informative at all? Mean per-dimension std (after L2 normalisation, the scale the probes
    see) and the effective rank exp(H(singular values)) of the centred features: a near-constant random-init
    baseline would show up here and flatter any gap."""
    unit = F.normalize(features.double(), dim=1)
    centred = unit - unit.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return {"feature_std": float(unit.std(dim=0).mean()), "effective_rank": float(entropy.exp())}


def score(train: FeatureSet, test: FeatureSet) -> Scores:
    knn1 = knn_predict(train, test, k=1).argmax(dim=1) == test.labels
    knn200 = knn_predict(train, test, k=200).argmax(dim=1) == test.labels
    linear = linear_probe_predict(train, test) == test.labels.numpy()
    return Scores(
        linear=linear.astype(np.float64),
        knn1=knn1.numpy().astype(np.float64),
        knn200=100 * float(knn200.float().mean()),
        recall1=retrieval_recall(train, test, ks=(1,))["R@1"],
        health=feature_health(test.features),
    )


def paired_margin(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Margin mean(a) - mean(b) in points and its standard error, paired over the same test videos:
    SE = std(a_i - b_i) / sqrt(n) (the two encoders are scored on the same videos, so their errors correlate)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return 100 * float(diff.mean()), 100 * se


def encode_split(encoder, entries: list[VideoEntry], num_clips: int, desc: str) -> FeatureSet:
    """Per-clip features [N, K, D] of the protocol's K uniform clips (K >= 2 for the instance metric)."""
    return extract_features(
        encoder, entries, num_clips, batch_size=8, warnings=DataWarnings(), desc=desc, per_clip=True
    )


def video_level(clips: FeatureSet) -> FeatureSet:
    """The protocol's video feature: the mean of its clip features."""
    return FeatureSet(clips.features.mean(dim=1), clips.labels, clips.video_ids)


def instance_discrimination(test_clips: FeatureSet) -> dict:
    """Held-out instance discrimination: each test video's FIRST clip must find the same video's LAST clip first
    among the last clips of all test videos (cosine; non-overlapping clips when the video is long enough). This is
    what VTDL's and VideoMoCo's pretext asks of the encoder, on videos it never trained on. Chance = 1 / N."""
    first = F.normalize(test_clips.features[:, 0], dim=1)
    last = F.normalize(test_clips.features[:, -1], dim=1)
    hits = (first @ last.T).argmax(dim=1) == torch.arange(len(first))
    return {"name": "instance top-1, held-out", "value": 100 * float(hits.float().mean()), "chance": 100 / len(first)}


def build_encoder(method: str, ckpt: str, random_init: bool, seed: int = 0):
    return build_clip_encoder(method, ckpt, load_weights=not random_init, seed=seed)


def evaluate_encoder(encoder, train_entries, test_entries, num_clips: int, desc: str) -> tuple[Scores, dict]:
    """(downstream scores, held-out instance discrimination) of one encoder under the unified protocol."""
    train = encode_split(encoder, train_entries, num_clips, f"{desc} train")
    test = encode_split(encoder, test_entries, num_clips, f"{desc} test")
    return score(video_level(train), video_level(test)), instance_discrimination(test)


# ------------------------------------------------------------------------------------------ supervised bound


class _TrainClipTransform(EvalClipTransform):
    """The evaluation view plus a random horizontal flip (the synthetic classes are flip-invariant)."""

    def __call__(self, clip: torch.Tensor, rng=None) -> torch.Tensor:
        clip = super().__call__(clip, rng)
        flip = (rng.random() if rng is not None else np.random.random()) < 0.5
        return clip.flip(2) if flip else clip


def _trainable_forward(encoder, clips: torch.Tensor) -> torch.Tensor:
    # Most feature hooks' forward runs under torch.no_grad (evaluation); the undecorated function trains.
    forward = type(encoder).forward
    return getattr(forward, "__wrapped__", forward)(encoder, clips)


def train_supervised(
    encoder, entries: list[VideoEntry], num_classes: int, iters: int, batch_size: int = 16, lr: float = 1e-3
) -> torch.nn.Module:
    """The same architecture trained with labels (cross-entropy through a linear head on the clip feature) on the
    train split: the upper bound of what the demo's protocol can read out of that encoder. Shuffled, with fresh
    clip/flip draws every epoch (the split lists are sorted by class: an unshuffled loop chases the class of the
    last batch and ends below chance). Sets `encoder.supervised_train_acc` (last epoch's running top-1, %)."""
    torch.manual_seed(0)
    dataset = FrameClipDataset(
        entries,
        encoder.num_frames,
        encoder.frame_stride,
        mode="train",
        transform=_TrainClipTransform(encoder.crop_size),
        warnings=DataWarnings(),
    )
    sampler = EpochSampler(len(dataset), shuffle=True, seed=0, rank=0, world_size=1, drop_last=True)
    loader = build_loader(dataset, batch_size, sampler=sampler, collate_fn=collate_skip_none, drop_last=True)
    with torch.no_grad():
        dim = encoder(next(iter(loader))[0][:1]).shape[1]  # train mode: one clip per video, B, T, H, W, 3
    head = torch.nn.Linear(dim, num_classes)
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    encoder.train()
    step, epoch = 0, 0
    while step < iters:
        sampler.set_epoch(epoch)
        hits = seen = 0
        for batch in loader:
            if batch is None:
                continue
            clips, target = batch[0], batch[1].long()
            logits = head(_trainable_forward(encoder, clips).float())
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            hits, seen = hits + int((logits.argmax(1) == target).sum()), seen + len(target)
            step += 1
            if step >= iters:
                break
        epoch += 1
    encoder.supervised_train_acc = 100 * hits / max(seen, 1)
    return encoder.eval()


# ------------------------------------------------------------------------------------------ CPD pretext


class _CPDVideoEmbedding(torch.nn.Module):
    """The CPD pretraining model's video side as a clip encoder: f_v = normalize(vis_emb(backbone(clip)))."""

    def __init__(self, clip_encoder, vis_emb: torch.nn.Module) -> None:
        super().__init__()
        self.clip_encoder, self.vis_emb = clip_encoder, vis_emb
        self.num_frames, self.frame_stride = clip_encoder.num_frames, clip_encoder.frame_stride
        self.crop_size = clip_encoder.crop_size

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.vis_emb(self.clip_encoder(clips)).float(), dim=1)


def cpd_video_text_retrieval(ckpt: str, entries: list[VideoEntry], captions: dict[str, str], num_clips: int) -> dict:
    """CPD's pretext on held-out pairs: each test video's embedding (mean over the protocol's clips) ranks the
    captions of all test videos by cosine to their text embeddings. `value`: its own caption first (chance 1/N);
    `same_motion`: the first caption is one of a video of its class (chance: the share of such captions)."""
    import argparse

    from cpd.features import build_clip_encoder as build_cpd_clip_encoder
    from cpd.model import build_model
    from cpd.text import encode_caption, load_text_encoder, load_tokenizer
    from shared_utils.checkpoint import extract_state_dict, load_checkpoint, strip_prefix

    blob = load_checkpoint(ckpt)
    saved = argparse.Namespace(**blob["args"])
    state = strip_prefix(extract_state_dict(blob, ("state_dict", "model")), ("module.",))
    model = build_model(saved, int(state["vis_memory"].shape[0]), load_text_encoder(saved.text_model, verbose=False))
    model.load_state_dict(state, strict=True)
    model.eval()
    video = _CPDVideoEmbedding(build_cpd_clip_encoder(ckpt), model.vis_emb)
    clips = encode_split(video, entries, num_clips, "cpd video->text")
    if len(clips.video_ids) != len(entries):
        raise RuntimeError(f"cpd retrieval: {len(entries) - len(clips.video_ids)} test videos could not be read")
    f_v = F.normalize(clips.features.mean(dim=1), dim=1)
    tokenizer = load_tokenizer(getattr(saved, "tokenizer", None) or saved.text_model)
    stems = [e.path.rstrip("/").rsplit("/", 1)[-1] for e in entries]
    tokens = torch.stack([encode_caption(tokenizer, captions[s], saved.max_text_len) for s in stems])
    with torch.no_grad():
        f_t = model.encode_text(tokens)
    return video_text_ranking(f_v, f_t, torch.tensor([e.label for e in entries]))


def video_text_ranking(f_v: torch.Tensor, f_t: torch.Tensor, labels: torch.Tensor) -> dict:
    """Row i of f_v ranks the rows of f_t (unit vectors, row i = video i's caption): own caption first (R@1,
    chance 1/N) and first caption of the same class (chance: the share of same-class pairs)."""
    first = (f_v @ f_t.T).argmax(dim=1)
    same_class_share = float((labels[:, None] == labels[None, :]).float().mean())
    return {
        "name": "video->text R@1, held-out captions",
        "value": 100 * float((first == torch.arange(len(labels))).float().mean()),
        "chance": 100 / len(labels),
        "same_motion": 100 * float((labels[first] == labels).float().mean()),
        "same_motion_chance": 100 * same_class_share,
    }
