"""MemDPC: flags, checkpoint layout, numerical fidelity to the original code, loss, sampling and augmentation."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from memdpc import engine
from memdpc.augment import VIEWS, FixedView, FrameColorJitter, RandomChannelGray, pretrain_transform, view_transform
from memdpc.dataset import BlockDataset, WholeVideoDataset, default_flow_root, eval_clip_starts, flow_folder
from memdpc.loss import dense_scores, dpc_loss, positive_index, topk_fraction
from memdpc.model import LC, MemDPC, clean_state_dict
from memdpc.opts import get_args_parser, get_eval_args_parser
from shared_utils import runtime
from shared_utils.checkpoint import save_checkpoint
from shared_utils.cli import UserError

# Copies of the spec's companion files (produced by running the original code), kept with the package.
REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "memdpc", "reference")
KEYS_JSON = os.path.join(REFERENCE, "memdpc_keys.json")
REF_JSON = os.path.join(REFERENCE, "memdpc_reference_values.json")


def load_json(path):
    with open(path) as handle:
        return json.load(handle)


# --------------------------------------------------------------------------------------------------- flags


def test_parser_accepts_readme_commands_with_original_defaults():
    parser = get_args_parser()
    args = parser.parse_args(
        "--gpu 0,1 --net resnet18 --dataset ucf101 --batch_size 16 --img_dim 128 --epochs 500".split()
    )
    assert (args.gpu, args.net, args.batch_size, args.img_dim, args.epochs) == ("0,1", "resnet18", 16, 128, 500)
    args = parser.parse_args(
        "--gpu 0,1,2,3 --net resnet34 --dataset k400 --batch_size 16 --img_dim 224 --epochs 200".split()
    )
    assert (args.dataset, args.net, args.img_dim) == ("k400", "resnet34", 224)
    d = parser.parse_args([])
    expected = dict(net="resnet18", model="memdpc", dataset="ucf101", seq_len=5, num_seq=8, pred_step=3, ds=3,
                    mem_size=1024, batch_size=4, lr=1e-3, wd=1e-5, resume="", pretrain="", epochs=10, start_epoch=0,
                    gpu="0,1", print_freq=5, reset_lr=False, prefix="tmp", img_dim=128, seed=0, workers=16)  # fmt: skip
    assert {k: getattr(d, k) for k in expected} == expected
    assert parser.parse_args(["--start-epoch", "3"]).start_epoch == 3 and parser.parse_args(["-j", "2"]).workers == 2
    assert parser.parse_args(["--gpu", "cpu"]).gpu == "cpu" and parser.parse_args(["--gpu", ""]).gpu == ""

    ev = get_eval_args_parser()
    ft = ev.parse_args("--gpu 0,1 --net resnet34 --dataset ucf101 --batch_size 16 --img_dim 224 --epochs 500 "
                       "--train_what ft --schedule 300 400".split())  # fmt: skip
    assert (ft.train_what, ft.schedule, ft.dropout) == ("ft", [300, 400], 0.9)
    lin = ev.parse_args("--net resnet34 --epochs 100 --train_what last --schedule 60 80 --dropout 0.5".split())
    assert (lin.train_what, lin.schedule, lin.dropout) == ("last", [60, 80], 0.5)
    t = ev.parse_args("--net resnet34 --img_dim 224 --test ckpt.pth.tar --ten_crop".split())
    assert t.test == "ckpt.pth.tar" and t.ten_crop and not t.center_crop
    d = ev.parse_args([])
    expected = dict(net="resnet18", model="lc", dataset="ucf101", split=1, seq_len=5, num_seq=8, num_class=101,
                    dropout=0.9, ds=3, batch_size=4, lr=1e-3, schedule=[], wd=1e-3, resume="", pretrain="random",
                    test="", epochs=10, start_epoch=0, gpu="0,1", print_freq=5, train_what="last", prefix="tmp",
                    img_dim=128, seed=0, workers=16)  # fmt: skip
    assert {k: getattr(d, k) for k in expected} == expected
    assert ev.parse_args(["--fuse", "a.json", "b.json"]).fuse == ["a.json", "b.json"]


def test_bad_flag_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        get_args_parser().parse_args(["--no_such_flag"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_unknown_net_is_a_user_error():
    with pytest.raises(UserError, match="unknown --net"):
        MemDPC(64, network="resnet99")


# --------------------------------------------------------------------------------------------------- state dicts


@pytest.mark.parametrize("config", sorted(load_json(KEYS_JSON)))
def test_state_dict_keys_and_shapes_equal_the_original(config):
    kind, net, img = config.split("/")
    with torch.device("meta"):  # shapes only; no weights are initialised for real
        if kind == "memdpc":
            model = MemDPC(int(img), network=net)
        else:
            model = LC(int(img), network=net, dropout=0.9, num_class=51 if kind == "lc-hmdb51" else 101)
    expected = load_json(KEYS_JSON)[config]
    state = model.state_dict()
    assert list(state) == list(expected)  # same keys in the same order (both ConvGRU aliases included)
    assert {k: list(v.shape) for k, v in state.items()} == expected


@pytest.mark.parametrize("net", ["resnet18", "resnet34"])
def test_parameter_counts_equal_the_original(net):
    info = load_json(REF_JSON)["info"][f"{net}/128"]
    with torch.device("meta"):
        model, lc = MemDPC(128, network=net), LC(128, network=net, num_class=101)
    assert sum(p.numel() for p in model.parameters()) == info["memdpc_params_total"]
    assert sum(p.numel() for p in model.backbone.parameters()) == info["memdpc_params_backbone"]
    assert len(list(model.named_parameters())) == info["memdpc_named_parameters"]
    assert sum(p.numel() for p in lc.parameters()) == info["lc101_params_total"]


def test_released_checkpoint_layout_loads_with_zero_missing_and_unexpected(tmp_path):
    """A file in the released layout (state_dict + epoch, keys of memdpc_keys.json) loads strictly, with or without
    `module.`, into MemDPC; its backbone and GRUs fill LC; a state dict with only one ConvGRU alias also loads."""
    shapes = load_json(KEYS_JSON)["memdpc/resnet18/128"]
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v, generator=gen) if v else torch.tensor(3) for k, v in shapes.items()}
    for k in state:  # the two alias spellings are the same tensors in a real checkpoint
        if ".cell_list.0." in k:
            state[k] = state[k.replace(".cell_list.0.", ".ConvGRUCell_00.")]
    model = MemDPC(128)
    for name, sd in (("plain", state), ("module", {"module." + k: v for k, v in state.items()})):
        path = tmp_path / f"{name}.pth.tar"
        save_checkpoint({"state_dict": sd, "epoch": 199, "best_acc": 0.5, "iteration": 9}, path)
        ckpt = engine.load_model_weights(model, str(path), name)
        assert ckpt["epoch"] == 199
        assert torch.equal(model.mb, state["mb"]) and torch.equal(model.agg_b.cell_list[0].out_gate.bias,
                                                                  state["agg_b.ConvGRUCell_00.out_gate.bias"])  # fmt: skip
    one_alias = {k: v for k, v in state.items() if ".cell_list." not in k}
    completed = clean_state_dict(one_alias)
    assert set(completed) == set(state)
    lc = LC(128, num_class=101)
    from memdpc.test import load_pretrained

    save_checkpoint({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 1}, tmp_path / "m.pth.tar")
    load_pretrained(lc, str(tmp_path / "m.pth.tar"))
    assert torch.equal(lc.backbone.conv1.weight, state["backbone.conv1.weight"])
    assert torch.equal(lc.agg_f.ConvGRUCell_00.reset_gate.weight, state["agg_f.ConvGRUCell_00.reset_gate.weight"])
    broken = {k: v for k, v in state.items() if not k.startswith("backbone.layer4")}
    save_checkpoint({"state_dict": broken, "epoch": 1}, tmp_path / "broken.pth.tar")
    with pytest.raises(UserError, match="lacks"):
        load_pretrained(LC(128, num_class=101), str(tmp_path / "broken.pth.tar"))


@pytest.mark.slow
def test_resnet50_variant_runs_forward_and_backward():
    model = MemDPC(32, num_seq=4, seq_len=5, pred_step=1, network="resnet50", mem_size=16)
    loss, losses, accs, context = model(torch.randn(2, 4, 3, 5, 32, 32))
    loss.backward()
    assert context.shape == (2, 1, 1024, 1, 1) and model.backbone.conv1.weight.grad is not None
    assert math.isfinite(loss.item()) and accs[0].shape == (1, 2)


# --------------------------------------------------------------------------------------------------- reference values


def recipe_b(model: torch.nn.Module) -> torch.nn.Module:
    """Spec §12 Recipe B: implementation-independent float64 weights drawn in sorted canonical key order."""
    model.double()
    state = model.state_dict()
    gen = torch.Generator().manual_seed(0)
    for key in sorted(k for k in state if ".cell_list." not in k):
        tensor = state[key]
        if key.endswith("num_batches_tracked"):
            continue
        if tensor.dim() >= 2:
            gain = 16.0 if key == "mb" else 4.0 if key.startswith("network_pred.") else 1.0
            value = torch.randn(tensor.shape, generator=gen, dtype=torch.float64) * gain / math.sqrt(tensor[0].numel())
        elif key.endswith("running_var"):
            value = 0.5 + torch.rand(tensor.shape, generator=gen, dtype=torch.float64)
        elif key.endswith("running_mean"):
            value = 0.1 * torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
        elif key.endswith("weight"):
            value = 1 + 0.1 * torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
        else:
            value = 0.1 * torch.randn(tensor.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            tensor.copy_(value)
    return model.eval()


def check_memdpc_outputs(out, ref, rel=1e-5):
    loss, losses, accs, _ = out
    assert loss.item() == pytest.approx(ref["loss_total"], rel=rel)
    assert losses[0].item() == pytest.approx(ref["loss_forward"], rel=rel)
    assert losses[1].item() == pytest.approx(ref["loss_backward"], rel=rel)
    assert accs[0].tolist()[0] == pytest.approx([ref["forward_top1"], ref["forward_top5"]], abs=1e-6)
    assert accs[1].tolist()[0] == pytest.approx([ref["backward_top1"], ref["backward_top5"]], abs=1e-6)


def run_recipe_b(net, img, dtype):
    ref = load_json(REF_JSON)["numcheck"][f"{net}/{img}"]
    model = recipe_b(MemDPC(img, network=net))
    x = torch.randn(2, 8, 3, 5, img, img, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model, x = model.to(dtype), x.to(dtype)
    return model, model(x), ref


@pytest.mark.slow
def test_recipe_b_resnet18_128_loss_accuracy_and_gradients_fp64():
    model, out, ref = run_recipe_b("resnet18", 128, torch.float64)
    check_memdpc_outputs(out, ref["B_memdpc_eval_fp64"])
    assert out[3].shape == (2, 1, 256, 4, 4)
    assert out[3].double().sum().item() == pytest.approx(ref["B_memdpc_eval_fp64"]["context_feature_stats"]["sum"],
                                                         rel=1e-5)  # fmt: skip
    out[0].backward()
    params = dict(model.named_parameters())
    for name, norm in ref["B_memdpc_eval_fp64"]["grad_norms"].items():
        assert params[name].grad.norm().item() == pytest.approx(norm, rel=1e-5), name
    lc = recipe_b(LC(128, dropout=0.9, num_class=101, train_what="ft"))
    x = torch.randn(2, 8, 3, 5, 128, 128, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        output, context = lc(x)
    ce = torch.nn.functional.cross_entropy(output.reshape(2, 101), torch.tensor([3, 7]))
    assert ce.item() == pytest.approx(ref["B_lc_eval_fp64"]["ce_loss"], rel=1e-5)
    assert context.double().sum().item() == pytest.approx(ref["B_lc_eval_fp64"]["context_stats"]["sum"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["resnet18/224", "resnet34/128", "resnet34/224"])
def test_recipe_b_other_configs_fp64(config):
    net, img = config.split("/")
    with torch.no_grad():
        _, out, ref = run_recipe_b(net, int(img), torch.float64)
    check_memdpc_outputs(out, ref["B_memdpc_eval_fp64"])


@pytest.mark.parametrize(
    "config", ["resnet18/128", pytest.param("resnet18/224", marks=pytest.mark.slow),
               pytest.param("resnet34/128", marks=pytest.mark.slow), pytest.param("resnet34/224", marks=pytest.mark.slow)]
)  # fmt: skip
def test_recipe_b_fp32_and_classifier(config):
    """Recipe B in float32 (the fp32 reference row): loss, both directions, top-1/top-5, shapes; LC's CE."""
    net, img = config.split("/")
    with torch.no_grad():
        _, out, ref = run_recipe_b(net, int(img), torch.float32)
    check_memdpc_outputs(out, ref["B_memdpc_eval_fp32"])
    s = (int(img) + 31) // 32
    assert out[0].shape == () and out[1][0].shape == (1,) and out[3].shape == (2, 1, 256, s, s)
    lc = recipe_b(LC(int(img), network=net, dropout=0.9, num_class=101, train_what="ft")).float()
    x = torch.randn(2, 8, 3, 5, int(img), int(img), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        output, context = lc(x.float())
    assert output.shape == (2, 1, 101) and context.shape == (2, 1, 512)
    ce = torch.nn.functional.cross_entropy(output.reshape(2, 101), torch.tensor([3, 7]))
    assert ce.item() == pytest.approx(ref["B_lc_eval_fp32"]["ce_loss"], rel=1e-5)
    assert output.argmax(-1).flatten().tolist() == ref["B_lc_eval_fp32"]["argmax"]


@pytest.mark.parametrize(
    "config", ["resnet18/128", pytest.param("resnet34/128", marks=pytest.mark.slow),
               pytest.param("resnet18/224", marks=pytest.mark.slow), pytest.param("resnet34/224", marks=pytest.mark.slow)]
)  # fmt: skip
def test_recipe_a_original_initialisation(config):
    """Construction mirrors the original's RNG order: seeded init checksums, loss and LC CE match bit-for-bit-ish."""
    net, img = config.split("/")
    ref = load_json(REF_JSON)["numcheck"][config]
    torch.manual_seed(0)
    model = MemDPC(int(img), network=net)
    state = model.state_dict()
    for key, checksum in ref["A_init_checksums"].items():
        assert state[key].double().sum().item() == pytest.approx(checksum, rel=1e-6, abs=1e-6), key
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3, 5, int(img), int(img))
    with torch.no_grad():
        check_memdpc_outputs(model.eval()(x), ref["A_memdpc_eval_fp32"])
    torch.manual_seed(0)
    lc = LC(int(img), network=net, dropout=0.9, num_class=101, train_what="ft").eval()
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(lc(x)[0].reshape(2, 101), torch.tensor([3, 7]))
    assert ce.item() == pytest.approx(ref["A_lc_eval_fp32"]["ce_loss"], rel=1e-5)


# --------------------------------------------------------------------------------------------------- loss


def test_dense_loss_equals_a_hand_computed_infonce():
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, 2, 2, generator=gen), torch.randn(2, 3, 4, 2, 2, generator=gen)
    score = dense_scores(pred, target)
    assert score.shape == (24, 24)
    rows = [(b, t, h, w) for b in range(2) for t in range(3) for h in range(2) for w in range(2)]
    total = 0.0
    for i, (b, t, h, w) in enumerate(rows):
        logits = [float(pred[b, t, :, h, w] @ target[b2, t2, :, h2, w2]) for (b2, t2, h2, w2) in rows]
        assert logits == pytest.approx(score[i].tolist(), rel=1e-5, abs=1e-6)
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    positive = positive_index(score)
    assert dpc_loss(score, positive).item() == pytest.approx(total / len(rows), rel=1e-5)
    perfect = torch.eye(5) * 10
    assert topk_fraction(perfect, torch.arange(5)).tolist() == [[1.0, 1.0]]
    shifted = torch.roll(torch.eye(5), 1, dims=1) * 10 + torch.eye(5)
    assert topk_fraction(shifted, torch.arange(5), topk=(1, 2)).tolist() == [[0.0, 1.0]]


def test_lr_multiplier_released_and_fixed():
    milestones = [300, 400]
    released = [engine.lr_multiplier(e, milestones) for e in (0, 299, 300, 399, 400, 999)]
    assert released == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.1])  # the released code never reaches 0.01
    fixed = [engine.lr_multiplier(e, milestones, every_milestone=True) for e in (0, 299, 300, 399, 400, 999)]
    assert fixed == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    # the released repeat=1 rule: one milestone -> back to 1 after it; three -> 0.01 between the 2nd and 3rd
    assert [engine.lr_multiplier(e, [60]) for e in (59, 60, 200)] == pytest.approx([1, 1, 1])
    assert [engine.lr_multiplier(e, [10, 20, 30]) for e in (9, 10, 20, 30, 99)] == pytest.approx(
        [1, 0.1, 0.01, 0.01, 0.01]
    )


def test_json_log_is_trimmed_to_the_epochs_a_resumed_checkpoint_covers(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text('{"epoch": 0, "train_loss": 1.0}\n{"epoch": 1, "train_loss": 2.0}\n{"epoch": 2, "tra')
    engine.trim_json_log(str(log), 1)  # resuming inside epoch 1: its line and the cut-off line go
    assert log.read_text() == '{"epoch": 0, "train_loss": 1.0}\n'
    engine.trim_json_log(str(log), 5)
    assert log.read_text() == '{"epoch": 0, "train_loss": 1.0}\n'


def test_benchmark_train_step_updates_the_model():
    import memdpc.benchmark as bench

    # the s/iter configuration is the default; a tiny one here
    assert bench.CONFIG == {"net": "resnet18", "img_dim": 128, "num_seq": 8, "seq_len": 5, "pred_step": 3,
                            "mem_size": 1024}  # fmt: skip
    step, info = bench.build_train_step(torch.device("cpu"), batch_size=1, img_dim=32, num_seq=4, pred_step=1)
    assert info["method"] == "memdpc" and info["batch_size"] == 1 and "batch 1" in info["config"]
    before = {k: v.clone() for k, v in step.model.state_dict().items()}
    loss = step()
    assert loss.dim() == 0 and torch.isfinite(loss) and not loss.requires_grad
    changed = [k for k, v in step.model.state_dict().items() if not torch.equal(v, before[k])]
    assert "mb" in changed and "backbone.conv1.weight" in changed and "network_pred.2.weight" in changed


# --------------------------------------------------------------------------------------------------- sampling


def test_clip_sampling_follows_the_original_block_layout():
    ds = BlockDataset([], num_seq=8, seq_len=5, ds=3, transform=None, template="")
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        idx = ds.frame_indices(130, rng)
        assert len(idx) == 40 and (np.diff(idx) == 3).all()
        starts.add(int(idx[0]))
    assert starts == set(range(10))  # start in [0, n - 120)
    assert eval_clip_starts(121, 120).tolist() == [0]
    assert eval_clip_starts(300, 120).tolist() == [0, 59, 118, 177]
    test_ds = WholeVideoDataset([], 8, 5, 3, "")
    idx = test_ds.clip_indices(50)  # shorter than one clip: padded with the last frame, never dropped
    assert idx.shape == (1, 40) and idx.max() == 49 and (idx[0, 17:] == 49).all()
    assert test_ds.warnings.counts()["short_video"] == 1


def test_flow_paths_follow_the_process_data_layout():
    assert (
        flow_folder("/d/frames/ucf101/Run/v_Run_g01_c01/", "/d/flow/ucf101", "ucf101")
        == "/d/flow/ucf101/Run/v_Run_g01_c01"
    )
    assert default_flow_root("/d/frames/ucf101/Run/v_Run_g01_c01/", "ucf101") == "/d/flow/ucf101"
    assert default_flow_root("/s/frames/Run/v1", "ucf101") == "/s/flow"


# --------------------------------------------------------------------------------------------------- augmentation


def test_pretrain_transform_shapes_and_per_frame_colour():
    clip = torch.randint(0, 256, (10, 3, 48, 64), dtype=torch.uint8)
    out = pretrain_transform(32)(clip, np.random.default_rng(0))
    assert out.shape == (10, 3, 32, 32) and out.dtype == torch.float32
    blocks = pretrain_transform(32, blocks=2)(clip, np.random.default_rng(0))
    assert torch.equal(blocks, out.reshape(2, 5, 3, 32, 32).transpose(1, 2))  # same draws, block layout
    frames = torch.full((40, 3, 8, 8), 128, dtype=torch.uint8)
    frames[:, 0] = 200  # a coloured frame, so that hue and saturation change it too
    jittered = FrameColorJitter(0.5, 0.5, 0.5, 0.25, p=1.0, per_frame=True)(frames, np.random.default_rng(1))
    assert jittered.dtype == torch.uint8 and jittered.shape == frames.shape
    assert len({tuple(f[:, 0, 0].tolist()) for f in jittered}) > 30  # factors differ from frame to frame
    consistent = FrameColorJitter(0.5, 0.5, 0.5, 0.0, p=1.0, per_frame=False)(frames, np.random.default_rng(1))
    assert len({tuple(f[:, 0, 0].tolist()) for f in consistent}) == 1


def test_colour_ops_match_the_originals_pil_ops():
    """The uint8 jitter ops against torchvision's PIL functional ops (what the original called): brightness,
    contrast and saturation agree to one level, hue (OpenCV's HSV) to about one level on average."""
    from PIL import Image

    from shared_utils.transforms import PIL_COLOUR_OPS

    rng = np.random.default_rng(0)
    frame = np.ascontiguousarray(
        torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8) * 255, size=(48, 64), mode="bilinear")[0]
        .permute(1, 2, 0)
        .to(torch.uint8)
        .numpy()
    )
    image = Image.fromarray(frame)
    pil_ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for op, pil_op in enumerate(pil_ops):
        for factor in (rng.uniform(-0.25, 0.25),) if op == 3 else (rng.uniform(0.5, 1.0), rng.uniform(1.0, 1.5)):
            ref = np.asarray(pil_op(image, float(factor))).astype(int)
            diff = PIL_COLOUR_OPS[op](frame, float(factor)).astype(int) - ref
            if op < 3:
                assert np.abs(diff).max() <= 1, (op, factor)
            else:
                assert np.abs(diff).mean() < 1.5 and abs(diff.mean()) < 0.5, factor


def test_channel_gray_copies_one_channel():
    clip = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    out = RandomChannelGray(p=1.0)(clip, np.random.default_rng(0))
    for t in range(50):
        assert torch.equal(out[t, 0], out[t, 1]) and torch.equal(out[t, 1], out[t, 2])
        assert any(torch.equal(out[t, 0], clip[t, c]) for c in range(3))


def test_test_views_are_deterministic_normalised_crops():
    clip = torch.arange(2 * 3 * 6 * 8, dtype=torch.float32).reshape(2, 3, 6, 8).to(torch.uint8)
    assert torch.equal(FixedView(1, False, size=4)(clip), clip[..., :4, :4])
    assert torch.equal(FixedView(4, False, size=4)(clip), clip[..., 2:, 4:])
    assert torch.equal(FixedView(0, True, size=4)(clip), clip.flip(-1)[..., 1:5, 2:6])
    view = view_transform(4, 0, False)
    out_a, out_b = view(clip, None), view(clip, None)
    assert torch.equal(out_a, out_b) and out_a.min() < 0  # normalised (the original forgot), no random jitter
    assert len(VIEWS["ten"]) == 10 and VIEWS["five"] == VIEWS["ten"][:5] and VIEWS["center"] == VIEWS["ten"][:1]


def test_views_share_test_batches_without_changing_any_score():
    """score_video batches the clips of all views together; the per-view video scores equal view-by-view passes."""
    import argparse

    from memdpc.testing import clips_of_view, score_video

    torch.manual_seed(0)
    model = LC(32, num_seq=2, seq_len=5, num_class=3, dropout=0.5).eval()
    frames = torch.randint(0, 256, (14, 3, 40, 48), dtype=torch.uint8)
    clip_idx = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13]])  # K=2 clips
    transforms = [view_transform(32, pos, flip) for pos, flip in (VIEWS["ten"][0], VIEWS["ten"][4], VIEWS["ten"][5])]
    expected = []
    with torch.no_grad():
        for transform in transforms:
            logits = model(clips_of_view(frames, clip_idx, transform, 2))[0]  # K, 1, C
            expected.append(torch.softmax(logits, dim=2).mean(dim=1))
    for test_batch in (1, 4):
        args = argparse.Namespace(test_batch=test_batch, amp=False, num_seq=2)
        views, first = score_video(model, frames, clip_idx, transforms, args, runtime.local_context("cpu"))
        assert views.shape == (3, 3) and first.shape == (2, 3)
        assert torch.allclose(views, torch.stack([e.mean(dim=0) for e in expected]), atol=1e-5)
        assert torch.allclose(first, expected[0], atol=1e-5)
