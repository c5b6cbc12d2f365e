"""Seconds per training iteration of CPD on synthetic tensors (no data loading).

    python -m cpd.benchmark [--model_depth 50 --sample_duration 16 --stride_size 1 --sample_size 112
                             --batch_size 2 --iters 5 --text_model DIR|distilbert-base]

Times (1) a fine-tuning step (ResNet + fc, cross-entropy, SGD) and (2) a full pretraining step (ResNet + text
encoder + heads + NCE against memory banks of --n_data rows with --nce_k noise samples), text encoder frozen
(stage I) and trained (stage II). `--text_model distilbert-base` builds the distilbert-base-uncased architecture
offline with random weights (speed does not depend on the weights).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from cpd.loss import cpd_loss
from cpd.model import CPD, pretraining_param_groups
from cpd.resnet import resnet3d
from cpd.text import load_text_encoder
from shared_utils.cli import ArgumentParser, run_cli


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
