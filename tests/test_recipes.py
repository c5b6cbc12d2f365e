"""The project's loaders against each paper's own data recipe (bench/original_recipes.py, PIL / PyAV like the
originals): same clip statistics, the same distribution of the random draws (per frame where the original draws
per frame, per clip where per clip), the fused uint8 ops against the op chains they replace, and the GPU check
in its CPU mode."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench import original_recipes as orig
from bench import recipe_bench
from shared_utils import transforms as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _coloured_frame(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """A smooth colourful RGB uint8 frame (hue, saturation and contrast all matter on it)."""
    gen = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 3, 4, generator=gen) * 255
    big = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)[0]
    return np.ascontiguousarray(big.permute(1, 2, 0).round().to(torch.uint8).numpy())


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


# --------------------------------------------------------------------------------------------------- clip statistics


def _tensors(method: str, out) -> list[torch.Tensor]:
    """The clip tensors of one sample, baseline or project form."""
    if isinstance(out, torch.Tensor):
        return [out]
    if method == "memdpc":
        return [out[0]]
    if method == "vtdl":
        return list(out[0]) if isinstance(out[0], list) else list(out)
    return [t for t in out if isinstance(t, torch.Tensor)]  # videomoco: (view_q, view_k[, index])


SAMPLES = {"memdpc": 3, "vtdl": 6, "videomoco": 6, "cpd": 8}


@pytest.mark.parametrize("method", ["memdpc", "vtdl", "videomoco", "cpd"])
def test_project_loader_gives_the_original_recipes_clip_statistics(method, tmp_path):
    """At tiny sizes, for the same settings: the same clip shapes, dtype (the project's uint8 clips after the
    training step's device-side conversion) and number of clips per sample, values in the same range, and mean /
    std over the samples within a tolerance that a wrong normalisation, a missing or doubled op, a wrong crop
    scale or swapped channels all exceed."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)  # CPD's sampler draws from torch: without this the draws depend on the tests run before
    torch.set_num_threads(1)
    fns = recipe_bench.VARIANTS[method](str(tmp_path), "tiny")
    base = [_tensors(method, fns["baseline"](i)) for i in range(SAMPLES[method])]
    loaded = [fns["project"](i) for i in range(SAMPLES[method])]
    assert {t.dtype for out in loaded for t in _tensors(method, out)} == {torch.uint8}  # normalised on the device
    proj = [_tensors(method, fns["_device"](out)) for out in loaded]  # what the training step feeds the model
    assert [len(b) for b in base] == [len(p) for p in proj]
    assert {(t.shape, t.dtype) for b in base for t in b} == {(t.shape, t.dtype) for p in proj for t in p}
    b, p = torch.stack([t for x in base for t in x]), torch.stack([t for x in proj for t in x])
    assert p.dtype == torch.float32
    lo, hi = float(b.min()), float(b.max())
    span = hi - lo
    assert lo - 0.05 * span <= float(p.min()) and float(p.max()) <= hi + 0.05 * span
    channel_dim = 2 if method == "memdpc" else 1  # stacked clips [S, C, T, H, W] (memdpc [S, N, C, SL, H, W])
    b_mean, p_mean = (
        b.transpose(0, channel_dim).reshape(3, -1).mean(1),
        p.transpose(0, channel_dim).reshape(3, -1).mean(1),
    )
    b_std, p_std = b.std(), p.std()
    assert torch.allclose(p_mean, b_mean, atol=0.2 * float(b_std)), (p_mean, b_mean)
    assert abs(float(p_std / b_std) - 1) < 0.15, (p_std, b_std)


# --------------------------------------------------------------------------------------------------- random draws


def test_memdpc_per_frame_jitter_keeps_the_originals_distribution():
    """Frame by frame, the project's uint8 jitter (factors and op order per frame) and the original's PIL
    ColorJitter give the same distribution of the output's channel means (KS at n = 300 per side)."""
    from memdpc.augment import FrameColorJitter

    frame = _coloured_frame()
    n = 300
    random.seed(1)
    ref = np.stack(
        [np.asarray(orig.memdpc_jitter_transform(0.5, 0.5, 0.5, 0.25)(Image.fromarray(frame))) for _ in range(n)]
    )
    clip = torch.from_numpy(np.stack([frame] * n)).permute(0, 3, 1, 2)
    ours = T.frames_hwc(FrameColorJitter(0.5, 0.5, 0.5, 0.25, p=1.0, per_frame=True)(clip, np.random.default_rng(1)))
    for c in range(3):
        assert _ks(ref[..., c].mean(axis=(1, 2)), ours[..., c].mean(axis=(1, 2))) < 0.14, c
    # and per frame: the frames of one clip differ (the original drew per frame)
    assert len({ours[t].tobytes() for t in range(n)}) > 0.95 * n


def test_vtdl_one_of_four_jitter_keeps_the_originals_distribution_and_is_per_clip():
    from vtdl.dataset import one_of_four_jitter

    frame = _coloured_frame(seed=2)
    n = 300
    random.seed(2)
    ref = np.stack([np.asarray(orig.vtdl_one_of_four_jitter([Image.fromarray(frame)])[0]) for _ in range(n)])
    clip = torch.from_numpy(np.stack([frame] * 2)).permute(0, 3, 1, 2)
    gen = np.random.default_rng(2)
    outs = [T.frames_hwc(one_of_four_jitter(clip, gen)) for _ in range(n)]
    assert all(np.array_equal(o[0], o[1]) for o in outs)  # one draw for the whole clip
    ours = np.stack([o[0] for o in outs])
    for c in range(3):
        assert _ks(ref[..., c].mean(axis=(1, 2)), ours[..., c].mean(axis=(1, 2))) < 0.14, c


@pytest.mark.parametrize("method", ["vtdl", "videomoco", "cpd"])
def test_spatial_draws_are_per_clip_like_the_originals(method):
    """A clip of identical frames stays a clip of identical frames through the project's pretraining transform
    (crop, rotation, scale, flip and jitter drawn once per clip), as through the original's."""
    frame = _coloured_frame(80, 96, seed=3)
    frames = np.stack([frame] * 4)
    rng = np.random.default_rng(3)
    if method == "vtdl":
        from vtdl.dataset import TrainTransform

        outs = [TrainTransform(32, "original")(torch.from_numpy(frames).permute(0, 3, 1, 2), rng)]
    elif method == "videomoco":
        from videomoco.dataset import random_resized_crop_u8

        outs = [random_resized_crop_u8(frames, 32, (0.2, 1.0), rng) for _ in range(2)]
        assert not torch.equal(outs[0], outs[1])  # the two views are cropped independently
    else:
        from cpd.dataset import train_transform

        outs = [train_transform(frames, 32, rng)]
    for out in outs:  # [C, T, H, W]
        assert all(torch.equal(out[:, 0], out[:, t]) for t in range(1, out.shape[1]))


def test_memdpc_pretrain_crop_scale_flip_are_per_clip_gray_and_jitter_per_frame():
    """The pretraining pipeline's own ops on a clip of identical frames: crop, rescale and flip leave the frames
    identical (one draw per clip); channel gray and colour jitter make them differ (draws per frame)."""
    from memdpc.augment import FrameColorJitter, RandomChannelGray, pretrain_transform

    frame = _coloured_frame(60, 80, seed=4)
    clip = torch.from_numpy(np.stack([frame] * 40)).permute(0, 3, 1, 2)
    ops = pretrain_transform(32).ops
    assert [type(op).__name__ for op in ops] == [
        "RandomSizedCrop", "Scale", "RandomHorizontalFlip", "RandomChannelGray", "FrameColorJitter", "Normalize"
    ]  # fmt: skip
    rng = np.random.default_rng(4)
    for _ in range(5):
        geometric = clip
        for op in ops[:3]:
            geometric = op(geometric, rng)
        assert all(torch.equal(geometric[0], geometric[t]) for t in range(40))
    assert isinstance(ops[3], RandomChannelGray) and ops[3].p == 0.25
    gray = ops[3](geometric, rng)
    changed = [not torch.equal(gray[t], geometric[t]) for t in range(40)]
    assert 0 < sum(changed) < 40  # some frames, not all: a per-frame coin
    assert isinstance(ops[4], FrameColorJitter) and ops[4].per_frame and ops[4].p == 1.0
    coloured = ops[4](geometric, rng)
    assert len({coloured[t].numpy().tobytes() for t in range(40)}) == 40


# --------------------------------------------------------------------------------------------------- fused ops


def test_fused_rotate_crop_equals_pil_rotate_then_crop():
    frame = _coloured_frame(64, 84, seed=5)
    for angle in (7.3, -9.6, 0.0):
        ref = np.asarray(Image.fromarray(frame).rotate(angle))[5:61, 10:66]
        out = T.pil_rotate_crop(frame, angle, 5, 10, 56)
        assert (out != ref).any(axis=-1).mean() < 0.01, angle  # only boundary roundings differ


def test_fused_scale_crop_equals_interpolate_then_crop():
    frame = _coloured_frame(64, 84, seed=6)
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    for new_h, new_w in ((32, 42), (40, 52), (100, 131)):
        ref = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)[0, :, 3:27, 4:28]
        out = T.scale_crop_bilinear(frame, (64 / new_h, 84 / new_w), 3, 4, 24)
        assert np.abs(out.astype(np.float32) - ref.permute(1, 2, 0).numpy()).max() <= 1.0


def test_cpd_and_videomoco_uint8_paths_equal_the_float_ones():
    """Same draws, same numbers up to uint8 rounding of the interpolated values."""
    import cpd.dataset as cd
    import videomoco.dataset as vd

    frames = np.stack([_coloured_frame(64, 84, seed=s) for s in range(3)])
    for seed in range(3):
        ref_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
        x = cd.to_normalized_cthw(frames)
        low, high = cd.jitter_range(32)
        x = cd.short_side_scale(x, int(round(ref_rng.uniform(low, high))))
        x = cd.random_crop(x, 32, ref_rng)
        ref = x.flip(-1) if ref_rng.uniform() < 0.5 else x
        assert (cd.train_transform(frames, 32, rng) - ref).abs().max() < 1.0 / 255 / 0.225
        ref = vd.random_resized_crop(vd.to_float_cthw(frames), 32, (0.2, 1.0), np.random.default_rng(seed))
        out = vd.random_resized_crop_u8(frames, 32, (0.2, 1.0), np.random.default_rng(seed))
        assert (out - ref).abs().max() < 1.0 / 255


def test_uint8_bilinear_crop_equals_pil():
    """MemDPC's RandomSizedCrop resize (uint8, antialiased) equals PIL's BILINEAR resize of the original."""
    frame = _coloured_frame(60, 80, seed=7)
    clip = torch.from_numpy(np.stack([frame])).permute(0, 3, 1, 2)
    for top, left, h, w, size in ((2, 3, 50, 70, 32), (0, 0, 20, 30, 48)):
        out = T.frames_hwc(T.resized_crop(clip, top, left, h, w, size, "bilinear"))[0]
        ref = np.asarray(
            Image.fromarray(frame).crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
        )
        assert np.abs(out.astype(int) - ref).max() <= 1


# --------------------------------------------------------------------------------------------------- GPU check


@pytest.mark.slow  # bf16 autocast on this CPU is emulated: minutes on a loaded 2-core box (make test-all runs it)
def test_gpu_check_runs_in_its_cpu_tiny_mode(tmp_path):
    """bench/gpu_check.sh --device cpu --tiny: every precision variant, the loader-vs-step line and the DDP smoke
    run, into the JSON (CPD, the cheapest at tiny size, keeps it short)."""
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    command = [
        "bash",
        os.path.join(ROOT, "bench", "gpu_check.sh"),
        "--device",
        "cpu",
        "--tiny",
        "--methods",
        "cpd",
    ]
    result = subprocess.run([*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    steps = report["methods"]["cpd"]["steps"]
    assert [row["precision"] for row in steps] == ["fp32", "bf16", "bf16+channels_last"]
    assert all(row["s_per_iter"] > 0 and row["tflops"] >= 0 for row in steps)
    assert report["methods"]["cpd"]["workers_to_feed_the_step"] >= 1
    assert report["ddp_smoke"]["ok"] and report["ddp_smoke"]["backend"] == "gloo"
    assert "workers keep it fed" in result.stdout and "DDP smoke" in result.stdout


@pytest.mark.parametrize("layout", [{}, {"to_cthw": True}, {"blocks": 2}])
def test_uint8_normalisation_equals_the_float_formula_in_every_layout(layout):
    frames = np.random.default_rng(8).integers(0, 256, (10, 12, 14, 3), dtype=np.uint8)
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)  # a [T, C, H, W] view of frame-major memory
    mean, std = torch.tensor(T.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(T.IMAGENET_STD).view(1, 3, 1, 1)
    ref = (clip.float() / 255 - mean) / std
    if layout.get("to_cthw"):
        ref = ref.permute(1, 0, 2, 3)
    if layout.get("blocks"):
        ref = ref.reshape(2, 5, 3, 12, 14).transpose(1, 2)
    out = T.normalize(clip, **layout)
    assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)


def test_deferred_normalisation_on_the_device_equals_the_cpu_float_path():
    """The loaders' uint8 output, converted by the training step's device_normalize, equals what the loaders
    returned before (normalised on the CPU): exactly for MemDPC, VTDL and VideoMoCo (the same float operations),
    within float rounding for CPD (its CPU formula divides where the device one multiplies)."""
    import cpd.dataset as cd
    import videomoco.dataset as vd
    from memdpc.augment import pretrain_transform
    from vtdl.dataset import TrainTransform

    frames = np.stack([_coloured_frame(64, 84, seed=s) for s in range(8)])
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    for seed in range(3):
        cpu = pretrain_transform(32, blocks=2)(clip, np.random.default_rng(seed))
        u8 = pretrain_transform(32, blocks=2, defer_normalize=True)(clip, np.random.default_rng(seed))
        assert u8.dtype == torch.uint8 and u8.is_contiguous()
        assert torch.equal(T.device_normalize(u8[None], channel_dim=2)[0], cpu)
        cpu = TrainTransform(32, "original", defer_normalize=False)(clip, np.random.default_rng(seed))
        u8 = TrainTransform(32, "original")(clip, np.random.default_rng(seed))
        assert u8.dtype == torch.uint8 and torch.equal(T.device_normalize(u8[None])[0], cpu)
        cpu = vd.random_resized_crop_u8(frames, 32, (0.2, 1.0), np.random.default_rng(seed))
        u8 = vd.random_resized_crop_u8(frames, 32, (0.2, 1.0), np.random.default_rng(seed), to_float=False)
        assert u8.dtype == torch.uint8 and torch.equal(T.device_normalize(u8, mean=None), cpu)
        cpu = cd.train_transform(frames, 32, np.random.default_rng(seed))
        u8 = cd.train_transform(frames, 32, np.random.default_rng(seed), defer_normalize=True)
        assert u8.dtype == torch.uint8 and u8.shape == cpu.shape
        assert torch.allclose(cd.device_normalize_clips(u8[None])[0], cpu, atol=1e-5, rtol=0)
    float_batch = torch.rand(2, 3, 4, 8, 8)
    assert T.device_normalize(float_batch) is float_batch  # a float batch (evaluation loaders) passes unchanged


# --------------------------------------------------------------------------------------------------- decoding


def _write_bframe_video(path: str, n: int = 90) -> np.ndarray:
    """An H.264 video with B-frames (none referenced: b-pyramid off) and key frames every 30; returns the
    frames as a plain full decode sees them."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"bframes": "3", "b-pyramid": "none", "b-adapt": "0", "g": "30", "crf": "18"}
        for i in range(n):
            img = np.roll(_coloured_frame(48, 64, seed=9), 2 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(path) as container:
        frames = list(container.decode(container.streams.video[0]))
        assert sum(int(f.pict_type) == 3 for f in frames) > n // 3  # B-frames (AV_PICTURE_TYPE_B): skippable
        return np.stack([f.to_ndarray(format="rgb24") for f in frames])


def test_decoders_skipping_unwanted_frames_return_the_frames_of_a_full_decode(tmp_path):
    """decode_frames (VideoMoCo, VTDL videos) and CPD's decode_clip send the packets of frames they do not return
    with skip_frame NONREF; what they return equals the same frames of a plain decode of the whole video."""
    from cpd.decoder import decode_clip, source_indices
    from shared_utils.video import decode_frames

    path = str(tmp_path / "b.mp4")
    full = _write_bframe_video(path)
    for indices in ([0, 1, 2, 3], list(range(10, 42)), list(range(3, 80, 4)), [5, 60, 61, 89], list(range(58, 90))):
        assert np.array_equal(decode_frames(path, indices), full[indices]), indices
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        n, fps, duration = stream.frames, float(stream.average_rate), stream.duration
    for k in range(10):
        want = source_indices(n, fps, duration, 8, 4, k, 10)
        assert np.array_equal(decode_clip(path, 8, 4, k, 10), full[want]), k


def test_vtdl_clip_jitter_equals_the_frame_by_frame_ops():
    """VTDL's per-clip jitter runs brightness, saturation and hue once on the whole clip (they act per pixel) and
    contrast per frame (each frame's own mean): the same bytes as applying the PIL ops frame by frame."""
    from vtdl.dataset import composed_jitter, one_of_four_jitter

    frames = np.stack([_coloured_frame(24, 32, seed=s) for s in range(5)])
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    for seed in range(12):
        draw = np.random.default_rng(seed)
        factors = (draw.uniform(0.5, 1.5), draw.uniform(0.5, 1.5), draw.uniform(0.75, 1.25), draw.uniform(-0.5, 0.5))
        which, order = int(draw.integers(4)), None
        ref = np.stack([T.PIL_COLOUR_OPS[which](f, float(factors[which])) for f in frames])
        assert np.array_equal(T.frames_hwc(one_of_four_jitter(clip, np.random.default_rng(seed))), ref), seed
        draw = np.random.default_rng(seed)
        factors = (draw.uniform(0.5, 1.5), draw.uniform(0.5, 1.5), draw.uniform(0.75, 1.25), draw.uniform(-0.5, 0.5))
        order = draw.permutation(4)
        ref = np.stack([T.pil_jitter_frame(f, factors, order) for f in frames])
        assert np.array_equal(T.frames_hwc(composed_jitter(clip, np.random.default_rng(seed))), ref), seed


@pytest.mark.parametrize("shape", [(10, 12, 14, 3), (10, 5, 7, 4), (10, 6, 6, 1)])
def test_uint8_layout_copies_equal_torch_copies(shape):
    """layout_u8 / cthw_u8 (OpenCV channel splits of frame-major memory) give torch's contiguous copies."""
    frames = np.random.default_rng(9).integers(0, 256, shape, dtype=np.uint8)
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)  # frame-major, as the loaders hold clips
    for source in (clip, clip.contiguous()):  # the OpenCV path and torch's fallback
        assert torch.equal(T.layout_u8(source), clip) and T.layout_u8(source).is_contiguous()
        assert torch.equal(T.layout_u8(source, to_cthw=True), clip.permute(1, 0, 2, 3))
        for blocks in (2, 5):
            ref = clip.reshape(blocks, shape[0] // blocks, *clip.shape[1:]).transpose(1, 2)
            assert torch.equal(T.layout_u8(source, blocks=blocks), ref)
    assert torch.equal(T.cthw_u8(frames), torch.from_numpy(frames).permute(3, 0, 1, 2))
