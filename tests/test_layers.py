"""The layer rule: core/ is the runtime and never pulls in Qt, torch, the app, training or cli."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = ("torch", "PyQt6", "PySide6", "pyqtgraph", "app", "training", "cli")

IMPORT_ALL_CORE = """
import importlib, json, pkgutil, sys
import core
names = [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]
for name in names:
    importlib.import_module(name)
import mediapipe  # core.face imports it lazily; it must not drag torch in either
print(json.dumps({"modules": names, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
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
    assert {"core.pipeline", "core.model", "core.preprocess", "core.smoothing"} <= set(report["modules"])
    assert not set(FORBIDDEN) & set(report["loaded"])
