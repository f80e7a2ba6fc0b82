"""Continuous lower-face shapes measured on mediapipe's refined face mesh (478 landmarks).

Every measure is defined once, in ``_MEASURES``, with its formula on the mesh's lip and jaw
points. Measures are taken in a pose-normalised frame: the 3-D similarity (rotation, uniform
scale, shift) that maps the mesh's stable points (eye corners, irises, nose, cheeks, upper jaw:
none of them moves with the mouth) onto the canonical face template's symmetric zero-pose
points (``assets/face_template.json``). So a measure is in canonical 48 px face units, whatever
the face's size, roll, yaw or pitch in the picture.

Raw measures become 0..1 by a percentile table fitted on FER+ Train faces (``fit_table``; stored
as data in ``assets/mouth_shapes.json``, never hand-tuned): the ``low`` percentile maps to 0 and
the ``high`` one to 1, clipped. Measures with a neutral resting value (a smile, a shift to one
side) start at the Train median, so a typical relaxed face reads near 0.

"right"/"left" are the subject's (ARKit's convention): the subject's right mouth corner (mesh
point 61) lies on the image's left in an unmirrored photo. Image axes: x right, y down.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrfer.core.config import read_json
from vrfer.core.errors import ConfigError
from vrfer.core.face_template import load_template
from vrfer.core.paths import ASSETS_DIR

MESH_POINTS = 478  # refined mesh (refine_landmarks=True): 468 + 10 iris points
TABLE_PATH = ASSETS_DIR / "mouth_shapes.json"

# Mesh indices (mediapipe's canonical face mesh).
UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 0, 13, 14, 17
RIGHT_CORNER, LEFT_CORNER = 61, 291  # outer mouth corners
RIGHT_INNER_CORNER, LEFT_INNER_CORNER = 78, 308
CHIN, NOSE_BASE = 152, 2
MIDLINE = (168, 1, 2)  # nose bridge, tip, base: where the face's vertical midline runs
# Points that do not move with the lips or the jaw: the pose fit uses only these.
STABLE_NAMES = ("right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer", "right_iris",
                "left_iris", "nose_bridge", "nose_tip", "nose_base", "right_cheek", "left_cheek",
                "right_jaw_upper", "left_jaw_upper")


@dataclass(frozen=True)
class Measure:
    name: str
    formula: Callable[[np.ndarray], float]  # pose-normalised 478 x 3 points -> raw value
    low_pct: float  # Train percentile that maps to 0
    high_pct: float  # Train percentile that maps to 1
    doc: str


def _y(a: np.ndarray, i: int) -> float:
    return float(a[i, 1])


def _x(a: np.ndarray, i: int) -> float:
    return float(a[i, 0])


def _midline(a: np.ndarray) -> float:
    return float(a[list(MIDLINE), 0].mean())


def _lip_centre_y(a: np.ndarray) -> float:
    return 0.5 * (_y(a, UPPER_LIP_INNER) + _y(a, LOWER_LIP_INNER))


def _corner_line_y(a: np.ndarray) -> float:
    return 0.5 * (_y(a, RIGHT_CORNER) + _y(a, LEFT_CORNER))


def _mouth_shift(a: np.ndarray) -> float:
    """Mouth centre's offset from the midline, towards the subject's left (+x) being positive."""
    centre = np.mean([_x(a, i) for i in (RIGHT_CORNER, LEFT_CORNER, UPPER_LIP_TOP, LOWER_LIP_BOTTOM)])
    return float(centre) - _midline(a)


def _width(a: np.ndarray) -> float:
    return _x(a, LEFT_CORNER) - _x(a, RIGHT_CORNER)


# Resting-value measures start at the median (50 -> 0); openings at the lower quartile, since a
# closed mouth is their floor and FER+ is rich in open mouths (surprise, laughter).
_REST, _OPEN = (50.0, 97.0), (25.0, 97.0)
_MEASURES: tuple[Measure, ...] = (
    Measure("jaw_open", lambda a: _y(a, CHIN) - _y(a, NOSE_BASE), *_OPEN,
            "chin below the nose base"),
    Measure("lips_apart", lambda a: max(0.0, _y(a, LOWER_LIP_INNER) - _y(a, UPPER_LIP_INNER)), *_OPEN,
            "gap between the inner lip centres"),
    Measure("mouth_smile_left", lambda a: _lip_centre_y(a) - _y(a, LEFT_CORNER), *_REST,
            "left corner above the inner lips' centre height"),
    Measure("mouth_smile_right", lambda a: _lip_centre_y(a) - _y(a, RIGHT_CORNER), *_REST,
            "right corner above the inner lips' centre height"),
    Measure("mouth_frown_left", lambda a: _y(a, LEFT_CORNER) - _lip_centre_y(a), *_REST,
            "left corner below the inner lips' centre height"),
    Measure("mouth_frown_right", lambda a: _y(a, RIGHT_CORNER) - _lip_centre_y(a), *_REST,
            "right corner below the inner lips' centre height"),
    Measure("mouth_stretch_left", lambda a: _x(a, LEFT_CORNER) - _midline(a), *_REST,
            "left corner's distance from the midline"),
    Measure("mouth_stretch_right", lambda a: _midline(a) - _x(a, RIGHT_CORNER), *_REST,
            "right corner's distance from the midline"),
    Measure("mouth_pucker", lambda a: -_width(a), *_REST,
            "narrowness: minus the corner-to-corner width"),
    Measure("mouth_funnel", lambda a: max(0.0, _y(a, LOWER_LIP_INNER) - _y(a, UPPER_LIP_INNER))
            / max(_x(a, LEFT_INNER_CORNER) - _x(a, RIGHT_INNER_CORNER), 0.5), *_OPEN,
            "inner opening's height over its width (an O)"),
    Measure("mouth_left", _mouth_shift, *_REST,
            "mouth centre shifted to the subject's left of the midline"),
    Measure("mouth_right", lambda a: -_mouth_shift(a), *_REST,
            "mouth centre shifted to the subject's right of the midline"),
    Measure("mouth_lower_down", lambda a: _y(a, LOWER_LIP_INNER) - _corner_line_y(a), *_REST,
            "lower lip's centre below the corners' line"),
    Measure("mouth_upper_up", lambda a: _corner_line_y(a) - _y(a, UPPER_LIP_INNER), *_REST,
            "upper lip's centre above the corners' line"),
)
SHAPES: tuple[str, ...] = tuple(m.name for m in _MEASURES)
MEASURES: dict[str, Measure] = {m.name: m for m in _MEASURES}


def _mirror_shape(name: str) -> str:
    for a, b in (("_left", "_right"), ("_right", "_left")):
        if name.endswith(a):
            return name[: -len(a)] + b
    return {"mouth_left": "mouth_right", "mouth_right": "mouth_left"}.get(name, name)


# The shape a mirror image shows in place of each shape (left and right swapped).
MIRROR: tuple[int, ...] = tuple(SHAPES.index(_mirror_shape(n)) for n in SHAPES)


def _stable_reference() -> tuple[np.ndarray, np.ndarray]:
    t = load_template()
    pick = [t.names.index(n) for n in STABLE_NAMES]
    return t.indices[pick], t.points_3d[pick]


_REFERENCE: tuple[np.ndarray, np.ndarray] | None = None


def pose_normalise(points: np.ndarray) -> np.ndarray:
    """The mesh moved by the 3-D similarity taking its stable points onto the template's.

    Umeyama (1991) closed form: rotation, uniform scale and shift, least squares.
    """
    global _REFERENCE
    if _REFERENCE is None:
        _REFERENCE = _stable_reference()
    idx, ref = _REFERENCE
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (MESH_POINTS, 3) or not np.isfinite(p).all():
        raise ValueError(f"expected {MESH_POINTS} x 3 finite mesh points, got {p.shape}")
    src = p[idx]
    mu_s, mu_d = src.mean(axis=0), ref.mean(axis=0)
    s, d = src - mu_s, ref - mu_d
    var = float((s * s).sum()) / len(s)
    if var <= 1e-12:
        raise ValueError("mesh points are degenerate (all at one point)")
    u, sig, vt = np.linalg.svd(d.T @ s / len(s))
    sign = np.ones(3)
    sign[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((sig * sign).sum()) / var
    return (p - mu_s) @ (scale * rot).T + mu_d


def raw_measures(points: np.ndarray) -> np.ndarray:
    """S raw measures (canonical 48 px units, or a ratio) of one mesh (478 x 3, any frame)."""
    a = pose_normalise(points)
    return np.array([m.formula(a) for m in _MEASURES], dtype=np.float64)


@dataclass(frozen=True)
class ShapeTable:
    """Per-shape raw values that map to 0 and to 1 (Train percentiles)."""

    shapes: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    source: str = ""

    def to_dict(self) -> dict:
        return {"shapes": list(self.shapes),
                "low": [round(float(v), 5) for v in self.low], "high": [round(float(v), 5) for v in self.high],
                "low_pct": [MEASURES[n].low_pct for n in self.shapes],
                "high_pct": [MEASURES[n].high_pct for n in self.shapes],
                "source": self.source}


def fit_table(raw: np.ndarray, source: str = "") -> ShapeTable:
    """Percentile table of raw measures (M x S, NaN rows ignored): each shape's own percentiles."""
    raw = np.asarray(raw, dtype=np.float64)
    ok = np.isfinite(raw).all(axis=1)
    if ok.sum() < 10:
        raise ValueError(f"too few meshed faces to fit a shape table ({int(ok.sum())})")
    low = np.array([np.percentile(raw[ok, j], MEASURES[n].low_pct) for j, n in enumerate(SHAPES)])
    high = np.array([np.percentile(raw[ok, j], MEASURES[n].high_pct) for j, n in enumerate(SHAPES)])
    high = np.maximum(high, low + 1e-6)  # a constant measure would divide by zero
    return ShapeTable(SHAPES, low, high, source)


def normalise(raw: np.ndarray, table: ShapeTable) -> np.ndarray:
    """Raw measures (..., S) -> 0..1 through the table; NaN stays NaN."""
    out = (np.asarray(raw, dtype=np.float64) - table.low) / (table.high - table.low)
    return np.clip(out, 0.0, 1.0)


def write_table(table: ShapeTable, path: Path = TABLE_PATH) -> None:
    Path(path).write_text(json.dumps(table.to_dict(), indent=1) + "\n", encoding="utf-8")


def load_table(path: Path = TABLE_PATH) -> ShapeTable:
    """The percentile table; a one-line ConfigError naming the file when it is absent or bad."""
    data = read_json(path, "mouth shape table", "vrfer mouth targets")
    try:
        shapes = tuple(str(s) for s in data["shapes"])
        low = np.asarray(data["low"], dtype=np.float64)
        high = np.asarray(data["high"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a mouth shape table ({type(exc).__name__}: {exc})") from None
    if shapes != SHAPES:
        raise ConfigError(f"{path}: shapes {', '.join(shapes)} differ from this runtime's {', '.join(SHAPES)}")
    if low.shape != (len(SHAPES),) or high.shape != low.shape or not (high > low).all():
        raise ConfigError(f"{path}: low/high must be {len(SHAPES)} numbers each, high above low")
    return ShapeTable(shapes, low, high, str(data.get("source", "")))


def shapes_of(points: np.ndarray, table: ShapeTable) -> np.ndarray:
    """0..1 shapes of one mesh."""
    return normalise(raw_measures(points), table)
