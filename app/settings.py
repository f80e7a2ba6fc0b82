"""The app's persistent settings: typed values named after what they mean, in one JSON file.

The file lives in the user's config directory (``platformdirs``), or in ``$VRFER_CONFIG_DIR``
when set (tests, portable installs). JSON rather than TOML because the standard library can
write it; floats stay floats and integers stay integers.

A file that is not JSON, is not a vrfer settings file, or holds a value of the wrong type is
*never* fatal: it is moved aside to ``settings.json.bad-<time>``, the defaults are written in
its place and ``load_settings`` returns a one-line notice for the status bar.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vrfer.core.avatar.osc import VRCFT_BABBLE_PORT, VRCHAT_PORT
from vrfer.core.avatar.sinks import DEFAULT_RATE_HZ
from vrfer.core.config import from_dict
from vrfer.core.errors import ConfigError
from vrfer.core.face import ROTATIONS
from vrfer.core.smoothing import METHODS

FORMAT = "vrfer-settings"
VERSION = 1
FILE_NAME = "settings.json"
AVATAR_OUTPUTS = ("off", "vrchat", "vrcft")
DEFAULT_SOURCE = "0"  # camera 0; the window offers the demo when it does not open


def config_dir() -> Path:
    """``$VRFER_CONFIG_DIR``, else the platform's per-user config folder for vrfer."""
    env = os.environ.get("VRFER_CONFIG_DIR")
    if env:
        return Path(env)
    from vrfer.core.paths import user_dirs

    return Path(user_dirs().user_config_dir)


@dataclass(frozen=True)
class MouthCamera:
    """Mouth-camera mode: a fixed ROI (frame pixels) replaces face detection."""

    enabled: bool = False
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h
    rotate: int = 0  # clockwise degrees, one of 0/90/180/270
    flip: bool = False


@dataclass(frozen=True)
class Smoothing:
    method: str = "ema"
    strength: float = 0.5  # 0 = off, 1 = slowest
    margin: float = 0.1  # how much a new label must beat the current one by (core.smoothing)
    min_hold_frames: int = 1


@dataclass(frozen=True)
class Avatar:
    """The app's side of ``core.avatar.sinks.AvatarConfig``: every option ``vrfer run`` has."""

    output: str = "off"  # off | vrchat | vrcft (never both: the avatar would flicker)
    vrchat_target: str = f"127.0.0.1:{VRCHAT_PORT}"
    vrcft_target: str = f"127.0.0.1:{VRCFT_BABBLE_PORT}"
    vrchat_ft: bool = False  # /avatar/parameters/FT/v2/ prefix
    vrchat_listen: int | None = None  # re-send all on /avatar/change heard on this port; None = off
    rate_hz: float = DEFAULT_RATE_HZ  # OSC send-rate cap
    openxr: bool = False  # OpenXR companion session and face-weights provider


@dataclass(frozen=True)
class Overlay:
    visible: bool = False
    x: int | None = None  # screen position of the overlay's top-left corner
    y: int | None = None
    opacity: float = 0.85


@dataclass(frozen=True)
class Settings:
    source: str = DEFAULT_SOURCE
    model: str = ""  # "" = the shipped model (or $VRFER_MODEL)
    mouth_camera: MouthCamera = field(default_factory=MouthCamera)
    smoothing: Smoothing = field(default_factory=Smoothing)
    calibration: dict[str, float] = field(default_factory=dict)  # class -> log-prob offset
    profile: str = ""  # personal profile (core.adapt): a saved name, or a path; "" = none
    avatar: Avatar = field(default_factory=Avatar)
    overlay: Overlay = field(default_factory=Overlay)


# --- reading -------------------------------------------------------------------------------

def _number(value: Any, where: str, *, integer: bool = False) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def _check(value: Any, where: str, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _section(cls: type, data: Any, where: str, convert: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from a JSON object; keys it lacks keep their defaults, keys it
    does not know are skipped (a file from a newer vrfer)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object, got {data!r}")
    return from_dict(cls, data, None, f"{where}.", convert=convert, strict=False)


def _roi(value: Any, where: str) -> tuple[int, int, int, int] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 4:
        raise ConfigError(f"{where} must be [x, y, w, h] or null, got {value!r}")
    roi = tuple(int(_number(v, where, integer=True)) for v in value)
    if roi[0] < 0 or roi[1] < 0 or roi[2] < 1 or roi[3] < 1:
        raise ConfigError(f"{where} {list(roi)} is not a rectangle inside a frame")
    return roi  # type: ignore[return-value]


def _choice(options: tuple, kind: type = str):
    def convert(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, kind) or value not in options:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, options))}, got {value!r}")
        return value
    return convert


def _fraction(value: Any, where: str) -> float:
    x = float(_number(value, where))
    if not 0.0 <= x <= 1.0:
        raise ConfigError(f"{where} must be between 0 and 1, got {value!r}")
    return x


def _calibration(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object of class -> offset, got {value!r}")
    return {str(k): float(_number(v, f"{where}.{k}")) for k, v in value.items()}


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else int(_number(value, where, integer=True))


def _opt_port(value: Any, where: str) -> int | None:
    port = _opt_int(value, where)
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{where} must be a UDP port 1..65535 or null, got {value!r}")
    return port


def _positive(value: Any, where: str) -> float:
    x = float(_number(value, where))
    if x <= 0:
        raise ConfigError(f"{where} must be above 0, got {value!r}")
    return x


def _smoothing(value: Any, where: str) -> Smoothing:
    """Files written before the label margin had its core name call it ``hysteresis``."""
    if isinstance(value, dict) and "hysteresis" in value:
        value = {"margin": value["hysteresis"], **{k: v for k, v in value.items() if k != "hysteresis"}}
    return _section(Smoothing, value, where, {
        "method": _choice(METHODS), "strength": _fraction, "margin": _fraction, "min_hold_frames": _min_hold})


def _min_hold(value: Any, where: str) -> int:
    n = int(_number(value, where, integer=True))
    if n < 1:
        raise ConfigError(f"{where} must be at least 1, got {value!r}")
    return n


def settings_from_dict(data: Any, origin: str = FILE_NAME) -> Settings:
    """Validate a parsed settings file; ``ConfigError`` names the first bad key."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{origin} is not a vrfer settings file")
    if data.get("version") != VERSION:
        raise ConfigError(f"{origin} has settings version {data.get('version')!r}, this vrfer reads {VERSION}")
    text = lambda v, w: _check(v, w, str)  # noqa: E731
    flag = lambda v, w: _check(v, w, bool)  # noqa: E731
    # One parser per top-level key; the first bad key (in this order) is the one reported.
    parsers: dict[str, Callable[[Any], Any]] = {
        "source": lambda v: text(v, "source"),
        "model": lambda v: text(v, "model"),
        "mouth_camera": lambda v: _section(MouthCamera, v, "mouth_camera", {
            "enabled": flag, "roi": _roi, "rotate": _choice(ROTATIONS, int), "flip": flag}),
        "smoothing": lambda v: _smoothing(v, "smoothing"),
        "calibration": lambda v: _calibration(v, "calibration"),
        "profile": lambda v: text(v, "profile"),
        "avatar": lambda v: _section(Avatar, v, "avatar", {
            "output": _choice(AVATAR_OUTPUTS), "vrchat_target": text, "vrcft_target": text, "vrchat_ft": flag,
            "vrchat_listen": _opt_port, "rate_hz": _positive, "openxr": flag}),
        "overlay": lambda v: _section(Overlay, v, "overlay", {
            "visible": flag, "x": _opt_int, "y": _opt_int, "opacity": _fraction}),
    }
    out = Settings()
    for key, parse in parsers.items():
        if key in data:
            out = dataclasses.replace(out, **{key: parse(data[key])})
    return out


def settings_to_dict(s: Settings) -> dict[str, Any]:
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    data.update(dataclasses.asdict(s))
    roi = s.mouth_camera.roi
    data["mouth_camera"]["roi"] = list(roi) if roi is not None else None
    return data


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    path: Path
    notice: str | None = None  # one line for the status bar when the file had to be replaced


def load_settings(directory: Path | None = None, *, repair: bool = True) -> Loaded:
    """Read the settings; a bad file is backed up and replaced by the defaults, never raised.

    ``repair=False`` leaves a bad file where it is (a read-only run such as a screenshot)."""
    path = (directory or config_dir()) / FILE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Loaded(Settings(), path)
    except OSError as exc:
        return Loaded(Settings(), path, f"settings could not be read ({exc.strerror or exc}); using defaults")
    try:
        return Loaded(settings_from_dict(json.loads(raw.decode("utf-8")), path.name), path)
    except (ValueError, ConfigError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        why = str(exc) if isinstance(exc, ConfigError) else f"{path.name} is not valid JSON"
    if not repair:
        return Loaded(Settings(), path, f"settings ignored, using defaults: {why}")
    backup = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        os.replace(path, backup)
        save_settings(Settings(), path)
        where = f"backed up to {backup.name}"
    except OSError as exc:
        where = f"could not be backed up ({exc.strerror or exc})"
    return Loaded(Settings(), path, f"settings were reset to defaults: {why}; the old file was {where}")


def save_settings(s: Settings, path: Path) -> None:
    """Write atomically, so a crash mid-write leaves the old file, not half a new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(settings_to_dict(s), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
