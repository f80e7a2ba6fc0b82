"""training.headset.presence: the presence head is fitted, its thresholds chosen as documented,
and written into a locator file the runtime reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vrfer.core.headset import DEFAULT_LOCATOR, HeadsetLocator
from vrfer.training.headset.presence import _sigmoid, choose, export, fit


def _features(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Faces and face-free frames apart along 64 of 2304 values (the locator's map has 2304)."""
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    x = rng.normal(0, 1, (2 * n, 2304)).astype(np.float32)
    x[:, :64] += np.where(y == 1, 0.4, -0.4)[:, None]  # a signal spread over many values, as in the real map
    kind = np.array(["clean"] * n + ["poster"] * n)
    return {"x": x, "y": y, "f": np.ones(2 * n), "kind": kind, "total": np.array(n)}


def test_thresholds_keep_false_faces_under_the_limit_and_the_head_is_exported(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, valid = _features(rng, 300), _features(rng, 200)
    w, b = fit(train["x"], train["y"], l2=0.03)
    scores = _sigmoid(valid["x"] @ w + b)
    t = choose(scores, valid, min_face=0.5, max_false=0.01, keep_mesh=0.99)
    assert t["at_locator_threshold"]["false_face_rate"] <= 0.01
    assert t["mesh"] <= t["locator"] and t["at_mesh_threshold"]["faces_kept"] >= 0.99
    free = np.sort(scores[valid["y"] == 0])[::-1]
    # 1% of 200 is 2 frames: the threshold admits the two highest-scoring face-free frames at most
    # and is the lowest that does (scores are rounded to 4 places for the grid).
    assert free[2] < t["locator"] <= free[1] + 1e-4 and t["at_locator_threshold"]["faces_kept"] >= 0.9

    out = export(DEFAULT_LOCATOR, tmp_path / "with_head.onnx", w, b, t)
    loc = HeadsetLocator(out)
    assert loc.scores_presence
    assert (loc.presence_threshold, loc.presence_threshold_mesh) == (t["locator"], t["mesh"])
    again = export(out, tmp_path / "again.onnx", w, b, t)  # a file that has the head gets it replaced, not doubled
    assert HeadsetLocator(again).scores_presence
