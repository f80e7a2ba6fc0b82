"""The face template: where a few stable mesh landmarks sit on a canonical 48x48 FER+ face
(``assets/face_template.json``, their median over FER+ Train faces). The face stage aligns live
faces to it; the mouth shapes and the training frames read it too, so it is a shared value
here rather than part of ``core.face``.

``vrfer bench template`` re-measures it (``vrfer.bench.face``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrfer.core.config import read_json
from vrfer.core.errors import ConfigError
from vrfer.core.paths import ASSETS_DIR

TEMPLATE_PATH = ASSETS_DIR / "face_template.json"
# Stable mesh points for the alignment fit: eye corners, iris centres, nose bridge, tip and
# base, mouth corners and lip centres, chin and jaw contour. Indices follow mediapipe's
# canonical face mesh; 468 and 473 exist only with refine_landmarks=True. "right"/"left" are
# the subject's, so "right_*" lies on the image's left in an unmirrored photo.
LANDMARKS: dict[str, int] = {
    "right_eye_outer": 33, "right_eye_inner": 133, "left_eye_inner": 362, "left_eye_outer": 263,
    "right_iris": 468, "left_iris": 473,
    "nose_bridge": 168, "nose_tip": 1, "nose_base": 2,
    "right_mouth": 61, "left_mouth": 291, "upper_lip": 0, "lower_lip": 17,
    "chin": 152,
    "right_cheek": 234, "left_cheek": 454,
    "right_jaw_upper": 132, "left_jaw_upper": 361,
    "right_jaw_angle": 172, "left_jaw_angle": 397,
    "right_jaw_lower": 148, "left_jaw_lower": 377,
}


def mirror_name(name: str) -> str:
    if name.startswith("right_"):
        return "left_" + name[len("right_"):]
    if name.startswith("left_"):
        return "right_" + name[len("left_"):]
    return name


@dataclass(frozen=True)
class FaceTemplate:
    """Where the chosen mesh landmarks sit on a canonical 48x48 FER+ face."""

    names: tuple[str, ...]
    indices: np.ndarray  # K, mediapipe mesh indices
    points: np.ndarray  # K x 2, canonical pixels (median over FER+ Train)
    points_3d: np.ndarray  # K x 3, canonical pixels, mirror-symmetric: the zero-pose reference


def load_template(path: Path = TEMPLATE_PATH) -> FaceTemplate:
    """Read a template written by ``measure_template``; ConfigError naming the file if it is bad."""
    data = read_json(path, "face template", "vrfer bench template")
    try:
        names = tuple(str(n) for n in data["names"])
        indices = np.asarray(data["indices"], dtype=np.int64)
        points = np.asarray(data["points"], dtype=np.float64)
        points_3d = np.asarray(data["points_3d"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a face template ({type(exc).__name__}: {exc})") from None
    k = len(names)
    if k < 3 or indices.shape != (k,) or points.shape != (k, 2) or points_3d.shape != (k, 3):
        raise ConfigError(f"{path}: face template shapes disagree (names, indices, points, points_3d)")
    if not (np.isfinite(points).all() and np.isfinite(points_3d).all()):
        raise ConfigError(f"{path}: face template has non-finite points")
    return FaceTemplate(names, indices, points, points_3d)
