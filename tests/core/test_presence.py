"""Face presence: every path's answer carries a presence score and is refused below its
threshold; the search stops at its time budget; the shipped locator reports no face on the
face-free benchmark family."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from vrfer.core.errors import ConfigError, ModelError
from vrfer.core.face import FaceConfig, FaceLocator, default_fallbacks
from vrfer.core.face.headset import DEFAULT_LOCATOR, FORMAT_VERSION, KIND, HeadsetLocator
from vrfer.core.geometry import to_fraction
from vrfer.core.types import FaceGeometry, Frame
from test_headset import ANCHORS, FRAME_ANCHORS, H, W, build_locator

META = {"vrfer.kind": KIND, "vrfer.locator_version": str(FORMAT_VERSION), "vrfer.anchors": json.dumps(ANCHORS.tolist()),
        "vrfer.presence_threshold": "0.5", "vrfer.presence_threshold_mesh": "0.2"}


def _model(tmp_path: Path, presence_logit: float, meta: dict[str, str] | None = None, name: str = "p.onnx") -> Path:
    return build_locator(tmp_path / name, to_fraction(FRAME_ANCHORS, (0, 0, W, H)), 6.0,
                         meta=META if meta is None else meta, occluded_logit=-6.0, presence_logit=presence_logit)


def _blank(index: int = 0) -> Frame:
    return Frame(image=np.full((H, W, 3), 120, np.uint8), index=index, timestamp=float(index))


def test_locator_answer_carries_its_presence_and_is_refused_below_threshold(tmp_path: Path) -> None:
    cfg = FaceConfig(tracking=False)
    with FaceLocator(cfg, default_fallbacks(cfg, locator=_model(tmp_path, 3.0))) as loc:
        g = loc.process(_blank())
        assert g is not None and g.path == "locator"
        assert g.score == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-4)  # presence, not the face score
    with FaceLocator(cfg, default_fallbacks(cfg, locator=_model(tmp_path, -1.0, name="low.onnx"))) as loc:
        assert loc.process(_blank()) is None  # face logit 6, presence 0.27: a candidate, but < 0.5
        assert loc.last_reason == "no face here (presence 0.27 < 0.50, locator)"
    with FaceLocator(cfg, default_fallbacks(cfg, locator=_model(tmp_path, -2.0, name="none.onnx"))) as loc:
        assert loc.process(_blank()) is None  # presence 0.12 < the mesh's 0.2: not even a candidate
        assert loc.last_reason == "no face found"


def test_roi_fallback_is_scored_in_its_window(tmp_path: Path) -> None:
    """A user's rectangle in mesh mode is no proof of a face: it needs presence too."""
    cfg = FaceConfig(roi=(200, 300, 240, 120))
    # Face logit -6: the locator itself answers nothing, so the ROI is the last resort.
    low = build_locator(tmp_path / "low.onnx", to_fraction(FRAME_ANCHORS, (0, 0, W, H)), -6.0, meta=META,
                        occluded_logit=-6.0, presence_logit=-3.0)
    with FaceLocator(cfg, default_fallbacks(cfg, locator=low)) as loc:
        assert loc.process(_blank()) is None
        assert loc.last_reason.startswith("no face here (presence 0.05 < 0.50, roi)")
    high = build_locator(tmp_path / "high.onnx", to_fraction(FRAME_ANCHORS, (0, 0, W, H)), -6.0, meta=META,
                         occluded_logit=-6.0, presence_logit=3.0)
    with FaceLocator(cfg, default_fallbacks(cfg, locator=high)) as loc:
        g = loc.process(_blank())
        assert g is not None and g.path == "roi" and g.score == pytest.approx(0.9526, abs=1e-4)


def test_mesh_answer_is_scored_and_judged_on_the_mesh_threshold(ferplus_dir: Path, tmp_path: Path) -> None:
    from test_face import _place, _test_faces

    face = _test_faces(ferplus_dir, 1, seed=11)[0]
    frame, _, _ = _place(face, 220, 0.0, (320, 240), np.full((H, W), 100, np.uint8))
    cfg = FaceConfig(tracking=False)
    # Presence 0.27: under the locator's 0.5 but over the mesh's 0.2 (two finders agree).
    with FaceLocator(cfg, default_fallbacks(cfg, locator=_model(tmp_path, -1.0))) as loc:
        g = loc.process(Frame(frame, 0, 0.0))
        assert g is not None and g.path == "mesh" and g.score == pytest.approx(0.2689, abs=1e-4)
    with FaceLocator(cfg, default_fallbacks(cfg, locator=_model(tmp_path, -4.0, name="none.onnx"))) as loc:
        assert loc.process(Frame(frame, 0, 0.0)) is None
        assert loc.last_reason == "no face here (presence 0.02 < 0.20, mesh)"


@pytest.mark.parametrize("meta, message", [
    ({k: v for k, v in META.items() if k != "vrfer.presence_threshold"},
     "a presence head needs vrfer.presence_threshold and vrfer.presence_threshold_mesh metadata"),
    ({**META, "vrfer.presence_threshold_mesh": "high"}, "a presence head needs vrfer.presence_threshold"),
    ({**META, "vrfer.presence_threshold": "1.5"}, "presence thresholds must lie in [0, 1], got (1.5, 0.2)"),
])
def test_presence_head_without_usable_thresholds_is_refused(tmp_path: Path, meta: dict, message: str) -> None:
    with pytest.raises(ModelError) as err:
        HeadsetLocator(_model(tmp_path, 0.0, meta=meta))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_search_stops_at_its_budget_and_counts_as_no_face() -> None:
    calls: list[float] = []

    def slow(frame: Frame) -> FaceGeometry | None:  # a fallback that takes 40 ms and finds nothing
        calls.append(time.perf_counter())
        time.sleep(0.04)
        return None

    with FaceLocator(FaceConfig(tracking=False, search_budget_ms=30), [slow] * 5) as loc:
        assert loc.process(_blank()) is None
    assert loc.last_reason == "no face found within the 30 ms search budget"
    assert len(calls) == 1  # the first fallback overran the budget: the other four never ran


@pytest.mark.parametrize("budget", [0, -5, "fast", True])
def test_search_budget_must_be_positive_milliseconds(budget: object) -> None:
    with pytest.raises(ConfigError, match="face search_budget_ms must be a number of milliseconds"):
        FaceConfig(search_budget_ms=budget)


def test_an_image_too_small_to_hold_a_face_is_no_face() -> None:
    with FaceLocator(FaceConfig(tracking=False), default_fallbacks(FaceConfig(tracking=False))) as loc:
        assert loc.process(Frame(np.zeros((1, 1, 3), np.uint8), 0, 0.0)) is None
        assert loc.last_reason == "image too small to hold a face (1x1 px)"


def test_shipped_locator_has_a_presence_head() -> None:
    loc = HeadsetLocator(DEFAULT_LOCATOR)
    assert loc.scores_presence
    assert 0.0 < loc.presence_threshold_mesh <= loc.presence_threshold < 1.0


def test_shipped_finder_keeps_false_faces_under_one_percent_of_the_face_free_family(ferplus_dir: Path) -> None:
    """The benchmark's 700 face-free frames (100 of each kind, seed 0) through the runtime's finder:
    at most 1% taken for faces (the presence head's limit), none in a scene with nothing face-like
    (an empty room, a dark one, a dark monitor), and no kind above 3%. The same figures as
    ``vrfer bench --e2e``'s."""
    from vrfer.bench.facefree import false_face_bench
    from vrfer.core.facefree import KINDS

    report = false_face_bench(100, seed=0, root=ferplus_dir)
    assert report["frames"] == 100 * len(KINDS)
    assert set(report["by_kind"]) == set(KINDS)
    assert report["false_faces"] <= 7, report["false_by_path"]
    by_kind = {k: v["false_faces"] for k, v in report["by_kind"].items()}
    assert by_kind["empty_room"] == by_kind["low_light"] == by_kind["dark_monitor"] == 0, by_kind
    assert max(by_kind.values()) <= 3, by_kind


def test_shipped_finder_still_finds_placed_faces(ferplus_dir: Path) -> None:
    """The same finder on FER+ Test faces pasted into frames: presence does not refuse real faces."""
    from vrfer.bench.runtime import camera_like_frames
    from vrfer.core.ferplus import majority_faces

    faces = majority_faces(ferplus_dir)[:12]
    cfg = FaceConfig(tracking=False)
    found = 0
    with FaceLocator(cfg, default_fallbacks(cfg)) as loc:
        for i, cf in enumerate(camera_like_frames(faces, ferplus_dir / "FER2013Test", seed=3)):
            g = loc.process(Frame(cf.image, i, 0.0))
            found += g is not None
            if g is not None:
                assert 0.0 <= g.score <= 1.0
    assert found >= 11
