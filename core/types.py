"""Values that travel between pipeline stages. All frozen: a stage never mutates its input."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured image.

    ``timestamp`` is ``time.perf_counter()`` taken when the frame was captured, so that
    capture-to-result latency is measured, not guessed.
    """

    image: np.ndarray  # H x W x 3, BGR, uint8
    index: int  # position in its source (0-based, no gaps for files and folders)
    timestamp: float
    source: str = ""
    file: str | None = None  # image file name, for folder sources
    truth: str | None = None  # ground-truth label where the source knows it (demo)


@dataclass(frozen=True)
class FaceGeometry:
    """Where the face is, as a map from frame pixels to the canonical 48x48 FER+ face.

    ``transform`` is a 2x3 affine matrix taking frame (x, y) to canonical coordinates, in
    which the face is framed exactly as FER+ training faces are. ``path`` names the stage
    that produced it: ``mesh``, ``mesh_refined``, ``locator``, ``tracked`` or ``roi``.
    ``score`` is the face-presence probability (the headset locator's presence head, judged in
    the face's window) when the locator has one; otherwise the mesh's fit quality or the
    locator's face score. A user-set ROI in mouth-camera mode has no detector: 1.
    """

    transform: np.ndarray
    box: tuple[float, float, float, float]  # x, y, w, h in frame pixels
    path: str
    landmarks: np.ndarray | None = None  # N x 2, frame pixels
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    score: float = 1.0


@dataclass(frozen=True)
class ExpressionState:
    """What subscribers receive for each processed frame."""

    frame_index: int
    timestamp: float  # capture timestamp of the frame this state describes
    face: bool
    label: str | None  # None when no face was found: never a stale label
    confidence: float
    probs: dict[str, float]  # smoothed, after calibration
    raw_probs: dict[str, float] = field(default_factory=dict)  # this frame's model output
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> ms, with "total"
    file: str | None = None
    truth: str | None = None
    geometry: FaceGeometry | None = None
    crop: np.ndarray | None = None  # the exact uint8 model input, for the app's picture-in-picture
    embedding: np.ndarray | None = None
    message: str | None = None  # a one-line status, e.g. "reconnecting to camera 0"
    image: np.ndarray | None = None  # the frame's read-only BGR image (shared, not copied), for previews
    shapes: dict[str, float] = field(default_factory=dict)  # smoothed mouth shapes, 0..1; {} = model has none
