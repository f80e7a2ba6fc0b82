"""``vrfer bench`` and vrfer.bench.runtime: the report's keys (never its timings), the camera-like frames'
placement and the accuracy bookkeeping, with the real pipeline, mediapipe and onnxruntime."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.bench.runtime import CameraLikeSpec, camera_like_frames, percentiles, summarise_e2e
from vrfer.cli.bench import table
from vrfer.core.face import FaceConfig
from vrfer.core.facefree import KINDS
from vrfer.core.preprocess import crop_face

REPO = Path(__file__).resolve().parents[2]
VRFER = Path(sys.executable).parent / "vrfer"
STAT_KEYS = {"p50", "p99", "mean", "max", "n"}


def vrfer(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(VRFER), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "VRFER_MODEL": str(REPO / "no-default-model.onnx")})


def test_bench_json_reports_every_figure(tiny_model):
    r = vrfer("bench", "--json", "--frames", "30", "--model", str(tiny_model), "--model-runs", "20")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) == {"machine", "stream", "models", "preprocess", "peak_rss_mb"}
    assert {"cpu", "cores", "load_avg_1m"} <= set(report["machine"])
    s = report["stream"]
    assert set(s["stages_ms"]) == {"locate", "preprocess", "model", "smooth", "total"}
    assert all(set(v) == STAT_KEYS for v in s["stages_ms"].values())
    assert s["frames"] == 30 and s["stages_ms"]["total"]["n"] == 30  # every timed frame has a total
    assert s["fps"] > 0 and s["cpu_ms_per_frame"] > 0 and s["errors"] == 0
    # the tiny model is not shipped, so it is benchmarked beside the shipped ones, at 1 and 2 threads
    tiny = [m for m in report["models"] if m["model"] == str(tiny_model)]
    assert [m["threads"] for m in tiny] == [1, 2]
    assert all(m["run_ms"]["n"] == 20 and m["predict_ms"]["n"] == 20 and m["input"] == [1, 24, 48] for m in tiny)
    assert report["peak_rss_mb"] >= s["peak_rss_mb"] > 0
    pp = report["preprocess"]  # both preprocessing versions, timed in the same run
    assert pp["v1"]["n"] == pp["v2"]["n"] == 2000 and pp["ratio_p50_v2_v1"] == pytest.approx(
        pp["v2"]["p50"] / pp["v1"]["p50"])


def test_bench_against_times_both_models_interleaved_in_one_run(tiny_model):
    shipped = REPO / "assets" / "models" / "student.onnx"
    r = vrfer("bench", "--json", "--frames", "5", "--model", str(tiny_model), "--model-runs", "30",
              "--against", str(shipped))
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)["against"]
    assert c["model"] == str(tiny_model) and c["reference"] == str(shipped)
    assert c["predict_ms"]["n"] == c["reference_predict_ms"]["n"] == 30
    assert c["ratio"]["p50"] == pytest.approx(c["predict_ms"]["p50"] / c["reference_predict_ms"]["p50"])
    assert c["ratio"]["p99"] == pytest.approx(c["predict_ms"]["p99"] / c["reference_predict_ms"]["p99"])
    table_out = vrfer("bench", "--frames", "5", "--model", str(tiny_model), "--model-runs", "5",
                      "--against", str(shipped)).stdout
    assert "against student.onnx, interleaved (5 calls each" in table_out


def test_bench_table_names_each_stage(tiny_model):
    r = vrfer("bench", "--frames", "10", "--model", str(tiny_model), "--model-runs", "5")
    assert r.returncode == 0, r.stderr
    firsts = [line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ")]
    assert firsts[2:7] == ["locate", "preprocess", "model", "smooth", "capture→result"]
    assert r.stdout.splitlines()[-1].startswith("peak resident memory: ")


def test_bench_soak_reports_memory_stalls_and_drops(tiny_model):
    r = vrfer("bench", "--json", "--soak", "3", "--model", str(tiny_model))
    assert r.returncode == 0, r.stderr
    k = json.loads(r.stdout)["soak"]
    assert {"start", "end", "max", "growth"} <= set(k["rss_mb"])
    assert k["rss_mb"]["max"] >= k["rss_mb"]["end"] > 0
    assert k["seconds"] >= 3 and k["results"] > 0 and k["longest_stall_ms"] > 0
    assert k["dropped"] == 0 and k["errors"] == 0 and not k["ended_early"]
    assert k["captured"] >= k["processed"] >= k["results"] - 1


def test_bench_e2e_reports_the_three_accuracies(tiny_model, ferplus_dir):
    r = vrfer("bench", "--json", "--e2e", "--n", "12", "--heldout-n", "3", "--face-free", "2", "--model", str(tiny_model))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    held = report["heldout"]  # the held-out family beside it, on Test faces
    assert held["faces"] == 3 and held["split"] == "test"
    assert set(held["gap"]) == {"plain_to_crops", "headset_to_plain", "plain_alignment", "headset_alignment"}
    ff = report["face_free"]  # the same finder on the face-free family, in the same run
    assert ff["frames"] == 14 and set(ff["by_kind"]) == set(KINDS) and ff["false_faces"] <= 1
    assert ff["locate_ms"]["n"] == 14 and report["e2e"]["locate_ms"]["n"] == 12
    assert "face-free frames" in "\n".join(table(report)) and "p99 face-free / face" in "\n".join(table(report))
    e = report["e2e"]
    assert e["frames"] == 12 and 0 <= e["found"] <= 12
    assert set(e["accuracy"]) == {"crop_all", "placed_all", "e2e_all", "crop_found", "placed_found", "e2e_found"}
    assert set(e["gap"]) == {"all_frames", "found_faces", "photometric", "alignment"}
    assert e["max_yaw"] == FaceConfig().max_yaw and sum(b["frames"] for b in e["found_by_yaw"].values()) == e["found"]


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "error: argument --frames: expected a number >= 1, got 0"),
    (["--soak", "soon"], "error: argument --soak: expected a number of seconds, got 'soon'"),
    (["--e2e", "--max-yaw", "120"], "error: argument --max-yaw: expected an angle from 0 to 90 degrees, got 120"),
    (["--model", "missing.onnx"], "error: missing.onnx: model file not found"),
    (["--e2e", "--against", "b.onnx"], "error: --against goes with the latency benchmark, not with --e2e or --soak"),
    (["--against", "missing.onnx"], "error: missing.onnx: model file not found"),
    ([], f"error: no model is installed yet ({REPO / 'no-default-model.onnx'} is missing): train and export "
         "one with 'vrfer train training/configs/student.toml' and 'vrfer export', or pass --model PATH"),
])
def test_bench_bad_input_is_one_line(args, message):
    r = vrfer("bench", *args)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [message]


def test_camera_like_frames_placement_maps_back_onto_the_crop(tmp_path):
    rng = np.random.default_rng(3)
    face = cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (5, 5), 1.5)
    cv2.imwrite(str(tmp_path / "f.png"), face)
    plain = CameraLikeSpec(contrast=(1.0, 1.0), brightness=(0.0, 0.0), noise_sigma=(0.0, 0.0))
    frames = list(camera_like_frames([("f.png", "happiness")] * 4, tmp_path, seed=1, spec=plain))
    assert len({f.params["size"] for f in frames}) > 1  # sizes and positions vary with the seed
    for f in frames:
        assert f.image.shape == (480, 640, 3) and f.truth == "happiness"
        back = crop_face(f.image, f.placed).astype(int)
        assert np.abs(back - face.astype(int)).mean() < 3.0  # cubic up, area-like down: not bit-exact
    again = list(camera_like_frames([("f.png", "happiness")] * 4, tmp_path, seed=1, spec=plain))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, again))


def test_summarise_e2e_counts_missing_faces_as_wrong_and_splits_the_gap():
    rows = [  # truth, crop, placed, e2e (None: no face)
        dict(truth="happiness", crop="happiness", placed="happiness", e2e="happiness", reason=None, size=200,
             path="mesh", yaw=-5.0),
        dict(truth="happiness", crop="happiness", placed="happiness", e2e="neutral", reason=None, size=200,
             path="mesh", yaw=50.0),
        dict(truth="neutral", crop="neutral", placed="sadness", e2e="sadness", reason=None, size=130,
             path="locator", yaw=0.0),
        dict(truth="anger", crop="anger", placed="anger", e2e=None, reason="no face found", size=130),
        dict(truth="fear", crop="sadness", placed="sadness", e2e=None,
             reason="head turned too far (yaw 52°)", size=250),
    ]
    e = summarise_e2e(rows)
    a = e["accuracy"]
    assert (e["frames"], e["found"]) == (5, 3)
    assert e["not_found"] == {"no face found": 1, "head turned too far": 1}
    assert e["found_by_face_size"] == {"120-159": "1/2", "200-239": "2/2", "240-279": "0/1"}
    assert e["found_by_path"] == {"locator": 1, "mesh": 2}
    assert e["by_path"]["mesh"] == {"frames": 2, "crop": 100.0, "placed": 100.0, "e2e": 50.0}
    assert e["by_path"]["locator"] == {"frames": 1, "crop": 100.0, "placed": 0.0, "e2e": 0.0}
    assert a["crop_all"] == pytest.approx(80.0) and a["e2e_all"] == pytest.approx(20.0)
    assert a["crop_found"] == pytest.approx(100.0) and a["placed_found"] == pytest.approx(200 / 3)
    assert a["e2e_found"] == pytest.approx(100 / 3)
    assert e["gap"]["photometric"] == pytest.approx(100 / 3) and e["gap"]["alignment"] == pytest.approx(100 / 3)
    assert e["found_by_yaw"] == {"0-15": {"frames": 2, "crop": 100.0, "e2e": 50.0},
                                 "45-60": {"frames": 1, "crop": 100.0, "e2e": 0.0}}


def test_percentiles_of_known_values():
    p = percentiles([float(i) for i in range(1, 101)])
    assert p["p50"] == pytest.approx(50.5) and p["p99"] == pytest.approx(99.01)
    assert p["max"] == 100.0 and p["n"] == 100
    assert percentiles([])["n"] == 0
