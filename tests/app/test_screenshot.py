"""``vrfer app --screenshot``: the real window, offscreen, in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2

from vrfer.core.paths import REPO_ROOT


def _vrfer(*args: str, config_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, VRFER_CONFIG_DIR=str(config_dir))
    env.pop("QT_QPA_PLATFORM", None)  # the command must go offscreen by itself
    return subprocess.run([sys.executable, "-m", "vrfer.cli.main", "app", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_screenshot_writes_a_png_of_the_window(tmp_path: Path, tiny_model: Path) -> None:
    out = tmp_path / "shots" / "vrfer.app.png"
    res = _vrfer("--source", "demo", "--model", str(tiny_model), "--screenshot", str(out), "--after-frames", "5",
                 config_dir=tmp_path / "cfg")
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img is not None
    h, w = img.shape[:2]
    assert 900 <= w <= 4000 and 600 <= h <= 3000
    assert img.std() > 20  # a drawn window, not a blank surface
    assert not (tmp_path / "cfg" / "settings.json").exists()  # a screenshot never writes settings


def test_screenshot_reports_a_missing_model_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.onnx"
    res = _vrfer("--source", "demo", "--model", str(missing), "--screenshot", str(tmp_path / "x.png"),
                 config_dir=tmp_path / "cfg")
    assert res.returncode == 2
    assert f"error: {missing}: model file not found\n" in res.stderr
    assert not (tmp_path / "x.png").exists()


def test_screenshot_rejects_a_bad_frame_count(tmp_path: Path) -> None:
    res = _vrfer("--screenshot", str(tmp_path / "x.png"), "--after-frames", "0", config_dir=tmp_path / "cfg")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == "error: --after-frames must be at least 1, got 0"
