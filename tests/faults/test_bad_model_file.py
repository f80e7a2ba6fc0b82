"""Fault: a model file that is truncated or carries another tool's metadata, given to the
commands a user runs. Each exits 2 with one ``error:`` line naming the file, before any
camera or window opens. (ExpressionModel's exact messages: tests/core/test_model.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VRFER = Path(sys.executable).parent / "vrfer"


@pytest.fixture
def bad_models(tiny_model, make_onnx, tmp_path) -> dict[str, Path]:
    cut = tmp_path / "cut.onnx"
    data = tiny_model.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return {"truncated": cut, "foreign": make_onnx("foreign.onnx", meta={"producer": "another tool"})}


@pytest.mark.parametrize("kind, start", [
    ("truncated", "{path}: not a readable ONNX model ("),
    ("foreign", "{path}: not a vrfer model (metadata lacks vrfer.classes)"),
])
@pytest.mark.parametrize("command", [["run", "--source", "demo"], ["bench", "--frames", "5"]])
def test_bad_model_file_is_one_error_line(bad_models, kind, start, command):
    path = bad_models[kind]
    r = subprocess.run([str(VRFER), *command, "--model", str(path)], cwd=REPO, capture_output=True, text=True,
                       timeout=60, env=dict(os.environ))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + start.format(path=path)), r.stderr
    assert r.stdout == ""
