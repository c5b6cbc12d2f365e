"""Split BatchNorm (simulated shuffle-BN on one process): per-sub-batch statistics, unchanged keys and eval mode,
and a key forward that returns its outputs in the input's order."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from shared_utils.split_bn import shuffled_forward, split_batchnorm
from videomoco.model import VideoMoCo


def _bn3d(seed: int = 0) -> nn.BatchNorm3d:
    torch.manual_seed(seed)
    bn = nn.BatchNorm3d(5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


def test_each_sub_batch_is_normalised_with_its_own_statistics():
    x = torch.randn(8, 5, 3, 4, 4) * 3 + 1
    plain = _bn3d()
    split = split_batchnorm(copy.deepcopy(plain), 4).train()
    out = split(x)
    expected, means, variances = [], [], []
    for chunk in x.chunk(4):
        bn = copy.deepcopy(plain).train()
        expected.append(bn(chunk))
        means.append(bn.running_mean)
        variances.append(bn.running_var)
    torch.testing.assert_close(out, torch.cat(expected))
    torch.testing.assert_close(split.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(split.running_var, torch.stack(variances).mean(0))
    assert int(split.num_batches_tracked) == 1
    # the whole-batch statistics would give another result: the split is real
    assert not torch.allclose(out, copy.deepcopy(plain).train()(x), atol=1e-3)


def test_split_keeps_keys_and_eval_mode_and_one_split_is_the_original():
    plain = _bn3d()
    split = split_batchnorm(copy.deepcopy(plain), 2)
    assert list(split.state_dict()) == list(plain.state_dict())
    x = torch.randn(4, 5, 2, 3, 3)
    torch.testing.assert_close(split.eval()(x), plain.eval()(x), rtol=0, atol=0)
    same = copy.deepcopy(plain)
    assert split_batchnorm(same, 1) is same and type(same) is nn.BatchNorm3d
    with pytest.raises(ValueError, match="not divisible"):
        split.train()(torch.randn(3, 5, 2, 3, 3))


class _PerSample(nn.Module):
    """A per-sample map (no batch coupling): any shuffle that is undone must give encoder(x) exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, x):
        return self.lin(x), None


def test_shuffled_forward_returns_outputs_in_input_order_and_draws_only_when_split():
    encoder, x = _PerSample(), torch.randn(8, 6)
    state = torch.get_rng_state()
    torch.testing.assert_close(shuffled_forward(encoder, x, 1), encoder(x)[0], rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), state)  # splits 1: the original path, no extra random draws
    torch.testing.assert_close(shuffled_forward(encoder, x, 4), encoder(x)[0], rtol=0, atol=0)
    assert not torch.equal(torch.get_rng_state(), state)


def test_videomoco_bn_splits_reach_both_encoders_and_change_the_key_statistics():
    torch.manual_seed(0)
    plain = VideoMoCo("r3d_18", dim=8, K=16, width_mult=0.125)
    torch.manual_seed(0)
    split = VideoMoCo("r3d_18", dim=8, K=16, width_mult=0.125, bn_splits=2)
    assert list(split.state_dict()) == list(plain.state_dict())
    for encoder in (split.encoder_q, split.encoder_k):
        norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert norms and all(m.bn_splits == 2 for m in norms)
    x = torch.randn(4, 3, 4, 16, 16)
    torch.manual_seed(1)
    k_plain = plain.key_features(x)
    torch.manual_seed(1)
    k_split = split.key_features(x)
    assert k_split.shape == k_plain.shape == (4, 8)
    assert not torch.allclose(k_split, k_plain, atol=1e-4)


def test_vtdl_bn_splits_reach_both_encoders_and_the_flag_defaults_to_the_original():
    from vtdl.model import VTDL, build_backbone
    from vtdl.opts import get_pretrain_args_parser

    assert get_pretrain_args_parser().parse_args([]).bn_splits == 1
    assert get_pretrain_args_parser().parse_args(["--bn_splits", "4"]).bn_splits == 4
    encoder = build_backbone("r3d", num_classes=101, with_classifier=False, width_mult=0.125)
    moco = VTDL(encoder, 8, K=8, T=0.07, use_softmax=True, bn_splits=2)
    for part in (moco.encoder_q, moco.encoder_k):
        norms = [m for m in part.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert norms and all(m.bn_splits == 2 for m in norms)
    plain = VTDL(build_backbone("r3d", num_classes=101, with_classifier=False, width_mult=0.125), 8, K=8)
    assert all(type(m) is nn.BatchNorm3d for m in plain.encoder_k.modules() if isinstance(m, nn.BatchNorm3d))
    x = torch.randn(4, 3, 4, 16, 16)
    assert moco.key_features(x).shape == (4, 128)


def test_keys_are_normalised_with_the_statistics_of_a_shuffled_sub_batch():
    """What shuffle-BN is for: key i is normalised together with a random group of clips, not with its own
    query's group (the contiguous chunk of the unshuffled batch)."""
    encoder = split_batchnorm(nn.Sequential(nn.BatchNorm1d(3)), 2).train()
    x = torch.randn(8, 3) * 2 + 1
    torch.manual_seed(0)
    out = shuffled_forward(encoder, x, 2)
    torch.manual_seed(0)
    perm = torch.randperm(8)
    reference = nn.BatchNorm1d(3).train()
    shuffled = x[perm]
    expected = torch.cat([reference(chunk) for chunk in shuffled.chunk(2)])[torch.argsort(perm)]
    torch.testing.assert_close(out, expected)
    unshuffled = torch.cat([reference(chunk) for chunk in x.chunk(2)])
    assert not torch.allclose(out, unshuffled, atol=1e-3)  # the groups did change


def test_bad_bn_splits_stop_with_one_line_before_training(capsys):
    from shared_utils import runtime
    from shared_utils.cli import UserError
    from videomoco.opts import get_args_parser
    from videomoco.train import per_process_batch

    with pytest.raises(SystemExit) as stop:
        get_args_parser().parse_args(["data", "--bn_splits", "0"])
    assert stop.value.code == 2 and "must be >= 1" in capsys.readouterr().err
    args = get_args_parser().parse_args(["data", "-b", "16", "--bn_splits", "3"])
    with pytest.raises(UserError, match=r"--bn_splits 3 must divide the batch of each process \(16 clips\)"):
        per_process_batch(args, runtime.local_context("cpu"))  # run_cli prints it as one line, exit code 2
    args = get_args_parser().parse_args(["data", "-b", "16", "--bn_splits", "4"])
    assert per_process_batch(args, runtime.local_context("cpu")) == 16
