"""vrfer.training.headset: frame compositing, headset drawing and the labels the locator learns from."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.errors import DatasetError
from vrfer.core.face.headset import INPUT_H, INPUT_W, net_input, window_around
from vrfer.core.geometry import from_fraction, to_fraction
from vrfer.core.preprocess import crop_face
from vrfer.training.headset import synth
from vrfer.training.headset.synth import (ANCHOR_NAMES, FLIP_ORDER, H, W, Headset, anchors, compose, draw_headset,
                                          frame_points, placed_square)


def _face(seed: int = 0) -> np.ndarray:
    """A 48 px face-like test card: smooth noise with a bright cross at the canonical centre."""
    rng = np.random.default_rng(seed)
    face = cv2.resize(rng.integers(0, 255, (6, 6), dtype=np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
    face[22:26, :] = 255
    face[:, 22:26] = 255
    return face


def test_compose_placement_maps_canonical_face_onto_frame() -> None:
    face = _face()
    for seed in range(5):
        frame, place = compose(face, np.random.default_rng(seed))
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        # Warping the frame back through the placement gives the face again (tint changes the level only).
        back = crop_face(frame, cv2.invertAffineTransform(place))
        r = np.corrcoef(back[8:40, 8:40].ravel().astype(float), face[8:40, 8:40].ravel().astype(float))[0, 1]
        assert r > 0.95, f"seed {seed}: correlation {r:.3f}"


def test_frame_points_inverts_transform() -> None:
    place = synth.placement(200.0, 12.0, (300.0, 250.0))
    frame_to_canon = cv2.invertAffineTransform(place)
    pts = frame_points(frame_to_canon, anchors())
    expected = anchors() @ place[:, :2].T + place[:, 2]
    np.testing.assert_allclose(pts, expected, atol=1e-9)


@pytest.mark.parametrize("window", [None, (100, 40, 320, 240), (-60, -30, 400, 300), (450, 330, 256, 192)])
def test_label_fractions_point_at_the_marked_pixel_in_the_network_input(window) -> None:
    """A bright dot drawn at a label lands where its fraction says, in the 96x128 input."""
    frame = np.zeros((H, W), np.uint8)
    win = (0, 0, W, H) if window is None else window
    x0, y0, ww, wh = win
    p = np.array([[x0 + 0.37 * ww, y0 + 0.61 * wh]])
    cv2.circle(frame, (int(round(p[0, 0])), int(round(p[0, 1]))), 4, 255, -1)
    img = net_input(frame, window).astype(np.float64)
    frac = to_fraction(p, win)[0]
    ys, xs = np.mgrid[0:INPUT_H, 0:INPUT_W]
    centroid = np.array([(img * xs).sum(), (img * ys).sum()]) / img.sum()
    np.testing.assert_allclose(centroid, frac * [INPUT_W, INPUT_H] - 0.5, atol=0.35)
    np.testing.assert_allclose(from_fraction(frac, win), p, atol=1e-9)


def test_window_around_centres_the_face_at_twice_its_size() -> None:
    place = synth.placement(180.0, 0.0, (320.0, 200.0))
    pts = anchors() @ place[:, :2].T + place[:, 2]
    x, y, w, h = window_around(pts, anchors())
    assert abs(h - 360) <= 1 and abs(w / h - INPUT_W / INPUT_H) < 0.01
    assert abs(x + w / 2 - 320.0) <= 1 and abs(y + h / 2 - 200.0) <= 1


def test_flip_order_swaps_subject_sides() -> None:
    names = [ANCHOR_NAMES[i] for i in FLIP_ORDER]
    assert names == ["left_iris", "right_iris", "nose_tip", "left_mouth", "right_mouth"]


def test_draw_headset_hides_the_eyes_and_leaves_the_mouth() -> None:
    rng = np.random.default_rng(3)
    frame, place = compose(_face(1), rng, side_range=(240, 240), max_angle=0)
    transform = cv2.invertAffineTransform(place)
    hs = Headset(shell=(30, 30, 30), width=54, height=22, dx=0, dy=0, tilt=0, roundness=4, straps=True,
                 top_strap=False, glare=False, extra="")
    out = draw_headset(frame, transform, hs, rng)
    pts = np.round(frame_points(transform, anchors())).astype(int)
    for (x, y), name in zip(pts, ANCHOR_NAMES):
        if "iris" in name:
            assert out[y, x].max() < 90 and frame[y - 3:y + 4, x - 3:x + 4].max() > 90, name  # under the dark shell
        elif "mouth" in name:
            assert np.array_equal(out[y - 2:y + 3, x - 2:x + 3], frame[y - 2:y + 3, x - 2:x + 3]), name
    assert out is not frame and not np.array_equal(out, frame)


def test_generate_refuses_test_split() -> None:
    from vrfer.training.headset.data import generate

    with pytest.raises(DatasetError, match="never trained on FER\\+ Test"):
        generate(1, 0, split="FER2013Test")


def test_make_sample_teacher_labels_match_placement(ferplus_dir: Path) -> None:
    """On real FER+ Train faces the teacher's anchors sit where the pasted face's features are:
    close to the template anchors carried through the placement (FER+ faces are roughly aligned)."""
    from vrfer.training.headset.data import ferplus_names

    folder, names = ferplus_names("FER2013Train", ferplus_dir)
    teacher = synth.Teacher()
    rng = np.random.default_rng(0)
    errors = []
    try:
        for name in names[:12]:
            s = synth.make_sample(cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE), teacher, rng)
            if s is None:
                continue
            errors.append(_anchor_error(s))
            assert s.headset.shape == s.clean.shape and not np.array_equal(s.headset, s.clean)
    finally:
        teacher.close()
    assert len(errors) >= 8
    assert np.median(errors) < 0.15, errors


def _anchor_error(s: synth.Sample) -> float:
    """Mean distance, in inter-ocular distances, from the teacher's anchors to the template anchors
    carried through the placement (FER+ faces are roughly aligned, so they should nearly agree)."""
    placed = anchors() @ s.placement[:, :2].T + s.placement[:, 2]
    return float(np.linalg.norm(s.points - placed, axis=1).mean() / np.linalg.norm(s.points[0] - s.points[1]))


def test_headset_bench_on_valid_faces_reads_only_valid_images(ferplus_dir: Path) -> None:
    # Models are chosen on Valid frames so that Test frames stay a report, not a selection.
    from vrfer.core.face.headset import DEFAULT_LOCATOR
    from vrfer.training.headset.bench import run, summarise

    result = run(6, 0, DEFAULT_LOCATOR, None, split="valid")
    valid = {p.name for p in (ferplus_dir / "FER2013Valid").glob("*.png")}
    assert result["rows"] and all(r["file"] in valid for r in result["rows"])
    summary = summarise(result)
    assert summary["split"] == "valid" and summary["pairs"] + summary["skipped_teacher_missed"] == 6
    assert 0.0 <= summary["headset"]["found"] <= 1.0


def test_headset_bench_webcam_share_draws_both_families_and_reports_each(ferplus_dir: Path) -> None:
    """``--webcam SHARE``: that share of the pairs comes from the broadened family (colour frames,
    80-340 px), and the summary gives found and accuracy for each family and its smallest faces."""
    from vrfer.core.face.headset import DEFAULT_LOCATOR
    from vrfer.core.model import DEFAULT_MODEL
    from vrfer.training.headset.bench import run, summarise

    result = run(10, 3, DEFAULT_LOCATOR, DEFAULT_MODEL, split="valid", webcam=0.5)
    families = [r["family"] for r in result["rows"]]
    assert {"synth", "webcam"} <= set(families)
    assert all(80 <= r["side"] <= 340 for r in result["rows"] if r["family"] == "webcam")
    summary = summarise(result)
    by = summary["by_family"]
    assert by["synth"]["pairs"] + by["webcam"]["pairs"] == summary["pairs"]
    webcam_rows = [r for r in result["rows"] if r["family"] == "webcam"]
    assert by["webcam"]["headset_found"] == round(np.mean([r["headset_path"] is not None for r in webcam_rows]), 4)
    assert {"clean_accuracy", "headset_accuracy"} <= set(by["webcam"])
    assert summarise(run(4, 3, DEFAULT_LOCATOR, None, split="valid")).get("by_family") is None  # synth only: as before


def test_webcam_share_frames_carry_the_teachers_labels(ferplus_dir: Path) -> None:
    """The webcam share: colour frames from one drawn webcam for both twins, faces of 80-340 px,
    anchors from the teacher on the bare frame that sit on the pasted face; ``generate`` labels
    each face's six inputs (headset, bare, second headset; whole frame and window) and its negatives."""
    from vrfer.training.headset.data import WEBCAM_SIDES, ferplus_names, generate
    from vrfer.training.headset.webcam import webcam_sample

    folder, names = ferplus_names("FER2013Train", ferplus_dir)
    teacher = synth.Teacher()
    rng = np.random.default_rng(3)
    errors = []
    try:
        for name in names[:12]:
            s, film = webcam_sample(cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE), teacher, rng, 20.0)
            if s is None:
                continue
            side = placed_square(s.placement)[1]
            assert WEBCAM_SIDES[0] <= side <= WEBCAM_SIDES[1]
            errors.append(_anchor_error(s))
            b, g, r = cv2.split(s.clean.astype(np.int16))
            assert np.abs(r - b).mean() > 2, "a webcam frame is in colour"
            assert np.array_equal(film(s.raw, s.placement), s.clean), "one camera for the bare frame and its twin"
            assert not np.array_equal(s.headset, s.clean)
    finally:
        teacher.close()
    assert len(errors) >= 6 and np.median(errors) < 0.15, errors

    data = generate(5, 1, negatives=0.34, log_every=0, webcam_share=1.0)
    face, hs, y = data["face"], data["headset"], data["y"]
    n_faces = int(face.sum()) // 6
    assert n_faces >= 3 and len(face) - 6 * n_faces >= 1, "faces found and a negative drawn"
    positives = np.flatnonzero(face)
    assert hs[positives].tolist() == [1, 1, 0, 0, 1, 1] * n_faces
    assert ((y[positives] > 0) & (y[positives] < 1)).all()
    assert not y[face == 0].any()

    # Second twins drawn by augment.draw_occluder, labelled as every headset twin is. The first face
    # is drawn alike up to its second twin (rows 0-3), which differs (row 4, the whole frame; its
    # labels are the same, its window (row 5) is jittered by the next draws).
    other = generate(5, 1, negatives=0.34, log_every=0, webcam_share=1.0, occluder_share=1.0)
    pos = np.flatnonzero(other["face"])
    assert len(pos) >= 18 and other["headset"][pos].tolist() == [1, 1, 0, 0, 1, 1] * (len(pos) // 6)
    assert ((other["y"][pos] > 0) & (other["y"][pos] < 1)).all()
    assert np.array_equal(other["x"][:4], data["x"][:4]) and np.array_equal(other["y"][:5], data["y"][:5])
    assert np.abs(other["x"][4].astype(int) - data["x"][4]).mean() > 1


def test_face_free_negatives_come_whole_and_windowed_and_stay_out_of_the_validation_rows(ferplus_dir: Path,
                                                                                          tmp_path: Path) -> None:
    """``vrfer headset data --face-free N``: N Train-side face-free frames of each kind, each as the
    whole frame and as a window somewhere in it, labelled no face (a headset only for the headset on
    a desk), placed before the faces so that the last rows (the locator's validation set) hold none of them."""
    from vrfer.cli.main import main
    from vrfer.core.facefree import KINDS, face_free_frames
    from vrfer.training.headset.data import FACE_FREE_SEED, face_free_inputs

    neg = face_free_inputs(2, np.random.default_rng(0), webcam_share=0.0)
    frames = list(face_free_frames(2, split="train", seed=FACE_FREE_SEED))
    assert len(neg["x"]) == 2 * len(frames) == 2 * 2 * len(KINDS)
    assert neg["x"].shape[1:] == (INPUT_H, INPUT_W) and not neg["face"].any() and not neg["y"].any()
    assert neg["headset"].tolist() == [int(f.kind == "headset_on_desk") for f in frames for _ in (0, 1)]
    whole = net_input(cv2.cvtColor(frames[0].image, cv2.COLOR_BGR2GRAY))
    assert np.array_equal(neg["x"][0], whole) and not np.array_equal(neg["x"][1], whole)
    # The presence head fits on seed 0 and chooses on seed 1: these frames are neither.
    assert not np.array_equal(frames[0].image, next(face_free_frames(1, split="train", seed=0)).image)

    out = tmp_path / "set.npz"
    assert main(["headset", "data", "--n", "3", "--seed", "1", "--face-free", "1", "--out", str(out)]) == 0
    data = np.load(out)
    n_free = 2 * len(KINDS)
    assert not data["face"][:n_free].any() and data["face"][n_free:].sum() >= 6


def test_the_teacher_labels_small_faces_in_a_second_look_where_they_were_pasted(ferplus_dir: Path) -> None:
    """Faces of 85-100 px: the whole-frame mesh misses most of them; given where the face was pasted,
    the teacher looks again in an upscaled crop and labels them, on the pasted face, in frame pixels."""
    from vrfer.training.headset.data import ferplus_names

    folder, names = ferplus_names("FER2013Train", ferplus_dir)
    teacher = synth.Teacher()
    rng = np.random.default_rng(4)
    whole = second = 0
    errors = []
    try:
        for name in names[:12]:
            frame, place = compose(cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE), rng, (85, 100), 10.0)
            img = synth.camera(frame, rng)
            t = teacher(img)
            whole += t is not None and synth.teacher_agrees(t, place)
            t = teacher(img, place)
            if t is not None and synth.teacher_agrees(t, place):
                second += 1
                tpl = anchors()
                true = tpl @ place[:, :2].T + place[:, 2]
                errors.append(np.linalg.norm(frame_points(t, tpl) - true, axis=1).mean()
                              / np.linalg.norm(true[0] - true[1]))
    finally:
        teacher.close()
    assert second >= 10 and second >= whole + 4, (whole, second)
    assert np.median(errors) < 0.2, errors
