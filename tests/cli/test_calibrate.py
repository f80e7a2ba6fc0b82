"""``vrfer calibrate`` in script mode on a folder, and ``vrfer run --profile``, in subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
VRFER = Path(sys.executable).parent / "vrfer"
ROI = "0,48,96,48"  # mouth-camera mode: no face detector, every frame has a face


def vrfer(*args: str, profiles: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(VRFER), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, "VRFER_PROFILES": str(profiles)})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """18 frames: six per 'expression', each expression a different brightness pattern."""
    out = tmp_path / "frames"
    out.mkdir()
    rng = np.random.default_rng(0)
    for c in range(3):
        for j in range(6):
            img = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8) + np.uint8(60 * c)
            cv2.imwrite(str(out / f"{c}_{j:02d}.png"), img)
    return out


def test_calibrate_script_on_folder_saves_a_profile_that_run_uses(tmp_path, folder, tiny_model):
    profiles = tmp_path / "profiles"
    r = vrfer("calibrate", "--source", str(folder), "--model", str(tiny_model), "--out", "alice", "--roi", ROI,
              "--countdown", "0", "--script", "neutral:0.2,happiness:0.2,surprise:0.2,anger:0", "--l2", "0.1",
              profiles=profiles)
    assert r.returncode == 0, r.stderr
    path = profiles / "alice.json"
    assert r.stdout.strip() == (
        f"saved profile alice to {path}: fitted neutral (6), happiness (6), surprise (6); skipped (general "
        f"model): sadness, anger, disgust, fear, contempt; fit in {r.stdout.split('fit in ')[1].strip()}")
    # 30 fps folder clock: 0.2 s is frames 0-5, 6-11 and 12-17, one 'expression' each
    assert "neutral: 6 faces recorded in 6 frames" in r.stderr
    doc = json.loads(path.read_text())
    assert doc["samples"] == {"neutral": 6, "happiness": 6, "surprise": 6}
    assert doc["skipped"] == ["sadness", "anger", "disgust", "fear", "contempt"]

    plain = vrfer("run", "--source", str(folder), "--model", str(tiny_model), "--roi", ROI, "--jsonl",
                  profiles=profiles)
    adapted = vrfer("run", "--source", str(folder), "--model", str(tiny_model), "--roi", ROI, "--jsonl",
                    "--profile", "alice", profiles=profiles)
    assert plain.returncode == 0 and adapted.returncode == 0, adapted.stderr
    p0 = [json.loads(line)["probs"] for line in plain.stdout.splitlines()]
    p1 = [json.loads(line)["probs"] for line in adapted.stdout.splitlines()]
    assert len(p0) == len(p1) == 18 and p0 != p1
    truth = np.repeat(["neutral", "happiness", "surprise"], 6)
    hits = [sum(max(p, key=p.get) == t for p, t in zip(ps, truth)) for ps in (p0, p1)]
    assert hits[1] > hits[0]  # the profile learned these three "expressions"


def test_run_refuses_a_profile_of_another_model(tmp_path, folder, tiny_model, make_onnx):
    profiles = tmp_path / "profiles"
    r = vrfer("calibrate", "--source", str(folder), "--model", str(tiny_model), "--out", "alice", "--roi", ROI,
              "--countdown", "0", "--script", "neutral:0.2,happiness:0.2", profiles=profiles)
    assert r.returncode == 0, r.stderr
    other = make_onnx("other.onnx", seed=3)
    r = vrfer("run", "--source", str(folder), "--model", str(other), "--roi", ROI, "--profile", "alice",
              profiles=profiles)
    assert r.returncode == 2
    assert r.stderr.startswith("error: profile alice was fitted on model tiny-test") and r.stderr.count("\n") == 1


def test_run_reports_a_corrupt_profile_in_one_line(tmp_path, folder, tiny_model):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "vrfer-profile", "version": 1, "weights": ')
    r = vrfer("run", "--source", str(folder), "--model", str(tiny_model), "--roi", ROI, "--profile", str(bad),
              profiles=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(f"error: {bad}: not a readable profile (") and r.stderr.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    ([], "error: interactive calibration needs a camera and a terminal for key presses; pass --script"),
    (["--script", "joy:1"], "error: --script names class 'joy'; the model's classes are neutral, happiness"),
    (["--script", "happy"], "error: argument --script: expected CLASS:SECONDS[,CLASS:SECONDS...], got 'happy'"),
    (["--script", "neutral:1"], "error: record at least two expressions with 2+ faces each to calibrate "
                                "(got neutral 18)"),
])
def test_calibrate_errors_are_one_line(tmp_path, folder, tiny_model, args, message):
    r = vrfer("calibrate", "--source", str(folder), "--model", str(tiny_model), "--out", "x", "--roi", ROI,
              "--countdown", "0", *args, profiles=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1].startswith(message)
    assert not (tmp_path / "x.json").exists()
