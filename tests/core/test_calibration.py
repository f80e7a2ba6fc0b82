"""core.calibration: neutral offsets checked by hand and in the running pipeline, and the guided recording."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vrfer.core.calibration import (MIN_FRAMES, NEUTRAL_TARGET, OFFSET_LIMIT, CalibrationSession, apply_offsets,
                                    neutral_offsets)
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import ConfigError, VrferError
from vrfer.core.face import FaceConfig
from vrfer.core.pipeline import Pipeline, PipelineConfig
from vrfer.core.smoothing import SmoothingConfig
from vrfer.core.types import ExpressionState


def _probs(**kw: float) -> dict[str, float]:
    rest = (1.0 - sum(kw.values())) / (len(FERPLUS_CLASSES) - len(kw))
    return {c: kw.get(c, rest) for c in FERPLUS_CLASSES}


def test_neutral_offsets_map_the_resting_face_onto_the_target() -> None:
    resting = _probs(sadness=0.5, neutral=0.2)  # this user's relaxed face reads as sad
    offsets = neutral_offsets([resting] * 10, FERPLUS_CLASSES)
    out = apply_offsets(resting, offsets)
    assert out["neutral"] == pytest.approx(NEUTRAL_TARGET)
    for c in FERPLUS_CLASSES[1:]:
        assert out[c] == pytest.approx((1 - NEUTRAL_TARGET) / 7)
    assert sum(offsets.values()) == pytest.approx(0.0, abs=1e-9)
    # A smile after calibration still reads as happiness: changes from rest still move the output.
    smile = _probs(happiness=0.6, sadness=0.2, neutral=0.1)
    assert max(apply_offsets(smile, offsets).items(), key=lambda kv: kv[1])[0] == "happiness"


def test_neutral_offsets_average_in_log_space() -> None:
    # Geometric mean of 0.1 and 0.4 for sadness is 0.2: the same offsets as a constant 0.2.
    a, b = _probs(sadness=0.1, neutral=0.3), _probs(sadness=0.4, neutral=0.3)
    mixed = neutral_offsets([a, b] * 5, FERPLUS_CLASSES)
    offsets_sad = mixed["sadness"] - mixed["neutral"]
    # log(t_sad / t_neutral) - (mean log p_sad - mean log p_neutral), by hand:
    expected = math.log((1 - NEUTRAL_TARGET) / 7 / NEUTRAL_TARGET) - (0.5 * (math.log(0.1) + math.log(0.4)) - math.log(0.3))
    assert offsets_sad == pytest.approx(expected)


def test_neutral_offsets_are_clipped() -> None:
    extreme = {c: 1e-9 for c in FERPLUS_CLASSES} | {"anger": 1.0}
    offsets = neutral_offsets([extreme] * MIN_FRAMES, FERPLUS_CLASSES)
    assert max(abs(v) for v in offsets.values()) == pytest.approx(OFFSET_LIMIT)


def test_neutral_offsets_without_a_neutral_class_target_uniform() -> None:
    classes = ("a", "b")
    offsets = neutral_offsets([{"a": 0.8, "b": 0.2}] * MIN_FRAMES, classes)
    assert apply_offsets({"a": 0.8, "b": 0.2}, offsets) == pytest.approx({"a": 0.5, "b": 0.5})


def test_neutral_offsets_need_enough_face_frames() -> None:
    with pytest.raises(VrferError) as err:
        neutral_offsets([_probs()] * (MIN_FRAMES - 1), FERPLUS_CLASSES)
    assert str(err.value) == ("neutral capture saw a face in only 4 frames (needs 5): "
                              "face the camera with a relaxed face and try again")


def test_pipeline_applies_neutral_offsets_as_apply_offsets_computes(tmp_path, tiny_model) -> None:
    """The offsets the capture fits are what the running pipeline applies, frame by frame."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    face = FaceConfig(mode="roi", roi=(0, 0, 64, 64))
    off = SmoothingConfig(strength=0.0, margin=0.0)
    plain: list = []
    with Pipeline(PipelineConfig(source=str(folder), model=tiny_model, face=face, smoothing=off)) as p:
        p.subscribe(plain.append)
        assert p.wait(30)
    offsets = neutral_offsets([s.raw_probs for s in plain], p.model.classes)
    biased: list = []
    with Pipeline(PipelineConfig(source=str(folder), model=tiny_model, face=face, smoothing=off,
                                 calibration=offsets)) as p:
        p.subscribe(biased.append)
        assert p.wait(30)
    assert len(biased) == 6 and all(s.face for s in biased)
    for s in biased:
        assert s.probs == pytest.approx(apply_offsets(s.raw_probs, offsets), abs=1e-9)
    assert np.mean([s.probs["neutral"] for s in biased]) > np.mean([s.probs["neutral"] for s in plain])


# --- the guided recording ---------------------------------------------------------------------

CLASSES = ("neutral", "happiness", "surprise")


def _state(i: int, face: bool = True) -> ExpressionState:
    probs = dict(zip(CLASSES, (0.5, 0.3, 0.2)))
    return ExpressionState(frame_index=i, timestamp=float(i), face=face, label="neutral" if face else None,
                           confidence=0.5, probs=probs, raw_probs=probs, timings_ms={},
                           embedding=np.full(4, float(i)) if face else None)


def test_session_scripted_walks_classes_on_the_callers_clock() -> None:
    """10 fps, 0.5 s countdown then 0.3 s per class: the frame that ends a class opens the next."""
    s = CalibrationSession(CLASSES, [("neutral", 0.3), ("happiness", 0.0), ("surprise", 0.3)],
                           countdown=0.5, auto=True)
    ended = {}
    for i in range(20):
        got = s.feed(_state(i, face=i != 6), i / 10)
        if got:
            ended[got] = i
    assert ended == {"neutral": 8, "surprise": 16} and s.current is None and s.phase == "done"
    # neutral recorded frames 5-7 (6 without a face), surprise 13-15; happiness was never planned
    assert s.summary("neutral") == "neutral: 2 faces recorded in 3 frames"
    assert [float(e[0]) for e in s.recording.embeddings["surprise"]] == [13.0, 14.0, 15.0]
    assert "happiness" not in s.frames


def test_session_prompt_waits_for_start_and_skip_drops_the_class() -> None:
    s = CalibrationSession(CLASSES, countdown=0.0, record=1.0)
    assert s.feed(_state(0), 0.0) is None and s.phase == "prompt" and s.recording.count("neutral") == 0
    assert s.status(0.0) == "show a neutral, relaxed face  [face found]"
    s.start(1.0)
    s.feed(_state(1), 1.2)
    assert s.status(1.5).startswith("recording neutral:  0.5/1 s, face in 1/1 frames")
    s.skip()
    assert s.current == "happiness" and s.recording.count("neutral") == 0 and s.phase == "prompt"
    s.arm()
    assert s.feed(_state(2), 5.0) is None and s.phase == "record"
    assert s.advance(6.0) == "happiness" and s.current == "surprise"
    s.stop()
    assert s.current is None


def test_session_keeps_at_most_max_per_class_evenly_spaced() -> None:
    s = CalibrationSession(CLASSES, [("neutral", 10.0)], countdown=0.0, max_per_class=4, auto=True)
    for i in range(10):
        s.feed(_state(i), float(i))
    e, p, y = s.recording.arrays(CLASSES, s.max_per_class)
    assert [float(r[0]) for r in e] == [0.0, 3.0, 6.0, 9.0] and list(y) == [0, 0, 0, 0] and p.shape == (4, 3)


def test_session_fit_with_one_class_is_a_one_line_error(tiny_model) -> None:
    from vrfer.core.adapt import model_fingerprint
    from vrfer.core.model import ExpressionModel

    fp = model_fingerprint(ExpressionModel(tiny_model))
    s = CalibrationSession(fp.classes, [("neutral", 1.0)], countdown=0.0, auto=True)
    for i in range(5):
        s.feed(ExpressionState(frame_index=i, timestamp=0.0, face=True, label="neutral", confidence=1.0,
                               probs={}, raw_probs=dict.fromkeys(fp.classes, 0.125), timings_ms={},
                               embedding=np.zeros(fp.embedding_dim)), i / 10)
    with pytest.raises(ConfigError) as err:
        s.fit(fp)
    assert str(err.value) == "record at least two expressions with 2+ faces each to calibrate (got neutral 5)"
