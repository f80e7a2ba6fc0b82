"""The desktop bundle: built on Linux with the same command as on Windows and macOS, then its
program runs the demo headless, takes the offscreen screenshot and checks itself with doctor."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from installed import REPO, check_demo_run, check_screenshot, clean_env, run_program


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("PyInstaller", reason="PyInstaller (the bundle extra) is not installed")
    work = tmp_path_factory.mktemp("bundle")
    res = subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(work / "dist"),
                          "--workpath", str(work / "build"), str(REPO / "packaging" / "vrfer.spec")],
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-4000:]
    folder = work / "dist" / "vrfer"
    assert (folder / "vrfer").is_file() or (folder / "vrfer.exe").is_file()
    return folder


def _program(bundle: Path) -> list[str]:
    return [str(bundle / ("vrfer.exe" if sys.platform == "win32" else "vrfer"))]


@pytest.mark.slow
def test_bundle_holds_the_runtime_and_its_models_but_not_torch(bundle: Path) -> None:
    inside = bundle / "_internal"
    for asset in ("vrfer/assets/models/student.onnx", "vrfer/assets/models/headset_locator.onnx",
                  "vrfer/assets/face_template.json", "vrfer/assets/blendshapes/unified_v2.toml",
                  "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
                  "mediapipe/modules/face_detection/face_detection_short_range.tflite",
                  "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
                  "mediapipe/modules/face_detection/face_detection_full_range_cpu.binarypb"):
        assert (inside / asset).is_file(), asset
    for left_out in ("torch", "jaxlib", "tensorboard"):
        assert not (inside / left_out).exists(), left_out


@pytest.mark.slow
def test_bundle_runs_the_demo_takes_the_screenshot_and_passes_doctor(bundle: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    program = _program(bundle)
    check_demo_run(program, cwd=tmp_path, env=env)
    check_screenshot(program, cwd=tmp_path, env=env, out=tmp_path / "shot.png")
    res = run_program([*program, "doctor", "--json", "--max-index", "1"], cwd=tmp_path,
                      env={**env, "QT_QPA_PLATFORM": "offscreen", "VRFER_LOG_DIR": str(tmp_path / "logs")})
    rows = {r["name"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert res.returncode == 0, [r for r in rows.values() if r["status"] == "fail"]
    assert rows["python"]["detail"].endswith("(desktop bundle)")
    for name in ("packages", "model", "headset locator", "mediapipe", "qt"):
        assert rows[name]["status"] == "ok", rows[name]
    assert rows["qt"]["detail"].endswith("platform plugin 'offscreen' loads")
    assert "extras: train no" in rows["packages"]["detail"]  # the bundle has no torch
    res = run_program([*program, "train", "student.toml"], cwd=tmp_path, env=env)
    assert (res.returncode, res.stderr) == (2, "error: vrfer train needs the training code, which the desktop "
                                               "bundle leaves out: pip install 'vrfer[train]'\n")
