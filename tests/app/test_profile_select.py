"""Choosing a saved personal profile in the real window, offscreen, on the tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vrfer.app.settings import FORMAT, MouthCamera, Settings, Smoothing, load_settings, save_settings
from vrfer.core.adapt import ModelFingerprint, fit_profile, model_fingerprint, save_profile
from vrfer.core.model import ExpressionModel

WAIT_MS = 20_000  # model load and the demo source share 2 busy cores


@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "profiles"
    monkeypatch.setenv("VRFER_PROFILES", str(d))
    return d


def _save(fp: ModelFingerprint, name: str) -> Path:
    """A real fitted profile: happiness and surprise recorded, a weak prior so it really moves the output."""
    rng = np.random.default_rng(0)
    y = np.repeat([1, 2], 6)
    e = rng.normal(0, 1, (len(y), fp.embedding_dim)) + 3.0 * (y == 2)[:, None]
    p = rng.dirichlet(np.ones(len(fp.classes)), len(y))
    return save_profile(fit_profile(e, p, y, fp, l2=0.05, name=name), name)


def _fingerprint(model: Path) -> ModelFingerprint:
    return model_fingerprint(ExpressionModel(model))


def _demo_settings(config_dir: Path, **kw) -> None:
    # a fixed region: every frame has a "face"; no smoothing, so a state's probs are the profile's output
    save_settings(Settings(source="demo", mouth_camera=MouthCamera(enabled=True, roi=(160, 120, 320, 240)),
                           smoothing=Smoothing(strength=0.0), **kw), config_dir / "settings.json")


def _items(combo) -> list[tuple[str, str]]:
    return [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]


def test_profile_select_lists_saved_profiles(make_window, tiny_model: Path, profiles: Path) -> None:
    fp = _fingerprint(tiny_model)
    _save(fp, "bob")
    _save(fp, "alice")
    w = make_window(source="demo", autostart=False)
    assert _items(w.calibration_panel.profile_combo) == [("none", ""), ("alice", "alice"), ("bob", "bob")]
    assert w.calibration_panel.profile_combo.currentData() == "" and w.profile is None


def test_profile_select_applies_to_the_running_pipeline_and_persists(
        qtbot, make_window, tiny_model: Path, profiles: Path, config_dir: Path) -> None:
    path = _save(_fingerprint(tiny_model), "alice")
    _demo_settings(config_dir)
    w = make_window()
    qtbot.waitUntil(lambda: w.displayed >= 3, timeout=WAIT_MS)
    assert w.bridge.pipeline.profile is None
    first = w.bridge.pipeline

    w.calibration_panel.profile_combo.setCurrentIndex(w.calibration_panel.profile_combo.findData("alice"))
    qtbot.waitUntil(lambda: w.bridge.pipeline is not first and w.bridge.pipeline is not None
                    and w.bridge.pipeline.profile is not None, timeout=WAIT_MS)
    profile = w.bridge.pipeline.profile
    assert profile.path == path and profile.fitted == ("happiness", "surprise")
    assert w.bridge.pipeline.config.profile == str(path) and w.profile == str(path)
    assert w.problems == {}
    shown = []
    w.state_shown.connect(shown.append)
    qtbot.waitUntil(lambda: len(shown) >= 3, timeout=WAIT_MS)
    s = shown[-1]
    classes = w.bridge.pipeline.model.classes
    raw = np.array([s.raw_probs[c] for c in classes])
    got = np.array([s.probs[c] for c in classes])
    np.testing.assert_allclose(got, profile.apply(raw, s.embedding), atol=1e-6)
    assert np.abs(got - raw).max() > 0.01  # the profile really changed the output

    w.close()  # saves the settings
    data = json.loads((config_dir / "settings.json").read_text())
    assert data["format"] == FORMAT and data["profile"] == "alice"
    w2 = make_window()
    assert w2.calibration_panel.profile_combo.currentText() == "alice"
    qtbot.waitUntil(lambda: w2.bridge.pipeline is not None and w2.bridge.pipeline.profile is not None,
                    timeout=WAIT_MS)
    assert w2.bridge.pipeline.profile.path == path

    w2.calibration_panel.profile_combo.setCurrentIndex(w2.calibration_panel.profile_combo.findData(""))
    qtbot.waitUntil(lambda: w2.bridge.pipeline is not None and w2.bridge.pipeline.running
                    and w2.bridge.pipeline.profile is None, timeout=WAIT_MS)
    assert w2.settings.profile == "" and w2.profile is None


def test_profile_select_for_another_model_shows_one_line_and_falls_back_to_none(
        qtbot, make_window, tiny_model: Path, make_onnx, profiles: Path, config_dir: Path) -> None:
    _save(_fingerprint(tiny_model), "mine")
    _save(_fingerprint(make_onnx("other.onnx", seed=1)), "other")  # same classes and size, other weights
    _demo_settings(config_dir, profile="mine")
    w = make_window()
    qtbot.waitUntil(lambda: w.bridge.pipeline is not None and w.bridge.pipeline.profile is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.displayed >= 2, timeout=WAIT_MS)

    w.calibration_panel.profile_combo.setCurrentIndex(w.calibration_panel.profile_combo.findData("other"))
    message = w.problems["profile"]
    assert message.startswith("personal profile not used: profile other was fitted on model ")
    assert "the model file differs" in message and "\n" not in message
    assert w.banner.isVisible() and message in w.banner.text()
    assert w.calibration_panel.profile_combo.currentData() == "" and w.settings.profile == "" and w.profile is None
    # the app keeps running, now on the general model
    qtbot.waitUntil(lambda: w.bridge.pipeline is not None and w.bridge.pipeline.running
                    and w.bridge.pipeline.profile is None, timeout=WAIT_MS)
    start = w.displayed
    qtbot.waitUntil(lambda: w.displayed >= start + 3, timeout=WAIT_MS)
    assert "start" not in w.problems


def test_profile_select_restored_mismatch_still_starts(
        qtbot, make_window, make_onnx, profiles: Path, config_dir: Path) -> None:
    _save(_fingerprint(make_onnx("other.onnx", seed=1)), "other")
    _demo_settings(config_dir, profile="other")
    w = make_window()
    qtbot.waitUntil(lambda: w.displayed >= 3, timeout=WAIT_MS)
    assert w.bridge.pipeline.profile is None and w.settings.profile == ""
    assert "profile other was fitted on model" in w.problems["profile"]


def test_profile_select_missing_profile_falls_back(make_window, profiles: Path, config_dir: Path) -> None:
    _demo_settings(config_dir, profile="gone")
    w = make_window(autostart=False)
    w.set_profile("gone")
    assert w.problems["profile"].startswith(f"personal profile not used: {profiles / 'gone.json'}: profile not found")
    assert w.settings.profile == "" and w.calibration_panel.profile_combo.currentData() == ""


def test_profile_select_garbage_setting_is_recovered(config_dir: Path) -> None:
    config_dir.mkdir()
    (config_dir / "settings.json").write_text('{"format": "vrfer-settings", "version": 1, "profile": 3}')
    loaded = load_settings(config_dir)
    assert loaded.settings == Settings() and loaded.settings.profile == ""
    assert loaded.notice.startswith("settings were reset to defaults: profile must be str, got 3;")
