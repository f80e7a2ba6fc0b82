"""training.headset.presence: the presence head is fitted, its thresholds chosen as documented,
and written into a locator file the runtime reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vrfer.core.face.headset import DEFAULT_LOCATOR, HeadsetLocator
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
    assert loc.scores_presence and loc.zoom  # its thresholds counted the zoom tiles' answers
    assert (loc.presence_threshold, loc.presence_threshold_mesh) == (t["locator"], t["mesh"])
    again = export(out, tmp_path / "again.onnx", w, b, t)  # a file that has the head gets it replaced, not doubled
    assert HeadsetLocator(again).scores_presence


def test_faces_the_mesh_finds_on_face_free_frames_count_against_the_locator_threshold() -> None:
    """Both paths' false faces share the 1%: mesh answers that score above the mesh's threshold raise
    the locator's, and the record names them."""
    rng = np.random.default_rng(1)
    n = 400
    scores = np.r_[rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.5, n)]
    data = {"y": np.r_[np.ones(n), np.zeros(n)].astype(int), "f": np.ones(2 * n),
            "kind": np.array(["clean"] * n + ["poster"] * n), "src": np.array(["locator"] * 2 * n), "total": np.array(n)}
    alone = choose(scores, data, min_face=0.5, max_false=0.01, keep_mesh=0.99)
    # Three backs of heads the mesh took for faces, scored above the mesh's threshold: 0.75% of the frames.
    with_mesh = {k: np.r_[v, extra] for (k, v), extra in zip(
        [(k, data[k]) for k in ("y", "f", "kind", "src")], ([0] * 3, [0.0] * 3, ["back_of_head"] * 3, ["mesh"] * 3))}
    with_mesh["total"] = data["total"]
    both = choose(np.r_[scores, [0.7, 0.7, 0.7]], with_mesh, min_face=0.5, max_false=0.01, keep_mesh=0.99)
    assert alone["mesh"] < 0.7 and both["mesh"] < 0.7
    assert both["at_locator_threshold"]["false_faces_by_the_mesh"] == 3
    assert both["at_locator_threshold"]["false_faces_by_kind"]["back_of_head"] == 3
    assert both["at_locator_threshold"]["false_face_rate"] <= 0.01
    locator_false = lambda t: int(((scores[n:] >= t)).sum())  # noqa: E731
    assert locator_false(alone["locator"]) == 4 and locator_false(both["locator"]) == 1
    assert both["locator"] > alone["locator"]
    assert both["mesh_answers_on_face_free_frames"] == 3 and both["at_mesh_threshold"]["false_faces_by_the_mesh"] == 3


def test_a_mesh_that_alone_breaks_the_limit_gets_its_threshold_raised_and_the_record_says_so() -> None:
    rng = np.random.default_rng(2)
    n = 200
    faces, free = rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.4, n)
    mesh_free = np.linspace(0.62, 0.9, 6)  # 6 of 200 face-free frames (3%) the mesh takes for faces
    scores = np.r_[faces, free, mesh_free]
    data = {"y": np.r_[np.ones(n), np.zeros(n + 6)].astype(int), "f": np.ones(2 * n + 6),
            "kind": np.array(["clean"] * n + ["poster"] * n + ["back_of_head"] * 6),
            "src": np.array(["locator"] * 2 * n + ["mesh"] * 6), "total": np.array(n)}
    t = choose(scores, data, min_face=0.5, max_false=0.01, keep_mesh=0.99)
    assert t["mesh_threshold_raised_for_false_faces"]
    assert (mesh_free >= t["mesh"]).sum() <= 2 and t["mesh"] > float(np.quantile(faces, 0.01))
    assert t["at_locator_threshold"]["false_face_rate"] <= 0.01 and t["locator"] < 1.0


def test_presence_command_fits_on_both_families_and_writes_a_gated_locator(tiny_ferplus: Path, tmp_path: Path,
                                                                           monkeypatch, capsys) -> None:
    import json

    from vrfer.cli.main import main

    monkeypatch.setenv("VRFER_FERPLUS", str(tiny_ferplus))
    out, record = tmp_path / "locator.onnx", tmp_path / "presence.json"
    assert main(["headset", "presence", "--n", "2", "--n-choose", "2", "--out", str(out), "--record", str(record),
                 "--features", str(tmp_path / "features.npz")]) == 0
    rec = json.loads(record.read_text())
    assert rec == json.loads(capsys.readouterr().out)
    assert rec["command"].startswith("vrfer ")
    assert rec["fit_on"]["face_free_frames"] == 2 * 7 * 2  # each face-free frame as drawn and through a webcam
    # Webcam faces the locator's own pass misses are read where they lie, so every one has features.
    kept = rec["thresholds"]["at_mesh_threshold"]["faces_kept_by_kind"]
    assert {"webcam_clean", "webcam_headset"} <= set(kept)
    loc = HeadsetLocator(out)
    assert loc.scores_presence and loc.zoom  # its thresholds counted the zoom tiles' answers
    assert (loc.presence_threshold, loc.presence_threshold_mesh) == (rec["thresholds"]["locator"],
                                                                      rec["thresholds"]["mesh"])
    # A cache collected before the zoom tiles (no ``zoom`` entry) would fit the head to another
    # runtime: refused in one line, the file left as it was.
    import numpy as np

    cache = np.load(tmp_path / "features.npz")
    assert bool(cache["zoom"])
    stale = tmp_path / "stale.npz"
    np.savez_compressed(stale, **{k: cache[k] for k in cache.files if k != "zoom"})
    before = stale.read_bytes()
    assert main(["headset", "presence", "--out", str(out), "--record", str(record), "--features", str(stale)]) == 2
    assert "collected before the locator looked in zoom tiles; delete it" in capsys.readouterr().err
    assert stale.read_bytes() == before
    # ... and so would one collected with another share of webcam faces seen from an angle.
    assert float(cache["tilt"]) == 0.0
    kept = (tmp_path / "features.npz").read_bytes()
    assert main(["headset", "presence", "--out", str(out), "--record", str(record),
                 "--features", str(tmp_path / "features.npz"), "--tilt", "0.5"]) == 2
    assert "collected with a camera-angle share of 0, not 0.5; delete it" in capsys.readouterr().err
    assert (tmp_path / "features.npz").read_bytes() == kept


@pytest.mark.parametrize("argv, message", [
    (["--max-false", "2"], "error: argument --max-false: expected a number from 0 to 1, got 2"),
    (["--n", "0"], "error: argument --n: expected a number >= 1, got 0"),
    (["--locator", "/nonexistent/locator.onnx"], "error: /nonexistent/locator.onnx: headset locator model not found"),
])
def test_presence_command_refuses_bad_input_in_one_line(argv: list[str], message: str, capsys) -> None:
    from vrfer.cli.main import main

    assert main(["headset", "presence", *argv]) == 2
    assert capsys.readouterr().err.strip() == message
