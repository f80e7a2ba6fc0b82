"""vrfer.core.face.headset: the headset locator's model contract, the runtime fallback order, and the real
exported locator on drawn-headset frames of FER+ Test faces."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.errors import ModelError
from vrfer.core.face import FaceConfig, FaceLocator, FarFaceDetector, default_fallbacks
from vrfer.core.face.fallbacks import GeometryTracker, RoiFallback
from vrfer.core.face.headset import (DEFAULT_LOCATOR, FORMAT_VERSION, INPUT_H, INPUT_W, KIND, HeadsetLocator,
                                     zoom_windows)
from vrfer.core.geometry import to_fraction
from vrfer.core.types import FaceGeometry, Frame

W, H = 640, 480
# Template anchors (right iris, left iris, nose tip, right/left mouth corner), canonical px.
ANCHORS = np.array([[14.164, 17.85], [32.66, 17.519], [23.378, 29.646], [16.412, 37.09], [30.995, 36.817]])


def _placement(side: float, centre: tuple[float, float]) -> np.ndarray:
    m = cv2.getRotationMatrix2D((23.5, 23.5), 0.0, side / 48)
    m[:, 2] += np.array(centre) - 23.5
    return m


def build_locator(path: Path, points: np.ndarray, face_logit: float, meta: dict[str, str] | None = None,
                  occluded_logit: float | None = None, presence_logit: float | None = None,
                  face_weight: float = 0.0, batch: str | int = "N") -> Path:
    """A real ONNX file with the locator's contract that always answers ``points`` (5 x 2 fractions).
    ``face_weight``: the face logit also adds that much per input pixel (inputs lie in [-1, 1]), so
    brighter views look more like faces."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # Flatten -> Gemm with zero weights: the bias is the answer. Columns 0..9 points, 10 the face
    # logit, 11 the (optional) headset logit.
    bias = np.r_[np.ravel(points), face_logit, 0.0 if occluded_logit is None else occluded_logit,
                 0.0 if presence_logit is None else presence_logit]
    weights = np.zeros((INPUT_H * INPUT_W, len(bias)), np.float32)
    weights[:, 10] = face_weight
    inits = [numpy_helper.from_array(weights, "w"),
             numpy_helper.from_array(bias.astype(np.float32), "b")]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("p0", [0]), ("p1", [10]), ("f0", [10]), ("f1", [11]), ("o0", [11]), ("o1", [12]), ("r0", [12]), ("r1", [13]),
                                 ("ax", [1]))]
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "w", "b"], ["out"]),
             helper.make_node("Slice", ["out", "p0", "p1", "ax"], ["points"]),
             helper.make_node("Slice", ["out", "f0", "f1", "ax"], ["face"])]
    outputs = [helper.make_tensor_value_info("points", TensorProto.FLOAT, [batch, 10]),
               helper.make_tensor_value_info("face", TensorProto.FLOAT, [batch, 1])]
    if occluded_logit is not None:
        nodes.append(helper.make_node("Slice", ["out", "o0", "o1", "ax"], ["occluded"]))
        outputs.append(helper.make_tensor_value_info("occluded", TensorProto.FLOAT, ["N", 1]))
    if presence_logit is not None:
        nodes.append(helper.make_node("Slice", ["out", "r0", "r1", "ax"], ["presence"]))
        outputs.append(helper.make_tensor_value_info("presence", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(
        nodes, "fake_locator", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, INPUT_H, INPUT_W])],
        outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    default = {"vrfer.kind": KIND, "vrfer.locator_version": str(FORMAT_VERSION),
               "vrfer.anchors": json.dumps(ANCHORS.tolist())}
    helper.set_model_props(model, default if meta is None else meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# A face 240 px wide in the frame's middle: its refine window (two face sides tall) is the whole
# frame, so a model that always answers the same fractions is right in both passes.
PLACE = _placement(240.0, (320.0, 240.0))
FRAME_ANCHORS = ANCHORS @ PLACE[:, :2].T + PLACE[:, 2]


@pytest.fixture
def found_model(tmp_path: Path) -> Path:
    """Always answers the anchors of a face at PLACE, with a high face score."""
    return build_locator(tmp_path / "found.onnx", to_fraction(FRAME_ANCHORS, (0, 0, W, H)), 6.0)


@pytest.fixture
def missing_model(tmp_path: Path) -> Path:
    return build_locator(tmp_path / "missing.onnx", to_fraction(FRAME_ANCHORS, (0, 0, W, H)), -6.0)


def _blank(t: float, index: int = 0) -> Frame:
    return Frame(image=np.full((H, W, 3), 120, np.uint8), index=index, timestamp=t)


# ----------------------------------------------------------------- the model contract

def test_headset_locator_refuses_expression_model(tiny_model: Path) -> None:
    with pytest.raises(ModelError, match="not a headset locator") as err:
        HeadsetLocator(tiny_model)
    assert "\n" not in str(err.value) and str(tiny_model) in str(err.value)


@pytest.mark.parametrize("meta, message", [
    ({"vrfer.kind": KIND, "vrfer.locator_version": "99", "vrfer.anchors": json.dumps(ANCHORS.tolist())},
     "vrfer.locator_version is 99, this runtime reads 1"),
    ({"vrfer.kind": KIND, "vrfer.locator_version": "1", "vrfer.anchors": "[[1, 2]]"},
     "vrfer.anchors must be 5 canonical"),
    ({"vrfer.kind": KIND, "vrfer.locator_version": "1"}, "metadata is malformed"),
])
def test_headset_locator_refuses_bad_metadata(tmp_path: Path, meta: dict[str, str], message: str) -> None:
    path = build_locator(tmp_path / "bad.onnx", np.zeros((5, 2)), 0.0, meta)
    with pytest.raises(ModelError, match=message):
        HeadsetLocator(path)


def test_headset_locator_refuses_non_onnx_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not a model\n" * 20)
    with pytest.raises(ModelError, match="not a readable ONNX model") as err:
        HeadsetLocator(junk)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="headset locator model not found"):
        HeadsetLocator(tmp_path / "absent.onnx")


def test_headset_locator_geometry_follows_predicted_anchors(found_model: Path, missing_model: Path) -> None:
    g = HeadsetLocator(found_model)(_blank(0.0))
    assert isinstance(g, FaceGeometry) and g.path == "locator" and g.score > 0.99
    # The similarity fitted on the anchors is the placement's inverse: frame -> canonical.
    np.testing.assert_allclose(g.transform, cv2.invertAffineTransform(PLACE), atol=1e-3)
    assert g.box == pytest.approx((200.0, 120.0, 240.0, 240.0), abs=1.0)
    assert HeadsetLocator(missing_model)(_blank(0.0)) is None


def test_headset_locator_tracks_with_one_pass(found_model: Path) -> None:
    loc = HeadsetLocator(found_model, hold_s=0.25)
    loc(_blank(0.0))
    assert loc.passes == 2  # whole frame, then the window
    loc(_blank(0.03, 1))
    assert loc.passes == 3  # held: the window only
    loc(_blank(1.0, 2))
    assert loc.passes == 5  # too old: both passes again


@pytest.mark.parametrize("shape", [(480, 640), (720, 1280), (1080, 1920), (640, 480), (1920, 1080), (200, 260)])
def test_zoom_windows_hold_every_face_up_to_a_quarter_of_the_frame(shape: tuple[int, int]) -> None:
    fh, fw = shape
    tiles = zoom_windows(shape)
    assert tiles
    for x, y, w, h in tiles:
        assert w * INPUT_H == h * INPUT_W or abs(w / h - INPUT_W / INPUT_H) < 0.01  # the input's 4:3
        assert h == round(fh / 2) >= INPUT_H  # always a zoom in
        assert (0 <= x and x + w <= fw) or w > fw  # inside the frame unless wider than it (centred, padded)
    side = fh / 4
    for cy in np.linspace(side / 2, fh - side / 2, 23):
        for cx in np.linspace(side / 2, fw - side / 2, 31):
            assert any(x <= cx - side / 2 and cx + side / 2 <= x + w and y <= cy - side / 2 and cy + side / 2 <= y + h
                       for x, y, w, h in tiles), (cx, cy)
    assert len(zoom_windows((480, 640))) == 9 and len(zoom_windows((720, 1280))) == 15


@pytest.mark.parametrize("shape", [(96, 128), (60, 80), (120, 160), (400, 12000)])
def test_zoom_windows_leave_out_frames_a_tile_would_not_zoom_into_or_would_take_too_many_of(shape) -> None:
    assert zoom_windows(shape) == []  # under two network inputs tall, or a strip that would need 267 tiles


def test_headset_locator_zooms_in_only_when_the_whole_frame_shows_nothing(found_model: Path, missing_model: Path,
                                                                         tmp_path: Path) -> None:
    for zoom, passes in ((True, 1 + 9), (False, 1)):
        loc = HeadsetLocator(missing_model, hold_s=0.0, zoom=zoom)
        assert loc(_blank(0.0)) is None and loc.passes == passes  # the tiles go in one batched run
    # A graph exported with a fixed batch of 1 runs its tiles one at a time instead of failing.
    fixed = build_locator(tmp_path / "fixed.onnx", to_fraction(FRAME_ANCHORS, (0, 0, W, H)), -6.0, batch=1)
    loc = HeadsetLocator(fixed, hold_s=0.0, zoom=True)
    assert loc(_blank(0.0)) is None and loc.passes == 1 + 9
    found = HeadsetLocator(found_model, hold_s=0.0, zoom=True)
    found(_blank(0.0))
    assert found.passes == 2  # found whole: no tiles, even with them on


def test_headset_locator_zoom_answers_in_the_tile_that_looks_most_like_a_face(tmp_path: Path) -> None:
    # A model whose face logit is 5 + 10 x the view's mean input (-1 black .. 1 white), answering the
    # anchors of a face filling the middle of any view. A white patch in the lower right of a black
    # frame: the whole frame scores 5 - 7.9 (no face), the lower-right tile 5 - 1.7 (a face), every
    # other tile below 0. The answer is the face that tile shows: centred on it, half the frame's size.
    from vrfer.core.geometry import face_centre_side

    meta = {"vrfer.kind": KIND, "vrfer.locator_version": str(FORMAT_VERSION),
            "vrfer.anchors": json.dumps(ANCHORS.tolist())}
    args = (to_fraction(FRAME_ANCHORS, (0, 0, W, H)), 5.0)
    model = build_locator(tmp_path / "bright.onnx", *args, meta | {"vrfer.zoom": "1"}, face_weight=10.0 / (INPUT_H * INPUT_W))
    unsaid = build_locator(tmp_path / "unsaid.onnx", *args, meta, face_weight=10.0 / (INPUT_H * INPUT_W))
    frame = np.zeros((H, W, 3), np.uint8)
    frame[300:460, 420:620] = 255
    assert HeadsetLocator(model, hold_s=0.0, zoom=False).locate(frame) is None
    assert HeadsetLocator(unsaid, hold_s=0.0).locate(frame) is None  # a model that does not say so is not zoomed
    loc = HeadsetLocator(model, hold_s=0.0)  # its metadata says the tiles were judged
    points, score = loc.locate(frame)
    centre, side, _ = face_centre_side(points, ANCHORS)
    np.testing.assert_allclose(centre, (480.0, 360.0), atol=1.0)
    assert side == pytest.approx(120.0, abs=1.0) and score > 0.9
    assert loc.passes == 1 + 9 + 1  # whole frame, the tiles in one run, then the window


# ----------------------------------------------------------------- runtime order

def test_default_fallbacks_order_and_options(found_model: Path) -> None:
    cfg = FaceConfig(roi=(200, 300, 240, 120))
    kinds = [type(f) for f in default_fallbacks(cfg, locator=found_model)]
    assert kinds == [HeadsetLocator, GeometryTracker, RoiFallback]
    still = default_fallbacks(FaceConfig(tracking=False), locator=found_model)
    assert [type(f) for f in still] == [HeadsetLocator] and still[0].hold_s == 0.0
    absent = default_fallbacks(FaceConfig(), locator=found_model.parent / "absent.onnx")
    assert [type(f) for f in absent] == [GeometryTracker]  # no model installed: no locator
    far = default_fallbacks(FaceConfig(roi=(200, 300, 240, 120), far_faces=True), locator=found_model)
    assert [type(f) for f in far] == [HeadsetLocator, GeometryTracker, FarFaceDetector, RoiFallback]
    far[2].close()
    assert default_fallbacks(FaceConfig(mode="roi", roi=(0, 0, 10, 10))) == []


def test_face_locator_prefers_locator_over_tracked_and_roi(found_model: Path) -> None:
    cfg = FaceConfig(roi=(200, 300, 240, 120))
    with FaceLocator(cfg, default_fallbacks(cfg, locator=found_model)) as loc:
        assert loc.process(_blank(0.0)).path == "locator"


def test_face_locator_falls_back_to_roi_when_nothing_else_answers(missing_model: Path) -> None:
    cfg = FaceConfig(roi=(200, 300, 240, 120))
    with FaceLocator(cfg, default_fallbacks(cfg, locator=missing_model)) as loc:
        g = loc.process(_blank(0.0))
        assert g.path == "roi" and g.box == (200.0, 300.0, 240.0, 120.0)
    with FaceLocator(FaceConfig(), default_fallbacks(FaceConfig(), locator=missing_model)) as loc:
        assert loc.process(_blank(0.0)) is None and loc.last_reason == "no face found"


def test_geometry_tracker_repeats_for_a_limited_age() -> None:
    tracker = GeometryTracker(max_age_s=0.5)
    assert tracker(_blank(0.0)) is None
    g = FaceGeometry(transform=cv2.invertAffineTransform(PLACE), box=(1.0, 2.0, 3.0, 4.0), path="mesh", yaw=5.0)
    tracker.observe(g, 10.0)
    held = tracker(_blank(10.3))
    assert held.path == "tracked" and held.yaw == 5.0 and np.array_equal(held.transform, g.transform)
    assert tracker(_blank(10.6)) is None
    assert tracker(_blank(9.0)) is None  # a clock that went back: nothing to repeat


def test_geometry_tracker_does_not_carry_a_face_across_images() -> None:
    """A slideshow or folder cut: the last face's place says nothing about the next image."""
    import dataclasses

    tracker = GeometryTracker(max_age_s=0.5)
    g = FaceGeometry(transform=cv2.invertAffineTransform(PLACE), box=(1.0, 2.0, 3.0, 4.0), path="mesh")
    tracker.observe(g, 10.0, "a.png")
    assert tracker(dataclasses.replace(_blank(10.1), file="a.png")).path == "tracked"
    assert tracker(dataclasses.replace(_blank(10.1), file="b.png")) is None


def test_roi_fallback_ignores_a_rectangle_outside_the_frame() -> None:
    assert RoiFallback((600, 400, 100, 100))(_blank(0.0)) is None
    assert RoiFallback((0, 0, 64, 32))(_blank(0.0)).path == "roi"


# ----------------------------------------------------------------- real faces

def _test_face(root: Path, i: int) -> np.ndarray:
    names = [line.split(",", 1)[0] for line in (root / "FER2013Test" / "label.csv").read_text().splitlines()]
    return cv2.imread(str(root / "FER2013Test" / names[i]), cv2.IMREAD_GRAYSCALE)


def test_face_locator_order_mesh_then_tracked_then_roi(ferplus_dir: Path, missing_model: Path) -> None:
    from vrfer.training.headset.synth import compose

    rng = np.random.default_rng(1)
    cfg = FaceConfig(roi=(200, 300, 240, 120))
    with FaceLocator(cfg, default_fallbacks(cfg, locator=missing_model)) as loc:
        paths = []
        for i in range(6):  # the first Test faces the mesh finds
            frame, _ = compose(_test_face(ferplus_dir, i), rng, side_range=(220, 220), max_angle=0)
            g = loc.process(Frame(frame, 0, 0.0))
            paths.append(g.path if g else None)
            if g is not None and g.path == "mesh":
                break
        assert paths[-1] == "mesh", paths
        mesh = g
        held = loc.process(_blank(0.2, 1))
        assert held.path == "tracked" and np.array_equal(held.transform, mesh.transform)
        assert loc.process(_blank(1.0, 2)).path == "roi"


@pytest.mark.parametrize("occluded, path, passes", [(6.0, "locator", 1), (-6.0, "mesh", 1), (None, "mesh", 0)])
def test_face_locator_distrusts_mesh_when_locator_sees_a_headset(ferplus_dir: Path, tmp_path: Path,
                                                                 occluded, path: str, passes: int) -> None:
    from vrfer.training.headset.synth import compose

    model = build_locator(tmp_path / "judge.onnx", to_fraction(FRAME_ANCHORS, (0, 0, W, H)), 6.0,
                          occluded_logit=occluded)
    rng = np.random.default_rng(2)
    cfg = FaceConfig(tracking=False)
    with FaceLocator(cfg) as mesh_only:
        for i in range(10):
            frame, _ = compose(_test_face(ferplus_dir, i), rng, side_range=(220, 220), max_angle=0)
            if mesh_only.process(Frame(frame, i, float(i))) is not None:
                break
        else:
            pytest.fail("the mesh found none of 10 Test faces")
    fallbacks = default_fallbacks(cfg, locator=model)
    with FaceLocator(cfg, fallbacks) as loc:
        g = loc.process(Frame(frame, i, float(i)))
    assert g.path == path
    assert fallbacks[0].passes == passes  # a distrusted mesh answer costs one pass; the fallback reuses it


@pytest.mark.skipif(not DEFAULT_LOCATOR.is_file(), reason=f"{DEFAULT_LOCATOR} is not trained yet")
def test_shipped_locator_finds_faces_under_drawn_headsets(ferplus_dir: Path) -> None:
    """The runtime order with the real model on Test-face pairs: the clean frame stays with the
    mesh, the headset twin goes to the locator (found, near the teacher's geometry)."""
    from vrfer.training.headset.synth import Teacher, anchors, frame_points, make_sample

    teacher = Teacher()
    rng = np.random.default_rng(7)
    cfg = FaceConfig(tracking=False)
    errors = []
    try:
        with FaceLocator(cfg, default_fallbacks(cfg)) as loc:
            for i in range(40, 52):
                s = make_sample(_test_face(ferplus_dir, i), teacher, rng)
                if s is None or teacher(s.clean) is None:
                    continue  # no pair, or a face only the teacher's second look (a crop) finds: not this test's
                clean = loc.process(Frame(s.clean, 2 * i, float(i)))
                if clean is None and (loc.last_reason or "").startswith("head turned"):
                    continue  # the pose gate, not a miss
                assert clean is not None and clean.path == "mesh", f"Test face {i}: clean frame went to {clean}"
                g = loc.process(Frame(s.headset, 2 * i + 1, float(i) + 0.5))
                assert g is not None and g.path == "locator", f"Test face {i}: headset frame went to {g}"
                pred = frame_points(g.transform, anchors())
                iod = np.linalg.norm(s.points[0] - s.points[1])
                errors.append(np.linalg.norm(pred - s.points, axis=1).mean() / iod)
                if len(errors) == 4:
                    break
    finally:
        teacher.close()
    assert len(errors) == 4
    assert max(errors) < 0.35, errors  # within a third of the eye distance of the un-occluded teacher


@pytest.mark.skipif(not DEFAULT_LOCATOR.is_file(), reason=f"{DEFAULT_LOCATOR} is not trained yet")
def test_shipped_locator_zoom_finds_small_faces_the_whole_frame_misses(ferplus_dir: Path) -> None:
    """80-110 px colour faces in 640x480 frames (16-22 px in the whole frame's input): the tiles find
    more of them, and every face they find is the one placed there."""
    from vrfer.core.geometry import face_centre_side
    from vrfer.training.headset import webcam
    from vrfer.training.headset.synth import compose, placed_square

    rng = np.random.default_rng(3)
    on, off = HeadsetLocator(hold_s=0.0, zoom=True), HeadsetLocator(hold_s=0.0, zoom=False)
    hits = {True: 0, False: 0}
    for i in range(40):
        frame, place = compose(_test_face(ferplus_dir, i), rng, (80, 110), 10, tint=webcam.skin_tint(rng),
                               mask=webcam.cutout(rng))
        frame = webcam.shoot(frame, webcam.draw_webcam(rng))
        centre, side = placed_square(place)
        for zoom, loc in ((True, on), (False, off)):
            found = loc.locate(frame)
            if found is not None:
                c, _, _ = face_centre_side(found[0], loc.info.anchors)
                near = float(np.hypot(*(c - centre))) < 0.3 * side
                assert near or not zoom, f"Test face {i}: the zoomed answer is elsewhere"
                hits[zoom] += near
    assert hits[True] >= hits[False] + 4, hits
