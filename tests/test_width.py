"""--width_mult (shared_utils.width): 1.0 is the original architecture, smaller values divide every stage's channels,
and each method's feature hook rebuilds the saved width from a checkpoint (weights and random-init baseline)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from shared_utils.checkpoint import save_checkpoint
from shared_utils.cli import UserError
from shared_utils.width import check_saved_width, scaled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_keys(method: str) -> dict:
    with open(os.path.join(ROOT, method, "reference", f"{method}_keys.json")) as handle:
        return json.load(handle)


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, prefix: str) -> None:
    state_b = b.state_dict()
    checked = [k for k in a.state_dict() if k.startswith(prefix)]
    assert checked
    for key in checked:
        assert torch.equal(a.state_dict()[key], state_b[key]), key


def test_scaled_rounds_to_at_least_one_channel_and_keeps_the_original_at_one():
    assert [scaled(c) for c in (3, 64, 256)] == [3, 64, 256]
    assert [scaled(c, 0.25) for c in (64, 128, 256, 512)] == [16, 32, 64, 128]
    assert scaled(2, 0.1) == 1 and scaled(45, 0.5) == 22  # round half to even, then at least 1


def test_a_mismatching_saved_width_fails_with_the_value_to_pass():
    check_saved_width({"args": {"width_mult": 0.25}}, 0.25, "x")
    check_saved_width({"state_dict": {}}, 1.0, "released")  # no args: the original width
    with pytest.raises(UserError, match="trained with --width_mult 0.25, not 1: pass --width_mult 0.25"):
        check_saved_width({"args": {"width_mult": 0.25}}, 1.0, "--pretrain 'x'")


# --------------------------------------------------------------------------------------------------- MemDPC


def test_memdpc_flag_default_builds_the_original_keys_and_shapes():
    from memdpc import main as pretrain_main
    from memdpc.model import LC, MemDPC
    from memdpc.opts import get_args_parser, get_eval_args_parser

    args = get_args_parser().parse_args([])
    assert args.width_mult == 1.0 and get_eval_args_parser().parse_args([]).width_mult == 1.0
    assert get_eval_args_parser().parse_args(["--width_mult", "0.25"]).width_mult == 0.25
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--width_mult", "0"])
    with torch.device("meta"):
        model = pretrain_main.build_model(args)
        for net in ("resnet18", "resnet50"):
            assert shapes(MemDPC(128, network=net, width_mult=1.0)) == shapes(MemDPC(128, network=net))
            assert shapes(LC(128, network=net, width_mult=1.0)) == shapes(LC(128, network=net))
    expected = load_keys("memdpc")["memdpc/resnet18/128"]
    assert list(model.state_dict()) == list(expected) and shapes(model) == expected


def test_memdpc_quarter_width_divides_channels_and_trains():
    from memdpc.model import LC, MemDPC

    model = MemDPC(32, num_seq=4, seq_len=5, pred_step=1, mem_size=16, width_mult=0.25)
    assert model.backbone.conv1.out_channels == 16 and model.backbone.layer1[0].conv1.out_channels == 16
    assert model.backbone.layer3[0].conv1.out_channels == 64 and model.param["feature_size"] == 64
    assert model.mb.shape == (16, 64) and model.agg_f.cell_list[0].reset_gate.in_channels == 128
    loss, _, _, context = model(torch.randn(2, 4, 3, 5, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and context.shape == (2, 1, 64, 1, 1)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    with torch.device("meta"):
        lc50 = LC(64, network="resnet50", width_mult=0.25, num_class=5)
    assert lc50.param["feature_size"] == 256 and lc50.final_fc[1].in_features == 512


def test_memdpc_feature_hook_and_finetune_rebuild_the_saved_width(tmp_path, capsys):
    from memdpc.features import build_clip_encoder
    from memdpc.model import LC, MemDPC
    from memdpc.test import load_pretrained

    torch.manual_seed(7)  # not the hook's seed 0, so the random-init baseline differs from the trained weights
    model = MemDPC(32, num_seq=3, seq_len=5, pred_step=1, mem_size=8, width_mult=0.25)
    args = {"net": "resnet18", "img_dim": 32, "num_seq": 3, "seq_len": 5, "ds": 1, "width_mult": 0.25}
    path = str(tmp_path / "epoch0.pth.tar")
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 1, "args": args}, path)
    encoder = build_clip_encoder(path)
    assert "missing 7; unexpected 5; shape mismatch 0" in capsys.readouterr().out  # only LC's head / MemDPC's mb
    assert encoder.feature_dim == 128 and encoder.lc.backbone.conv1.out_channels == 16
    assert_same_weights(model, encoder.lc, "backbone.")
    assert_same_weights(model, encoder.lc, "agg_b.")
    assert encoder(torch.randint(0, 256, (2, 15, 32, 32, 3), dtype=torch.uint8)).shape == (2, 128)
    baseline = build_clip_encoder(path, load_weights=False)
    assert shapes(baseline.lc) == shapes(encoder.lc)
    assert not torch.equal(baseline.lc.backbone.conv1.weight, model.backbone.conv1.weight)
    lc = LC(32, num_seq=3, seq_len=5, num_class=4, width_mult=0.25)
    load_pretrained(lc, path)
    assert_same_weights(model, lc, "backbone.")
    with torch.device("meta"):
        full_width = LC(32, num_seq=3, seq_len=5, num_class=4)
    with pytest.raises(UserError, match="pass --width_mult 0.25"):
        load_pretrained(full_width, path)


# --------------------------------------------------------------------------------------------------- VideoMoCo


def test_videomoco_flag_default_builds_the_original_keys_and_shapes():
    import torchvision

    from videomoco.eval import build_eval_model
    from videomoco.model import ScaledVideoResNet, VideoMoCo, video_resnet
    from videomoco.opts import ARCHS, get_args_parser, get_eval_args_parser

    assert get_args_parser().parse_args(["D"]).width_mult == 1.0
    assert get_eval_args_parser().parse_args(["--width_mult", "0.5"]).width_mult == 0.5
    want = load_keys("videomoco")
    with torch.device("meta"):
        assert (
            shapes(VideoMoCo("r2plus1d_18", 128, 65536, width_mult=1.0)) == want["netD_MoCo_r2plus1d_18_dim128_K65536"]
        )
        assert shapes(build_eval_model("r2plus1d_18", 101, 1.0)) == want["eval_r2plus1d_18_num_class101"]
        for arch in ARCHS:  # the scaled builder at 1.0 is torchvision's network, key for key (and 1.0 IS torchvision)
            original = shapes(getattr(torchvision.models.video, arch)(num_classes=400))
            assert list(shapes(ScaledVideoResNet(arch, 400, 1.0))) == list(original)
            assert shapes(ScaledVideoResNet(arch, 400, 1.0)) == original == shapes(video_resnet(arch, 400, 1.0))
            assert type(video_resnet(arch, 400)) is type(video_resnet(arch, 400, 1.0)) is not ScaledVideoResNet


def test_videomoco_quarter_width_divides_channels_and_trains():
    from videomoco.model import VideoMoCo, video_resnet

    with torch.device("meta"):
        r2p1d = video_resnet("r2plus1d_18", 400, 0.25)
    assert (r2p1d.stem[0].out_channels, r2p1d.stem[3].out_channels, r2p1d.fc.in_features) == (11, 16, 128)
    assert r2p1d.layer2[0].conv1[0][0].in_channels == 16 and r2p1d.layer4[1].conv2[0][3].out_channels == 128
    torch.manual_seed(0)
    D = VideoMoCo("r3d_18", 8, 16, mlp=True, width_mult=0.25)
    assert D.encoder_q.stem[0].out_channels == 16 and D.encoder_q.layer3[0].conv1[0].out_channels == 64
    assert D.encoder_q.fc[0].in_features == 128 and D.encoder_k.fc[2].out_features == 8
    _, _, logits, labels = D(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 4, 32, 32))
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert logits.shape == (2, 17) and D.encoder_q.stem[0].weight.grad.abs().sum() > 0


def test_videomoco_feature_hook_and_finetune_rebuild_the_saved_width(tmp_path):
    from videomoco.eval import build_eval_model, load_pretrained
    from videomoco.features import build_clip_encoder
    from videomoco.model import VideoMoCo

    torch.manual_seed(7)
    D = VideoMoCo("r2plus1d_18", 8, 16, width_mult=0.25)
    args = {"arch": "r2plus1d_18", "frame_per_clip": 4, "crop_size": 32, "width_mult": 0.25}
    path = str(tmp_path / "checkpoint_0001.pth.tar")
    save_checkpoint({"epoch": 1, "arch": "r2plus1d_18", "state_dict": D.state_dict(), "args": args}, path)
    encoder = build_clip_encoder(path)  # strict: everything but the projection fc must load
    assert encoder.feature_dim == 128 and encoder.backbone.stem[0].out_channels == 11
    assert_same_weights(D.encoder_q, encoder.backbone, "layer4.")
    assert encoder(torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)).shape == (2, 128)
    baseline = build_clip_encoder(path, load_weights=False)
    assert shapes(baseline) == shapes(encoder)
    assert not torch.equal(baseline.backbone.stem[0].weight, D.encoder_q.stem[0].weight)
    model = build_eval_model("r2plus1d_18", 5, 0.25)
    load_pretrained(model, path, 0.25)
    assert_same_weights(D.encoder_q, model, "layer1.")
    with pytest.raises(UserError, match="pass --width_mult 0.25"):
        load_pretrained(model, path)


# --------------------------------------------------------------------------------------------------- VTDL

VTDL_LAYOUTS = {  # (pretraining kwargs, fine-tuning kwargs) of vtdl_keys.json's layouts
    "i3d": ({}, {}),
    "r3d": ({}, {}),
    "r2p1d": ({"r2p1d_layers": (1, 1, 1, 1)}, {"r2p1d_layers": (2, 2, 2, 2)}),
    "c3d": ({"c3d_pretrain_heads": False}, {}),
}


@pytest.mark.parametrize("arch", list(VTDL_LAYOUTS))
def test_vtdl_flag_default_builds_the_original_keys_and_shapes(arch):
    from vtdl.model import build_backbone
    from vtdl.opts import get_args_parser, get_pretrain_args_parser

    assert get_pretrain_args_parser().parse_args([]).width_mult == 1.0
    assert get_args_parser().parse_args(["--width_mult", "0.25"]).width_mult == 0.25
    want = load_keys("vtdl")
    pretrain_kw, finetune_kw = VTDL_LAYOUTS[arch]
    with torch.device("meta"):
        pretrain = build_backbone(arch, 101, False, width_mult=1.0, **pretrain_kw)
        finetune = build_backbone(arch, 101, True, width_mult=1.0, **finetune_kw)
        assert shapes(pretrain) == shapes(build_backbone(arch, 101, False, **pretrain_kw))
    assert list(shapes(pretrain).items()) == list(want[f"backbone_pretrain/{arch}"].items())
    assert list(shapes(finetune).items()) == list(want[f"backbone_finetune_ucf101/{arch}"].items())
    assert pretrain.feature_dim == (1024 if arch == "i3d" else 512)


def test_vtdl_quarter_width_divides_channels_and_trains():
    from vtdl.model import build_backbone, weights_init

    with torch.device("meta"):
        c3d = build_backbone("c3d", 5, True, width_mult=0.25)
        r2p1d = build_backbone("r2p1d", 5, False, width_mult=0.25)
    assert (c3d.conv1.in_channels, c3d.conv1.out_channels, c3d.conv5b.out_channels, c3d.linear.in_features) == (
        3, 16, 128, 128)  # fmt: skip
    assert r2p1d.conv2.block1.conv1.temporal_conv.out_channels == 16 and r2p1d.id_head[2].in_features == 128
    torch.manual_seed(0)
    i3d = build_backbone("i3d", 5, False, width_mult=0.25)
    i3d.apply(weights_init)
    assert i3d.conv3d_1a_7x7.conv3d.out_channels == 16 and i3d.conv3d_2c_3x3.conv3d.out_channels == 48
    assert i3d.mixed_3b.branch_1[1].conv3d.out_channels == 32 and i3d.mixed_3c.branch_0.conv3d.in_channels == 64
    assert i3d.feature_dim == 256 and i3d.id_head[2].in_features == 256 and i3d.id_head[2].out_features == 128
    id_out, _, _ = i3d(torch.randn(2, 3, 8, 32, 32))
    id_out.sum().backward()
    assert id_out.shape == (2, 128) and i3d.conv3d_1a_7x7.conv3d.weight.grad.abs().sum() > 0
    r3d = build_backbone("r3d", 5, True, width_mult=0.25)
    assert r3d.conv1.out_channels == 16 and r3d.layer4[0].conv1.out_channels == 128 and r3d.cp.in_channels == 128
    r3d(torch.randn(2, 3, 8, 32, 32)).logsumexp(1).sum().backward()
    assert r3d.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_vtdl_feature_hook_and_finetune_rebuild_the_saved_width(tmp_path):
    from vtdl.features import build_clip_encoder
    from vtdl.model import build_backbone, load_weight, weights_init

    torch.manual_seed(7)
    model = build_backbone("r3d", 101, False, width_mult=0.25)
    model.apply(weights_init)
    args = {"arch": "r3d", "data_length": 8, "stride": 2, "spatial_size": 32, "width_mult": 0.25}
    path = str(tmp_path / "current.pth")
    state = {"module." + k: v for k, v in model.state_dict().items()}
    save_checkpoint({"model": state, "model_ema": state, "epoch": 1, "args": args, "opt": args}, path)
    encoder = build_clip_encoder(path)  # load_weight fails unless every trunk tensor loads
    assert encoder.feature_dim == 128 and encoder.backbone.conv1.out_channels == 16
    assert_same_weights(model, encoder.backbone, "layer3.")
    assert encoder(torch.randint(0, 256, (2, 8, 32, 32, 3), dtype=torch.uint8)).shape == (2, 128)
    baseline = build_clip_encoder(path, load_weights=False)
    assert shapes(baseline) == shapes(encoder)
    assert not torch.equal(baseline.backbone.conv1.weight, model.conv1.weight)
    finetune = build_backbone("r3d", 5, True, width_mult=0.25)
    report = load_weight(finetune, path, "r3d")
    assert not [k for k in report.missing if not k.startswith("cp.")]
    assert_same_weights(model, finetune, "layer1.")
    with pytest.raises(UserError, match="pass --width_mult 0.25"):
        load_weight(build_backbone("r3d", 5, True), path, "r3d")


# --------------------------------------------------------------------------------------------------- CPD


def test_cpd_flag_default_builds_the_original_keys_and_shapes():
    from cpd.model import build_visual_encoder
    from cpd.opts import get_args_parser
    from cpd.resnet import resnet3d

    args = get_args_parser().parse_args(["--n_classes", "256"])
    assert args.width_mult == 1.0 and get_args_parser().parse_args(["--width_mult", ".25"]).width_mult == 0.25
    want = load_keys("cpd")
    with torch.device("meta"):
        assert shapes(build_visual_encoder(args)) == want["resnet50_shortcutA_ncls256"]
        for depth in (10, 18, 50):
            model = resnet3d(depth, num_classes=256, width_mult=1.0)
            assert list(shapes(model).items()) == list(want[f"resnet{depth}_shortcutA_ncls256"].items())
            assert shapes(model) == shapes(resnet3d(depth, num_classes=256))
            assert model.feature_dim == (2048 if depth == 50 else 512)


def test_cpd_quarter_width_divides_channels_and_trains():
    from transformers import DistilBertConfig, DistilBertModel

    from cpd.model import CPD
    from cpd.resnet import resnet3d

    with torch.device("meta"):
        r50 = resnet3d(50, num_classes=7, width_mult=0.25)
        text = DistilBertModel(DistilBertConfig(dim=32, hidden_dim=64, n_layers=1, n_heads=2))
        cpd = CPD(resnet3d(18, num_classes=256, width_mult=0.25), text, 8)
    assert r50.layer1[0].conv3.out_channels == 64 and r50.feature_dim == 512 and r50.fc.in_features == 512
    assert cpd.vis_emb.in_features == 128 and cpd.visual_encoder.layer4[1].conv2.out_channels == 128
    torch.manual_seed(0)
    model = resnet3d(10, num_classes=5, width_mult=0.25)
    assert model.conv1.out_channels == 16 and model.layer2[0].conv1.out_channels == 32 and model.feature_dim == 128
    out = model(torch.randn(2, 3, 4, 32, 32))
    out.logsumexp(1).sum().backward()
    assert out.shape == (2, 5) and model.conv1.weight.grad.abs().sum() > 0


def test_cpd_feature_hook_and_finetune_rebuild_the_saved_width(tmp_path):
    from cpd.features import build_clip_encoder
    from cpd.resnet import resnet3d
    from cpd.test import load_pretrained_visual

    torch.manual_seed(7)
    visual = resnet3d(10, num_classes=256, width_mult=0.25)
    visual.fc = torch.nn.Identity()  # as CPD replaces it
    args = {"model_depth": 10, "sample_duration": 8, "stride_size": 2, "sample_size": 32, "width_mult": 0.25}
    state = {f"module.visual_encoder.{k}": v for k, v in visual.state_dict().items()}
    path = str(tmp_path / "save_1.pth")
    save_checkpoint({"state_dict": state, "epoch": 1, "args": args}, path)
    encoder = build_clip_encoder(path)  # strict: every backbone tensor loads
    assert (encoder.num_frames, encoder.feature_dim, encoder.backbone.conv1.out_channels) == (4, 128, 16)
    assert_same_weights(visual, encoder.backbone, "layer4.")
    assert encoder(torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)).shape == (2, 128)
    baseline = build_clip_encoder(path, load_weights=False)
    assert shapes(baseline) == shapes(encoder)
    assert not torch.equal(baseline.backbone.conv1.weight, visual.conv1.weight)
    finetune = resnet3d(10, num_classes=5, width_mult=0.25)
    load_pretrained_visual(finetune, path)
    assert_same_weights(visual, finetune, "layer1.")
    with pytest.raises(UserError, match="pass --width_mult 0.25"):
        load_pretrained_visual(resnet3d(10, num_classes=5), path)
