"""Expression -> blendshape tables: TOML files a user can edit, blended by class probability.

A table file has one section per FER+ class (``[happiness]``) holding ``Name = weight`` lines;
names left out weigh 0. An optional ``[away]`` section is the pose used when no face is seen
(headset off, user gone); without it ``away`` is the ``[neutral]`` row. The output for a state
is ``sum_c p_c * W[c]``, so it moves continuously with the smoothed probabilities.

Search order for ``<key>.toml``: ``$VRFER_BLENDSHAPES`` (a folder), the user's config folder
(``<config>/blendshapes/``), then the shipped ``assets/blendshapes/``.

Mouth shapes: a model with a ``shapes`` output (``core.mouth_shapes``) drives the mouth and jaw
directly. ``mouth.toml`` (same search order) maps them, per protocol, to that protocol's names;
those names take the direct values and every other name keeps the class blend. Without shapes
(an older model, no face) the class table alone applies.
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
from vrfer.core.mouth_shapes import SHAPES
from vrfer.core.paths import ASSETS_DIR, user_dirs

TABLE_DIR = ASSETS_DIR / "blendshapes"
AWAY = "away"
MOUTH_KEY = "mouth"


@dataclass(frozen=True)
class MouthMap:
    """Protocol names driven by the model's mouth shapes: ``terms[i]`` sums into ``names[index[i]]``."""

    index: np.ndarray  # M positions in the table's names
    terms: tuple[tuple[tuple[str, float], ...], ...]  # per mapped name: (vrfer shape, coefficient) pairs
    low: np.ndarray  # M, the names' ranges
    high: np.ndarray

    def apply(self, weights: np.ndarray, shapes: Mapping[str, float]) -> np.ndarray:
        """``weights`` with the mapped names set from ``shapes``; a name whose shapes the model
        lacks keeps its class-table weight."""
        out = weights.copy()
        for i, terms in enumerate(self.terms):
            if all(s in shapes for s, _ in terms):
                value = sum(c * float(shapes[s]) for s, c in terms)
                if math.isfinite(value):
                    out[self.index[i]] = min(max(value, self.low[i]), self.high[i])
        return out


@dataclass(frozen=True)
class BlendTable:
    """Weights per class for one protocol. ``matrix[i, j]`` = class i's weight for ``names[j]``."""

    shapes: ShapeSet
    names: tuple[str, ...]
    matrix: np.ndarray  # len(FERPLUS_CLASSES) x len(names), float32
    away: np.ndarray  # len(names), float32
    path: Path
    mouth: MouthMap | None = None  # names the model's mouth shapes drive, when it has them

    def blend(self, probs: Mapping[str, float], shapes: Mapping[str, float] | None = None) -> np.ndarray:
        """Probability-weighted weights, with the mouth and jaw from ``shapes`` when given.
        Probabilities are renormalised; all-zero (no face) gives ``away``."""
        p = np.array([max(0.0, float(probs.get(c, 0.0))) for c in FERPLUS_CLASSES], np.float32)
        total = float(p.sum())
        if not math.isfinite(total) or total <= 0.0:
            return self.away.copy()
        weights = (p / total) @ self.matrix
        return self.mouth.apply(weights, shapes) if shapes and self.mouth is not None else weights

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
        candidates.append(Path(user_dirs().user_config_dir) / "blendshapes" / name)
    except ImportError:  # platformdirs missing: only the shipped tables
        pass
    for path in candidates:
        if path.is_file():
            return path
    return TABLE_DIR / name


def _read_toml(path: Path) -> dict:
    where = str(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{where}: blendshape table not found") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot read blendshape table ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    except PARSE_ERRORS as e:  # nested deeper than tomllib's recursion can follow
        raise ConfigError(f"{where}: not valid TOML: {type(e).__name__}") from None


def load_mouth_terms(key: str, path: str | Path | None = None) -> dict[str, tuple[tuple[str, float], ...]]:
    """The ``[key]`` section of ``mouth.toml``, validated: protocol name -> (shape, coefficient) terms.
    A missing section is an empty map; any bad entry is a one-line ``ConfigError`` naming file and key."""
    shapes = SHAPE_SETS[key]
    path = Path(path) if path is not None else table_path(MOUTH_KEY)
    data = _read_toml(path)
    for section, entries in data.items():
        if section not in SHAPE_SETS or not isinstance(entries, dict):
            raise ConfigError(f"{path}: [{section}] is not a protocol (expected one of {', '.join(SHAPE_SETS)})")
    out: dict[str, tuple[tuple[str, float], ...]] = {}
    for name, value in data.get(key, {}).items():
        if name not in shapes.names:
            raise ConfigError(f"{path}: {key}.{name} is not a {shapes.title} name")
        raw = {value: 1.0} if isinstance(value, str) else value
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f"{path}: {key}.{name} must be a shape name or {{ shape = coefficient, ... }}")
        terms = []
        for shape, coef in raw.items():
            if shape not in SHAPES:
                raise ConfigError(f"{path}: {key}.{name}: {shape!r} is not a mouth shape (known: {', '.join(SHAPES)})")
            if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not math.isfinite(coef):
                raise ConfigError(f"{path}: {key}.{name}.{shape} must be a number, got {coef!r}")
            terms.append((shape, float(coef)))
        out[name] = tuple(terms)
    return out


def load_table(key: str, path: str | Path | None = None, mouth: str | Path | None = None) -> BlendTable:
    """Read and validate one table. Any problem raises a one-line ``ConfigError`` naming the file
    and the key, e.g. ``.../unified_v2.toml: happiness.MouthSmile is not a Unified Expressions v2 name``.
    """
    if key not in SHAPE_SETS:
        raise ConfigError(f"unknown blendshape table {key!r}; known: {', '.join(SHAPE_SETS)}")
    shapes = SHAPE_SETS[key]
    path = Path(path) if path is not None else table_path(key)
    where = str(path)
    data = _read_toml(path)

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

    mouth_terms = load_mouth_terms(key, mouth)
    if shapes.dense:
        names = shapes.names
    else:  # only what the table (or the mouth map) mentions, in the protocol's order
        used = {n for row in rows.values() for n in row} | set(mouth_terms)
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
    mapped = [n for n in names if n in mouth_terms]
    mouth_map = MouthMap(
        np.array([index[n] for n in mapped], dtype=np.intp), tuple(mouth_terms[n] for n in mapped),
        np.array([shapes.range_of(n)[0] for n in mapped]), np.array([shapes.range_of(n)[1] for n in mapped])
    ) if mapped else None
    return BlendTable(shapes, names, matrix, away, path, mouth_map)
