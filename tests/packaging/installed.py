"""Shared checks for an installed vrfer (a wheel in a fresh venv, or the desktop bundle): each
runs the real program in a clean environment, outside the checkout, and checks what it did."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[2]
# Build outputs and local state that a fresh clone does not have.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    "runs", ".cache", "pack", "out")


def source_copy(dest: Path) -> Path:
    """The checkout's sources without build leftovers (a stale build/ would leak into the wheel)."""
    shutil.copytree(REPO, dest, symlinks=True, ignore=NOT_SOURCE)
    return dest


def clean_env(home: Path) -> dict[str, str]:
    """The user's environment without anything that points back at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "QT_QPA_PLATFORM", "VRFER_MODEL")}
    env.update(VRFER_CONFIG_DIR=str(home / "config"), VRFER_CACHE=str(home / "cache"), HOME=str(home))
    return env


def run_program(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 240
                ) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def check_demo_run(program: list[str], *, cwd: Path, env: dict[str, str]) -> list[dict]:
    """`vrfer run --source demo --max-frames 30 --jsonl` works with the shipped model."""
    res = run_program([*program, "run", "--source", "demo", "--max-frames", "30", "--jsonl"], cwd=cwd, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 30
    assert [r["frame"] for r in rows] == list(range(30))
    found = [r for r in rows if r["face"]]
    assert len(found) >= 20, [r.get("message") for r in rows]  # the demo's faces are found ...
    for r in found:  # ... and classified by the shipped model into the 8 FER+ classes
        assert len(r["probs"]) == 8 and abs(sum(r["probs"].values()) - 1) < 1e-3
        assert r["label"] in r["probs"]
    return rows


def check_screenshot(program: list[str], *, cwd: Path, env: dict[str, str], out: Path) -> None:
    """`vrfer app --screenshot` saves a drawn window, offscreen, by itself."""
    res = run_program([*program, "app", "--source", "demo", "--screenshot", str(out), "--after-frames", "10"],
                      cwd=cwd, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    img = cv2.imread(str(out))
    assert img is not None
    h, w = img.shape[:2]
    assert 900 <= w <= 4000 and 600 <= h <= 3000
    assert img.std() > 20  # a drawn window, not a blank surface
