"""The one function that turns (image, face geometry) into the model's input.

Training imports this same module, so the runtime and the training data can never
disagree about cropping, occlusion or normalisation. Bump ``PREPROCESS_VERSION`` whenever
the output for a given input changes; models record the version they were trained with
and the runtime refuses a mismatch.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

PREPROCESS_VERSION = 2  # what new models are trained with
SUPPORTED_VERSIONS = (1, 2)  # 1: fixed [-1, 1] scaling; 2: each face standardised (light-invariant)
CANONICAL_SIZE = 48  # FER+ faces are 48x48; geometry transforms map into this square
OCCLUSIONS = ("none", "vr")
REGIONS = ("full", "lower")


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects. Read from the ONNX metadata by ``core.model``.

    occlusion ``vr`` blacks out every row above the face's midline, as the paper does;
    region ``lower`` feeds only the visible lower half (half the compute, same information).
    """

    size: int = CANONICAL_SIZE
    occlusion: str = "vr"
    region: str = "lower"
    version: int = PREPROCESS_VERSION

    def __post_init__(self) -> None:
        if self.occlusion not in OCCLUSIONS:
            raise ValueError(f"occlusion must be one of {OCCLUSIONS}, got {self.occlusion!r}")
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {self.region!r}")
        if self.size < 8 or self.size % 2:
            raise ValueError(f"size must be an even number >= 8, got {self.size}")
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"preprocess version must be one of {SUPPORTED_VERSIONS}, got {self.version}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one preprocessed face."""
        h = self.size // 2 if self.region == "lower" else self.size
        return (1, h, self.size)


def crop_face(image: np.ndarray, transform: np.ndarray | None, size: int = CANONICAL_SIZE) -> np.ndarray:
    """Return the aligned face as a ``size`` x ``size`` grayscale uint8 image.

    ``transform`` maps image pixels to canonical 48x48 coordinates; ``None`` means the
    image already is a canonical face (a dataset crop). Large downscales go through
    ``pyrDown`` first so that a 300 px face is not aliased into 48 px.
    """
    _check_frame(image, transform)
    if transform is None:
        face = image if image.shape[:2] == (size, size) else cv2.resize(
            image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR)
        return _gray(face)
    k = size / CANONICAL_SIZE
    m = np.asarray(transform, dtype=np.float64).reshape(2, 3) * k
    m[:, 2] += 0.5 * (k - 1.0)  # pixel centres: canonical c -> (c + 0.5) * k - 0.5, as cv2.resize does
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # canonical px per image px
    if scale < 0.5:
        # Work on the face's own region only, halving it until the warp is near 1:1.
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64) @ inv.T
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
        h, w = image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 > x0 and y1 > y0:
            image = image[y0:y1, x0:x1]
            m = m.copy()
            m[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)
            while scale < 0.5 and min(image.shape[:2]) >= 4:
                image = cv2.pyrDown(image)
                m[:, :2] *= 2.0
                scale *= 2.0
    face = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _gray(face)


MIN_GEOMETRY_DET, MAX_GEOMETRY = 1e-12, 1e6


def _check_frame(image: np.ndarray, transform: np.ndarray | None) -> None:
    """Refuse in one line (ValueError) what OpenCV would meet with an assertion deep in a warp."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"a frame must be a uint8 array, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim not in (2, 3) or min(image.shape[:2], default=0) < 1 or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"a frame must be H x W pixels with 1, 3 or 4 channels, got shape {image.shape}")
    if transform is not None:
        m = np.asarray(transform)
        if m.size != 6 or not np.issubdtype(m.dtype, np.number) or not np.isfinite(m).all():
            raise ValueError(f"face geometry must be 6 finite numbers (a 2 x 3 affine), got shape {m.shape}")
        a, b, tx, c, d, ty = (float(v) for v in m.ravel())
        det = a * d - b * c
        # A face maps by an invertible warp of sane size (a 50-million-pixel face still has |det| > 1e-12);
        # a flat or astronomic one would overflow the warp's integer bounds.
        if not (abs(det) >= MIN_GEOMETRY_DET and max(abs(a), abs(b), abs(c), abs(d), abs(tx), abs(ty)) <= MAX_GEOMETRY):
            raise ValueError(f"face geometry must be an invertible affine with entries within +-{MAX_GEOMETRY:g}, "
                             f"got determinant {det:g}")


def occlude(face: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Apply the spec's occlusion and region to a canonical uint8 face (a new array)."""
    half = face.shape[0] // 2
    if spec.region == "lower":
        return face[half:].copy()
    out = face.copy()
    if spec.occlusion == "vr":
        out[:half] = 0
    return out


MIN_SCALE = 4.0  # grey levels: a flat crop (a wall, a covered lens) is not blown up into noise
STATS_FROM = 0.625  # canonical row 30 of 48: mouth and chin, below where a visor's edge ends


def normalise(face: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """uint8 H x W (after ``occlude``) -> float32 1 x H x W.

    Version 1 scales 0..255 to [-1, 1]. Version 2 centres each face on the median of its mouth
    and chin rows and divides by their spread (interquartile range / 1.349), so a webcam's
    exposure and contrast no longer reach the model. Those rows, not the whole crop, because a
    headset's dark or white edge may reach below the midline and would drag a whole-crop mean;
    rows blacked out by ``vr`` occlusion stay at 0.
    """
    f = face.astype(np.float32)
    if spec.version == 1:
        return (f * (2.0 / 255.0) - 1.0)[None]
    top = spec.size // 2 if spec.region == "lower" else 0  # canonical row of the crop's first row
    stats = f[max(int(round(spec.size * STATS_FROM)) - top, 0):]
    q25, q50, q75 = _quartiles(stats)
    out = (f - np.float32(q50)) * np.float32(1.349 / max(float(q75 - q25), MIN_SCALE))
    if spec.region == "full" and spec.occlusion == "vr":
        out[: f.shape[0] // 2] = 0.0
    return out[None]


@functools.lru_cache(maxsize=8)
def _quartile_plan(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For n values: the ranks around each quartile, the ranks to partition at, and the weights."""
    pos = np.array([0.25, 0.5, 0.75]) * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    return lo, hi, np.unique(np.concatenate([lo, hi])), pos - lo


def _quartiles(x: np.ndarray) -> np.ndarray:
    """np.percentile(x, (25, 50, 75)) with linear interpolation, by one partition: 3x faster."""
    v = x.ravel()
    lo, hi, kth, w = _quartile_plan(v.size)
    part = np.partition(v, kth)
    return part[lo] * (1.0 - w) + part[hi] * w


def to_display(x: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A model input (1 x H x W) back to uint8 for showing: exact for version 1, +-3 sigma for 2."""
    if spec.version == 1:
        return np.clip(np.rint((x[0] + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.clip(np.rint(x[0] * (127.5 / 3.0) + 127.5), 0, 255).astype(np.uint8)


def preprocess(image: np.ndarray, transform: np.ndarray | None, spec: PreprocessSpec) -> np.ndarray:
    """Crop, align, grey, resize, occlude and normalise one face: float32 ``spec.input_shape``."""
    return normalise(occlude(crop_face(image, transform, spec.size), spec), spec)


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[:, :, 0]
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
