"""core.config: the one strict TOML -> dataclass loader, on written files, with the exact messages."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vrfer.core.config import from_dict, read_toml
from vrfer.core.errors import ConfigError


@dataclass
class Inner:
    rate: float = 0.5
    steps: int = 3


@dataclass
class Outer:
    name: str = "x"
    on: bool = False
    inner: Inner = field(default_factory=Inner)


def load(tmp_path: Path, text: str) -> Outer:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return from_dict(Outer, read_toml(path), str(path))


def test_config_loads_nested_tables_and_keeps_defaults(tmp_path):
    cfg = load(tmp_path, 'name = "run"\n[inner]\nrate = 1\n')
    assert cfg == Outer(name="run", inner=Inner(rate=1.0, steps=3)) and isinstance(cfg.inner.rate, float)


@pytest.mark.parametrize("text, message", [
    ('nmae = "run"\n', "unknown key 'nmae' (known: name, on, inner)"),
    ('[inner]\nsteps = 2.5\n', "inner.steps must be a whole number, got 2.5"),
    ('[inner]\nrate = "fast"\n', "inner.rate must be a number, got 'fast'"),
    ('on = 1\n', "on must be true or false, got 1"),
    ('inner = 3\n', "inner must be a table"),
    ('name = \n', "not valid TOML (Invalid value (at line 1, column 8))"),
])
def test_config_bad_file_is_one_line_naming_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert str(err.value) == f"{tmp_path / 'c.toml'}: {message}"


def test_config_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        read_toml(tmp_path / "none.toml")
    assert str(err.value) == f"{tmp_path / 'none.toml'}: cannot be read (No such file or directory)"


def test_config_convert_checks_a_key_and_lenient_mode_skips_unknown_keys():
    def rate(value, where):
        if not 0 < value <= 1:
            raise ConfigError(f"{where} must be in (0, 1], got {value!r}")
        return float(value)

    raw = {"rate": 1, "future_key": "ignored"}
    assert from_dict(Inner, raw, None, "inner.", convert={"rate": rate}, strict=False) == Inner(rate=1.0)
    with pytest.raises(ConfigError) as err:
        from_dict(Inner, {"rate": 2}, None, "inner.", convert={"rate": rate}, strict=False)
    assert str(err.value) == "inner.rate must be in (0, 1], got 2"  # no origin: the caller's own wording
