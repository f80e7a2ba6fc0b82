"""Neutral-face calibration offsets, with values checked by hand."""
from __future__ import annotations

import math

import pytest

from vrfer.app.calibration import MIN_FRAMES, NEUTRAL_TARGET, OFFSET_LIMIT, apply_offsets, neutral_offsets
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import VrferError


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
