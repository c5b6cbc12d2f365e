"""CPD: parser, state-dict layout vs cpd_keys.json, Recipe-B reference values, loss, decoder indices, transforms,
dataset JSON generators (Instagram layout; split JSONs vs hand-written official split files)."""

from __future__ import annotations

import json
import math
import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from transformers import DistilBertConfig, DistilBertModel

from cpd import recipe_b as R
from cpd.dataset import InstagramDataset, UcfHmdb, jitter_range, random_crop, short_side_scale, uniform_crop
from cpd.decoder import decode_clip, source_indices
from cpd.loss import cpd_loss, nce_loss
from cpd.model import CPD, pretraining_param_groups
from cpd.opts import get_args_parser
from cpd.resnet import fine_tuning_parameters, resnet3d
from cpd.test import load_pretrained_visual
from cpd.text import encode_caption, load_text_encoder, load_tokenizer
from shared_utils.checkpoint import load_state_dict_reported, save_checkpoint, strip_prefix
from shared_utils.cli import UserError

# The spec's companion files (state-dict layouts, values measured on the original code), vendored with the package.
SPEC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cpd", "reference")


def spec_json(name):
    with open(os.path.join(SPEC_DIR, name)) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def tiny_text_model(tmp_path_factory):
    """A 2-layer DistilBERT (random weights) with the uncased BERT tokenizer, written offline."""
    from cpd.make_text_model import write_text_model

    return write_text_model(str(tmp_path_factory.mktemp("cpd_text") / "tiny"), "distilbert", "tiny")


@pytest.fixture(scope="module")
def synth_raw(synth_dataset):
    """The session's synthetic dataset in the official UCF101 layout, with captions.tsv."""
    return synth_dataset.raw_root


def shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------------------------- parser

PRETRAIN_README = (
    "--video_path DATA --result OUT --dataset_file ./datasets/ins_list/ins_300k.json --dataset ins --phase pretraining "
    "--n_epochs 300 --ft_bert_ep 150 --batch_size 256 --n_threads 16 --learning_rate 0.1 --weight_decay 1e-4 "
    "--stride_size 4 --sample_duration 32 --dist-url tcp://localhost:10001 --multiprocessing-distributed "
    "--world-size 1 --rank 0"
)
FINETUNE_README = (
    "--video_path DATA --result OUT --dataset_file ./datasets/ucf_list/ucf101_01.json --dataset ucf101 "
    "--phase finetuning --pretrain_path CKPT --n_finetune_classes 101 --n_epochs 100 --batch_size 128 --n_threads 16 "
    "--lr_patience 5 --dp 0.8 --lr_factor 0.1 --learning_rate 0.02 --weight_decay 1e-4 --stride_size 4 "
    "--sample_duration 64 --dist-url tcp://localhost:10001 --multiprocessing-distributed --world-size 1 --rank 0"
)
TEST_README = (
    "--video_path DATA --dataset_file ./datasets/hmdb_list/hmdb51_1.json --result OUT --dataset hmdb51 "
    "--phase finetuning --n_finetune_classes=51 --batch_size 512 --n_threads 32 --no_train --no_val --test "
    "--resume_path OUT/save_100.pth --stride_size 4 --sample_duration 64 --sample_size 256"
)


def test_parser_readme_commands_and_defaults():
    parser = get_args_parser()
    pre = parser.parse_args(PRETRAIN_README.split())
    assert pre.result_path == "OUT" and pre.phase == "pretraining" and pre.ft_bert_ep == 150 and pre.n_epochs == 300
    assert pre.multiprocessing_distributed and pre.world_size == 1 and pre.rank == 0
    assert pre.dist_url == "tcp://localhost:10001" and pre.sample_duration // pre.stride_size == 8
    ft = parser.parse_args(FINETUNE_README.split())
    assert (ft.lr_patience, ft.dp, ft.lr_factor, ft.learning_rate) == (5, 0.8, 0.1, 0.02)
    assert ft.pretrain_path == "CKPT" and ft.n_finetune_classes == 101
    hmdb = parser.parse_args(FINETUNE_README.replace("ucf101", "hmdb51").replace("101", "51").split())
    assert hmdb.dataset == "hmdb51" and hmdb.n_finetune_classes == 51
    test = parser.parse_args(TEST_README.split())
    assert test.no_train and test.no_val and test.test and test.sample_size == 256 and test.n_finetune_classes == 51
    d = parser.parse_args([])
    expected = dict(
        video_path=None,
        dataset_file="",
        result_path="results",
        dataset="ins",
        test_subset="val",
        n_classes=256,
        n_finetune_classes=101,
        sample_size=224,
        sample_duration=16,
        stride_size=1,
        gpu=None,
        dist_url="tcp://224.66.41.62:23456",
        world_size=-1,
        rank=-1,
        multiprocessing_distributed=False,
        dist_backend="nccl",
        learning_rate=0.1,
        lr_bert=3e-4,
        momentum=0.9,
        weight_decay=1e-3,
        lr_patience=10,
        lr_factor=0.1,
        clip_gradient=20,
        batch_size=128,
        n_epochs=200,
        ft_bert_ep=150,
        resume_path="",
        pretrain_path=None,
        ft_begin_index=0,
        no_train=False,
        no_val=False,
        test=False,
        no_cuda=False,
        n_threads=4,
        checkpoint=2,
        model="resnet",
        model_depth=50,
        resnet_shortcut="A",
        dp=0.0,
        manual_seed=1,
        phase="finetuning",
        emb_dim=256,
        print_frq=100,
        nce_k=16392,
        nce_t=0.07,
        nce_m=0.5,
    )
    assert {k: getattr(d, k) for k in expected} == expected
    assert parser.parse_args(["--dist_url", "env://", "--world_size", "2"]).world_size == 2  # underscore aliases


def test_parser_bad_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as err:
        get_args_parser().parse_args(["--no_such_flag"])
    assert err.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


# ----------------------------------------------------------------------------------------------- state dicts


def test_resnet_state_dicts_match_keys_json():
    keys, info = spec_json("cpd_keys.json"), spec_json("cpd_reference_values.json")["info"]
    for depth in (10, 18, 34, 50):
        model = resnet3d(depth, num_classes=256)
        name = f"resnet{depth}_shortcutA_ncls256"
        assert list(shapes(model).items()) == list(keys[name].items())
        assert sum(p.numel() for p in model.parameters()) == info[name]["params"]
    for dataset, n in (("ucf101", 101), ("hmdb51", 51)):
        model = resnet3d(50, num_classes=n, dp=0.8)
        assert shapes(model) == keys[f"finetune_resnet50_{dataset}"]
        assert sum(p.numel() for p in model.parameters()) == info[f"finetune_resnet50_{dataset}"]["params"]


def _zeros_like_layout(layout):
    """Stride-0 zero tensors of the given shapes: a full-size checkpoint that is tiny on disk."""
    return {k: torch.zeros(()).expand(s) for k, s in layout.items()}


def test_cpd_state_dict_and_released_checkpoint_layouts(tmp_path):
    keys, info = spec_json("cpd_keys.json"), spec_json("cpd_reference_values.json")["info"]["cpd_pretrain"]
    with torch.device("meta"):  # names, shapes and counts only: no memory, no init time
        model = CPD(resnet3d(50, num_classes=256), DistilBertModel(DistilBertConfig()), 1000)
    assert list(shapes(model).items()) == list(keys["cpd_pretrain_resnet50_distilbert_emb256_Ndata1000"].items())
    assert sum(p.numel() for p in model.parameters()) == info["params"]
    for top, count in info["params_by_top_module"].items():
        assert sum(p.numel() for p in getattr(model, top).parameters()) == count
    assert len(pretraining_param_groups(model, 0.1)) == 255  # one group per tensor, as the original
    # the released checkpoint's layout (DDP `module.` keys), with and without the prefix, fits with zero issues
    released = _zeros_like_layout(keys["checkpoint_state_dict_pretrain_ddp_Ndata1000"])
    for state in (released, strip_prefix(released)):
        report = load_state_dict_reported(model, strip_prefix(state), strict=True, verbose=False)
        assert report.clean and len(report.loaded) == 409
    # our own checkpoints are written in that layout
    from cpd.utils import load_model_state

    extra = dict(released, **{"module.textual_encoder.embeddings.position_ids": torch.arange(512)[None]})
    save_checkpoint({"state_dict": extra, "epoch": 301}, tmp_path / "released.pth")
    load_model_state(str(tmp_path / "released.pth"), model)  # a transformers-version position_ids is tolerated
    save_checkpoint({"state_dict": dict(extra, **{"module.unknown.weight": torch.zeros(1)})}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="unexpected"):
        load_model_state(str(tmp_path / "bad.pth"), model)
    # fine-tuning: visual_encoder.* of the released checkpoint initialises the ResNet; only fc is missing
    finetune = resnet3d(50, num_classes=101, dp=0.8)
    load_pretrained_visual(finetune, str(tmp_path / "released.pth"))
    assert all(float(v.float().abs().sum()) == 0 for k, v in finetune.state_dict().items() if not k.startswith("fc."))
    assert float(finetune.fc.weight.abs().sum()) > 0
    report = load_state_dict_reported(
        finetune, strip_prefix(_zeros_like_layout(keys["checkpoint_state_dict_finetune_ucf101_ddp"])), verbose=False
    )
    assert report.clean


def test_fine_tuning_parameter_selection():
    model = resnet3d(10, num_classes=5)
    assert len(fine_tuning_parameters(model, 0)) == len(list(model.parameters()))
    probe = fine_tuning_parameters(model, 5)
    assert {id(p) for p in probe} == {id(model.fc.weight), id(model.fc.bias)}
    assert not model.conv1.weight.requires_grad and model.fc.weight.requires_grad
    model = resnet3d(10, num_classes=5)
    names = {n for n, p in model.named_parameters() if id(p) in {id(q) for q in fine_tuning_parameters(model, 3)}}
    assert names and all(n.startswith(("layer3", "layer4", "fc")) for n in names)


def test_shortcut_a_detached_by_default_and_shortcut_b_works():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 32, 32)
    base = resnet3d(10, num_classes=3)
    grads = []
    for grad in (False, True):
        model = resnet3d(10, num_classes=3, shortcut_grad=grad)
        model.load_state_dict(base.state_dict())
        model(x).sum().backward()
        grads.append(model.conv1.weight.grad.norm().item())
    assert grads[0] != pytest.approx(grads[1], rel=1e-3)  # the .data shortcut cuts gradient paths
    b = resnet3d(18, num_classes=3, shortcut_type="B")  # the original's shortcut B crashed (temporal stride)
    assert b(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3) and "layer2.0.downsample.0.weight" in b.state_dict()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # zeros built like the input
        assert resnet3d(10, num_classes=3)(torch.randn(1, 3, 2, 32, 32)).shape == (1, 3)


# ----------------------------------------------------------------------------------------------- loss


def test_nce_loss_matches_float64_formula():
    torch.manual_seed(0)
    x = torch.rand(3, 9, 1) * 2  # B, K+1, 1
    n_data = 50
    pos, neg = nce_loss(x, n_data)
    k, pn, eps = 8, 1 / 50, 1e-7
    xd = x.double().squeeze(-1)
    want_pos = -torch.log(xd[:, 0] / (xd[:, 0] + k * pn + eps)).sum() / 3
    want_neg = -torch.log((k * pn) / (xd[:, 1:] + k * pn + eps)).sum() / 3
    assert pos.shape == (1,) and neg.shape == (1,)
    assert pos.item() == pytest.approx(want_pos.item(), rel=1e-6)
    assert neg.item() == pytest.approx(want_neg.item(), rel=1e-6)
    loss, terms = cpd_loss(x, x.flip(0), n_data)
    assert loss.item() == pytest.approx(sum(terms.values()), rel=1e-6)


def test_recipe_b_reference_values():
    """The spec's implementation-independent check (§13 Recipe B): forward, Z, loss within 1e-5, grads, memory."""
    ref = spec_json("cpd_reference_values.json")["recipe_B_deterministic"]
    want = ref["updbert=False"]
    torch.manual_seed(0)
    model = CPD(resnet3d(50, num_classes=256), DistilBertModel(DistilBertConfig()), 4096)
    R.fill_recipe_b(model)
    R.fill_recipe_b_memory(model)
    model.sample_noise = lambda idx: R.recipe_b_noise(idx, 4096, 16392)
    model.train()
    model.textual_encoder.eval()
    x, t, idx = R.recipe_b_video(), R.recipe_b_text(), torch.tensor([5, 11])
    assert t[0, :11].tolist() == R.RECIPE_B_CAPTION_IDS[0]
    out_v, out_t = model(x, t, idx, updbert=False)
    assert list(out_v.shape) == want["vis_out_shape"] and list(out_t.shape) == want["text_out_shape"]
    loss, terms = cpd_loss(out_v, out_t, 4096)
    assert loss.item() == pytest.approx(want["loss"], rel=1e-5)
    for name in ("l_vp", "l_vn", "l_tp", "l_tn"):
        assert terms[name] == pytest.approx(want[name], rel=1e-5)
    assert model.Z_v.item() == pytest.approx(want["Z_v"], rel=1e-5)
    assert model.Z_t.item() == pytest.approx(want["Z_t"], rel=1e-5)
    assert out_v[0, :4, 0].tolist() == pytest.approx(want["vis_out_row0_first4"], rel=1e-4)
    assert out_v[1, :4, 0].tolist() == pytest.approx(want["vis_out_row1_first4"], rel=1e-4)
    assert out_t[0, :4, 0].tolist() == pytest.approx(want["text_out_row0_first4"], rel=1e-4)
    loss.backward()

    def norm(module):
        grads = [p.grad.double().pow(2).sum() for p in module.parameters() if p.grad is not None]
        return math.sqrt(sum(grads)) if grads else None

    assert norm(model.textual_encoder) is None  # frozen in stage I
    for name in ("visual_encoder", "vis_emb", "text_emb"):
        assert norm(getattr(model, name)) == pytest.approx(want["grad_norm"][name], rel=1e-4)
    mem = want["mem_after"]
    assert model.vis_memory[5, :4].tolist() == pytest.approx(mem["vis_memory_idx0_first4"], abs=2e-6)
    assert model.text_memory[11, :4].tolist() == pytest.approx(mem["text_memory_idx1_first4"], abs=2e-6)
    assert model.vis_memory[5].norm().item() == pytest.approx(1.0, abs=1e-6)
    # fine-tuning model of Recipe B (bare ResNet names), eval mode
    ft_ref = ref["finetune_eval_logits"]
    finetune = resnet3d(50, num_classes=101, dp=0.8)
    R.fill_recipe_b(finetune)
    logits = finetune.eval()(R.recipe_b_video((2, 3, 16, 112, 112), 0.5))
    assert logits[0, :6].tolist() == pytest.approx(ft_ref["row0_first6"], abs=2e-5)
    assert logits.argmax(1).tolist() == ft_ref["argmax"]


@pytest.mark.slow
def test_recipe_b_eval_and_updbert_and_recipe_a():
    ref = spec_json("cpd_reference_values.json")
    model = CPD(resnet3d(50, num_classes=256), DistilBertModel(DistilBertConfig()), 4096)
    R.fill_recipe_b(model)
    R.fill_recipe_b_memory(model)
    with torch.no_grad():
        f_v, f_t = model.eval()(R.recipe_b_video(), R.recipe_b_text())
    want = ref["recipe_B_deterministic"]["eval_forward"]
    assert f_v[0, :6].tolist() == pytest.approx(want["vis0_first6"], abs=2e-6)
    assert f_t[0, :6].tolist() == pytest.approx(want["text0_first6"], abs=2e-6)
    assert (f_t @ f_v.T).tolist() == [pytest.approx(r, abs=2e-6) for r in want["sim_matrix_text_x_video"]]
    model.sample_noise = lambda idx: R.recipe_b_noise(idx, 4096, 16392)
    model.train()
    model.textual_encoder.eval()
    out_v, out_t = model(R.recipe_b_video(), R.recipe_b_text(), torch.tensor([5, 11]), updbert=True)
    loss, _ = cpd_loss(out_v, out_t, 4096)
    loss.backward()
    grad = math.sqrt(sum(p.grad.double().pow(2).sum() for p in model.textual_encoder.parameters()))
    assert loss.item() == pytest.approx(ref["recipe_B_deterministic"]["updbert=True"]["loss"], rel=1e-5)
    assert grad == pytest.approx(
        ref["recipe_B_deterministic"]["updbert=True"]["grad_norm"]["textual_encoder"], rel=1e-3
    )
    # Recipe A: the original's construction order and RNG use under seed 0 (ResNet, DistilBERT, heads, banks, input)
    torch.manual_seed(0)
    model = CPD(resnet3d(50, num_classes=256), DistilBertModel(DistilBertConfig()), 4096)
    x = torch.rand(2, 3, 8, 112, 112)
    out_v, out_t = model.train()(x, R.recipe_b_text(), torch.tensor([5, 11]))
    loss, _ = cpd_loss(out_v, out_t, 4096)
    assert loss.item() == pytest.approx(ref["recipe_A_seed0_original_init"]["loss"], rel=1e-5)
    assert model.Z_v.item() == pytest.approx(ref["recipe_A_seed0_original_init"]["Z_v"], rel=1e-5)


def test_memory_update_last_duplicate_wins_and_unit_rows():
    model = CPD(
        resnet3d(10, num_classes=4),
        DistilBertModel(DistilBertConfig(dim=8, n_layers=1, n_heads=2, hidden_dim=8, vocab_size=50)),
        6,
        K=4,
    )
    f = torch.nn.functional.normalize(torch.randn(3, 256), dim=1)
    before = model.vis_memory.clone()
    model.update_memory(f, f, torch.tensor([2, 4, 2]))
    want = torch.nn.functional.normalize(before[2] * 0.5 + f[2] * 0.5, dim=0)
    assert torch.allclose(model.vis_memory[2], want, atol=1e-6)
    assert torch.equal(model.vis_memory[0], before[0])
    assert model.vis_memory[4].norm().item() == pytest.approx(1.0, abs=1e-6)
    sel = model.sample_noise(torch.tensor([3, 1]))
    assert sel.shape == (2, 5) and sel[:, 0].tolist() == [3, 1] and int(sel.max()) < 6


# ----------------------------------------------------------------------------------------------- text


def test_text_model_offline_errors(tmp_path):
    with pytest.raises(UserError, match="not available offline"):
        load_text_encoder("distilbert-base-uncased")
    with pytest.raises(UserError, match="not found"):
        load_text_encoder(str(tmp_path / "nowhere" / "model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_text_encoder(str(tmp_path / "empty"))


def test_tokenisation_matches_original_ids(tiny_text_model):
    ids = spec_json("cpd_reference_values.json")["caption_token_ids"]
    tok = load_tokenizer(tiny_text_model)
    for caption, want in ids.items():
        got = encode_caption(tok, caption, 64)
        assert got.shape == (64,) and got[: len(want)].tolist() == want and int(got[len(want) :].abs().sum()) == 0
    long = encode_caption(tok, " ".join(["word"] * 100), 64)
    assert long.shape == (64,) and long[0] == 101 and long[-1] != 102  # first 64 ids kept, [SEP] lost
    assert encode_caption(tok, " ".join(["word"] * 600), 64) is None  # > 512 positions: resampled


# ----------------------------------------------------------------------------------------------- decoding


def _write_indexed_video(path, n, fps, codec, fmt):
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        if codec == "libx264":
            stream.options = {"qp": "0"}
        for i in range(n):
            img = np.zeros((32, 32, 3), np.uint8)
            img[..., 0], img[..., 1] = (i % 20) * 12, (i // 20) * 8
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _frame_ids(frames):
    return [int(round(f[..., 0].mean() / 12)) + 20 * int(round(f[..., 1].mean() / 8)) for f in frames]


def test_decoder_frame_indices_match_original(tmp_path):
    ref = spec_json("cpd_reference_values.json")["decoder_frame_indices"]
    cases = [("mp4_30fps_600", 600, 30, "libx264", "mp4"), ("avi_25fps_200", 200, 25, "ffv1", "avi")]
    for key, n, fps, codec, fmt in cases:
        path = tmp_path / f"v.{fmt}"
        _write_indexed_video(path, n, fps, codec, fmt)
        meta = ref[key]["meta"]
        for nf in (8, 16):
            for k, want in ref[key][f"test_sr4_nf{nf}_clips"]:
                assert _frame_ids(decode_clip(str(path), nf, 4, k, 10)) == want, (key, nf, k)
                assert source_indices(meta["frames"], meta["avg_rate"], meta["duration"], nf, 4, k, 10) == want
        clip = _frame_ids(decode_clip(str(path), 8, 4, -1, 1, np.random.default_rng(3)))
        assert len(clip) == 8 and all(0 <= a <= b < n for a, b in zip(clip, clip[1:]))


def test_transforms_follow_the_original():
    assert jitter_range(224) == (256, 340) and jitter_range(112) == (128, 170) and jitter_range(64) == (73, 97)
    x = torch.zeros(3, 2, 240, 320)
    assert short_side_scale(x, 128).shape[-2:] == (128, 170)
    rng = np.random.default_rng(0)
    offsets = set()
    for _ in range(300):
        y = torch.arange(10).view(1, 1, 10, 1).expand(1, 1, 10, 10)
        offsets.add(int(random_crop(y, 8, rng)[0, 0, 0, 0]))
    assert offsets == {0, 1}  # randint(0, H - size): the last offset (2) is never drawn
    img = torch.arange(6 * 10).view(1, 1, 6, 10).float()
    assert [int(uniform_crop(img, 4, i)[0, 0, 0, 0]) for i in range(3)] == [
        10,
        13,
        16,
    ]  # left / centre / right (y centred)


# ----------------------------------------------------------------------------------------------- dataset JSONs

UCF_CLASSIND = "1 ApplyEyeMakeup\r\n2 Hammering\r\n3 HammerThrow\r\n4 HandstandPushups\r\n"
UCF_TRAIN = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nHammering/v_Hammering_g08_c02.avi 2\r\n"
    "HammerThrow/v_HammerThrow_g09_c01.avi 3\r\nHandstandPushups/v_HandStandPushups_g08_c01.avi 4\r\n"
)
UCF_TEST = (
    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nHammering/v_Hammering_g01_c01.avi\r\n"
    "HammerThrow/v_HammerThrow_g02_c03.avi\r\nHandstandPushups/v_HandStandPushups_g01_c01.avi\r\n"
)
HMDB = {
    "brush_hair": "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \n"
    "April_09_brush_hair_u_nm_np1_ba_goo_2.avi 0 \n",
    "smile": "Me_smiling_smile_h_nm_np1_fr_goo_0.avi 2 \nA_Beautiful_Mind_smile_h_nm_np1_fr_goo_0.avi 1 \n",
}


def _entry(subset, label):
    return {"subset": subset, "annotations": {"label": label}}


def test_split_jsons_from_official_files(tmp_path):
    from process_data.write_splits import write_splits

    ucf = tmp_path / "ucfTrainTestlist"
    ucf.mkdir()
    for name, text in (("classInd.txt", UCF_CLASSIND), ("trainlist01.txt", UCF_TRAIN), ("testlist01.txt", UCF_TEST)):
        (ucf / name).write_bytes(text.encode())
    write_splits("ucf101", str(ucf), None, str(tmp_path / "lists"), formats=("cpd",), verbose=False)
    got = json.loads((tmp_path / "lists" / "ucf101" / "ucf101_01.json").read_text())
    labels = ["ApplyEyeMakeup", "Hammering", "HammerThrow", "HandstandPushups"]
    want = {
        "labels": labels,
        "database": {
            "v_ApplyEyeMakeup_g08_c01": _entry("training", "ApplyEyeMakeup"),
            "v_Hammering_g08_c02": _entry("training", "Hammering"),
            "v_HammerThrow_g09_c01": _entry("training", "HammerThrow"),
            "v_HandStandPushups_g08_c01": _entry("training", "HandstandPushups"),
            "v_ApplyEyeMakeup_g01_c01": _entry("validation", "ApplyEyeMakeup"),
            "v_Hammering_g01_c01": _entry("validation", "Hammering"),
            "v_HammerThrow_g02_c03": _entry("validation", "HammerThrow"),
            "v_HandStandPushups_g01_c01": _entry("validation", "HandstandPushups"),
        },
    }
    assert got == want
    # the dataset reads them the original way: {video_path}/{label}/{stem}.avi, label = position in `labels`
    videos = tmp_path / "UCF-101"
    for line in UCF_TRAIN.split():
        if line.endswith(".avi"):
            (videos / line).parent.mkdir(parents=True, exist_ok=True)
            (videos / line).write_bytes(b"")
    train = UcfHmdb(str(videos), str(tmp_path / "lists/ucf101/ucf101_01.json"), "training", "train", 4, 1, 32)
    assert [s for s, _ in train.videos][3] == "v_HandStandPushups_g08_c01" and train.labels == [0, 1, 2, 3]
    assert train.videos[3][1].endswith("HandstandPushups/v_HandStandPushups_g08_c01.avi")
    test = UcfHmdb(str(videos), str(tmp_path / "lists/ucf101/ucf101_01.json"), "validation", "test", 4, 1, 32)
    assert len(test) == 0  # validation videos absent on disk: reported, not crashing

    hmdb = tmp_path / "testTrainMulti_7030_splits"
    hmdb.mkdir()
    for cls, text in HMDB.items():
        (hmdb / f"{cls}_test_split1.txt").write_text(text)
    write_splits("hmdb51", str(hmdb), None, str(tmp_path / "lists"), formats=("cpd",), verbose=False)
    got = json.loads((tmp_path / "lists" / "hmdb51" / "hmdb51_1.json").read_text())
    assert got == {
        "labels": ["brush_hair", "smile"],
        "database": {
            "April_09_brush_hair_u_nm_np1_ba_goo_0": _entry("training", "brush_hair"),
            "April_09_brush_hair_u_nm_np1_ba_goo_1": _entry("validation", "brush_hair"),
            "Me_smiling_smile_h_nm_np1_fr_goo_0": _entry("validation", "smile"),
            "A_Beautiful_Mind_smile_h_nm_np1_fr_goo_0": _entry("training", "smile"),
        },
    }
    # the original's HMDB split 2/3 files start `labels` with "": skipped, same indices
    (tmp_path / "h2.json").write_text(json.dumps(dict(got, labels=[""] + got["labels"])))
    (videos / "smile").mkdir()
    (videos / "smile" / "Me_smiling_smile_h_nm_np1_fr_goo_0.avi").write_bytes(b"")
    val = UcfHmdb(str(videos), str(tmp_path / "h2.json"), "validation", "val", 4, 1, 32)
    assert val.classes == ["brush_hair", "smile"] and val.labels == [1]


def test_instagram_layout_generator(synth_raw, tiny_text_model, tmp_path):
    from cpd.datasets.make_ins_json import build, get_args_parser

    out = tmp_path / "ins"
    args = get_args_parser().parse_args(
        [
            "--video_root",
            str(synth_raw / "UCF-101"),
            "--captions",
            str(synth_raw / "captions.tsv"),
            "--out_dir",
            str(out),
            "--json",
            str(tmp_path / "ins.json"),
            "--val_ratio",
            "0.25",
            "--short_side",
            "32",
        ]
    )
    listing = build(args)
    captions = dict(line.rstrip("\n").split("\t") for line in open(synth_raw / "captions.tsv"))
    assert len(listing) == len(captions) and json.loads((tmp_path / "ins.json").read_text()) == listing
    for vid, info in listing.items():
        assert info["caption"] == captions[info["source"]] and vid == os.path.splitext(info["source"].split("/")[1])[0]
        assert (out / f"trimmed_resize_{vid}.mp4").is_file()
    n_val = sum(i["subset"] == "validation" for i in listing.values())
    assert n_val == round(len(listing) * 0.25)
    with av.open(str(out / f"trimmed_resize_{vid}.mp4")) as container:
        stream = container.streams.video[0]
        assert min(stream.codec_context.width, stream.codec_context.height) == 32 and container.format.name.startswith(
            "mov"
        )
    args.mode, args.out_dir = "link", str(tmp_path / "linked")
    build(args)
    assert os.path.islink(tmp_path / "linked" / f"trimmed_resize_{vid}.mp4")
    # the pretraining dataset reads the layout: (clip, 64 token ids, memory index)
    tok = load_tokenizer(tiny_text_model)
    data = InstagramDataset(str(out), str(tmp_path / "ins.json"), "training", tok, 4, 2, 32)
    clip, ids, index = data[(1, 123)]
    assert clip.shape == (3, 4, 32, 32) and ids.shape == (64,) and ids[0] == 101 and index == 1
    assert len(data) == len(listing) - n_val
    # the same (index, seed) gives the same sample: augmentation is a pure function of the sampler's seed
    assert torch.equal(data[(1, 123)][0], clip)
