"""App tests drive the real widgets offscreen: the platform is set here, before Qt is imported."""
from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # noqa: E402 - must precede any PyQt6 import

from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh settings folder per test, so no test reads or writes the user's settings."""
    d = tmp_path / "config"
    monkeypatch.setenv("VRFER_CONFIG_DIR", str(d))
    return d


@pytest.fixture
def make_window(qtbot, config_dir: Path, tiny_model: Path) -> Callable[..., object]:
    """Build the real MainWindow on the tiny model; closed (pipeline and worker stopped) afterwards."""
    from vrfer.app.window import MainWindow

    made: list[MainWindow] = []

    def make(**kwargs) -> MainWindow:
        kwargs.setdefault("model", str(tiny_model))
        kwargs.setdefault("enumerate_cameras", False)
        w = MainWindow(**kwargs)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
