"""Expression -> blendshape tables: TOML files a user can edit, blended by class probability.

A table file has one section per FER+ class (``[happiness]``) holding ``Name = weight`` lines;
names left out weigh 0. An optional ``[away]`` section is the pose used when no face is seen
(headset off, user gone); without it ``away`` is the ``[neutral]`` row. The output for a state
is ``sum_c p_c * W[c]``, so it moves continuously with the smoothed probabilities.

Search order for ``<key>.toml``: ``$VRFER_BLENDSHAPES`` (a folder), the user's config folder
(``<config>/blendshapes/``), then the shipped ``assets/blendshapes/``.
"""
from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrfer.core.avatar.shapes import SHAPE_SETS, ShapeSet
from vrfer.core.untrusted import PARSE_ERRORS, is_number, shown
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import ConfigError
from vrfer.core.paths import ASSETS_DIR

TABLE_DIR = ASSETS_DIR / "blendshapes"
AWAY = "away"


@dataclass(frozen=True)
class BlendTable:
    """Weights per class for one protocol. ``matrix[i, j]`` = class i's weight for ``names[j]``."""

    shapes: ShapeSet
    names: tuple[str, ...]
    matrix: np.ndarray  # len(FERPLUS_CLASSES) x len(names), float32
    away: np.ndarray  # len(names), float32
    path: Path

    def blend(self, probs: Mapping[str, float]) -> np.ndarray:
        """Probability-weighted weights. Probabilities are renormalised; all-zero gives ``away``."""
        p = np.array([max(0.0, float(probs.get(c, 0.0))) for c in FERPLUS_CLASSES], np.float32)
        total = float(p.sum())
        if not math.isfinite(total) or total <= 0.0:
            return self.away.copy()
        return (p / total) @ self.matrix

    def row(self, cls: str) -> np.ndarray:
        """The weights for one class alone (``away`` included)."""
        if cls == AWAY:
            return self.away.copy()
        return self.matrix[FERPLUS_CLASSES.index(cls)].copy()

    def as_dict(self, weights: np.ndarray) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.names, weights)}


def table_path(key: str) -> Path:
    """Where ``<key>.toml`` is read from (see the module docstring for the order)."""
    name = f"{key}.toml"
    env = os.environ.get("VRFER_BLENDSHAPES")
    candidates = [Path(env) / name] if env else []
    try:
        from vrfer.core.paths import user_dirs

        candidates.append(Path(user_dirs().user_config_dir) / "blendshapes" / name)
    except ImportError:  # platformdirs missing: only the shipped tables
        pass
    for path in candidates:
        if path.is_file():
            return path
    return TABLE_DIR / name


def load_table(key: str, path: str | Path | None = None) -> BlendTable:
    """Read and validate one table. Any problem raises a one-line ``ConfigError`` naming the file
    and the key, e.g. ``.../unified_v2.toml: happiness.MouthSmile is not a Unified Expressions v2 name``.
    """
    if key not in SHAPE_SETS:
        raise ConfigError(f"unknown blendshape table {key!r}; known: {', '.join(SHAPE_SETS)}")
    shapes = SHAPE_SETS[key]
    path = Path(path) if path is not None else table_path(key)
    where = str(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{where}: blendshape table not found") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read blendshape table ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    except PARSE_ERRORS as e:  # nested deeper than tomllib's recursion can follow
        raise ConfigError(f"{where}: not valid TOML: {type(e).__name__}") from None

    known = set(shapes.names)
    sections = (*FERPLUS_CLASSES, AWAY)
    rows: dict[str, dict[str, float]] = {}
    for section, entries in data.items():
        if not isinstance(entries, dict):
            raise ConfigError(f"{where}: {section} must be inside a [class] section")
        if section not in sections:
            raise ConfigError(
                f"{where}: [{section}] is not a FER+ class or 'away' (expected one of {', '.join(sections)})")
        row: dict[str, float] = {}
        for name, value in entries.items():
            if name not in known:
                raise ConfigError(f"{where}: {section}.{name} is not a {shapes.title} name")
            if not is_number(value):
                raise ConfigError(f"{where}: {section}.{name} must be a number, got {shown(value)}")
            lo, hi = shapes.range_of(name)
            if not lo <= value <= hi:
                raise ConfigError(f"{where}: {section}.{name} = {value} is out of range [{lo:g}, {hi:g}]")
            row[name] = float(value)
        rows[section] = row
    missing = [c for c in FERPLUS_CLASSES if c not in rows]
    if missing:
        raise ConfigError(f"{where}: missing section [{missing[0]}] (every FER+ class needs one, even if empty)")

    if shapes.dense:
        names = shapes.names
    else:  # only what the table mentions, in the protocol's order
        used = {n for row in rows.values() for n in row}
        names = tuple(n for n in shapes.names if n in used)
    index = {n: j for j, n in enumerate(names)}

    def vector(row: Mapping[str, float]) -> np.ndarray:
        v = np.zeros(len(names), np.float32)
        for n, w in row.items():
            v[index[n]] = w
        return v

    matrix = np.stack([vector(rows[c]) for c in FERPLUS_CLASSES])
    away = vector(rows[AWAY]) if AWAY in rows else matrix[FERPLUS_CLASSES.index("neutral")].copy()
    matrix.setflags(write=False)
    away.setflags(write=False)
    return BlendTable(shapes, names, matrix, away, path)
