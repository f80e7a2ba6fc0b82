"""Geometry shared by the face finders, with no stage logic: similarity fits between point
sets, the canonical 48x48 square's place in a frame, the mouth-camera ROI's map, head pose, and
the headset locator's window fractions.

Coordinates use OpenCV's pixel-centre convention throughout (pixel i covers [i-0.5, i+0.5)),
which is what ``cv2.warpAffine`` in ``core.preprocess.crop_face`` assumes.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from vrfer.core.errors import ConfigError
from vrfer.core.preprocess import CANONICAL_SIZE

ROTATIONS = (0, 90, 180, 270)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares similarity (rotation, uniform scale, shift) taking ``src`` onto ``dst``.

    Closed form (Umeyama 1991, 2-D): deterministic and a few microseconds, unlike RANSAC/LMEDS.
    Returns the 2x3 matrix and the RMS residual in ``dst`` units.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    norm = float((s * s).sum())
    if norm <= 1e-12:
        raise ValueError("landmarks are degenerate (all at one point)")
    a = float((s * d).sum()) / norm  # scale * cos(angle)
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm  # scale * sin(angle)
    lin = np.array([[a, -b], [b, a]])
    m = np.hstack([lin, (md - lin @ ms)[:, None]])
    rms = float(np.sqrt(((src @ lin.T + m[:, 2] - dst) ** 2).sum(axis=1).mean()))
    return m, rms


def similarity_params(m: np.ndarray) -> tuple[float, float, float, float]:
    """(scale, angle in degrees, dx, dy): the fit's action about the canonical centre."""
    c = (CANONICAL_SIZE - 1) / 2
    shift = m[:, :2] @ np.array([c, c]) + m[:, 2] - c
    return (float(np.hypot(m[0, 0], m[1, 0])), math.degrees(math.atan2(m[1, 0], m[0, 0])),
            float(shift[0]), float(shift[1]))


def similarity_matrix(scale: float, angle: float, dx: float, dy: float) -> np.ndarray:
    c = (CANONICAL_SIZE - 1) / 2
    m = cv2.getRotationMatrix2D((c, c), -angle, scale)  # OpenCV's angle is counter-clockwise
    m[:, 2] += (dx, dy)
    return m


def head_pose(points_3d: np.ndarray, reference_3d: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees of ``points_3d`` relative to the zero-pose reference.

    Weak-perspective estimate: mediapipe's z is in the same units as x, so the rotation
    taking the reference onto the observed points is a 3-D orthogonal Procrustes fit (Kabsch).
    Axes are the image's (x right, y down, z into the scene). yaw > 0: the face turns
    towards the image's right; pitch > 0: the chin drops (face turns down); roll > 0: the head
    tilts clockwise on screen. The gate uses absolute values.
    """
    p = points_3d - points_3d.mean(axis=0)
    q = reference_3d - reference_3d.mean(axis=0)
    u, _, vt = np.linalg.svd(q.T @ p)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    r = (u @ np.diag([1.0, 1.0, d]) @ vt).T  # p ≈ s * r @ q
    # r = Rz(roll) @ Ry(yaw') @ Rx(pitch') in image axes; signs mapped to the documented meaning.
    yaw = -math.degrees(math.asin(float(np.clip(-r[2, 0], -1.0, 1.0))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return yaw, pitch, roll


def canonical_box(transform: np.ndarray, frame_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """The frame rectangle (x, y, w, h) around the canonical square: what the crop shows."""
    inv = cv2.invertAffineTransform(np.asarray(transform, dtype=np.float64))
    e = CANONICAL_SIZE - 0.5
    corners = np.array([[-0.5, -0.5, 1], [e, -0.5, 1], [-0.5, e, 1], [e, e, 1]]) @ inv.T
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    return (float(x0 + 0.5), float(y0 + 0.5), float(x1 - x0), float(y1 - y0))


def face_square(transform: np.ndarray) -> tuple[np.ndarray, float]:
    """(frame centre of the canonical square, its side in frame pixels) for a frame->canonical map."""
    m = np.asarray(transform, dtype=np.float64)
    inv = cv2.invertAffineTransform(m)
    c = (CANONICAL_SIZE - 1) / 2
    scale = math.sqrt(abs(float(np.linalg.det(m[:, :2]))))
    return inv[:, :2] @ np.array([c, c]) + inv[:, 2], CANONICAL_SIZE / max(scale, 1e-9)


def crop_view(centre: np.ndarray, side: float, margin: float, size: int) -> np.ndarray:
    """2x3 frame -> crop map of a ``size`` px square of ``margin`` face sides centred on ``centre``
    (a face of ``side`` frame pixels): where a second mesh looks at a small face."""
    k = size / (margin * side)
    c = (size - 1) / 2
    return np.array([[k, 0.0, c - k * float(centre[0])], [0.0, k, c - k * float(centre[1])]])


def from_crop(points3: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Landmarks (N x 3, crop pixel centres, z in x's scale) found in a ``crop_view`` crop, in frame pixels."""
    k = view[0, 0]
    out = np.asarray(points3, dtype=np.float64).copy()
    out[:, :2] = (out[:, :2] - view[:, 2]) / k
    out[:, 2] /= k
    return out


def roi_transform(roi: tuple[float, float, float, float], rotate: int = 0, flip: bool = False) -> np.ndarray:
    """2x3 map taking the ROI (after ``rotate`` clockwise, then ``flip``) onto canonical rows 24..48.

    Edges map to edges: the ROI's pixel area [x, x+w) x [y, y+h) fills the canonical area
    [0, 48) x [24, 48) exactly, as ``cv2.rotate``/``cv2.flip`` of the ROI would, resized.
    """
    x, y, w, h = (float(v) for v in roi)
    if rotate not in ROTATIONS:
        raise ConfigError(f"face rotate must be one of 0, 90, 180, 270, got {rotate!r}")
    # Work in edge coordinates (0 at a pixel's left edge) so rotations and flips are exact.
    m = np.array([[1.0, 0.0, 0.5 - x], [0.0, 1.0, 0.5 - y], [0.0, 0.0, 1.0]])
    rot = {
        0: np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]),
        90: np.array([[0.0, -1, h], [1, 0, 0], [0, 0, 1]]),  # x' = h - y, y' = x
        180: np.array([[-1.0, 0, w], [0, -1, h], [0, 0, 1]]),
        270: np.array([[0.0, 1, 0], [-1, 0, w], [0, 0, 1]]),  # x' = y, y' = w - x
    }[rotate]
    m = rot @ m
    rw, rh = (h, w) if rotate in (90, 270) else (w, h)
    if flip:
        m = np.array([[-1.0, 0, rw], [0, 1, 0], [0, 0, 1]]) @ m
    half = CANONICAL_SIZE / 2
    place = np.array([[CANONICAL_SIZE / rw, 0, -0.5], [0, half / rh, half - 0.5], [0, 0, 1]])
    return (place @ m)[:2]


def to_fraction(points: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Frame pixel centres -> fractions of the window (0 = its left/top edge, 1 = right/bottom)."""
    x, y, w, h = window
    return (np.asarray(points, dtype=np.float64) + 0.5 - np.array([x, y])) / np.array([w, h])


def from_fraction(frac: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = window
    return np.asarray(frac, dtype=np.float64).reshape(-1, 2) * np.array([w, h]) + np.array([x, y]) - 0.5


def face_centre_side(points: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(frame centre of the canonical square, its side in frame px, frame->canonical transform)."""
    m, _ = fit_similarity(points, anchors)
    inv = cv2.invertAffineTransform(m)
    c = (CANONICAL_SIZE - 1) / 2
    centre = inv[:, :2] @ np.array([c, c]) + inv[:, 2]
    side = CANONICAL_SIZE / max(float(np.hypot(m[0, 0], m[1, 0])), 1e-6)
    return centre, side, m
