"""process_data: official split parsing (hand-written files), frame/flow extraction, resizing, the synthetic set."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from process_data.extract_frames import extract
from process_data.flow import image_to_flow
from process_data.resize_video import resize_videos
from process_data.synth import CLASSES, generate, plan_videos, video_rng, write_video
from process_data.synth_render import (
    DEFAULT_POOL,
    MOTIONS,
    VERBS,
    appearance_pool,
    ramp,
    render_frame,
    sample_video_spec,
    shape_states,
)
from process_data.write_splits import write_splits
from shared_utils.cli import UserError
from shared_utils.frames import read_class_index, read_frame_csv, read_video_list

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, text: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as handle:  # keep \r\n exactly as written
        handle.write(text)
    return str(path)


def frames_folder(path, n: int, template: str = "image_{:05d}.jpg") -> str:
    """A frame folder with n (tiny, not decodable) files: write_splits only counts names."""
    os.makedirs(path, exist_ok=True)
    for i in range(1, n + 1):
        open(os.path.join(path, template.format(i)), "wb").close()
    return os.path.abspath(path)


def lines(path) -> list[str]:
    with open(path, newline="") as handle:
        return handle.read().split("\n")[:-1]


def md5(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.md5(handle.read()).hexdigest()


# ------------------------------------------------------------------------------------------------ UCF101


@pytest.fixture
def ucf_official(tmp_path):
    """Official-format UCF101 lists (CRLF, blank lines, the HandstandPushups/HandStandPushups quirk) and a
    frame tree where the class folder on disk is spelled HandStandPushups."""
    split_dir = tmp_path / "ucfTrainTestlist"
    write(split_dir / "classInd.txt", "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n\r\n")
    write(
        split_dir / "trainlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nHandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n"
        "\r\nYoYo/v_YoYo_g25_c05.avi 3\r\n",
    )
    write(
        split_dir / "testlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nHandstandPushups/v_HandStandPushups_g01_c01.avi\r\n"
        "YoYo/v_YoYo_g01_c01.avi\r\nYoYo/v_YoYo_g02_c01.avi\r\n",
    )
    frames = tmp_path / "frames"
    dirs = {
        "eye_train": frames_folder(frames / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01", 5),
        "hand_train": frames_folder(frames / "HandStandPushups" / "v_HandStandPushups_g08_c01", 7),
        "yoyo_train": frames_folder(frames / "YoYo" / "v_YoYo_g25_c05", 3),
        "eye_test": frames_folder(frames / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01", 4),
        "hand_test": frames_folder(frames / "HandStandPushups" / "v_HandStandPushups_g01_c01", 6),
        "yoyo_test": frames_folder(frames / "YoYo" / "v_YoYo_g01_c01", 2),
    }
    os.makedirs(frames / "YoYo" / "v_YoYo_g02_c01")  # listed, folder present but empty
    return split_dir, frames, dirs


def test_ucf101_lists_exact(ucf_official, tmp_path):
    split_dir, frames, d = ucf_official
    out = tmp_path / "lists"
    report = write_splits("ucf101", str(split_dir), str(frames), str(out), verbose=False)
    u = out / "ucf101"
    assert lines(u / "ClassInd.txt") == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert lines(u / "train_split01.csv") == [f"{d['eye_train']}/,5", f"{d['hand_train']}/,7", f"{d['yoyo_train']}/,3"]
    assert lines(u / "test_split01.csv") == [f"{d['eye_test']}/,4", f"{d['hand_test']}/,6", f"{d['yoyo_test']}/,2"]
    assert lines(u / "ucf101_rgb_train_split_1.txt") == [
        f"{d['eye_train']} 5 0",
        f"{d['hand_train']} 7 1",
        f"{d['yoyo_train']} 3 2",
    ]
    assert lines(u / "ucf101_rgb_val_split_1.txt") == [
        f"{d['eye_test']} 4 0",
        f"{d['hand_test']} 6 1",
        f"{d['yoyo_test']} 2 2",
    ]
    with open(u / "ucf101_01.json") as handle:
        cpd = json.load(handle)
    assert cpd == {
        "labels": ["ApplyEyeMakeup", "HandstandPushups", "YoYo"],
        "database": {
            "v_ApplyEyeMakeup_g08_c01": {"subset": "training", "annotations": {"label": "ApplyEyeMakeup"}},
            "v_HandStandPushups_g08_c01": {"subset": "training", "annotations": {"label": "HandstandPushups"}},
            "v_YoYo_g25_c05": {"subset": "training", "annotations": {"label": "YoYo"}},
            "v_ApplyEyeMakeup_g01_c01": {"subset": "validation", "annotations": {"label": "ApplyEyeMakeup"}},
            "v_HandStandPushups_g01_c01": {"subset": "validation", "annotations": {"label": "HandstandPushups"}},
            "v_YoYo_g01_c01": {"subset": "validation", "annotations": {"label": "YoYo"}},
            "v_YoYo_g02_c01": {"subset": "validation", "annotations": {"label": "YoYo"}},
        },
    }
    assert report["splits"]["1"]["train"] == dict(listed=3, found=3, missing=0, empty=0)
    assert report["splits"]["1"]["test"] == dict(listed=4, found=3, missing=0, empty=1)
    assert lines(u / "missing_split01.txt") == ["test\tYoYo/v_YoYo_g02_c01\tframe folder has no image_%05d.jpg files"]
    # the shared readers accept what we wrote (case-insensitive class lookup for the MemDPC csv)
    classes = read_class_index(str(u / "ClassInd.txt"))
    assert [e.label for e in read_frame_csv(str(u / "train_split01.csv"), classes)] == [0, 1, 2]
    assert [(e.n_frames, e.label) for e in read_video_list(str(u / "ucf101_rgb_val_split_1.txt"))] == [
        (4, 0),
        (6, 1),
        (2, 2),
    ]


def test_ucf101_missing_videos_reported_not_fatal(ucf_official, tmp_path):
    split_dir, frames, d = ucf_official
    shutil.rmtree(frames / "YoYo" / "v_YoYo_g25_c05")
    report = write_splits(
        "ucf101", str(split_dir), str(frames), str(tmp_path / "l"), formats=("memdpc",), verbose=False
    )
    assert report["splits"]["1"]["train"] == dict(listed=3, found=2, missing=1, empty=0)
    assert lines(tmp_path / "l" / "ucf101" / "train_split01.csv") == [f"{d['eye_train']}/,5", f"{d['hand_train']}/,7"]
    assert "train\tYoYo/v_YoYo_g25_c05\tno frame folder" in lines(tmp_path / "l" / "ucf101" / "missing_split01.txt")
    assert not os.path.exists(tmp_path / "l" / "ucf101" / "ucf101_01.json")  # formats respected


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("trainlist01.txt", "YoYo/v_YoYo_g25_c05.avi 2\r\n", "label 2 does not match class YoYo"),
        ("trainlist01.txt", "Juggling/v_Juggling_g01_c01.avi 1\r\n", "is not in classInd.txt"),
        ("classInd.txt", "1 ApplyEyeMakeup\r\n3 YoYo\r\n", "class ids must be 1..2"),
    ],
)
def test_ucf101_malformed_files_fail_with_location(ucf_official, tmp_path, name, text, message):
    split_dir, frames, _ = ucf_official
    write(split_dir / name, text)
    with pytest.raises(UserError, match=message):
        write_splits("ucf101", str(split_dir), str(frames), str(tmp_path / "l"), verbose=False)


def test_write_splits_cli_errors_are_one_line(tmp_path, ucf_official):
    split_dir, frames, _ = ucf_official
    run = [sys.executable, "-m", "process_data.write_splits", "--dataset", "ucf101", "--out", str(tmp_path / "l")]
    bad_dir = subprocess.run(
        run + ["--split_dir", str(tmp_path / "nope"), "--frame_root", str(frames)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad_dir.returncode == 2 and len(bad_dir.stderr.strip().splitlines()) == 1, bad_dir.stderr
    assert "nope" in bad_dir.stderr
    no_split = subprocess.run(
        run + ["--split_dir", str(split_dir), "--frame_root", str(frames), "--splits", "2"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert no_split.returncode == 2 and "split 2 not found" in no_split.stderr
    wrong_root = subprocess.run(
        run + ["--split_dir", str(split_dir), "--frame_root", str(split_dir)], capture_output=True, text=True, cwd=REPO
    )
    assert wrong_root.returncode == 2 and "none of the listed ucf101 videos" in wrong_root.stderr


def tree_digest(root) -> dict[str, str]:
    """{relative path: md5} of every file under root (hidden ones included): 'byte-identical' made checkable."""
    root = str(root)
    return {
        os.path.relpath(os.path.join(folder, name), root): md5(os.path.join(folder, name))
        for folder, _, names in os.walk(root)
        for name in names
    }


@pytest.mark.parametrize(
    "failure",
    ["empty frame root", "split 2 absent", "malformed list"],
)
def test_failed_write_splits_rerun_leaves_the_earlier_lists_byte_identical(ucf_official, tmp_path, failure):
    """Good lists, then a re-run that fails: every earlier file (lists, reports) is unchanged, nothing is added.
    (A failed run used to truncate the CSV and VTDL lists to 0 bytes before it found no frame folder.)"""
    split_dir, frames, _ = ucf_official
    out = tmp_path / "lists"
    write_splits("ucf101", str(split_dir), str(frames), str(out), verbose=False)
    before = tree_digest(out)
    assert os.path.getsize(out / "ucf101" / "train_split01.csv") > 0
    frame_root, splits = str(frames), None
    if failure == "empty frame root":
        frame_root = str(tmp_path / "empty")
        os.makedirs(frame_root)
    elif failure == "split 2 absent":
        splits = [2]
    else:
        write(split_dir / "testlist01.txt", "Juggling/v_Juggling_g01_c01.avi\r\n")
    with pytest.raises(UserError):
        write_splits("ucf101", str(split_dir), frame_root, str(out), splits=splits, verbose=False)
    assert tree_digest(out) == before


def test_failed_write_splits_into_a_new_folder_leaves_nothing(ucf_official, tmp_path):
    split_dir, _, _ = ucf_official
    os.makedirs(tmp_path / "empty")
    with pytest.raises(UserError, match="nothing written"):
        write_splits("ucf101", str(split_dir), str(tmp_path / "empty"), str(tmp_path / "new" / "lists"), verbose=False)
    assert not (tmp_path / "new").exists()


def test_write_splits_rerun_replaces_lists_and_drops_a_stale_missing_report(ucf_official, tmp_path):
    split_dir, frames, d = ucf_official
    out = tmp_path / "lists"
    shutil.rmtree(frames / "YoYo" / "v_YoYo_g02_c01")
    write_splits("ucf101", str(split_dir), str(frames), str(out), verbose=False)
    assert (out / "ucf101" / "missing_split01.txt").exists()  # v_YoYo_g02_c01 has no folder
    frames_folder(frames / "YoYo" / "v_YoYo_g02_c01", 3)
    write_splits("ucf101", str(split_dir), str(frames), str(out), verbose=False)
    assert not (out / "ucf101" / "missing_split01.txt").exists()
    assert lines(out / "ucf101" / "test_split01.csv")[-1] == f"{frames / 'YoYo' / 'v_YoYo_g02_c01'}/,3"
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no staging folder left behind


# ------------------------------------------------------------------------------------------------ HMDB51


def test_hmdb51_tags_and_outputs(tmp_path):
    split_dir = tmp_path / "testTrainMulti_7030_splits"
    write(
        split_dir / "brush_hair_test_split1.txt",
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \r\nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \r\n"
        "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \r\n\r\n",
    )
    write(
        split_dir / "smile_test_split1.txt",
        "Me_smiling_smile_h_nm_np1_fr_goo_0.avi 2 \r\nA_Beautiful_Mind_(2001)_smile_h_nm_np1_fr_goo_3.avi 1 \r\n",
    )
    write(split_dir / "smile_test_split2.txt", "Me_smiling_smile_h_nm_np1_fr_goo_0.avi 1 \r\n")  # not requested
    frames = tmp_path / "frames"
    bh_train = frames_folder(frames / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_0", 4, "img_{:05d}.jpg")
    bh_test = frames_folder(frames / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_1", 5, "img_{:05d}.jpg")
    frames_folder(frames / "brush_hair" / "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0", 9, "img_{:05d}.jpg")
    sm_test = frames_folder(frames / "smile" / "Me_smiling_smile_h_nm_np1_fr_goo_0", 6, "img_{:05d}.jpg")
    sm_train = frames_folder(frames / "smile" / "A_Beautiful_Mind_(2001)_smile_h_nm_np1_fr_goo_3", 3, "img_{:05d}.jpg")
    out = tmp_path / "lists"
    report = write_splits(
        "hmdb51", str(split_dir), str(frames), str(out), splits=[1], template="img_%05d.jpg", verbose=False
    )
    h = out / "hmdb51"
    assert lines(h / "ClassInd.txt") == ["brush_hair", "smile"]
    assert lines(h / "train_split01.csv") == [f"{bh_train}/,4", f"{sm_train}/,3"]  # tag 0 left out
    assert lines(h / "test_split01.csv") == [f"{bh_test}/,5", f"{sm_test}/,6"]
    assert lines(h / "hmdb51_rgb_train_split_1.txt") == [f"{bh_train} 4 0", f"{sm_train} 3 1"]
    assert lines(h / "hmdb51_rgb_val_split_1.txt") == [f"{bh_test} 5 0", f"{sm_test} 6 1"]
    with open(h / "hmdb51_1.json") as handle:
        cpd = json.load(handle)
    assert cpd["labels"] == ["brush_hair", "smile"]
    assert cpd["database"]["Me_smiling_smile_h_nm_np1_fr_goo_0"] == {
        "subset": "validation",
        "annotations": {"label": "smile"},
    }
    assert len(cpd["database"]) == 4 and "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0" not in cpd["database"]
    assert report["splits"]["1"] == {
        "train": dict(listed=2, found=2, missing=0, empty=0),
        "test": dict(listed=2, found=2, missing=0, empty=0),
    }
    assert not os.path.exists(h / "train_split02.csv")


def test_hmdb51_bad_tag_fails(tmp_path):
    split_dir = tmp_path / "splits"
    write(split_dir / "smile_test_split1.txt", "a.avi 1\r\nb.avi 3\r\n")
    with pytest.raises(UserError, match=r"smile_test_split1.txt:2: expected '<video>.avi <0\|1\|2>'"):
        write_splits("hmdb51", str(split_dir), str(tmp_path), str(tmp_path / "l"), verbose=False)


# ------------------------------------------------------------------------------------------------ Kinetics-400


def test_kinetics_csv(tmp_path):
    csvs = tmp_path / "annotations"
    write(
        csvs / "kinetics_train" / "kinetics_train.csv",
        "label,youtube_id,time_start,time_end,split,is_cc\r\n"
        "abseiling,--07WQ2iBlw,1,11,train,0\r\n"
        '"passing American football (in game)",-0Dw7dbeIfY,25,35,train,0\r\n'
        "abseiling,missing_id_x,0,10,train,0\r\n",
    )
    write(
        csvs / "kinetics_val" / "kinetics_val.csv",
        "label,youtube_id,time_start,time_end,split,is_cc\nabseiling,0wR5jVB-WPk,417,427,val,0\n",
    )
    write(csvs / "kinetics_test" / "kinetics_test.csv", "youtube_id,time_start,time_end,split\nxyz,0,10,test\n")
    frames = tmp_path / "frames"
    abs_train = frames_folder(frames / "train" / "abseiling" / "--07WQ2iBlw_000001_000011", 3)
    football = frames_folder(frames / "train" / "passing_american_football_(in_game)" / "-0Dw7dbeIfY_000025_000035", 4)
    abs_val = frames_folder(frames / "val_split" / "abseiling" / "0wR5jVB-WPk_000417_000427", 5)
    out = tmp_path / "lists"
    report = write_splits("kinetics400", str(csvs), str(frames), str(out), verbose=False)
    k = out / "kinetics400"
    assert lines(k / "ClassInd.txt") == ["abseiling", "passing American football (in game)"]
    assert lines(k / "train_split.csv") == [f"{abs_train},3", f"{football},4"]  # no trailing slash for K400
    assert lines(k / "val_split.csv") == [f"{abs_val},5"]
    assert lines(k / "kinetics400_rgb_train.txt") == [f"{abs_train} 3 0", f"{football} 4 1"]
    assert report["splits"]["all"]["train"] == dict(listed=3, found=2, missing=1, empty=0)
    assert lines(k / "missing.txt") == ["train\ttrain/abseiling/missing_id_x_000000_000010\tno frame folder"]
    assert not os.path.exists(k / "test_split.csv")  # unlabelled test csv skipped
    # explicit split folder mapping
    shutil.move(str(frames / "val_split"), str(frames / "val_256"))
    write_splits("kinetics400", str(csvs), str(frames), str(out), k400_split_folders={"val": "val_256"}, verbose=False)
    assert lines(k / "val_split.csv") == [
        f"{os.path.abspath(frames / 'val_256' / 'abseiling' / '0wR5jVB-WPk_000417_000427')},5"
    ]


# ------------------------------------------------------------------------------------------------ extract_frames


def test_extract_counts_sizes_failures_and_resume(synth_dataset, tmp_path, corrupt):
    videos, frames = tmp_path / "videos", tmp_path / "frames"
    shutil.copytree(synth_dataset.video_root, videos)
    cls = synth_dataset.classes[0]
    truncated = corrupt(sorted((videos / cls).glob("*.avi"))[0], "truncate")  # header intact, most frames gone
    shutil.copy(truncated, videos / cls / "v_Garbage_g01_c01.avi")
    corrupt(videos / cls / "v_Garbage_g01_c01.avi", "garbage")
    all_videos = sorted(p.relative_to(videos).as_posix() for p in videos.rglob("*.avi"))
    bad = {f"{cls}/{truncated.name}", f"{cls}/v_Garbage_g01_c01.avi"}

    report = extract(str(videos), str(frames), short_side=32, workers=2, verbose=False)
    assert report["failed"] == 2 and set(report["failures"]) == bad
    assert report["failures"][f"{cls}/{truncated.name}"].startswith("truncated: decoded")
    assert "unreadable" in report["failures"][f"{cls}/v_Garbage_g01_c01.avi"]
    assert report["extracted"] == len(all_videos) - 2
    with open(frames / "extract_report.json") as handle:
        assert json.load(handle)["failures"] == report["failures"]
    for rel in all_videos:
        folder = frames / os.path.splitext(rel)[0]
        if rel in bad:
            assert not folder.exists()
            continue
        names = sorted(os.listdir(folder))
        assert names == [f"image_{i:05d}.jpg" for i in range(1, synth_dataset.num_frames + 1)]
        assert report["frame_counts"][os.path.splitext(rel)[0]] == synth_dataset.num_frames
    assert cv2.imread(
        str(frames / os.path.splitext(sorted(set(all_videos) - bad)[0])[0] / "image_00001.jpg")
    ).shape == (
        32,
        43,
        3,
    )  # 64x48 -> short side 32, long side round(64 * 32 / 48)

    again = extract(str(videos), str(frames), short_side=32, workers=2, verbose=False)
    assert (again["extracted"], again["skipped_existing"], again["failed"]) == (0, len(all_videos) - 2, 2)

    # a run killed mid-video leaves a hidden partial folder and no final folder: it is removed and redone
    victim = frames / os.path.splitext(sorted(set(all_videos) - bad)[-1])[0]
    shutil.rmtree(victim)
    partial = victim.parent / f".{victim.name}.partial"
    frames_folder(partial, 3)
    third = extract(str(videos), str(frames), short_side=32, workers=1, verbose=False)
    assert (third["removed_partial"], third["extracted"], third["failed"]) == (1, 1, 2)
    assert not partial.exists() and len(os.listdir(victim)) == synth_dataset.num_frames

    kept = extract(str(videos), str(frames), short_side=32, keep_partial=True, verbose=False)  # opt-in: keep them
    key = f"{cls}/{truncated.stem}"
    assert (kept["extracted"], kept["failed"]) == (1, 1) and kept["warnings"][f"{cls}/{truncated.name}"].startswith(
        "truncated"
    )
    assert 0 < kept["frame_counts"][key] < synth_dataset.num_frames == len(os.listdir(victim))
    assert len(os.listdir(frames / key)) == kept["frame_counts"][key]


def test_extract_matches_decoded_video_and_is_deterministic(synth_dataset, tmp_path):
    rel = f"{synth_dataset.classes[1]}/v_{synth_dataset.classes[1]}_g01_c01"
    with av.open(str(synth_dataset.video_root / f"{rel}.avi")) as container:
        decoded = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(decoded) == synth_dataset.num_frames
    stored = cv2.imread(str(synth_dataset.frame_root / rel / "image_00007.jpg"))
    assert stored.shape == (synth_dataset.height, synth_dataset.width, 3)
    assert np.abs(stored.astype(int) - decoded[6]).mean() < 4  # same frame, JPEG q95

    # the parallel path and another template give byte-identical JPEGs
    one_class = tmp_path / "videos" / synth_dataset.classes[1]
    shutil.copytree(synth_dataset.video_root / synth_dataset.classes[1], one_class)
    extract(
        str(one_class.parent), str(tmp_path / "f"), short_side=0, quality=95, template="img_%05d.jpg", workers=2,
        verbose=False,
    )  # fmt: skip
    for i in (1, synth_dataset.num_frames):
        assert md5(tmp_path / "f" / rel / f"img_{i:05d}.jpg") == md5(
            synth_dataset.frame_root / rel / f"image_{i:05d}.jpg"
        )


def test_flow_files_count_and_layout(synth_dataset):
    """n-1 flow JPEGs per video of the frame size; a PIL RGB load gives R = 128 (ch2 of the written array)."""
    with open(synth_dataset.frame_root / "extract_report.json") as handle:
        report = json.load(handle)
    assert report["flow_algorithm"] in ("tvl1", "farneback")
    assert len(report["flow_counts"]) == len(synth_dataset.classes) * 5
    for key, n_flow in report["flow_counts"].items():
        folder = synth_dataset.flow_root / key
        assert n_flow == synth_dataset.num_frames - 1
        assert sorted(os.listdir(folder)) == [f"flow_{i:05d}.jpg" for i in range(1, n_flow + 1)]
    first = np.asarray(Image.open(folder / "flow_00001.jpg").convert("RGB"))
    assert first.shape == (synth_dataset.height, synth_dataset.width, 3)
    assert abs(first[..., 0].astype(float).mean() - 128) < 1.5


def moving_square_video(path, dx: int, dy: int, n: int = 8) -> None:
    """A textured 16x16 square moving (dx, dy) px per frame over a static textured 64x48 background."""
    rng = np.random.default_rng(1)
    background = cv2.resize(rng.integers(60, 200, (12, 16, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_CUBIC)
    patch = cv2.resize(rng.integers(0, 255, (4, 4, 3), dtype=np.uint8), (16, 16), interpolation=cv2.INTER_NEAREST)
    frames = []
    for t in range(n):
        frame = background.copy()
        x, y = 16 + dx * t, 12 + dy * t
        frame[y : y + 16, x : x + 16] = patch
        frames.append(frame)
    write_video(str(path), np.stack(frames), fps=25, codec="mpeg4")


@pytest.mark.parametrize("dx, dy", [(2, 0), (-2, 0), (0, 2)])
def test_flow_channels_follow_the_motion(tmp_path, dx, dy):
    """ch0 (horizontal) and ch1 (vertical) of the stored flow carry the motion, mapped by (f+20)*255/40."""
    os.makedirs(tmp_path / "v" / "Move")
    moving_square_video(tmp_path / "v" / "Move" / "v_Move_g01_c01.avi", dx, dy)
    report = extract(
        str(tmp_path / "v"), str(tmp_path / "f"), short_side=0, flow=True, flow_root=str(tmp_path / "fl"), verbose=False
    )
    assert report["flow_counts"] == {"Move/v_Move_g01_c01": 7}
    flows = np.stack(
        [image_to_flow(cv2.imread(str(p))) for p in sorted((tmp_path / "fl" / "Move" / "v_Move_g01_c01").iterdir())]
    )
    moving = np.linalg.norm(flows, axis=-1) > 1.0
    assert moving.sum() > 7 * 50
    mean_dx, mean_dy = flows[..., 0][moving].mean(), flows[..., 1][moving].mean()
    assert abs(mean_dx - dx) < 0.8 and abs(mean_dy - dy) < 0.8, (mean_dx, mean_dy)


def test_extraction_defaults_are_the_original_pipelines_native_size_and_quality_100(synth_dataset, tmp_path):
    """MemDPC's extract_ff.py wrote native-size frames at JPEG quality 100 (VideoMoCo and CPD decode the videos at
    native size); the defaults of the function and of the command line must stay that."""
    from process_data.extract_frames import get_args_parser

    args = get_args_parser().parse_args(["--video_root", "V", "--frame_root", "F"])
    assert (args.short_side, args.quality) == (0, 100)
    name = synth_dataset.classes[0]
    one_class = tmp_path / "videos" / name
    shutil.copytree(synth_dataset.video_root / name, one_class)
    extract(str(one_class.parent), str(tmp_path / "f"), verbose=False)
    rel = f"{name}/v_{name}_g01_c01"
    with Image.open(tmp_path / "f" / rel / "image_00001.jpg") as image:
        assert image.size == (synth_dataset.width, synth_dataset.height)  # native 64 x 48, not resized
        assert all(value == 1 for table in image.quantization.values() for value in table)  # q100: all steps 1
    with Image.open(synth_dataset.frame_root / rel / "image_00001.jpg") as q95:  # the fixture asks for q95
        assert any(value > 1 for table in q95.quantization.values() for value in table)


def one_class_videos(synth_dataset, tmp_path, count=2):
    videos = tmp_path / "videos" / synth_dataset.classes[0]
    videos.mkdir(parents=True)
    for path in sorted((synth_dataset.video_root / synth_dataset.classes[0]).glob("*.avi"))[:count]:
        shutil.copy(path, videos / path.name)
    return videos.parent


def test_extract_rerun_with_other_settings_is_refused_not_mislabelled(synth_dataset, tmp_path):
    """--short_side 0 then --short_side 16 into the same root used to say 'already done', keep the full-size frames
    and write a report claiming 16. Now: one-line refusal, nothing changed; --overwrite re-extracts at 16."""
    videos, frames = one_class_videos(synth_dataset, tmp_path), tmp_path / "frames"
    extract(str(videos), str(frames), short_side=0, verbose=False)
    before = tree_digest(frames)
    for change in (dict(short_side=16), dict(quality=50), dict(template="img_%05d.jpg")):
        with pytest.raises(UserError, match="extracted with .*--overwrite"):
            extract(str(videos), str(frames), **{"short_side": 0, **change}, verbose=False)
        assert tree_digest(frames) == before, change
    redone = extract(str(videos), str(frames), short_side=16, overwrite=True, verbose=False)
    assert (redone["extracted"], redone["skipped_existing"], redone["short_side"]) == (2, 0, 16)
    first = sorted(frames.rglob("image_00001.jpg"))[0]
    assert cv2.imread(str(first)).shape[0] == 16 and not list(frames.rglob(".*.partial"))
    again = extract(str(videos), str(frames), short_side=16, verbose=False)  # same settings: resumable as before
    assert (again["extracted"], again["skipped_existing"]) == (0, 2)


def test_extract_legacy_tree_without_record_is_checked_against_its_report(synth_dataset, tmp_path):
    videos, frames = one_class_videos(synth_dataset, tmp_path, count=1), tmp_path / "frames"
    extract(str(videos), str(frames), short_side=0, verbose=False)
    os.remove(frames / "extract_settings.json")  # a tree written before the record existed
    with pytest.raises(UserError, match="short_side 0"):
        extract(str(videos), str(frames), short_side=24, verbose=False)
    os.remove(frames / "extract_report.json")  # nothing says how it was made: kept and reported as unrecorded
    report = extract(str(videos), str(frames), short_side=24, verbose=False)
    assert report["unrecorded_existing"] == {"frame": 1} and report["extracted"] == 0


def test_extract_flow_rerun_counts_what_it_wrote(synth_dataset, tmp_path):
    """Frames first, flow later: the second run writes flow only and says so (it used to report the videos as
    'extracted' with their frames counted as written); a flow re-run with another quality is refused."""
    videos, frames, flow = one_class_videos(synth_dataset, tmp_path), tmp_path / "frames", tmp_path / "flow"
    extract(str(videos), str(frames), short_side=0, verbose=False)
    report = extract(str(videos), str(frames), short_side=0, flow=True, flow_root=str(flow), verbose=False)
    assert (report["extracted"], report["skipped_existing"], report["frames_written"]) == (0, 2, 0)
    assert (report["flow_extracted"], report["flow_skipped_existing"]) == (2, 0)
    assert report["flow_written"] == 2 * (synth_dataset.num_frames - 1)
    again = extract(str(videos), str(frames), short_side=0, flow=True, flow_root=str(flow), verbose=False)
    assert (again["flow_extracted"], again["flow_skipped_existing"]) == (0, 2)
    before = tree_digest(flow)
    os.remove(frames / "extract_settings.json")
    extract(str(videos), str(frames), short_side=0, quality=100, verbose=False)  # frames re-recorded, same settings
    with pytest.raises(UserError, match="--flow_root .*quality 100 \\(now 60\\)"):
        extract(str(videos), str(tmp_path / "frames2"), short_side=0, quality=60, flow=True, flow_root=str(flow),
                verbose=False)  # fmt: skip
    assert tree_digest(flow) == before and not (tmp_path / "frames2").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(short_side=-5), "--short_side must be >= 0, got -5"),
        (dict(workers=-3), "-j/--workers must be >= 1, got -3"),
        (dict(workers=0), "-j/--workers must be >= 1, got 0"),
        (dict(frame_tolerance=-1), "--frame_tolerance must be >= 0"),
        (dict(quality=0), "--quality must be in 1..100"),
    ],
)
def test_extract_out_of_range_values_fail_before_writing(synth_dataset, tmp_path, flags, message):
    videos = one_class_videos(synth_dataset, tmp_path, count=1)
    with pytest.raises(UserError, match=message.replace("(", "\\(").replace(".", "\\.")):
        extract(str(videos), str(tmp_path / "frames"), **flags, verbose=False)
    assert not (tmp_path / "frames").exists()


def test_extract_cli_errors(tmp_path):
    run = [sys.executable, "-m", "process_data.extract_frames", "--frame_root", str(tmp_path / "f")]
    missing = subprocess.run(run + ["--video_root", str(tmp_path / "nope")], capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "video root not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    no_flow_root = subprocess.run(
        run + ["--video_root", str(tmp_path), "--flow"], capture_output=True, text=True, cwd=REPO
    )
    assert no_flow_root.returncode == 2 and "--flow needs --flow_root" in no_flow_root.stderr


# ------------------------------------------------------------------------------------------------ resize_video


def test_resize_video_short_side_fps_and_failures(tmp_path):
    src = tmp_path / "k400" / "train" / "abseiling"
    os.makedirs(src)
    moving_square_video(src / "clip_a.avi", 1, 0, n=10)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    report = resize_videos(str(tmp_path / "k400"), str(tmp_path / "out"), short_side=32, verbose=False)
    assert (report["resized"], report["failed"]) == (1, 1) and "train/abseiling/broken.mp4" in report["failures"]
    out = tmp_path / "out" / "train" / "abseiling" / "clip_a.avi"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert (stream.codec_context.width, stream.codec_context.height) == (42, 32)  # 64x48 -> even long side
        assert float(stream.average_rate) == 25.0
    assert len(frames) == 10
    assert not list((tmp_path / "out" / "train" / "abseiling").glob(".*"))  # no partial files left
    again = resize_videos(str(tmp_path / "k400"), str(tmp_path / "out"), short_side=32, verbose=False)
    assert (again["skipped_existing"], again["resized"], again["failed"]) == (1, 0, 1)


# ------------------------------------------------------------------------------------------------ synth


def test_synth_layout_matches_official_ucf101(synth_dataset):
    d = synth_dataset
    with open(d.split_dir / "classInd.txt", newline="") as handle:
        class_ind = handle.read()
    assert class_ind == "".join(f"{i + 1} {c}\r\n" for i, c in enumerate(d.classes))
    assert d.classes == sorted(CLASSES[:4], key=str.lower)
    assert d.splits == [1, 2] and not (d.split_dir / "trainlist03.txt").exists()  # group 3 holds only 1 clip
    train = lines(d.split_dir / "trainlist01.txt")
    test = lines(d.split_dir / "testlist01.txt")
    assert all(line.endswith("\r") for line in train + test)
    train, test = [t.rstrip("\r") for t in train], [t.rstrip("\r") for t in test]
    assert len(train) == 4 * 3 and len(test) == 4 * 2
    cls = d.classes[2]
    assert f"{cls}/v_{cls}_g02_c01.avi 3" in train and f"{cls}/v_{cls}_g01_c02.avi" in test
    assert all("_g01_" in t for t in test) and not any("_g01_" in t for t in train)
    assert all("_g02_" in t for t in lines(d.split_dir / "testlist02.txt"))
    for entry in train + test:
        video = d.video_root / entry.split()[0]
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert (stream.frames, stream.codec_context.width, stream.codec_context.height) == (40, 64, 48)
    captions = dict(line.split("\t") for line in lines(d.captions_file))
    assert sorted(captions) == sorted(t.split()[0] for t in train + test)


def test_synth_is_deterministic_and_captions_describe_the_video(tmp_path):
    kwargs = dict(classes=3, train_per_class=1, test_per_class=1, frames=6, width=32, height=24, verbose=False)
    generate(str(tmp_path / "a"), seed=7, workers=1, **kwargs)
    generate(str(tmp_path / "b"), seed=7, workers=2, **kwargs)
    generate(str(tmp_path / "c"), seed=8, workers=1, **kwargs)
    videos = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.avi"))
    assert len(videos) == 6
    assert [md5(tmp_path / "a" / v) for v in videos] == [md5(tmp_path / "b" / v) for v in videos]
    assert (tmp_path / "a" / "captions.tsv").read_text() == (tmp_path / "b" / "captions.tsv").read_text()
    assert (tmp_path / "a" / "captions.tsv").read_text() != (tmp_path / "c" / "captions.tsv").read_text()
    assert md5(tmp_path / "a" / videos[0]) != md5(tmp_path / "c" / videos[0])
    plan = {v.rel_path: v for v in plan_videos(3, 1, 1)}
    for line in lines(tmp_path / "a" / "captions.tsv"):
        rel, caption = line.split("\t")
        video = plan[rel]
        pool = appearance_pool(7, DEFAULT_POOL)
        spec = sample_video_spec(video_rng(7, video), video.cls, 6, 32, 24, appearance=False, pool=pool, camera=True)
        assert caption == spec.caption
        assert any(verb in caption for pair in VERBS[video.cls] for verb in pair), caption
        assert all(f"{s.colour} {s.kind}" in caption for s in spec.shapes), caption
    with pytest.raises(UserError, match="made with other settings"):
        generate(str(tmp_path / "a"), seed=7, **dict(kwargs, frames=8))


def test_motion_captions_name_the_motion_only_and_leave_the_videos_unchanged(tmp_path):
    """--captions motion: every caption holds one of its class's verbs and no word a single frame shows (colour,
    shape, background); the videos are byte-identical to the scene-caption dataset of the same seed."""
    from process_data.synth_render import BACKGROUNDS, PALETTE, SHAPES

    kwargs = dict(classes=8, train_per_class=2, test_per_class=1, frames=6, width=32, height=24, verbose=False)
    generate(str(tmp_path / "scene"), seed=3, **kwargs)
    generate(str(tmp_path / "motion"), seed=3, captions="motion", **kwargs)
    videos = sorted(p.relative_to(tmp_path / "scene").as_posix() for p in (tmp_path / "scene").rglob("*.avi"))
    assert [md5(tmp_path / "scene" / v) for v in videos] == [md5(tmp_path / "motion" / v) for v in videos]
    appearance_words = set(PALETTE) | set(SHAPES) | set(BACKGROUNDS.values()) | {"background", "backdrop"}
    captions = [line.split("\t") for line in lines(tmp_path / "motion" / "captions.tsv")]
    assert len(captions) == len(videos) == 24
    for rel, caption in captions:
        cls = rel.split("/")[0]
        assert any(verb in caption for pair in VERBS[cls] for verb in pair), caption
        assert not appearance_words & set(caption.lower().split()), caption
    with pytest.raises(UserError, match="made with other settings"):
        generate(str(tmp_path / "motion"), seed=3, **kwargs)  # the scene style on a motion-caption dataset


def _state_at(cls: str, index: int, t_of) -> np.ndarray:
    rng = np.random.default_rng([11, CLASSES.index(cls), index])
    spec = sample_video_spec(rng, cls, 48, 96, 72, appearance=False)
    x, y, angle, log_r = shape_states(spec, t_of(rng))[0]
    return np.array([x, y, angle % (2 * np.pi), log_r, len(spec.shapes)])


def test_scene_state_at_a_random_time_is_class_independent():
    """The construction claim: at a uniformly random frame, position, angle, scale and shape count have the same
    law for every class (two-sample KS against all other classes). At a KNOWN index (frame 0) translation and
    zoom videos are offset by half their amplitude — the control shows the test can see such a difference."""
    from scipy.stats import ks_2samp

    n = 300
    states = {c: np.stack([_state_at(c, i, lambda r: int(r.integers(48))) for i in range(n)]) for c in CLASSES}
    for cls in CLASSES:
        rest = np.concatenate([states[c] for c in CLASSES if c != cls])
        for k, name in enumerate(("x", "y", "angle", "log_radius", "n_shapes")):
            assert ks_2samp(states[cls][:, k], rest[:, k]).pvalue > 1e-3, (cls, name)
    first = {c: np.stack([_state_at(c, i, lambda r: 0) for i in range(n)]) for c in ("MoveUp", "MoveDown")}
    assert ks_2samp(first["MoveUp"][:, 1], first["MoveDown"][:, 1]).pvalue < 1e-6
    assert first["MoveUp"][:, 1].mean() > first["MoveDown"][:, 1].mean()  # up starts below centre (y points down)
    # the ramp is symmetric on the frame grid: s(T-1-u) = -s(u), which is what makes the time average exact
    assert all(np.isclose(ramp(47 - u, 48), -ramp(u, 48)) for u in range(48))


@pytest.mark.parametrize("cls", CLASSES)
def test_a_horizontal_flip_maps_every_class_onto_itself(cls):
    """Every method's augmentation flips clips horizontally, so no class may be the mirror image of another: the
    mirrored trajectory of a video is exactly the trajectory of another draw of the SAME class (direction, static
    x-jitter frame, x position and angle mirrored: each has a mirror-symmetric law)."""
    import dataclasses

    width, frames = 96, 48
    for index in range(6):
        spec = sample_video_spec(np.random.default_rng([3, index]), cls, frames, width, 72, appearance=False)
        mirrored = dataclasses.replace(
            spec,
            direction=-spec.direction,
            tau=dict(spec.tau, x=frames - 1 - spec.tau["x"]),
            shapes=[dataclasses.replace(s, cx=width - s.cx, angle0=-s.angle0) for s in spec.shapes],
        )
        for t in range(frames):
            x, y, angle, log_r = shape_states(spec, t).T
            x2, y2, angle2, log_r2 = shape_states(mirrored, t).T
            np.testing.assert_allclose(x2, width - x, atol=1e-9)
            np.testing.assert_allclose(np.stack([y2, -angle2, log_r2]), np.stack([y, angle, log_r]), atol=1e-9)
    # the classes that move sideways or spin leave the sense to the video; up/down and in/out keep their sign
    assert all(sign == 0 for name, sign in MOTIONS[cls] if name in ("x", "angle"))
    assert all(sign != 0 for name, sign in MOTIONS[cls] if name in ("y", "scale"))


def test_the_appearance_pool_is_shared_and_small():
    """With the default pool every video draws its background and shapes from DEFAULT_POOL looks each, so that
    appearance identifies neither class nor video; pool 0 gives (almost) every video its own background."""
    pool = appearance_pool(0, DEFAULT_POOL)
    looks = {(s.bg_texture, s.bg_colour) for s in (_spec_with_pool(i, pool) for i in range(40))}
    shapes = {(sh.kind, sh.colour, sh.texture) for i in range(40) for sh in _spec_with_pool(i, pool).shapes}
    assert len(looks) <= DEFAULT_POOL and len(shapes) <= DEFAULT_POOL
    assert appearance_pool(0, DEFAULT_POOL) == pool and appearance_pool(1, DEFAULT_POOL) != pool
    own = {(s.bg_texture, s.bg_colour) for s in (_spec_with_pool(i, None) for i in range(40))}
    assert len(own) > 2 * DEFAULT_POOL


def _spec_with_pool(index: int, pool):
    return sample_video_spec(np.random.default_rng([9, index]), CLASSES[index % 8], 16, 48, 32, pool=pool)


def _frame_features(image: np.ndarray) -> np.ndarray:
    """Appearance statistics of one frame: colour mean/std, gradient energy, a coarse 8x6 grey thumbnail."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    thumb = cv2.resize(grey, (8, 6), interpolation=cv2.INTER_AREA).ravel()
    grads = [np.abs(np.diff(grey, axis=1)).mean(), np.abs(np.diff(grey, axis=0)).mean()]
    pixels = image.reshape(-1, 3).astype(np.float32)
    return np.concatenate([pixels.mean(0), pixels.std(0), grads, thumb])


def _motion_features(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direction of (translation, divergence, curl) of Farneback flow, from an affine fit per moving blob."""
    flow = cv2.calcOpticalFlowFarneback(
        cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None, 0.5, 2, 5, 3, 5, 1.1, 0
    )
    magnitude = np.linalg.norm(flow, axis=2)
    count, blobs = cv2.connectedComponents((magnitude > max(0.3, np.percentile(magnitude, 90) / 2)).astype(np.uint8))
    yy, xx = np.mgrid[0 : flow.shape[0], 0 : flow.shape[1]].astype(np.float64)
    total = np.zeros(4)
    for k in range(1, count):
        sel = blobs == k
        if sel.sum() < 6:
            continue
        design = np.stack([xx[sel] - xx[sel].mean(), yy[sel] - yy[sel].mean(), np.ones(sel.sum())], 1)
        coef = np.linalg.lstsq(design, flow[sel].astype(np.float64), rcond=None)[0]  # flow = A (p - p0) + t
        jac, shift = coef[:2].T, coef[2]
        total += sel.sum() * np.array([shift[0], shift[1], 8 * np.trace(jac), 8 * (jac[1, 0] - jac[0, 1])])
    total /= np.linalg.norm(total) + 1e-9
    return np.abs(total) * np.array([1, 0, 0, 1]) + total * np.array([0, 1, 1, 0])  # |x|, |curl|: flip-invariant


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    centroids = np.stack([train_x[train_y == c].mean(0) for c in range(len(CLASSES))])
    predicted = ((test_x[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((predicted == test_y).mean())


def test_single_frames_do_not_reveal_the_class_but_two_frames_do():
    """Rendered default-size videos (96x72, 48 frames, the default appearance pool and camera motion), frames at a random time: a
    nearest-centroid classifier on single-frame appearance statistics stays near chance (1/8), one on two-frame
    (flip-invariant) motion statistics does not."""
    single, motion, labels = [], [], []
    pool = appearance_pool(0, DEFAULT_POOL)
    for c, cls in enumerate(CLASSES):
        for i in range(20):
            rng = np.random.default_rng([5, c, i])
            spec = sample_video_spec(rng, cls, 48, 96, 72, pool=pool, camera=True)
            t = int(rng.integers(44))
            a, b = render_frame(spec, t, rng), render_frame(spec, t + 4, rng)
            single.append(_frame_features(a))
            motion.append(_motion_features(a, b))
            labels.append(c)
    single, motion, labels = np.array(single), np.array(motion), np.array(labels)
    train = np.arange(len(labels)) % 20 < 12  # 12 train + 8 test videos per class
    acc_single = _nearest_centroid_accuracy(single[train], labels[train], single[~train], labels[~train])
    acc_motion = _nearest_centroid_accuracy(motion[train], labels[train], motion[~train], labels[~train])
    assert acc_single < 0.30, acc_single  # chance 0.125; 0.30 is > 4 standard errors above it
    assert acc_motion > 0.60, acc_motion


def test_synth_hmdb51_split_files_describe_the_same_videos(synth_dataset):
    """synth also writes HMDB51-format split files; write_splits turns them into hmdb51 lists of the same videos."""
    hmdb = synth_dataset.raw_root / "testTrainMulti_7030_splits"
    files = sorted(p.name for p in hmdb.glob("*_test_split1.txt"))
    assert files == sorted(f"{c}_test_split1.txt" for c in synth_dataset.classes)
    tags = [line.split()[1] for f in files for line in (hmdb / f).read_text().splitlines()]
    per_class = synth_dataset.train_per_class + synth_dataset.test_per_class
    assert len(tags) == len(synth_dataset.classes) * per_class
    assert tags.count("2") == len(synth_dataset.classes) * synth_dataset.test_per_class
    ucf_test = (synth_dataset.list_dir / "ucf101" / "test_split01.csv").read_text().splitlines()
    hmdb_test = (synth_dataset.list_dir / "hmdb51" / "test_split01.csv").read_text().splitlines()
    assert sorted(hmdb_test) == sorted(ucf_test)


def test_camera_motion_moves_the_background_like_the_shapes():
    """With camera motion the background follows the class's motion (the canvas point under the frame centre
    moves by the shapes' offset); without it the background is the same at every frame."""
    from process_data.synth_render import background_matrix, motion_offsets

    spec = sample_video_spec(np.random.default_rng([4, 0]), "MoveUp", 48, 96, 72, camera=True)
    first, last = render_frame(spec, 0), render_frame(spec, 47)
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 10  # the whole frame changes
    centre = np.array([96 * 3 / 2, 72 * 3 / 2, 1.0])  # canvas centre
    for t in (0, 20, 47):
        dx, dy, _, _ = motion_offsets(spec, t)
        np.testing.assert_allclose(background_matrix(spec, t) @ centre, [48 + dx, 36 + dy], atol=1e-9)
    assert motion_offsets(spec, 47)[1] < motion_offsets(spec, 0)[1]  # up: y decreases
    still = sample_video_spec(np.random.default_rng([4, 0]), "MoveUp", 48, 96, 72, camera=False)
    np.testing.assert_allclose(background_matrix(still, 0), background_matrix(still, 47))
