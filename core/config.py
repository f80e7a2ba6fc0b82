"""The one config loader: TOML files (or parsed JSON) into dataclasses.

An unknown key, or a value of the wrong type for its field's default, is a one-line
``ConfigError`` naming the file and the dotted key. Nested dataclass fields are TOML tables.
Training configs, the reproduce sequence, the headset locator's training and the app's
settings file (JSON, with its own range checks) all load here.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from vrfer.core.errors import ConfigError
from vrfer.core.untrusted import PARSE_ERRORS, is_number, shown

T = TypeVar("T")


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid files are one-line ConfigErrors."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except PARSE_ERRORS as exc:  # nested deeper than tomllib's recursion can follow, or not UTF-8
        raise ConfigError(f"{path}: not valid TOML ({type(exc).__name__})") from None


def read_json(path: Path, what: str, remedy: str) -> Any:
    """A JSON data file shipped in assets (or written by a tool): a one-line ConfigError naming the
    file, what it should be and, when it is missing, the command that makes it."""
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} is missing ({remedy})") from None
    except (OSError, *PARSE_ERRORS) as exc:
        raise ConfigError(f"{path}: not a {what} ({type(exc).__name__}: {exc})") from None


def from_dict(cls: type[T], raw: dict[str, Any], origin: str | None, prefix: str = "", *,
              convert: Mapping[str, Callable[[Any, str], Any]] | None = None, strict: bool = True) -> T:
    """``cls`` from ``raw``; fields ``raw`` lacks keep their defaults.

    A value is checked against its field's default (bool, number, string, nested table).
    ``convert`` gives a key its own checker, ``(value, dotted key) -> value``, for ranges and
    choices. ``strict=False`` skips unknown keys (a newer settings file read by an older vrfer).
    Messages start with ``origin:`` when one is given.
    """
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{origin}: {message}" if origin else message)

    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in known:
            if not strict:
                continue
            raise fail(f"unknown key '{prefix}{key}' (known: {', '.join(known)})")
        default = known[key].default_factory() if known[key].default_factory is not dataclasses.MISSING \
            else known[key].default
        if convert is not None and key in convert:
            value = convert[key](value, f"{prefix}{key}")
        elif dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise fail(f"{prefix}{key} must be a table")
            value = from_dict(type(default), value, origin, f"{prefix}{key}.")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise fail(f"{prefix}{key} must be true or false, got {value!r}")
        elif isinstance(default, dict) and not isinstance(value, dict):
            raise fail(f"{prefix}{key} must be a table, got {shown(value)}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if not is_number(value):
                raise fail(f"{prefix}{key} must be a number, got {shown(value)}")
            if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
                raise fail(f"{prefix}{key} must be a whole number, got {value!r}")
            value = type(default)(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise fail(f"{prefix}{key} must be a string, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)
