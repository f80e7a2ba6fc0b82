"""Generic fallbacks of the face stage, tried after the mesh and the headset locator:
``GeometryTracker`` repeats the last good geometry for a moment (``path="tracked"``);
``RoiFallback`` is the user's rectangle, placed as in mouth-camera mode (``roi_geometry``).
"""
from __future__ import annotations

from vrfer.core.errors import ConfigError
from vrfer.core.geometry import roi_transform
from vrfer.core.types import FaceGeometry, Frame


class GeometryTracker:
    """Repeats the last good geometry, as ``path="tracked"``, for up to ``max_age_s`` seconds.

    ``FaceLocator`` calls ``observe(geometry)`` with every geometry it accepts; as a fallback it
    answers only while that geometry is young, so a face that has left is not held for long.
    """

    def __init__(self, max_age_s: float = 0.5) -> None:
        self.max_age_s = max_age_s
        self._last: tuple[float, FaceGeometry] | None = None
        self._file: str | None = None

    def observe(self, geometry: FaceGeometry, timestamp: float, file: str | None = None) -> None:
        if geometry.path != "tracked":
            self._last = (timestamp, geometry)
            self._file = file

    def __call__(self, frame: Frame) -> FaceGeometry | None:
        if self._last is None:
            return None
        t, g = self._last
        if not 0 <= frame.timestamp - t <= self.max_age_s:
            return None
        if frame.file != self._file:
            return None  # another image (a slideshow cut, a folder): the old place means nothing here
        return FaceGeometry(transform=g.transform, box=g.box, path="tracked", landmarks=g.landmarks,
                            yaw=g.yaw, pitch=g.pitch, roll=g.roll, score=g.score)

    def reset(self) -> None:
        self._last = None


class RoiFallback:
    """The user's rectangle as the last resort: the mouth-camera placement of ``core.face``."""

    def __init__(self, roi: tuple[int, int, int, int], rotate: int = 0, flip: bool = False) -> None:
        self.roi, self.rotate, self.flip = roi, rotate, flip

    def __call__(self, frame: Frame) -> FaceGeometry | None:
        h, w = frame.image.shape[:2]
        x, y, rw, rh = self.roi
        if x < 0 or y < 0 or x + rw > w or y + rh > h:
            return None  # a rectangle set for another camera size: no guess is better than a wrong one
        return roi_geometry(frame.image.shape, self.roi, self.rotate, self.flip)


def roi_geometry(frame_shape: tuple[int, ...], roi: tuple[float, float, float, float] | None,
                 rotate: int = 0, flip: bool = False) -> FaceGeometry:
    """Geometry for mouth-camera mode; ConfigError if the ROI does not lie inside the frame."""
    h, w = frame_shape[:2]
    if roi is None:
        raise ConfigError("face roi is not set: mouth-camera mode needs (x, y, w, h)")
    x, y, rw, rh = roi
    if rw < 1 or rh < 1:
        raise ConfigError(f"face roi {tuple(roi)} is empty: width and height must be at least 1 px")
    if x < 0 or y < 0 or x + rw > w or y + rh > h:
        raise ConfigError(f"face roi {tuple(roi)} does not fit in the {w}x{h} frame")
    return FaceGeometry(transform=roi_transform(roi, rotate, flip),
                        box=(float(x), float(y), float(rw), float(rh)), path="roi")
