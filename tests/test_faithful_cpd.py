"""CPD faithful defaults: the README commands run the released recipe (the 300-epoch learning rates of every
group, the curriculum, the fine-tuning plateau schedule, the linear probe), and every `--fix` changes exactly its
own behaviour (README fixes table)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn
from transformers import DistilBertConfig, DistilBertModel

from cpd import main as cpd_main
from cpd import utils
from cpd.model import CPD, build_model, build_visual_encoder, pretraining_param_groups
from cpd.opts import FIXES, fix_on, get_args_parser
from cpd.test import build_finetuning
from shared_utils import runtime
from shared_utils.logger import make_tb_writer

LAUNCH = "--dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0"
PRETRAIN = (
    "--video_path V --result OUT --dataset_file ins.json --dataset ins --phase pretraining --n_epochs 300 "
    f"--ft_bert_ep 150 --batch_size 256 --n_threads 16 --learning_rate 0.1 --weight_decay 1e-4 --stride_size 4 "
    f"--sample_duration 32 {LAUNCH}"
)
FINETUNE = (
    "--video_path V --result OUT --dataset_file ucf101_01.json --dataset ucf101 --phase finetuning "
    "--pretrain_path CKPT --n_finetune_classes 101 --n_epochs 100 --batch_size 128 --n_threads 16 --lr_patience 5 "
    f"--dp 0.8 --lr_factor 0.1 --learning_rate 0.02 --weight_decay 1e-4 --stride_size 4 --sample_duration 64 {LAUNCH}"
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def parse(command: str, *extra: str):
    return get_args_parser().parse_args([*command.split(), *extra])


def tiny_text() -> nn.Module:
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=16)
    return DistilBertModel(config)


def tiny_cpd(args) -> CPD:
    torch.manual_seed(0)
    return build_model(args, 8, textual_encoder=tiny_text())


# --------------------------------------------------------------------------------------------------- KEEP rows


def test_readme_pretraining_lr_of_every_group_over_the_300_epochs():
    """Video/head lr 0.1 (1-100), 0.01 (101-201), 1e-3 (202-250), 1e-4 (251-300); text lr 0 (1-149), then
    0.1 x lr_bert = 3e-5 (150-201), 3e-6 (202-250), 3e-7 (251-300): changed after each epoch, as released."""
    args = parse(PRETRAIN)
    assert args.fix == [] and not any(fix_on(args, name) for name in FIXES)
    assert (args.lr_steps, args.bert_lr_scale, args.bert_lr_lead, args.lr_bert) == ([100, 201, 250], 0.1, 1, 3e-4)
    assert (args.nce_k, args.nce_t, args.nce_m, args.clip_gradient, args.momentum) == (16392, 0.07, 0.5, 20, 0.9)
    assert (args.max_text_len, args.dp, args.resnet_shortcut, args.model_depth) == (64, 0.0, "A", 50)
    model = nn.Module()
    model.textual_encoder, model.video = nn.Linear(1, 1), nn.Linear(1, 1)
    optimizer = torch.optim.SGD(pretraining_param_groups(model, args.learning_rate), lr=args.learning_rate)
    text_ids = {id(p) for p in model.textual_encoder.parameters()}
    during = {}
    for epoch in range(1, 301):
        during[epoch] = sorted({(any(id(p) in text_ids for p in g["params"]), g["lr"]) for g in optimizer.param_groups})
        cpd_main.adjust_learning_rate(optimizer, model, epoch, args)

    def rates(epoch):
        return {text: lr for text, lr in during[epoch]}

    for epochs, video, text in [
        ((1, 100), 0.1, 0.0),
        ((101, 149), 0.01, 0.0),
        ((150, 201), 0.01, 3e-5),
        ((202, 250), 1e-3, 3e-6),
        ((251, 300), 1e-4, 3e-7),
    ]:
        for epoch in epochs:
            assert rates(epoch) == pytest.approx({False: video, True: text}), epoch
    assert [e > args.ft_bert_ep for e in (150, 151)] == [False, True]  # text gradients from epoch 151


def test_readme_fine_tuning_optimizer_plateau_schedule_and_linear_probe():
    args = parse(FINETUNE, "--model_depth", "10", "--pretrain_path", "")
    model, optimizer, scheduler = build_finetuning(args, runtime.local_context("cpu"))
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters()
    )  # everything is fine-tuned at one lr
    assert [(g["lr"], g["momentum"], g["weight_decay"]) for g in optimizer.param_groups] == [(0.02, 0.9, 1e-4)]
    assert (scheduler.mode, scheduler.patience, scheduler.factor, scheduler.min_lrs) == ("max", 5, 0.1, [1e-6])
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.8 and not fix_on(args, "center_val")
    probe = parse(FINETUNE, "--model_depth", "10", "--pretrain_path", "", "--ft_begin_index", "5")
    model, optimizer, _ = build_finetuning(probe, runtime.local_context("cpu"))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {"fc.weight", "fc.bias"}
    model.train()
    assert all(m.training for m in model.modules() if isinstance(m, nn.BatchNorm3d))  # BN statistics still move


# --------------------------------------------------------------------------------------------------- opt-in fixes


@pytest.mark.parametrize("name", sorted(FIXES))
def test_each_fix_switches_only_itself(name):
    args = parse(PRETRAIN, "--fix", name)
    assert [other for other in FIXES if fix_on(args, other)] == [name]


@pytest.mark.parametrize(
    "older, name",
    [
        (["--text_attention_mask"], "text_mask"),
        (["--text_eval_mode"], "text_eval"),
        (["--shortcut_grad"], "shortcut_grad"),
        (["--val_mode", "center"], "center_val"),
    ],
)
def test_older_spellings_switch_the_same_fix(older, name):
    args = parse(PRETRAIN, *older)
    assert [other for other in FIXES if fix_on(args, other)] == [name]


def test_shortcut_grad_fix_reaches_every_block():
    def flags(*extra):
        encoder = build_visual_encoder(parse(PRETRAIN, "--model_depth", "10", *extra))
        return {block.shortcut_grad for layer in (encoder.layer1, encoder.layer4) for block in layer}

    assert flags() == {False} and flags("--fix", "shortcut_grad") == {True}


def test_text_mask_fix_changes_the_caption_embedding_of_padded_captions_only():
    released, fixed = (tiny_cpd(parse(PRETRAIN, "--model_depth", "10", *x)) for x in ((), ("--fix", "text_mask")))
    assert released.text_attention_mask is False and fixed.text_attention_mask is True
    fixed.load_state_dict(released.state_dict())
    released.eval(), fixed.eval()
    full = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[5, 6, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(released.encode_text(full), fixed.encode_text(full))  # no padding: identical
        assert not torch.allclose(released.encode_text(padded), fixed.encode_text(padded), atol=1e-6)


def test_text_eval_fix_puts_the_frozen_text_encoder_in_eval_mode_during_stage_one(tmp_path):
    def text_mode_after_one_epoch(*extra) -> bool:
        args = parse(PRETRAIN, "--model_depth", "10", "--nce_k", "4", "--emb_dim", "8", "--print_frq", "1", *extra)
        model = tiny_cpd(args)
        torch.manual_seed(1)
        batch = (torch.randn(2, 3, 2, 16, 16), torch.randint(1, 64, (2, 5)), torch.tensor([0, 1]))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        state = {"start_iter": 0, "global_step": 0}
        log = utils.TSVLogger(str(tmp_path / "batch.log"), ["epoch", "batch", "iter", "loss", "acc", "lr"])
        writer = make_tb_writer(str(tmp_path), enabled=False)
        ctx = runtime.local_context("cpu")
        stats = cpd_main.train_one_epoch(model, [batch], optimizer, 1, args, ctx, state, writer, log)
        assert state["global_step"] == 1 and stats["loss"] > 0
        return model.textual_encoder.training

    assert text_mode_after_one_epoch() is True  # released: dropout active while the text encoder is frozen
    assert text_mode_after_one_epoch("--fix", "text_eval") is False


def test_reproduce_script_runs_the_readme_commands_without_fixes():
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "reproduce_cpd.sh")
    text = open(script).read()
    for switch in ("--fix", "--text_attention_mask", "--text_eval_mode", "--shortcut_grad", "--val_mode"):
        assert switch not in text  # neither the SMOKE nor the real-data run switches a fix on
    real = text.split("\nelse\n", 1)[1]
    assert 'PRE_FLAGS="--n_epochs 300 --ft_bert_ep 150 --batch_size 256 --n_threads 16 --stride_size 4' in real
    flat = " ".join(text.replace("\\\n", " ").split())  # continuation lines joined
    assert "--lr_patience 5 --dp 0.8 --lr_factor 0.1 --learning_rate 0.02 --weight_decay 1e-4" in flat
    assert "--sample_size 256" in real and "FT_CKPT=save_100.pth" in real  # 256-px test of the last checkpoint
