"""The held-out frame family (vrfer.evalframes): seeded, colour, no square border, headsets that
follow the head's pose, bookkeeping of the benchmark, and its separation from training."""
from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.errors import DatasetError
from vrfer.core.face import load_template
from vrfer.core.preprocess import crop_face
from vrfer.evalframes import render as R
from vrfer.evalframes.bench import heldout_accuracy, side_by_side, summarise, table

REPO = Path(__file__).resolve().parents[2]


def _face(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 1.5)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_training_never_imports_the_held_out_family():
    files = sorted((REPO / "training").rglob("*.py"))
    assert len(files) > 10
    for path in files:  # neither an import nor a dynamic import by name
        assert "evalframes" not in path.read_text(encoding="utf-8"), path


def test_held_out_family_imports_nothing_from_training():
    files = sorted((REPO / "evalframes").rglob("*.py"))
    assert {p.name for p in files} >= {"render.py", "bench.py"}
    for path in files:
        bad = {m for m in _imports(path) if m.startswith(("vrfer.training", "training", "torch"))}
        assert not bad, (path, bad)


def test_looks_span_the_family_and_are_seeded():
    looks = [R.draw_look(np.random.default_rng([7, i])) for i in range(400)]
    sizes = [lk.size for lk in looks]
    assert 80 <= min(sizes) < 100 and 280 < max(sizes) <= 300
    assert {lk.light for lk in looks} == set(R.LIGHTS)
    assert {lk.headset.shape for lk in looks} == set(R.SHAPES) and {lk.headset.shell for lk in looks} == set(R.SHELLS)
    assert {lk.headset.hand for lk in looks} == {None, "side", "under"}
    assert all(35 <= lk.jpeg <= 85 for lk in looks)
    assert max(lk.pitch for lk in looks) > 20 and max(abs(lk.yaw) for lk in looks) > 20  # low and to the side
    assert R.draw_look(np.random.default_rng([7, 3])) == looks[3]
    a = R.render(_face(), looks[3], headset=False)
    b = R.render(_face(), looks[3], headset=False)
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, R.render(_face(), looks[4], headset=False).image)


def test_frames_are_colour_and_the_cut_out_has_no_square_border():
    look = R.neutral(R.neutral(R.draw_look(np.random.default_rng(1)), "light"), "camera_angle")
    look = dataclasses.replace(look, tone=(60.0, 14.0, 24.0), white_balance=(1.0, 1.0, 1.0), jpeg=None)
    frame = R.render(np.full((48, 48), 128, np.uint8), look, headset=False)
    face = cv2.warpAffine(frame.image, frame.ideal, (48, 48))[12:36, 12:36].reshape(-1, 3).astype(float)
    b, g, r = face.mean(axis=0)
    assert r > g + 10 and g > b + 5  # a skin tone, not a grey card
    mask = R._face_mask(look, 192)
    assert mask[96, 96] == 1.0 and mask[0, 0] == 0.0 and mask[191, 0] == 0.0 and mask[191, 191] == 0.0
    edge = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    assert edge.mean() < 0.35  # the card's edges are mostly cut away, not pasted as a square


def test_ideal_alignment_undoes_the_placement():
    look = R.neutral(R.neutral(R.neutral(R.draw_look(np.random.default_rng(2)), "light"), "blur"), "compression")
    look = dataclasses.replace(look, grey=True, white_balance=(1.0, 1.0, 1.0), noise=0.0, chroma_noise=0.0,
                               pitch=0.0, yaw=0.0, roll=12.0, size=200.0)
    face = _face(5)
    frame = R.render(face, look, headset=False)
    back = crop_face(frame.image, frame.ideal).astype(int)[14:40, 14:34]
    assert np.abs(back - face.astype(int)[14:40, 14:34]).mean() < 4.0
    tilted = R.render(face, dataclasses.replace(look, pitch=25.0, yaw=25.0), headset=False)
    t = load_template()
    pts = R.apply_h(R.card_homography(dataclasses.replace(look, pitch=25.0, yaw=25.0)), t.points)
    mapped = pts @ tilted.ideal[:, :2].T + tilted.ideal[:, 2]
    assert np.abs(mapped - t.points).max() < 4.0  # a similarity cannot undo the perspective exactly


def test_pose_from_mesh_recovers_a_known_rotation():
    t = load_template()
    rot = R._rotation(10.0, -25.0, 8.0)
    pts = np.zeros((478, 3))
    pts[t.indices] = 3.5 * t.points_3d @ rot.T + np.array([300.0, 200.0, 0.0])
    pose = R.pose_from_mesh(pts, t)
    assert pose.scale == pytest.approx(3.5) and np.allclose(pose.rot, rot, atol=1e-9)
    assert np.allclose(pose.project(t.points_3d)[:, :2], pts[t.indices][:, :2], atol=1e-6)


def _visor_pixels(yaw: float, roll: float) -> tuple[np.ndarray, np.ndarray]:
    look = dataclasses.replace(R.draw_look(np.random.default_rng(4)), centre=(320.0, 240.0), size=240.0)
    h = R.card_homography(dataclasses.replace(look, pitch=0.0, yaw=0.0, roll=0.0))
    rot = R._rotation(0.0, yaw, roll)
    centre = R.apply_h(h, np.array([[23.5, 23.5]]))[0]
    pose = R.HeadPose(5.0, rot, np.array([*(centre - 5.0 * (rot @ [23.5, 23.5, 0.0])[:2]), 0.0]), "test")
    blank = np.zeros((R.H, R.W, 3), np.float32)
    hs = dataclasses.replace(R.REFERENCE_HEADSET, shell="white")
    drawn = R.draw_headset(blank, pose, hs, np.array([150.0, 150.0, 150.0]))
    ys, xs = np.nonzero(drawn.max(axis=2) > 1.0)
    return xs.astype(float), ys.astype(float)


def test_headset_follows_yaw_and_roll():
    x0, _ = _visor_pixels(0.0, 0.0)
    xl, _ = _visor_pixels(-30.0, 0.0)
    xr, _ = _visor_pixels(30.0, 0.0)
    # The front stands out of the face, so turning the head swings it sideways, opposite ways.
    left, right = xl.mean() - x0.mean(), xr.mean() - x0.mean()
    assert left < -5 and right > 5 and abs(left + right) < 3  # and as far each way
    for roll in (-15.0, 15.0):
        xs, ys = _visor_pixels(0.0, roll)
        angle = 0.5 * math.degrees(math.atan2(2 * np.cov(xs, ys)[0, 1], np.var(xs) - np.var(ys)))
        assert angle == pytest.approx(roll, abs=4.0)


def test_render_refuses_bad_input_in_one_line():
    look = R.draw_look(np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected a grey face"):
        R.render(np.zeros((48, 48, 3), np.uint8), look, headset=False)
    with pytest.raises(ValueError, match="needs a Poser"):
        R.render(_face(), look, headset=True)
    with pytest.raises(ValueError, match="unknown factor"):
        R.neutral(look, "weather")


def test_heldout_accuracy_refuses_a_training_split_and_a_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="not 'train'"):
        heldout_accuracy("unused.onnx", split="train")
    with pytest.raises(DatasetError, match="label.csv is missing"):
        heldout_accuracy("unused.onnx", split="valid", root=tmp_path)


def test_summarise_counts_a_missed_face_as_wrong_and_costs_each_cause():
    base = dict(size=200, light="normal", shape="box", shell="white", hand=None, pose_source="mesh")
    rows = [
        dict(base, truth="happiness", crop="happiness", plain="happiness", plain_ideal="happiness",
             headset="neutral", headset_ideal="happiness"),
        dict(base, truth="anger", crop="anger", plain=None, plain_ideal="anger", headset=None, headset_ideal="anger"),
        dict(base, truth="sadness", crop="neutral", plain="neutral", plain_ideal="neutral", headset="sadness",
             headset_ideal="neutral"),
        dict(base, truth="surprise", crop="surprise", plain="surprise", plain_ideal="surprise",
             headset="surprise", headset_ideal="surprise"),
    ]
    for r in rows:
        r["clean_ideal"] = r["truth"] if r["truth"] != "anger" else "neutral"
        for f in R.FACTORS:
            if f not in ("visor_shape", "hand"):
                r[f"plain_without_{f}"] = r["truth"] if f == "blur" else r["plain"]
            r[f"headset_without_{f}"] = r["headset"]
    s = summarise(rows, model="m", split="valid", seed=0, seconds=1.0)
    assert s["accuracy"]["crop"] == 75.0 and s["accuracy"]["plain"] == 50.0 and s["accuracy"]["headset"] == 50.0
    assert s["found_pct"] == {"plain": 75.0, "headset": 75.0}
    assert s["gap"]["plain_to_crops"] == 25.0 and s["gap"]["headset_to_plain"] == 0.0
    assert s["gap"]["plain_alignment"] == 25.0 and s["gap"]["headset_alignment"] == 25.0
    assert s["causes"]["blur"]["plain"] == 50.0 and s["causes"]["compression"]["plain"] == 0.0
    assert s["causes"]["hand"]["plain"] is None
    assert s["causes"]["composition"] == {"plain": 0.0, "headset": None}  # crops 75%, clean frames 75%
    # Found rates without each factor: only blur's plain frames find the face that was missed.
    assert s["causes_found"]["blur"] == {"plain": 25.0, "headset": 0.0}
    assert s["causes_found"]["light"]["plain"] == 0.0 and s["causes_found"]["hand"]["plain"] is None
    assert any(line.strip().startswith("blur") and line.rstrip().endswith("found +25.0 / +0.0") for line in table(s))
    lines = side_by_side({"crop": 80.0, "plain": 79.0}, s)
    assert "25.00" in lines[1] and "1.00" in lines[2]


def test_finder_answers_are_counted_by_path_and_refusal():
    from types import SimpleNamespace

    from vrfer.evalframes.bench import answer

    assert answer(SimpleNamespace(path="mesh"), None) == "found by mesh"
    assert answer(None, "no face here (presence 0.12 < 0.84, locator)") == "no face here, locator"
    assert answer(None, "head turned too far (yaw 70°)") == "head turned too far"
    assert answer(None, None) == "no face found"
    base = dict(size=200, light="normal", shape="box", shell="white", hand=None, pose_source="mesh", truth="anger",
                crop="anger", plain="anger", plain_ideal="anger", headset=None, headset_ideal="anger")
    rows = [dict(base, plain_answer="found by mesh", headset_answer="no face here, locator"),
            dict(base, plain_answer="found by mesh", headset_answer="no face here, locator"),
            dict(base, plain_answer="found by mesh_refined", headset_answer="no face found")]
    s = summarise(rows, model="m", split="valid", seed=0, seconds=1.0)
    assert s["answers"] == {"plain": {"found by mesh": 2, "found by mesh_refined": 1},
                            "headset": {"no face here, locator": 2, "no face found": 1}}
    assert any("finder on headset frames: no face here, locator 2; no face found 1" in line for line in table(s))


def test_heldout_accuracy_on_real_faces(tiny_model, ferplus_dir):
    s = heldout_accuracy(tiny_model, split="valid", n=3, seed=1, causes=True)
    assert s["faces"] == 3 and s["split"] == "valid"
    assert sum(s["headset_posed_by"].values()) == 3
    assert all(0.0 <= v <= 100.0 for v in s["found_pct"].values())
    assert set(s["causes"]) == {"composition", "alignment", *R.FACTORS}
    assert s["gap"]["plain_to_crops"] == pytest.approx(s["accuracy"]["crop"] - s["accuracy"]["plain"])


@pytest.mark.parametrize("argv, message", [
    (["--heldout", "--split", "train"], "error: argument --split: invalid choice: 'train' (choose from 'valid', 'test')"),
    (["--split", "test"], "error: --split and --figure go with --heldout"),
    (["--heldout", "--e2e"], "error: --heldout runs alone: not with --e2e or --soak"),
    (["--heldout", "--heldout-n", "0"], "error: argument --heldout-n: expected a number >= 1, got 0"),
    (["--locator", "assets/models/headset_locator.onnx"], "error: --locator goes with --e2e or --heldout"),
    (["--heldout", "--locator", "/nonexistent/l.onnx"], "error: /nonexistent/l.onnx: headset locator model not found"),
    (["--e2e", "--mesh-only", "--locator", "assets/models/headset_locator.onnx"],
     "error: --locator and --mesh-only contradict each other (--mesh-only runs no locator)"),
])
def test_heldout_command_refuses_bad_input_in_one_line(argv, message, capsys):
    from vrfer.cli.main import main

    assert main(["bench", *argv]) == 2
    assert capsys.readouterr().err.strip() == message


def test_heldout_command_reports_json_on_real_faces_and_draws_the_figure(tiny_model, ferplus_dir, tmp_path, capsys):
    import json

    from vrfer.cli.main import main

    assert main(["bench", "--heldout", "--model", str(tiny_model), "--heldout-n", "2", "--seed", "1", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["faces"] == 2 and s["split"] == "valid" and "causes" not in s  # Valid unless asked: it chooses
    assert main(["bench", "--heldout", "--figure", str(tmp_path / "f.jpg")]) == 0
    assert cv2.imread(str(tmp_path / "f.jpg")).shape == (960, 1280, 3)


def test_heldout_command_runs_the_finder_with_the_locator_it_is_given(tiny_model, ferplus_dir, tmp_path, capsys):
    """``--locator`` swaps the finder's headset locator: the shipped one with its locator threshold
    set to 1 refuses every face only the locator finds (every headset frame), on the same frames;
    the record names the file that ran."""
    import json

    import onnx

    from vrfer.cli.main import main
    from vrfer.core.face import DEFAULT_LOCATOR

    strict = onnx.load(str(DEFAULT_LOCATOR))
    for prop in strict.metadata_props:
        if prop.key == "vrfer.presence_threshold":
            prop.value = "1.0"
    onnx.save(strict, str(tmp_path / "strict_locator.onnx"))
    runs = []
    for extra in ([], ["--locator", str(tmp_path / "strict_locator.onnx")]):
        assert main(["bench", "--heldout", "--model", str(tiny_model), "--heldout-n", "4", "--seed", "2", "--json",
                     *extra]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0]["locator"] == str(DEFAULT_LOCATOR) and runs[1]["locator"] == str(tmp_path / "strict_locator.onnx")
    shipped, strict_run = runs[0]["answers"]["headset"], runs[1]["answers"]["headset"]
    assert shipped.get("found by locator", 0) >= 1
    assert "found by locator" not in strict_run and strict_run.get("no face here, locator", 0) >= 1


def test_heldout_command_without_fer_plus_is_one_error_line(tmp_path, monkeypatch, capsys):
    from vrfer.cli.main import main

    monkeypatch.setenv("VRFER_FERPLUS", str(tmp_path))
    assert main(["bench", "--heldout", "--heldout-n", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: the held-out benchmark needs FER+ valid faces: {tmp_path}/FER2013Valid/label.csv "
                   "is missing (set VRFER_FERPLUS)")


def test_found_rates_are_broken_down_by_group_and_by_where_the_camera_sat():
    from types import SimpleNamespace

    from vrfer.evalframes.bench import camera_group

    assert camera_group(SimpleNamespace(pitch=2.0, yaw=-5.0)) == "frontal"
    assert camera_group(SimpleNamespace(pitch=20.0, yaw=3.0)) == "low"
    assert camera_group(SimpleNamespace(pitch=-5.0, yaw=-20.0)) == "side"
    assert camera_group(SimpleNamespace(pitch=12.0, yaw=15.0)) == "low and side"
    base = dict(size=100, light="low", shape="wide", shell="black", hand=None, pose_source="mesh", truth="anger",
                crop="anger", plain="anger", plain_ideal="anger", headset="anger", headset_ideal="anger")
    rows = [dict(base, camera="low", headset=None), dict(base, camera="low"), dict(base, camera="frontal"),
            dict(base, camera="frontal", plain=None, size=250)]
    s = summarise(rows, model="m", split="valid", seed=0, seconds=1.0)
    assert s["by"]["camera"]["low"]["found_headset"] == 50.0 and s["by"]["camera"]["low"]["found_plain"] == 100.0
    assert s["by"]["camera"]["frontal"]["found_plain"] == 50.0
    assert s["by"]["shell"]["black"]["found_headset"] == 75.0
    assert s["by"]["face_size_px"]["80-119"]["found_headset"] == 100 * 2 / 3
    assert any(line.startswith("  by camera: frontal (2)") and "; low (2) 100/100/50 found 100/50" in line
               for line in table(s))
