"""Sources read from disk: a video file, a folder of images (or one image)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.errors import SourceError
from vrfer.core.source_spec import IMAGE_EXTENSIONS
from vrfer.core.sources.base import DEFAULT_FPS, _FiniteSource, log


class VideoFileSource(_FiniteSource):
    """A video file decoded by OpenCV (FFmpeg): every frame, in order."""

    def __init__(self, path: Path, *, realtime: bool = False) -> None:
        shown = str(path)
        if not path.is_file():
            raise SourceError(f"video file '{shown}' does not exist")
        if not os.access(path, os.R_OK):
            raise SourceError(f"video file '{shown}' cannot be read (permission denied)")
        if path.stat().st_size == 0:
            raise SourceError(f"video file '{shown}' is empty")
        cap = cv2.VideoCapture(str(path))
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok or first is None:
            cap.release()
            raise SourceError(f"'{shown}' is not a readable video (corrupt or unsupported format)")
        fps = cap.get(cv2.CAP_PROP_FPS)
        super().__init__(shown, realtime=realtime, fps=fps if 0 < fps <= 1000 else DEFAULT_FPS)
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None  # from the header
        self._cap: cv2.VideoCapture | None = cap
        self._ahead: np.ndarray | None = first

    def _next(self) -> tuple[np.ndarray, str | None, str | None] | None:
        # One frame of read-ahead: only when the next read fails do we know that this
        # frame is the last, and the last frame of a cut file is usually half decoded.
        image = self._ahead
        if image is None or self._cap is None:
            return None
        ok, following = self._cap.read()
        self._ahead = following if ok else None
        if self._ahead is None and self.frame_count and self._index + 1 < self.frame_count - 1:
            self.skipped += 1
            self._problem = (f"{self.name} ended after {self._index} of {self.frame_count} frames "
                             "(truncated or damaged file; its last, partial frame was left out)")
            return None
        return image, None, None

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource(_FiniteSource):
    """Image files sorted by name (plain string order: zero-pad numbered names)."""

    def __init__(self, path: Path, *, realtime: bool = False, fps: float = DEFAULT_FPS,
                 files: list[Path] | None = None, name: str | None = None) -> None:
        if files is None:
            if not os.access(path, os.R_OK | os.X_OK):
                raise SourceError(f"folder '{path}' cannot be read (permission denied)")
            files = sorted((p for p in path.iterdir()
                            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                           key=lambda p: p.name)
            if not files:
                raise SourceError(f"folder '{path}' has no images ({', '.join(IMAGE_EXTENSIONS)})")
        super().__init__(name or str(path), realtime=realtime, fps=fps)
        self.files = files
        self.skipped_files: list[tuple[str, str]] = []  # (file name, why), in reading order
        self._pos = 0

    def _next(self) -> tuple[np.ndarray, str | None, str | None] | None:
        while self._pos < len(self.files):
            path = self.files[self._pos]
            self._pos += 1
            image = _imread(path)
            if image is not None:
                return image, path.name, None
            why = _unreadable_reason(path)
            log.warning("skipped '%s': %s", path, why)
            self.skipped_files.append((path.name, why))
            self.skipped += 1
            self._problem = f"skipped unreadable image '{path.name}' ({self.skipped} so far)"
        return None

    def __len__(self) -> int:
        return len(self.files)


def _unreadable_reason(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return "empty file" if size == 0 else "not a readable image (corrupt or unsupported format)"


def _imread(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """cv2.imread that also takes non-ASCII paths and never raises."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, flags)
