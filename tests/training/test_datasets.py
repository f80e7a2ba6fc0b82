"""Dataset loaders on small fixtures written in each dataset's own format."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import DatasetError
from vrfer.core.ferplus import ferplus_target, read_label_csv
from vrfer.training.datasets import (duplicate_mask, load_affectnet, load_class_folders, load_dataset, load_ferplus,
                                    load_ferplus_csv)

NEW_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def _pixels(value: int) -> str:
    return " ".join([str(value)] * 2304)


def _write_fer_csvs(root: Path, extra_pix: list[str] | None = None) -> tuple[Path, Path]:
    pix = root / "fer2013.csv"
    new = root / "fer2013new.csv"
    pix.write_text("\n".join(["emotion,pixels,Usage",
                              f"0,{_pixels(10)},Training",
                              f"3,{_pixels(20)},Training",      # FER+ gave it no name: a non-face
                              f"3,{_pixels(30)},Training",      # no majority: dropped in majority mode
                              f"6,{_pixels(40)},PublicTest",
                              f"4,{_pixels(50)},PrivateTest"] + (extra_pix or [])) + "\n")
    new.write_text("\n".join([NEW_HEADER,
                              "Training,fer0000000.png,0,10,0,0,0,0,0,0,0,0",
                              "Training,,0,0,0,0,0,0,0,0,0,10",
                              "Training,fer0000002.png,4,4,2,0,0,0,0,0,0,0",
                              "PublicTest,fer0000003.png,6,3,1,0,0,0,0,0,0,0",
                              "PrivateTest,fer0000004.png,0,0,0,7,3,0,0,0,0,0"]) + "\n")
    return pix, new


def test_ferplus_csv_pairs_pixels_with_votes_per_usage(tmp_path: Path) -> None:
    pix, new = _write_fer_csvs(tmp_path)
    train = load_ferplus_csv(pix, new, "train")
    assert train.names == ["fer0000000.png"]  # nameless row and no-majority row dropped
    assert train.images.shape == (1, 48, 48) and int(train.images[0, 0, 0]) == 10
    assert FERPLUS_CLASSES[int(train.labels[0])] == "happiness"
    prob = load_ferplus_csv(pix, new, "train", mode="probability")
    assert prob.names == ["fer0000000.png", "fer0000002.png"]
    np.testing.assert_allclose(prob.targets[1][:3], [0.5, 0.5, 0.0])  # 4 + 4 covers 75% of 10
    test = load_dataset("ferplus_csv", tmp_path, "test")
    assert test.names == ["fer0000004.png"] and int(test.images[0, 5, 5]) == 50
    assert FERPLUS_CLASSES[int(test.labels[0])] == "sadness"


def test_ferplus_csv_short_pixel_row_names_file_and_line(tmp_path: Path) -> None:
    pix, new = _write_fer_csvs(tmp_path)
    pix.write_text(pix.read_text().replace(f"4,{_pixels(50)},PrivateTest", "4,1 2 3,PrivateTest"))
    with pytest.raises(DatasetError, match=r"fer2013\.csv:6: expected 2304 pixels, got 3"):
        load_ferplus_csv(pix, new, "test")


@pytest.mark.parametrize("votes, mode, expected", [
    # single votes are outliers: [6,3,1] -> [6,3] of 9; 6 > 4.5 wins
    ([6, 3, 1, 0, 0, 0, 0, 0, 0, 0], "majority", [1, 0, 0, 0, 0, 0, 0, 0]),
    # probability keeps the top emotions until 75% of 9 (6.75) is covered: 6 + 3
    ([6, 3, 1, 0, 0, 0, 0, 0, 0, 0], "probability", [6 / 9, 3 / 9, 0, 0, 0, 0, 0, 0]),
    ([6, 3, 1, 0, 0, 0, 0, 0, 0, 0], "crossentropy", [6 / 9, 3 / 9, 0, 0, 0, 0, 0, 0]),
    # a tie takes both: 4 + 4 = 8 >= 7.5
    ([4, 4, 2, 0, 0, 0, 0, 0, 0, 0], "probability", [0.5, 0.5, 0, 0, 0, 0, 0, 0]),
    ([0, 0, 0, 7, 3, 0, 0, 0, 0, 0], "majority", [0, 0, 0, 1, 0, 0, 0, 0]),
])
def test_ferplus_target_label_modes_match_hand_counted_votes(votes, mode, expected) -> None:
    np.testing.assert_allclose(ferplus_target(np.array(votes, float), mode), expected, atol=1e-6)


@pytest.mark.parametrize("votes, mode", [
    ([4, 4, 2, 0, 0, 0, 0, 0, 0, 0], "majority"),   # 4 of 10 is no majority
    ([2, 0, 0, 0, 0, 0, 0, 0, 7, 1], "majority"),   # unknown wins: dropped
    ([3, 0, 0, 0, 0, 0, 0, 0, 5, 2], "probability"),  # unknown is the top vote: dropped
    ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "majority"),   # all single votes: nothing left
])
def test_ferplus_target_drops_what_ferplus_drops(votes, mode) -> None:
    assert ferplus_target(np.array(votes, float), mode) is None


@pytest.mark.parametrize("line, message", [
    ('fer1.png,"(0, 0, 48, 48)",1,2,3,4,0,0,0,0,0', "label.csv:2: expected 12 fields, got 11"),
    ('fer1.png,"(0, 0, 48, 48)",1,2,x,4,0,0,0,0,0,3', "label.csv:2: vote counts must be numbers"),
    ('fer1.png,"(0, 0, 48, 48)",1,2,-3,4,0,0,0,0,0,6', "label.csv:2: vote counts must not be negative"),
])
def test_read_label_csv_malformed_row_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "label.csv"
    path.write_text('fer0.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n' + line + "\n")
    with pytest.raises(DatasetError) as err:
        read_label_csv(path)
    assert str(err.value) == f"{tmp_path}/{message}"


def test_ferplus_folder_layout_and_duplicates(tiny_ferplus: Path) -> None:
    train = load_ferplus(tiny_ferplus, "train")
    test = load_ferplus(tiny_ferplus, "test")
    assert len(train) == 96 and len(test) == 32 and train.images.dtype == np.uint8
    assert list(np.bincount(train.labels, minlength=8)[:4]) == [24, 24, 24, 24]
    dup = duplicate_mask(test, train)
    assert dup.tolist() == [True] + [False] * 31


def test_ferplus_cache_truncated_by_a_crash_is_rebuilt_not_fatal(tiny_ferplus: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # two DDP ranks once read the cache while the other was still writing it: EOFError killed the run
    monkeypatch.setenv("VRFER_CACHE", str(tmp_path / "cache"))
    first = load_ferplus(tiny_ferplus, "train")
    (cached,) = (tmp_path / "cache").glob("ferplus-*.npy")
    cached.write_bytes(cached.read_bytes()[:100])
    again = load_ferplus(tiny_ferplus, "train")
    np.testing.assert_array_equal(again.images, first.images)
    (rebuilt,) = (tmp_path / "cache").glob("*.npy")  # rewritten whole, no temp file left behind
    assert rebuilt.stat().st_size == np.load(rebuilt).nbytes + 128


def _affectnet_fixture(root: Path) -> Path:
    img_dir = root / "Manually_Annotated_Images" / "101"
    img_dir.mkdir(parents=True)
    rows = ["subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"]
    for code in range(11):
        img = np.zeros((150, 200, 3), np.uint8)
        img[20:116, 10:106] = 255  # the face box (x=10, y=20, 96x96) is white, the rest black
        img[20:68, 10:106, 2] = 0  # top half of the box tinted: proves the crop is the box, not the frame
        name = f"101/img{code}.jpg"
        cv2.imwrite(str(root / "Manually_Annotated_Images" / name), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
        landmarks = ";".join(["30.5"] * 136)
        rows.append(f'{name},10,20,96,96,"{landmarks}",{code},0.1,-0.2')
    (root / "vrfer.training.csv").write_text("\n".join(rows) + "\n")
    return root


def test_affectnet_csv_crops_box_maps_classes_and_drops_non_faces(tmp_path: Path) -> None:
    root = _affectnet_fixture(tmp_path / "affectnet")
    data = load_affectnet(root, "train")
    assert len(data) == 8  # codes 8, 9, 10 (None, Uncertain, No-face) dropped
    assert data.images.shape == (8, 48, 48)
    names = [FERPLUS_CLASSES[k] for k in data.labels]
    assert names == ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
    face = data.images[0].astype(float)
    assert face[28:46, 2:46].mean() > 240  # lower half of the box: white
    assert 120 < face[2:20, 2:46].mean() < 220  # upper half: the tinted (greyer) part, not the black frame


def test_affectnet_malformed_row_names_file_and_line(tmp_path: Path) -> None:
    root = _affectnet_fixture(tmp_path / "affectnet")
    csv_path = root / "vrfer.training.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].replace(",10,20,96,96,", ",10,20,wide,96,")
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as err:
        load_affectnet(root, "train")
    assert str(err.value) == f"{csv_path}:4: face box and expression must be numbers"


def test_class_folders_read_fer_classes_and_reject_unknown_names(tmp_path: Path) -> None:
    for cls, value in (("happiness", 200), ("neutral", 100)):
        (tmp_path / "rec" / cls).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "rec" / cls / "a.png"), np.full((96, 96), value, np.uint8))
    data = load_class_folders(tmp_path / "rec")
    assert data.images.shape == (2, 48, 48)
    assert [FERPLUS_CLASSES[k] for k in data.labels] == ["happiness", "neutral"]
    assert int(data.images[0, 10, 10]) == 200
    (tmp_path / "rec" / "smirk").mkdir()
    with pytest.raises(DatasetError, match="smirk: not a class name"):
        load_class_folders(tmp_path / "rec")


def test_datasets_module_does_not_import_torch() -> None:
    code = "import sys, training.datasets, training.evaluate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"
