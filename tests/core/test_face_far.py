"""core.face.far: mediapipe's full-range detector as a hint for faces too small for the mesh,
kept only when the mesh confirms it in a crop. Real mediapipe, real FER+ faces."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.face import FaceConfig, FaceLocator, FarFaceDetector, GeometryTracker, default_fallbacks, load_template
from vrfer.core.face.far import keypoint_targets
from vrfer.core.geometry import canonical_box, face_square
from vrfer.core.types import FaceGeometry, Frame

W, H = 640, 480
# A generous search budget: these tests are about what is found, not how fast (a loaded machine).
CFG = FaceConfig(tracking=False, search_budget_ms=5000.0, far_faces=True)
SIDE = 95  # px: a face this small is often missed by the mesh's short-range detector


def _square(side: float, centre: tuple[float, float]) -> np.ndarray:
    k = 48.0 / side
    return np.array([[k, 0.0, 23.5 - k * centre[0]], [0.0, k, 23.5 - k * centre[1]]])


def _face_frame(face: np.ndarray, centre: tuple[float, float] = (W / 2, H / 2), side: float = SIDE) -> np.ndarray:
    frame = np.full((H, W), 110, np.uint8)
    m = cv2.invertAffineTransform(_square(side, centre))
    big = cv2.warpAffine(face, m, (W, H), flags=cv2.INTER_CUBIC)
    mask = cv2.warpAffine(np.full_like(face, 255), m, (W, H), flags=cv2.INTER_NEAREST)
    return cv2.cvtColor(np.where(mask > 0, big, frame), cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def far_face(ferplus_dir: Path) -> np.ndarray:
    """A FER+ Test face, ``SIDE`` px in the frame's middle, that the mesh alone misses and the
    full-range detector sees (there are several in the first 60)."""
    names = [line.split(",", 1)[0] for line in (ferplus_dir / "FER2013Test" / "label.csv").read_text().splitlines()]
    detector = FarFaceDetector()
    try:
        with FaceLocator(dataclasses.replace(CFG, far_faces=False)) as mesh_only:
            for name in names[:60]:
                face = cv2.imread(str(ferplus_dir / "FER2013Test" / name), cv2.IMREAD_GRAYSCALE)
                image = _face_frame(face)
                if mesh_only.process(Frame(image, 0, 0.0)) is None and detector(Frame(image, 0, 0.0)) is not None:
                    with FaceLocator(CFG, [FarFaceDetector()]) as loc:
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
    with_face = Frame(_face_frame(far_face), 0, 0.0)
    empty = Frame(np.full((H, W, 3), 110, np.uint8), 1, 1.0)
    detector = FarFaceDetector()
    try:
        g = detector(with_face)
        assert detector(empty) is None
    finally:
        detector.close()
    assert g is not None and g.path == "far" and 0.5 <= g.score <= 1.0
    centre, side = face_square(g.transform)
    assert np.hypot(*(centre - (W / 2, H / 2))) < 0.3 * SIDE and 0.4 < side / SIDE < 1.6  # rough
    with pytest.raises(ValueError, match="closed"):
        detector(empty)


def test_the_finder_keeps_a_far_face_once_the_mesh_confirms_it(far_face: np.ndarray) -> None:
    image = _face_frame(far_face)
    # Where the mesh puts this face when it is large enough to find at once, scaled down.
    with FaceLocator(dataclasses.replace(CFG, far_faces=False)) as mesh_only:
        big = mesh_only.process(Frame(_face_frame(far_face, side=3 * SIDE), 0, 0.0))
    (bc, bs) = face_square(big.transform)
    tc, ts = (W / 2, H / 2) + (bc - (W / 2, H / 2)) / 3, bs / 3
    with FaceLocator(dataclasses.replace(CFG, far_faces=False)) as without:
        assert without.process(Frame(image, 0, 0.0)) is None
    with FaceLocator(CFG, [FarFaceDetector()]) as loc:
        g = loc.process(Frame(image, 0, 0.0))
        assert g is not None and g.path == "mesh_refined" and loc.last_reason is None and loc.looks >= 1
    assert g.landmarks.shape == (478, 2)  # the mesh's alignment, not the detector's six points
    c, s = face_square(g.transform)
    assert np.hypot(*(c - tc)) < 0.2 * ts and abs(s / ts - 1) < 0.25


class RoughHint:
    """A rough finder (``needs_refinement``) that points at an empty part of the frame, and counts calls."""

    needs_refinement = True

    def __init__(self) -> None:
        t = _square(SIDE, (120.0, 120.0))
        self.geometry = FaceGeometry(transform=t, box=canonical_box(t, (H, W)), path="far", score=0.9)
        self.calls = 0

    def __call__(self, frame: Frame) -> FaceGeometry | None:
        self.calls += 1
        return self.geometry


def test_a_rough_hint_the_mesh_does_not_confirm_is_no_face() -> None:
    image = np.full((H, W, 3), 110, np.uint8)
    with FaceLocator(CFG, [RoughHint()]) as loc:
        assert loc.process(Frame(image, 0, 0.0)) is None
        assert loc.last_reason == "no face found" and loc.looks >= 1  # the mesh looked, and saw nothing
    with FaceLocator(dataclasses.replace(CFG, refine=False), [RoughHint()]) as loc:
        assert loc.process(Frame(image, 0, 0.0)) is None  # nothing can confirm it


def test_an_unconfirmed_rough_hint_leaves_the_next_fallback_its_turn() -> None:
    """The user's rectangle after it still answers, as it would with no rough finder at all."""
    from vrfer.core.face import RoiFallback

    image = np.full((H, W, 3), 110, np.uint8)
    hint = RoughHint()
    with FaceLocator(CFG, [hint, RoiFallback((200, 300, 240, 120))]) as loc:
        g = loc.process(Frame(image, 0, 0.0))
    assert hint.calls == 1 and g is not None and g.path == "roi" and g.box == (200.0, 300.0, 240.0, 120.0)


def test_on_video_an_unconfirmed_rough_hint_backs_off_alone() -> None:
    """After a rough hint the mesh did not confirm, none is asked for during ``ROUGH_BACKOFF_S``;
    the refinement of other fallbacks' answers keeps its own back-off."""
    from vrfer.core.face.locator import ROUGH_BACKOFF_S

    image = np.full((H, W, 3), 110, np.uint8)
    hint = RoughHint()
    video = dataclasses.replace(CFG, tracking=True)
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
