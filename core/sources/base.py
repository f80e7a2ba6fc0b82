"""The source base classes: ``FrameSource`` and its finite (files, demo) form, with the reading
contract of ``core.sources``."""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

import numpy as np

from vrfer.core.types import Frame

DEFAULT_FPS = 30.0  # pacing of folders and demo in realtime mode
log = logging.getLogger("vrfer.sources")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _readonly(image: np.ndarray) -> np.ndarray:
    image.flags.writeable = False
    return image


class FrameSource:
    """Base of all sources; see the module docstring for the reading contract."""

    live: bool = False

    def __init__(self, name: str, *, realtime: bool = False, fps: float | None = None) -> None:
        self.name = name
        self.realtime = realtime
        self.fps = fps
        self.skipped = 0  # corrupt or unreadable frames left out
        self.dropped = 0  # live only: frames replaced by newer ones before anyone read them
        self.reconnects = 0  # live only: successful reopenings after a loss
        self._problem: str | None = None
        self._closed = threading.Event()

    @property
    def status(self) -> str | None:
        """The current problem in one line, or None when all is well."""
        return self._problem

    @property
    def ended(self) -> bool:
        return self._closed.is_set()

    def read(self, timeout: float | None = None) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed.set()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        """Every frame until the source ends (a live source: until it is closed)."""
        while True:
            frame = self.read()
            if frame is None:
                if self.ended:
                    return
                continue
            yield frame

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class _FiniteSource(FrameSource):
    """Delivers what ``_next`` returns, in order; paces it when realtime."""

    def __init__(self, name: str, *, realtime: bool, fps: float | None) -> None:
        super().__init__(name, realtime=realtime, fps=fps)
        self._index = 0
        self._due: float | None = None
        self._lock = threading.Lock()  # close() from another thread must not race a decode

    def _next(self) -> tuple[np.ndarray, str | None, str | None] | None:
        """The next (image, file, truth), or None at the end."""
        raise NotImplementedError

    def _release(self) -> None:
        pass

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._lock:
            if self._closed.is_set():
                return None
            item = self._next()
            if item is None:
                self._closed.set()
                self._release()
                return None
        image, file, truth = item
        if self.realtime:
            now = time.perf_counter()
            if self._due is not None and self._due > now:
                if self._closed.wait(self._due - now):
                    return None
                now = time.perf_counter()
            # A late reader gets the next frame one period after this one, not a burst.
            self._due = max(self._due or now, now) + 1.0 / (self.fps or DEFAULT_FPS)
        frame = Frame(image=_readonly(image), index=self._index, timestamp=time.perf_counter(),
                      source=self.name, file=file, truth=truth)
        self._index += 1
        return frame

    def close(self) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._closed.set()
                self._release()
