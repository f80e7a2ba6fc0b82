"""Settings: typed round trip, and recovery from files that are garbage or foreign."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vrfer.app.settings import (
    Avatar, MouthCamera, Overlay, Settings, Smoothing, load_settings, save_settings,
)


def test_settings_roundtrip_keeps_types_and_meaningful_keys(config_dir: Path) -> None:
    s = Settings(source="http://127.0.0.1:81/stream", model="m.onnx",
                 mouth_camera=MouthCamera(enabled=True, roi=(10, 20, 300, 150), rotate=90, flip=True),
                 smoothing=Smoothing(method="one_euro", strength=1.0, margin=0.0, min_hold_frames=3),
                 calibration={"neutral": 1.25, "sadness": -0.5},
                 avatar=Avatar(output="vrcft", vrchat_ft=True, vrchat_listen=9001, rate_hz=30.0, openxr=True),
                 overlay=Overlay(visible=True, x=5, y=-7, opacity=0.5))
    path = config_dir / "settings.json"
    save_settings(s, path)
    loaded = load_settings(config_dir)
    assert loaded.notice is None
    assert loaded.settings == s
    data = json.loads(path.read_text())
    assert data["smoothing"] == {"method": "one_euro", "strength": 1.0, "margin": 0.0, "min_hold_frames": 3}
    assert isinstance(data["smoothing"]["strength"], float)  # 1.0 stays a float, not "1" or "1.0"
    assert data["mouth_camera"]["roi"] == [10, 20, 300, 150]
    assert set(data) == {"format", "version", "source", "model", "mouth_camera", "smoothing", "calibration",
                         "profile", "avatar", "overlay"}


def test_settings_old_hysteresis_key_is_read_as_margin_and_saved_as_margin(config_dir: Path) -> None:
    config_dir.mkdir()
    path = config_dir / "settings.json"
    path.write_text('{"format": "vrfer-settings", "version": 1, "smoothing": {"hysteresis": 0.3, "strength": 0.2}}')
    loaded = load_settings(config_dir)
    assert loaded.notice is None and loaded.settings.smoothing == Smoothing(strength=0.2, margin=0.3)
    save_settings(loaded.settings, path)
    assert json.loads(path.read_text())["smoothing"]["margin"] == 0.3
    assert "hysteresis" not in json.loads(path.read_text())["smoothing"]


def test_settings_missing_file_gives_defaults_without_notice(config_dir: Path) -> None:
    loaded = load_settings(config_dir)
    assert loaded.settings == Settings() and loaded.notice is None
    assert not config_dir.exists()  # reading never creates anything


def test_settings_partial_file_keeps_defaults_for_missing_keys(config_dir: Path) -> None:
    config_dir.mkdir()
    (config_dir / "settings.json").write_text('{"format": "vrfer-settings", "version": 1, "smoothing": {"strength": 1}}')
    loaded = load_settings(config_dir)
    assert loaded.notice is None
    assert loaded.settings.smoothing == Smoothing(strength=1.0)
    assert isinstance(loaded.settings.smoothing.strength, float)


@pytest.mark.parametrize("content, why", [
    (b"\x00\xff garbage {", "settings.json is not valid JSON"),
    (b"[1, 2, 3]", "settings.json is not a vrfer settings file"),
    (b'{"theme": "dark"}', "settings.json is not a vrfer settings file"),
    (b'{"format": "vrfer-settings", "version": 7}', "settings.json has settings version 7, this vrfer reads 1"),
    (b'{"format": "vrfer-settings", "version": 1, "smoothing": {"strength": "fast"}}',
     "smoothing.strength must be a number, got 'fast'"),
    (b'{"format": "vrfer-settings", "version": 1, "smoothing": {"strength": 3.5}}',
     "smoothing.strength must be between 0 and 1, got 3.5"),
    (b'{"format": "vrfer-settings", "version": 1, "mouth_camera": {"roi": [1, 2, 3]}}',
     "mouth_camera.roi must be [x, y, w, h] or null, got [1, 2, 3]"),
    (b'{"format": "vrfer-settings", "version": 1, "mouth_camera": {"rotate": 45}}',
     "mouth_camera.rotate must be one of 0, 90, 180, 270, got 45"),
    (b'{"format": "vrfer-settings", "version": 1, "avatar": {"output": "both"}}',
     "avatar.output must be one of off, vrchat, vrcft, got 'both'"),
    (b'{"format": "vrfer-settings", "version": 1, "avatar": {"vrchat_listen": 70000}}',
     "avatar.vrchat_listen must be a UDP port 1..65535 or null, got 70000"),
    (b'{"format": "vrfer-settings", "version": 1, "avatar": {"rate_hz": 0}}', "avatar.rate_hz must be above 0, got 0"),
    (b'{"format": "vrfer-settings", "version": 1, "smoothing": {"hysteresis": 2}}',
     "smoothing.margin must be between 0 and 1, got 2"),
    (b'{"format": "vrfer-settings", "version": 1, "overlay": {"visible": "yes"}}',
     "overlay.visible must be bool, got 'yes'"),
])
def test_settings_bad_file_is_backed_up_and_replaced(config_dir: Path, content: bytes, why: str) -> None:
    config_dir.mkdir()
    path = config_dir / "settings.json"
    path.write_bytes(content)
    loaded = load_settings(config_dir)
    assert loaded.settings == Settings()
    backups = sorted(config_dir.glob("settings.json.bad-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == content
    assert loaded.notice == (f"settings were reset to defaults: {why}; "
                             f"the old file was backed up to {backups[0].name}")
    again = load_settings(config_dir)  # the defaults were written: reported once, not every start
    assert again.notice is None and again.settings == Settings()


def test_settings_bad_file_is_left_alone_without_repair(config_dir: Path) -> None:
    config_dir.mkdir()
    (config_dir / "settings.json").write_bytes(b"[]")
    loaded = load_settings(config_dir, repair=False)
    assert loaded.settings == Settings()
    assert loaded.notice == "settings ignored, using defaults: settings.json is not a vrfer settings file"
    assert [p.name for p in config_dir.iterdir()] == ["settings.json"]
    assert (config_dir / "settings.json").read_bytes() == b"[]"
