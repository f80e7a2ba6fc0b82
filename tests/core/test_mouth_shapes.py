"""vrfer.core.mouth_shapes: each measure on a real refined mesh of a real FER+ face, moved by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core import mouth_shapes as ms
from vrfer.core.errors import ConfigError

I = {n: i for i, n in enumerate(ms.SHAPES)}


@pytest.fixture(scope="module")
def mesh(ferplus_dir: Path) -> np.ndarray:
    """The refined mesh (478 x 3) of the first FER+ Train face it finds, pose-normalised."""
    import mediapipe as mp

    from vrfer.bench.face import mesh_fer_face

    folder = ferplus_dir / "FER2013Train"
    names = [line.split(",", 1)[0] for line in (folder / "label.csv").read_text().splitlines()[:20]]
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as m:
        for name in names:
            p = mesh_fer_face(m, cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE))
            if p is not None:
                return ms.pose_normalise(p)
    pytest.fail("the mesh found none of the first 20 FER+ Train faces")


def _moved(base: np.ndarray, points, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    out = base.copy()
    out[list(points), 0] += dx
    out[list(points), 1] += dy
    return out


def _delta(base: np.ndarray, moved: np.ndarray) -> np.ndarray:
    return ms.raw_measures(moved) - ms.raw_measures(base)


def test_opening_the_jaw_raises_jaw_open_and_lips_apart(mesh: np.ndarray) -> None:
    lip_centre = 0.5 * (mesh[ms.UPPER_LIP_INNER, 1] + mesh[ms.LOWER_LIP_INNER, 1])
    below = np.flatnonzero(mesh[:, 1] > lip_centre + 0.2)  # lower lip, chin, lower jaw
    assert ms.CHIN in below and ms.LOWER_LIP_INNER in below and ms.UPPER_LIP_INNER not in below
    d = _delta(mesh, _moved(mesh, below, dy=2.0))
    assert d[I["jaw_open"]] == pytest.approx(2.0, abs=0.05)
    assert d[I["lips_apart"]] == pytest.approx(2.0, abs=0.05)
    assert d[I["mouth_funnel"]] > 0


@pytest.mark.parametrize("side, corner", [("left", ms.LEFT_CORNER), ("right", ms.RIGHT_CORNER)])
def test_a_corner_pulled_up_smiles_on_that_side_only(mesh: np.ndarray, side: str, corner: int) -> None:
    other = "right" if side == "left" else "left"
    d = _delta(mesh, _moved(mesh, [corner], dy=-1.0))
    assert d[I[f"mouth_smile_{side}"]] == pytest.approx(1.0, abs=0.01)
    assert d[I[f"mouth_frown_{side}"]] == pytest.approx(-1.0, abs=0.01)
    assert d[I[f"mouth_smile_{other}"]] == pytest.approx(0.0, abs=1e-9)
    d = _delta(mesh, _moved(mesh, [corner], dy=1.0))  # and pulled down: a frown
    assert d[I[f"mouth_frown_{side}"]] == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("side, corner, dx", [("left", ms.LEFT_CORNER, 1.0), ("right", ms.RIGHT_CORNER, -1.0)])
def test_a_corner_pulled_outwards_stretches_that_side_and_unpuckers(mesh: np.ndarray, side: str, corner: int,
                                                                    dx: float) -> None:
    other = "right" if side == "left" else "left"
    d = _delta(mesh, _moved(mesh, [corner], dx=dx))
    assert d[I[f"mouth_stretch_{side}"]] == pytest.approx(1.0, abs=0.01)
    assert d[I[f"mouth_stretch_{other}"]] == pytest.approx(0.0, abs=1e-9)
    assert d[I["mouth_pucker"]] == pytest.approx(-1.0, abs=0.01)


def test_corners_drawn_in_pucker_and_an_o_funnels(mesh: np.ndarray) -> None:
    narrow = _moved(_moved(mesh, [ms.LEFT_CORNER], dx=-1.5), [ms.RIGHT_CORNER], dx=1.5)
    assert _delta(mesh, narrow)[I["mouth_pucker"]] == pytest.approx(3.0, abs=0.01)
    o = _moved(_moved(mesh, [ms.LEFT_INNER_CORNER], dx=-1.0), [ms.RIGHT_INNER_CORNER], dx=1.0)
    o = _moved(_moved(o, [ms.UPPER_LIP_INNER], dy=-1.0), [ms.LOWER_LIP_INNER], dy=1.0)
    gap = max(0.0, mesh[ms.LOWER_LIP_INNER, 1] - mesh[ms.UPPER_LIP_INNER, 1])
    width = mesh[ms.LEFT_INNER_CORNER, 0] - mesh[ms.RIGHT_INNER_CORNER, 0]
    funnel = ms.raw_measures(o)[I["mouth_funnel"]]
    assert funnel == pytest.approx((gap + 2.0) / (width - 2.0), rel=1e-3) and funnel > gap / width + 0.1


def test_the_mouth_shifted_sideways(mesh: np.ndarray) -> None:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    lips = sorted({i for edge in FACEMESH_LIPS for i in edge})
    d = _delta(mesh, _moved(mesh, lips, dx=1.0))  # towards the image's right: the subject's left
    assert d[I["mouth_left"]] == pytest.approx(1.0, abs=0.01)
    assert d[I["mouth_right"]] == pytest.approx(-1.0, abs=0.01)
    assert abs(d[I["jaw_open"]]) < 1e-9 and abs(d[I["mouth_pucker"]]) < 1e-9


def test_lips_drawn_off_the_corner_line(mesh: np.ndarray) -> None:
    assert _delta(mesh, _moved(mesh, [ms.LOWER_LIP_INNER], dy=1.0))[I["mouth_lower_down"]] == pytest.approx(1.0, abs=0.01)
    assert _delta(mesh, _moved(mesh, [ms.UPPER_LIP_INNER], dy=-1.0))[I["mouth_upper_up"]] == pytest.approx(1.0, abs=0.01)


def test_measures_ignore_head_pose_and_face_size(mesh: np.ndarray) -> None:
    """The same face, 2.5x bigger, turned 20 degrees, tilted 10 and rolled 15, moved: same measures."""
    def rot(axis: int, deg: float) -> np.ndarray:
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        return r

    r = rot(2, 15) @ rot(1, 20) @ rot(0, 10)
    posed = 2.5 * (mesh - mesh.mean(axis=0)) @ r.T + np.array([300.0, 200.0, 5.0])
    np.testing.assert_allclose(ms.raw_measures(posed), ms.raw_measures(mesh), atol=1e-6)


def test_mirror_table_swaps_sides() -> None:
    for name, j in zip(ms.SHAPES, ms.MIRROR):
        other = ms.SHAPES[j]
        assert ms.MIRROR[j] == ms.SHAPES.index(name)
        if "left" in name:
            assert other == name.replace("left", "right")
        elif "right" not in name:
            assert other == name


def test_table_maps_low_percentile_to_0_and_high_to_1(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(1000, len(ms.SHAPES)))
    raw[5] = np.nan  # a face the mesh missed: ignored by the fit, NaN in the output
    table = ms.fit_table(raw)
    j = I["jaw_open"]
    assert table.low[j] == pytest.approx(np.nanpercentile(raw[:, j], ms.MEASURES["jaw_open"].low_pct))
    out = ms.normalise(raw, table)
    assert np.isnan(out[5]).all()
    ok = np.delete(out, 5, axis=0)
    assert ok.min() == 0.0 and ok.max() == 1.0
    assert np.mean(ok[:, I["mouth_smile_left"]] == 0.0) == pytest.approx(0.5, abs=0.01)  # median -> 0
    ms.write_table(table, tmp_path / "t.json")
    back = ms.load_table(tmp_path / "t.json")
    np.testing.assert_allclose(back.low, table.low, atol=1e-5)


def test_shipped_table_is_valid_and_fitted_on_train() -> None:
    table = ms.load_table()
    assert table.shapes == ms.SHAPES and "FER2013Train" in table.source


@pytest.mark.parametrize("content, words", [
    ("{", "not a mouth shape table"),
    (json.dumps({"shapes": ["jaw_open"], "low": [0], "high": [1]}), "differ from this runtime"),
    (json.dumps({"shapes": list(ms.SHAPES), "low": [0] * len(ms.SHAPES), "high": [0] * len(ms.SHAPES)}),
     "high above low"),
])
def test_bad_tables_are_one_line_errors(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=words) as info:
        ms.load_table(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_bad_meshes_are_refused() -> None:
    with pytest.raises(ValueError, match="478 x 3"):
        ms.raw_measures(np.zeros((468, 3)))
    with pytest.raises(ValueError, match="degenerate"):
        ms.raw_measures(np.zeros((ms.MESH_POINTS, 3)))
