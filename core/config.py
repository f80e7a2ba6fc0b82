"""The one config loader: TOML files (or parsed JSON) into dataclasses, strictly.

An unknown key, or a value of the wrong type for its field's default, is a one-line
``ConfigError`` naming the file and the dotted key. Nested dataclass fields are TOML tables.
Training configs, the reproduce sequence and the headset locator's training all load here.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from vrfer.core.errors import ConfigError

T = TypeVar("T")


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid files are one-line ConfigErrors."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def from_dict(cls: type[T], raw: dict[str, Any], origin: str, prefix: str = "") -> T:
    """``cls`` from ``raw``; fields ``raw`` lacks keep their defaults."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key '{prefix}{key}' (known: {', '.join(known)})")
        default = known[key].default_factory() if known[key].default_factory is not dataclasses.MISSING \
            else known[key].default
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: {prefix}{key} must be a table")
            value = from_dict(type(default), value, origin, f"{prefix}{key}.")
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{origin}: {prefix}{key} must be true or false, got {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{origin}: {prefix}{key} must be a number, got {value!r}")
            if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"{origin}: {prefix}{key} must be a whole number, got {value!r}")
            value = type(default)(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{origin}: {prefix}{key} must be a string, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)
