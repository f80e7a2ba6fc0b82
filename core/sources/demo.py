"""The demo sources: a slideshow of FER+ Test faces in 640x480 frames, or a synthetic cartoon face
where FER+ is absent."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vrfer.core import paths
from vrfer.core.backgrounds import background
from vrfer.core.ferplus import majority_faces
from vrfer.core.sources.base import DEFAULT_FPS, FrameSource, _FiniteSource, _readonly
from vrfer.core.sources.files import _imread

DEMO_SIZE = (640, 480)  # width, height


class DemoSource(_FiniteSource):
    """A slideshow of FER+ Test faces, upscaled into 640x480 frames, truth attached.

    The order, each face's size (160-300 px), position and background (plain colour or a
    vertical gradient) come from ``seed``. Each face is shown for ``hold`` frames (default
    1, or about a second when realtime). One pass shows every Test face that has a
    majority label once; ``loop`` (default: realtime) starts another, reshuffled, pass.
    """

    synthetic = False

    def __init__(self, *, realtime: bool = False, fps: float = DEFAULT_FPS, hold: int | None = None,
                 seed: int = 0, loop: bool | None = None, root: Path | None = None,
                 face_size: tuple[int, int] = (160, 300)) -> None:
        self._root = (root or paths.ferplus_dir()) / "FER2013Test"
        self.faces = majority_faces(root)
        super().__init__("demo: FER+ Test faces", realtime=realtime, fps=fps)
        self.hold = max(1, int(hold if hold is not None else (round(fps) if realtime else 1)))
        self.loop = realtime if loop is None else loop
        self._rng = random.Random(seed)
        self._face_size = face_size
        self._order: list[int] = []
        self._shown = 0  # frames of the current face already delivered
        self._current: tuple[np.ndarray, str | None, str | None] | None = None
        self._cache: dict[str, np.ndarray] = {}
        self._backgrounds: dict[int, np.ndarray] = {}
        self._seed = seed
        self._passes = 0
        self._new_pass()

    def __len__(self) -> int:
        """Frames in one pass."""
        return len(self.faces) * self.hold

    def _new_pass(self) -> None:
        self._order = list(range(len(self.faces)))
        self._rng.shuffle(self._order)
        self._order.reverse()  # popped from the end
        self._passes += 1

    def _next(self) -> tuple[np.ndarray, str | None, str | None] | None:
        if self._current is not None and self._shown < self.hold:
            self._shown += 1
            return self._current
        while True:
            if not self._order:
                if not self.loop:
                    return None
                self._new_pass()
            file, label = self.faces[self._order.pop()]
            face = self._face(file)
            if face is None:
                self.skipped += 1
                continue
            self._current = (_readonly(self._compose(face)), file, label)
            self._shown = 1
            return self._current

    def _face(self, file: str) -> np.ndarray | None:
        face = self._cache.get(file)
        if face is None:
            face = _imread(self._root / file, cv2.IMREAD_GRAYSCALE)
            if face is None:
                return None
            self._cache[file] = face
        return face

    def _compose(self, face: np.ndarray) -> np.ndarray:
        rng = self._rng
        width, height = DEMO_SIZE
        size = rng.randint(*self._face_size)
        x = rng.randint(0, width - size)
        y = rng.randint(0, height - size)
        slot = rng.randrange(_BACKGROUNDS)
        background = self._backgrounds.get(slot)
        if background is None:  # built once per slot: filling 640x480 costs more than a face
            background = self._backgrounds[slot] = _background(slot * 7919 + self._seed)
        frame = background.copy()
        big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        frame[y:y + size, x:x + size] = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
        return frame


_BACKGROUNDS = 16  # distinct demo backgrounds, half plain, half gradients


def _background(seed: int) -> np.ndarray:
    """A plain colour or a vertical two-colour gradient, the same for a seed."""
    rng = np.random.default_rng(seed)
    return background(rng, "gradient" if rng.random() < 0.5 else "plain", DEMO_SIZE)


SYNTHETIC_TEXT = "SYNTHETIC DEMO - no FER+ data"
_CARTOON_MOUTHS = ("smile", "open", "flat", "frown")


class SyntheticDemoSource(_FiniteSource):
    """A drawn cartoon face, for machines without FER+ data. Clearly labelled; no truth.

    One pass is ``length`` frames; the mouth changes every ``hold`` frames (default 30) and
    the head drifts slowly, so a face tracker has something to follow.
    """

    synthetic = True

    def __init__(self, *, realtime: bool = False, fps: float = DEFAULT_FPS, hold: int | None = None,
                 seed: int = 0, loop: bool | None = None, length: int = 300) -> None:
        super().__init__("demo: SYNTHETIC (no FER+ data)", realtime=realtime, fps=fps)
        self.hold = max(1, int(hold if hold is not None else 30))
        self.loop = realtime if loop is None else loop
        self.length = length
        self._phase = random.Random(seed).uniform(0, 2 * np.pi)
        width, height = DEMO_SIZE
        base = _background(seed)
        cv2.putText(base, SYNTHETIC_TEXT, (22, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 0), 5, cv2.LINE_AA)
        cv2.putText(base, SYNTHETIC_TEXT, (22, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 255, 255), 2, cv2.LINE_AA)
        hint = "set VRFER_FERPLUS to a FER+ folder for real faces"
        cv2.putText(base, hint, (22, 465), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(base, hint, (22, 465), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        self._base = base
        self._n = 0

    def __len__(self) -> int:
        return self.length

    def _next(self) -> tuple[np.ndarray, str | None, str | None] | None:
        if self._n >= self.length:
            if not self.loop:
                return None
            self._n = 0
        n = self._n
        self._n += 1
        t = self._phase + n / 45.0
        cx, cy = 320 + int(40 * np.sin(t)), 250 + int(15 * np.sin(1.7 * t))
        mouth = _CARTOON_MOUTHS[(n // self.hold) % len(_CARTOON_MOUTHS)]
        return _draw_cartoon(self._base.copy(), cx, cy, mouth), None, None


def _draw_cartoon(img: np.ndarray, cx: int, cy: int, mouth: str) -> np.ndarray:
    aa = cv2.LINE_AA
    cv2.ellipse(img, (cx, cy), (95, 125), 0, 0, 360, (140, 180, 225), -1, aa)  # skin, BGR
    cv2.ellipse(img, (cx, cy), (95, 125), 0, 0, 360, (60, 80, 110), 2, aa)
    for dx in (-38, 38):
        cv2.ellipse(img, (cx + dx, cy - 30), (17, 10), 0, 0, 360, (255, 255, 255), -1, aa)
        cv2.circle(img, (cx + dx, cy - 30), 6, (40, 30, 20), -1, aa)
        cv2.line(img, (cx + dx - 18, cy - 55), (cx + dx + 18, cy - 55), (50, 60, 80), 4, aa)
    cv2.line(img, (cx, cy - 15), (cx - 8, cy + 20), (90, 120, 170), 3, aa)
    my = cy + 60
    if mouth == "smile":
        cv2.ellipse(img, (cx, my - 12), (40, 22), 0, 10, 170, (40, 40, 150), 5, aa)
    elif mouth == "open":
        cv2.ellipse(img, (cx, my), (22, 28), 0, 0, 360, (30, 20, 90), -1, aa)
    elif mouth == "frown":
        cv2.ellipse(img, (cx, my + 15), (38, 20), 0, 190, 350, (40, 40, 150), 5, aa)
    else:
        cv2.line(img, (cx - 35, my), (cx + 35, my), (40, 40, 150), 5, aa)
    return img


def open_demo(*, realtime: bool = False, **opts: Any) -> FrameSource:
    """The FER+ slideshow when FER+ is available (and not ``synthetic=True``), else the cartoon."""
    shared = {k: opts[k] for k in ("fps", "hold", "seed", "loop") if k in opts}
    if not opts.get("synthetic", False) and paths.ferplus_available():
        extra = {k: opts[k] for k in ("root", "face_size") if k in opts}
        return DemoSource(realtime=realtime, **shared, **extra)
    extra = {k: opts[k] for k in ("length",) if k in opts}
    return SyntheticDemoSource(realtime=realtime, **shared, **extra)
