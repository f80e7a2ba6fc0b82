"""vrfer.core.face.locator coarse to fine: a second mesh on a crop around a small face that the mesh missed
and a fallback found, with real mediapipe on FER+ Test faces and a real (hand-built) ONNX
headset locator; and the far-face hint (core.face.far) that counts only once that mesh confirms it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.face import (FaceConfig, FaceLocator, FarFaceDetector, GeometryTracker, RoiFallback, default_fallbacks,
                             load_template)
from vrfer.core.face.far import keypoint_targets
from vrfer.core.face.headset import FORMAT_VERSION, INPUT_H, INPUT_W, KIND, HeadsetLocator
from vrfer.core.face.locator import REFINE_MARGINS, _agrees
from vrfer.core.geometry import canonical_box, face_square, to_fraction
from vrfer.core.types import FaceGeometry, Frame

W, H = 640, 480
SMALL = 130  # px: the mesh misses about half the faces this small in a 640x480 frame
HINT_SIDE = 240.0  # what the rough finder below answers: the face twice too big, as the locator can
# Template anchors (right iris, left iris, nose tip, right/left mouth corner), canonical px.
ANCHORS = np.array([[14.164, 17.85], [32.66, 17.519], [23.378, 29.646], [16.412, 37.09], [30.995, 36.817]])


def _square(side: float, centre: tuple[float, float]) -> np.ndarray:
    """Frame -> canonical map of a face ``side`` px wide centred on ``centre``."""
    k = 48.0 / side
    return np.array([[k, 0.0, 23.5 - k * centre[0]], [0.0, k, 23.5 - k * centre[1]]])


def _geometry(transform: np.ndarray, path: str = "locator") -> FaceGeometry:
    return FaceGeometry(transform=transform, box=canonical_box(transform, (H, W)), path=path)


HINT = _square(HINT_SIDE, (W / 2, H / 2))


class RoughFinder:
    """A fallback that always answers one fixed geometry (the headset locator's role), and counts calls."""

    def __init__(self, transform: np.ndarray = HINT) -> None:
        self.geometry = _geometry(transform)
        self.calls = 0

    def __call__(self, frame: Frame) -> FaceGeometry | None:
        self.calls += 1
        return self.geometry


def _face_frame(face: np.ndarray, centre: tuple[float, float] = (W / 2, H / 2), side: float = SMALL) -> np.ndarray:
    """The 48 px face, ``side`` px wide, centred on ``centre`` in a mid-grey frame."""
    frame = np.full((H, W), 110, np.uint8)
    m = cv2.invertAffineTransform(_square(side, centre))
    big = cv2.warpAffine(face, m, (W, H), flags=cv2.INTER_CUBIC)
    mask = cv2.warpAffine(np.full_like(face, 255), m, (W, H), flags=cv2.INTER_NEAREST)
    return cv2.cvtColor(np.where(mask > 0, big, frame), cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def missed_face(ferplus_dir: Path) -> np.ndarray:
    """The first FER+ Test face that the mesh alone misses at ``SMALL`` px in the frame's middle,
    but finds in a crop (the behaviour these tests need; there are many)."""
    names = [line.split(",", 1)[0] for line in (ferplus_dir / "FER2013Test" / "label.csv").read_text().splitlines()]
    with FaceLocator(FaceConfig(tracking=False)) as mesh_only, \
            FaceLocator(FaceConfig(tracking=False), [RoughFinder()]) as refining:
        for name in names[:40]:
            face = cv2.imread(str(ferplus_dir / "FER2013Test" / name), cv2.IMREAD_GRAYSCALE)
            image = _face_frame(face)
            if mesh_only.process(Frame(image, 0, 0.0)) is not None or mesh_only.last_reason != "no face found":
                continue
            g = refining.process(Frame(image, 0, 0.0))
            if g is not None and g.path == "mesh_refined":
                return face
    pytest.fail("none of the first 40 Test faces is missed by the mesh and found in a crop")


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def test_face_refine_aligns_a_small_face_the_mesh_missed(missed_face: np.ndarray) -> None:
    image = _face_frame(missed_face)
    truth = canonical_box(_square(SMALL, (W / 2, H / 2)), (H, W))
    with FaceLocator(FaceConfig(tracking=False)) as mesh_only:
        assert mesh_only.process(Frame(image, 0, 0.0)) is None
    finder = RoughFinder()
    with FaceLocator(FaceConfig(tracking=False), [finder]) as loc:
        g = loc.process(Frame(image, 0, 0.0))
        assert g.path == "mesh_refined" and loc.last_reason is None and loc.looks == 1
    assert g.landmarks.shape == (478, 2)  # the whole mesh, in frame pixels
    # The mesh's alignment, not the rough answer's: the crop lands on the face that was placed.
    assert _iou(g.box, truth) > 0.75, (g.box, truth)
    assert _iou(finder.geometry.box, truth) < 0.35
    centre, side = face_square(g.transform)
    assert np.hypot(*(centre - (W / 2, H / 2))) < 0.1 * SMALL and abs(side / SMALL - 1) < 0.15


def test_face_refine_off_keeps_the_fallback_answer(missed_face: np.ndarray) -> None:
    with FaceLocator(FaceConfig(tracking=False, refine=False), [RoughFinder()]) as loc:
        g = loc.process(Frame(_face_frame(missed_face), 0, 0.0))
        assert g.path == "locator" and loc.looks == 0


def build_judging_locator(path: Path, occluded_logit: float) -> Path:
    """A real ONNX headset locator that always sees a face at ``HINT`` (the frame's middle,
    ``HINT_SIDE`` px: its refine window is the whole frame, so both passes agree) and says a
    headset is there when ``occluded_logit`` > 0."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inv = cv2.invertAffineTransform(HINT)
    points = to_fraction(ANCHORS @ inv[:, :2].T + inv[:, 2], (0, 0, W, H))
    bias = np.r_[np.ravel(points), 6.0, occluded_logit].astype(np.float32)
    inits = [numpy_helper.from_array(np.zeros((INPUT_H * INPUT_W, 12), np.float32), "w"),
             numpy_helper.from_array(bias, "b")]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
              (("p0", [0]), ("p1", [10]), ("f1", [11]), ("o1", [12]), ("ax", [1]))]
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "w", "b"], ["out"]),
             helper.make_node("Slice", ["out", "p0", "p1", "ax"], ["points"]),
             helper.make_node("Slice", ["out", "p1", "f1", "ax"], ["face"]),
             helper.make_node("Slice", ["out", "f1", "o1", "ax"], ["occluded"])]
    graph = helper.make_graph(
        nodes, "judging_locator",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, INPUT_H, INPUT_W])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", k])
         for n, k in (("points", 10), ("face", 1), ("occluded", 1))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"vrfer.kind": KIND, "vrfer.locator_version": str(FORMAT_VERSION),
                                   "vrfer.anchors": json.dumps(ANCHORS.tolist())})
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("occluded_logit, path, looks", [(6.0, "locator", 0), (-6.0, "mesh_refined", 1)])
def test_face_refine_respects_the_headset_check(missed_face: np.ndarray, tmp_path: Path,
                                                occluded_logit: float, path: str, looks: int) -> None:
    """Under a headset the mesh guesses the eyes, so the locator's face is not handed back to it;
    the locator judges its own answer from the pass that found it: no extra network run."""
    locator = HeadsetLocator(build_judging_locator(tmp_path / "judge.onnx", occluded_logit), hold_s=0.0)
    with FaceLocator(FaceConfig(tracking=False), [locator]) as loc:
        g = loc.process(Frame(_face_frame(missed_face), 0, 0.0))
        assert g.path == path and loc.looks == looks
    assert locator.passes == 2  # whole frame, then the window: the same as without refinement


def test_face_refine_follows_a_held_face_in_its_crop(missed_face: np.ndarray) -> None:
    """On video a refined face is looked for in its own crop next: neither the whole-frame mesh
    (which misses it) nor the fallbacks run while it is there."""
    finder = RoughFinder()
    with FaceLocator(FaceConfig(), [finder]) as loc:
        boxes = []
        for i in range(6):
            centre = (W / 2 + 4 * i, H / 2 - 2 * i)  # drifting slowly
            g = loc.process(Frame(_face_frame(missed_face, centre), i, i / 30))
            assert g is not None and g.path == "mesh_refined", (i, g)
            boxes.append(g.box)
        assert finder.calls == 1
        assert boxes[-1][0] - boxes[0][0] == pytest.approx(20, abs=4)  # the answers follow the face
        assert boxes[-1][1] - boxes[0][1] == pytest.approx(-10, abs=4)
        gone = loc.process(Frame(np.full((H, W, 3), 110, np.uint8), 6, 6 / 30))
        assert gone.path == "locator" and finder.calls == 2  # the crop missed: back to the usual order


def test_face_refine_backs_off_while_nothing_is_there() -> None:
    """A fallback that keeps answering over an empty frame (a false face, or the tracked geometry
    of a face that left) costs a crop now and then on video, not every frame."""
    blank = np.full((H, W, 3), 110, np.uint8)
    # A wide search budget: this counts the back-off's looks, which a loaded machine would cut short.
    with FaceLocator(FaceConfig(search_budget_ms=10_000), [RoughFinder()]) as loc:
        paths = {loc.process(Frame(blank, i, i / 30)).path for i in range(60)}  # two seconds at 30 frames/s
        assert paths == {"locator"}
        # Tries at 0, 0.1, 0.3, 0.7 and 1.5 s (waits doubling from 0.1 s), each with every margin.
        assert loc.looks == 5 * len(REFINE_MARGINS)
    # Unrelated images: no waiting.
    with FaceLocator(FaceConfig(tracking=False, search_budget_ms=10_000), [RoughFinder()]) as loc:
        for i in range(3):
            loc.process(Frame(blank, i, 0.0))
        assert loc.looks == 3 * len(REFINE_MARGINS)


@pytest.mark.parametrize("side, centre, agrees", [
    (100.0, (300.0, 200.0), True),
    (40.0, (300.0, 200.0), True),  # the locator can size a small face 2.5x too big
    (30.0, (300.0, 200.0), False),
    (150.0, (300.0, 200.0), True),
    (170.0, (300.0, 200.0), False),
    (100.0, (345.0, 200.0), True),
    (100.0, (300.0, 255.0), False),  # more than half a face side away: another face
])
def test_face_refine_keeps_the_hint_when_the_crop_finds_another_face(side: float, centre: tuple[float, float],
                                                                     agrees: bool) -> None:
    hint = _geometry(_square(100.0, (300.0, 200.0)))
    assert _agrees(_geometry(_square(side, centre), "mesh_refined"), hint) is agrees


def test_face_refine_bench_reports_both_locators(ferplus_dir: Path, tiny_model: Path) -> None:
    """``vrfer bench --refine``: the bookkeeping, on a handful of frames."""
    from vrfer.bench.face import refine_bench

    report = refine_bench(tiny_model, n=6, stream_frames=8, empty_hold=2, small_faces=2, hold=3)
    for part, frames in (("demo", 8), ("empty", 18), ("small", 6)):
        for name in ("off", "on"):
            assert sum(report[part][name]["paths"].values()) == frames, (part, name)
            assert report[part][name]["locate_ms"]["all"]["n"] == frames
    assert report["demo"]["off"]["crop_looks"] == report["e2e"]["off"]["crop_looks"] == 0
    for name in ("off", "on"):
        e2e = report["e2e"][name]
        assert e2e["frames"] == 6 and sum(e2e["found_by_path"].values()) == round(e2e["found_pct"] * 6 / 100)
        assert e2e["gap"]["all_frames"] == pytest.approx(e2e["accuracy"]["crop_all"] - e2e["accuracy"]["e2e_all"])
    assert "mesh_refined" not in report["e2e"]["off"]["found_by_path"]


def test_crop_view_centres_the_face_and_from_crop_maps_landmarks_back() -> None:
    """The refinement's crop (and the locator teacher's): the face's centre lands on the crop's
    centre at ``margin`` face sides across, and crop landmarks come back to the frame pixels they show."""
    from vrfer.core.geometry import crop_view, from_crop

    view = crop_view(np.array([300.0, 200.0]), 90.0, 1.4, 256)
    assert np.allclose(view[:, :2] @ [300.0, 200.0] + view[:, 2], [127.5, 127.5])
    assert np.isclose(view[0, 0] * 1.4 * 90.0, 256)
    frame_pts = np.array([[280.0, 190.0, 4.0], [330.0, 240.0, -2.0]])
    crop_pts = np.c_[frame_pts[:, :2] @ view[:, :2].T + view[:, 2], frame_pts[:, 2] * view[0, 0]]
    assert np.allclose(from_crop(crop_pts, view), frame_pts)

# ---------------------------------------------------------------- far faces (core.face.far)
# mediapipe's full-range detector as a rough hint, kept only when the crop mesh confirms it.

# A generous search budget: these tests are about what is found, not how fast (a loaded machine).
FAR_CFG = FaceConfig(tracking=False, search_budget_ms=5000.0, far_faces=True)
FAR_SIDE = 95  # px: a face this small is often missed by the mesh's short-range detector


@pytest.fixture(scope="module")
def far_face(ferplus_dir: Path) -> np.ndarray:
    """A FER+ Test face, ``FAR_SIDE`` px in the frame's middle, that the mesh alone misses and the
    full-range detector sees (there are several in the first 60)."""
    names = [line.split(",", 1)[0] for line in (ferplus_dir / "FER2013Test" / "label.csv").read_text().splitlines()]
    detector = FarFaceDetector()
    try:
        with FaceLocator(dataclasses.replace(FAR_CFG, far_faces=False)) as mesh_only:
            for name in names[:60]:
                face = cv2.imread(str(ferplus_dir / "FER2013Test" / name), cv2.IMREAD_GRAYSCALE)
                image = _face_frame(face, side=FAR_SIDE)
                if mesh_only.process(Frame(image, 0, 0.0)) is None and detector(Frame(image, 0, 0.0)) is not None:
                    with FaceLocator(FAR_CFG, [FarFaceDetector()]) as loc:
                        if loc.process(Frame(image, 0, 0.0)) is not None:
                            return face
    finally:
        detector.close()
    pytest.fail("none of the first 60 Test faces is missed by the mesh and seen by the full-range detector")


def test_keypoint_targets_sit_on_the_template() -> None:
    t = load_template()
    targets = keypoint_targets(t)
    mouth = (t.points[t.names.index("right_mouth")] + t.points[t.names.index("left_mouth")]) / 2
    assert targets.shape == (4, 2)
    assert np.allclose(targets[0], t.points[t.names.index("right_iris")]) and np.allclose(targets[3], mouth)
    assert targets[0, 0] < targets[1, 0] and targets[1, 1] < targets[2, 1] < targets[3, 1]


def test_the_detector_places_a_small_face_roughly_and_sees_none_in_an_empty_frame(far_face: np.ndarray) -> None:
    with_face = Frame(_face_frame(far_face, side=FAR_SIDE), 0, 0.0)
    empty = Frame(np.full((H, W, 3), 110, np.uint8), 1, 1.0)
    detector = FarFaceDetector()
    try:
        g = detector(with_face)
        assert detector(empty) is None
    finally:
        detector.close()
    assert g is not None and g.path == "far" and 0.5 <= g.score <= 1.0
    centre, side = face_square(g.transform)
    assert np.hypot(*(centre - (W / 2, H / 2))) < 0.3 * FAR_SIDE and 0.4 < side / FAR_SIDE < 1.6  # rough
    with pytest.raises(ValueError, match="closed"):
        detector(empty)


def test_the_finder_keeps_a_far_face_once_the_mesh_confirms_it(far_face: np.ndarray) -> None:
    image = _face_frame(far_face, side=FAR_SIDE)
    # Where the mesh puts this face when it is large enough to find at once, scaled down.
    with FaceLocator(dataclasses.replace(FAR_CFG, far_faces=False)) as mesh_only:
        big = mesh_only.process(Frame(_face_frame(far_face, side=3 * FAR_SIDE), 0, 0.0))
    (bc, bs) = face_square(big.transform)
    tc, ts = (W / 2, H / 2) + (bc - (W / 2, H / 2)) / 3, bs / 3
    with FaceLocator(dataclasses.replace(FAR_CFG, far_faces=False)) as without:
        assert without.process(Frame(image, 0, 0.0)) is None
    with FaceLocator(FAR_CFG, [FarFaceDetector()]) as loc:
        g = loc.process(Frame(image, 0, 0.0))
        assert g is not None and g.path == "mesh_refined" and loc.last_reason is None and loc.looks >= 1
    assert g.landmarks.shape == (478, 2)  # the mesh's alignment, not the detector's six points
    c, s = face_square(g.transform)
    assert np.hypot(*(c - tc)) < 0.2 * ts and abs(s / ts - 1) < 0.25


class RoughHint(RoughFinder):
    """A rough finder (``needs_refinement``, as ``core.face.far``'s) pointing at an empty part of the frame."""

    needs_refinement = True

    def __init__(self) -> None:
        super().__init__(_square(FAR_SIDE, (120.0, 120.0)))


def test_a_rough_hint_the_mesh_does_not_confirm_is_no_face() -> None:
    image = np.full((H, W, 3), 110, np.uint8)
    with FaceLocator(FAR_CFG, [RoughHint()]) as loc:
        assert loc.process(Frame(image, 0, 0.0)) is None
        assert loc.last_reason == "no face found" and loc.looks >= 1  # the mesh looked, and saw nothing
    with FaceLocator(dataclasses.replace(FAR_CFG, refine=False), [RoughHint()]) as loc:
        assert loc.process(Frame(image, 0, 0.0)) is None  # nothing can confirm it


def test_an_unconfirmed_rough_hint_leaves_the_next_fallback_its_turn() -> None:
    """The user's rectangle after it still answers, as it would with no rough finder at all."""
    image = np.full((H, W, 3), 110, np.uint8)
    hint = RoughHint()
    with FaceLocator(FAR_CFG, [hint, RoiFallback((200, 300, 240, 120))]) as loc:
        g = loc.process(Frame(image, 0, 0.0))
    assert hint.calls == 1 and g is not None and g.path == "roi" and g.box == (200.0, 300.0, 240.0, 120.0)


def test_on_video_an_unconfirmed_rough_hint_backs_off_alone() -> None:
    """After a rough hint the mesh did not confirm, none is asked for during ``ROUGH_BACKOFF_S``;
    the refinement of other fallbacks' answers keeps its own back-off."""
    from vrfer.core.face.locator import ROUGH_BACKOFF_S

    image = np.full((H, W, 3), 110, np.uint8)
    hint = RoughHint()
    video = dataclasses.replace(FAR_CFG, tracking=True)
    with FaceLocator(video, [hint]) as loc:
        assert loc.process(Frame(image, 0, 0.0)) is None and hint.calls == 1
        assert loc.process(Frame(image, 1, ROUGH_BACKOFF_S / 2)) is None and hint.calls == 1  # backing off
        assert loc._next_refine == -np.inf  # the other answers' refinement is not held back
        assert loc.process(Frame(image, 2, ROUGH_BACKOFF_S + 0.01)) is None and hint.calls == 2


def test_default_fallbacks_put_far_faces_after_the_tracker_and_the_finder_closes_them() -> None:
    assert not any(isinstance(f, FarFaceDetector) for f in default_fallbacks(FaceConfig()))  # off by default
    video = default_fallbacks(FaceConfig(tracking=True, far_faces=True))
    kinds = [type(f) for f in video]
    assert FarFaceDetector in kinds and kinds.index(GeometryTracker) < kinds.index(FarFaceDetector)
    assert not any(isinstance(f, FarFaceDetector) for f in default_fallbacks(FaceConfig(far_faces=True, refine=False)))
    assert default_fallbacks(FaceConfig(mode="roi", roi=(0, 0, 10, 10))) == []
    far = next(f for f in video if isinstance(f, FarFaceDetector))
    FaceLocator(FaceConfig(tracking=True), video).close()
    with pytest.raises(ValueError, match="closed"):
        far(Frame(np.zeros((H, W, 3), np.uint8), 0, 0.0))
