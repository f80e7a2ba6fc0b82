"""The layer rule: core/ is the runtime and never pulls in Qt, torch, the app, training or cli."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("torch", "PyQt6", "PySide6", "pyqtgraph", "vrfer.app", "vrfer.training", "vrfer.cli", "vrfer.bench")

IMPORT_ALL_CORE = """
import importlib, json, pkgutil, sys
import vrfer.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "vrfer.core.")]
for name in names:
    importlib.import_module(name)
import mediapipe  # core.face imports it lazily; it must not drag torch in either
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""


def test_layers_import_linter_contracts_are_kept():
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_layers_core_modules_import_neither_qt_nor_torch():
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL_CORE], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"vrfer.core.pipeline", "vrfer.core.model", "vrfer.core.preprocess", "vrfer.core.smoothing"} <= set(report["modules"])
    bad = [m for m in report["loaded"] if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, bad
