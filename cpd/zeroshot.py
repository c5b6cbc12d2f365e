"""Zero-shot classification with the learnt video-text embedding (--phase zeroshot; an extension: the paper reports
zero-shot UCF101 recognition, the released code has none). Each class name becomes a caption (CamelCase and
underscores split into lower-case words, inserted into --zs_template); every test view's video embedding is scored
against the class captions' text embeddings (cosine / T) and the scores are averaged per video, as the fine-tuning
test averages logits. Needs a pretraining checkpoint (--resume_path or --pretrain_path) with its text encoder."""

from __future__ import annotations

import re

import torch
from torch import nn

from cpd import utils
from cpd.dataset import split_json
from cpd.model import CPD, build_model
from cpd.test import run_test
from cpd.text import encode_caption, load_tokenizer
from shared_utils import dist
from shared_utils.checkpoint import extract_state_dict, load_checkpoint, strip_prefix
from shared_utils.cli import fail
from shared_utils.data import DataWarnings
from shared_utils.logger import log_run_header
from shared_utils.rng import seed_everything


def class_caption(name: str, template: str = "{}") -> str:
    """'ApplyEyeMakeup' -> 'apply eye makeup', 'brush_hair' -> 'brush hair', inserted into `template`."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name.replace("_", " "))
    return template.format(" ".join(words.lower().split()))


class ZeroShotClassifier(nn.Module):
    """forward(v [B, 3, T, S, S]) -> [B, C] = <f_v, f_t(class c)> / T."""

    def __init__(self, model: CPD, class_tokens: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("class_tokens", class_tokens)
        self.f_t: torch.Tensor | None = None

    @torch.no_grad()
    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.f_t is None:  # the class captions are encoded once (eval mode)
            self.f_t = self.model.encode_text(self.class_tokens)  # C, D
        return self.model.encode_video(v) @ self.f_t.T / self.model.T


def memory_rows(path: str) -> int:
    state = strip_prefix(extract_state_dict(load_checkpoint(path), ("state_dict", "model")), ("module.",))
    if "vis_memory" not in state or not any(k.startswith("textual_encoder.") for k in state):
        fail(f"'{path}' is not a CPD pretraining checkpoint (no memory bank / text encoder): zero-shot needs one")
    return int(state["vis_memory"].shape[0])


@torch.no_grad()
def main_zeroshot(args, plan):
    ctx = utils.init_process(args, plan)
    seed_everything(args.manual_seed, ctx.rank)
    log_run_header(args, args.result_path, "opts.json")
    path = args.resume_path or args.pretrain_path
    if not path:
        fail("--phase zeroshot needs a pretraining checkpoint (--resume_path or --pretrain_path)")
    model = build_model(args, memory_rows(path))
    utils.load_model_state(path, model, name=f"zero-shot '{path}'")
    tokenizer = load_tokenizer(args.tokenizer or args.text_model)
    classes, _ = split_json(args.dataset_file)
    captions = [class_caption(c, args.zs_template) for c in classes]
    tokens = [encode_caption(tokenizer, c, args.max_text_len) for c in captions]
    if any(t is None for t in tokens):
        fail("a class caption is longer than the text encoder's 512 positions")
    print("class captions: " + "; ".join(captions[:5]) + (" ..." if len(captions) > 5 else ""))
    classifier = ZeroShotClassifier(model, torch.stack(tokens)).to(ctx.device)
    stats = run_test(classifier, args, ctx, DataWarnings(), filename="zeroshot.json")
    if dist.is_main_process():
        print(f"zero-shot: video top1 {stats['video_top1']:.2f} top5 {stats['video_top5']:.2f}")
    dist.cleanup()
    return stats
