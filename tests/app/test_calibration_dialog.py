"""The guided personal calibration in the real window, offscreen, on the tiny model."""
from __future__ import annotations

import json
from pathlib import Path

from PyQt6.QtCore import Qt

from vrfer.app.settings import MouthCamera, Settings, save_settings

WAIT_MS = 20_000  # model load and the demo source share 2 busy cores


def test_calibration_dialog_records_two_classes_skips_the_rest_and_restarts_with_the_profile(
        qtbot, make_window, config_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VRFER_PROFILES", str(tmp_path / "profiles"))
    # a fixed region: every frame has a "face", so recording does not depend on a detector
    save_settings(Settings(source="demo", mouth_camera=MouthCamera(enabled=True, roi=(160, 120, 320, 240))),
                  config_dir / "settings.json")
    w = make_window()
    qtbot.waitUntil(lambda: w.displayed >= 3, timeout=WAIT_MS)
    qtbot.mouseClick(w.calibration_panel.profile_button, Qt.MouseButton.LeftButton)
    d = w.profile_dialog
    d.countdown, d.record = 0.0, 1.0
    d.name_edit.setText("tester")
    assert d.current == "neutral" and "show a neutral, relaxed face" in d.prompt_view.text()
    for expected_next in ("happiness", "surprise"):
        qtbot.mouseClick(d.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: d.current == expected_next, timeout=WAIT_MS)
    while d.current is not None:
        qtbot.mouseClick(d.skip_button, Qt.MouseButton.LeftButton)
    path = tmp_path / "profiles" / "tester.json"
    qtbot.waitUntil(path.is_file, timeout=WAIT_MS)
    doc = json.loads(path.read_text())
    assert set(doc["samples"]) == {"neutral", "happiness"} and min(doc["samples"].values()) >= 2
    assert doc["skipped"] == ["surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    assert d.prompt_view.text() == "Calibration finished" and "general model for: surprise" in d.status_view.text()
    assert w.profile == str(path)
    qtbot.waitUntil(lambda: w.bridge.pipeline is not None and w.bridge.pipeline.profile is not None, timeout=WAIT_MS)
    assert w.bridge.pipeline.profile.fitted == ("neutral", "happiness")


def test_calibration_dialog_needs_a_running_source(qtbot, make_window, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VRFER_PROFILES", str(tmp_path / "profiles"))
    w = make_window(source="demo", autostart=False)
    qtbot.mouseClick(w.calibration_panel.profile_button, Qt.MouseButton.LeftButton)
    d = w.profile_dialog
    assert d.prompt_view.text() == "Calibration not saved"
    assert d.status_view.text() == "start a source first: calibration records from the running pipeline"
    assert not d.start_button.isEnabled() and not (tmp_path / "profiles").exists()
