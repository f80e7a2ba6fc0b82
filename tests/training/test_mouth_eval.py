"""training.mouth_eval's figures: Pearson r and MAE per shape over the faces the mesh measured."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core import mouth_shapes as ms
from vrfer.training.mouth_eval import agreement, goal, markdown, picture


def test_agreement_is_pearson_r_and_mae_over_meshed_faces() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.uniform(0, 1, (200, len(ms.SHAPES))).astype(np.float32)
    student = teacher.copy()
    student[:, 1] = 0.5 * teacher[:, 1] + 0.1  # a linear copy: r = 1, but off by some amount
    student[:, 2] = rng.uniform(0, 1, 200)  # unrelated
    teacher[:5] = np.nan  # the mesh missed these faces: left out
    student[:5] = 99.0
    a = agreement(teacher, student)
    assert a["jaw_open"]["r"] == pytest.approx(1.0) and a["jaw_open"]["mae"] == pytest.approx(0.0)
    assert a["jaw_open"]["n"] == 195
    assert a["lips_apart"]["r"] == pytest.approx(1.0)
    ok = teacher[5:, 1]
    assert a["lips_apart"]["mae"] == pytest.approx(float(np.abs(ok - (0.5 * ok + 0.1)).mean()), rel=1e-5)
    assert abs(a["mouth_smile_left"]["r"]) < 0.2
    table = markdown({"crops": a, "headset": a, "goals": {n: goal(n) for n in ms.SHAPES}})
    assert "| mouth_smile_left | 0.8 |" in table and "(below)" in table
    assert goal("jaw_open") == 0.8 and goal("mouth_pucker") == 0.6


def test_picture_tiles_faces_with_both_bars(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 255, (5, 48, 48), dtype=np.uint8)
    values = rng.uniform(0, 1, (5, len(ms.SHAPES)))
    picture(tmp_path / "p.png", faces, faces, values, values)
    img = cv2.imread(str(tmp_path / "p.png"))
    assert img is not None and img.shape[1] == 4 * (2 * 48 * 3 + 4)  # four tiles a row, two rows
