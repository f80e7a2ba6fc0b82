"""Live sources: cameras and MJPEG streams, read by a background thread that keeps the newest
frames and reconnects after a loss."""
from __future__ import annotations

import collections
import http.client
import socket
import threading
import time
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from vrfer.core.errors import SourceError
from vrfer.core.sources import mjpeg
from vrfer.core.sources.base import FrameSource, _one_line, _readonly, log
from vrfer.core.sources.cameras import open_camera
from vrfer.core.types import Frame

CameraOpener = Callable[[], "cv2.VideoCapture"]
BACKOFF = (0.5, 5.0)  # first and longest wait between reconnection attempts, seconds


class _Lost(Exception):
    """The device or stream stopped delivering; the text says why (may be empty)."""


class _LiveSource(FrameSource):
    """A background thread reads, keeps the newest frames and reopens after a loss."""

    live = True

    def __init__(self, name: str, *, buffer: int = 1, backoff: tuple[float, float] = BACKOFF,
                 stall_after: float = 2.0, fps: float | None = None) -> None:
        super().__init__(name, realtime=True, fps=fps)
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        self._frames: collections.deque[Frame] = collections.deque(maxlen=buffer)
        self._cond = threading.Condition()
        self._backoff = backoff
        self._stall_after = stall_after
        self._last_frame = time.perf_counter()
        self._index = 0
        self._conn: Any = None
        self._thread: threading.Thread | None = None

    # subclasses provide these
    def _connect(self) -> Any:
        """Open the device or stream; raise SourceError with one line if it cannot be."""
        raise NotImplementedError

    def _capture(self, conn: Any) -> Iterator[tuple[np.ndarray, float]]:
        """Yield (image, capture time) until the connection fails (raise _Lost or OSError)."""
        raise NotImplementedError

    def _disconnect(self, conn: Any) -> None:
        raise NotImplementedError

    def _abort(self, conn: Any) -> None:
        """Unblock a capture in progress, from another thread, where that is possible."""

    def _start(self, conn: Any) -> None:
        self._conn = conn
        self._thread = threading.Thread(target=self._run, name=f"vrfer source {self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._closed.is_set():
            conn = self._conn
            if conn is None:
                try:
                    conn = self._connect()
                except Exception as err:  # noqa: BLE001 - a reader thread that dies would hang read()
                    if not isinstance(err, SourceError):
                        log.warning("reopening %s failed unexpectedly", self.name, exc_info=True)
                    self._problem = _one_line(f"{err}, reconnecting in {delay:.1f} s")
                    self._closed.wait(delay)
                    delay = min(delay * 2, self._backoff[1])
                    continue
                with self._cond:
                    if self._closed.is_set():
                        self._disconnect(conn)
                        break
                    self._conn = conn
                self.reconnects += 1
            reason = ""
            try:
                for image, stamp in self._capture(conn):
                    if self._closed.is_set():
                        break
                    self._push(image, stamp)
                    self._problem = None
                    delay = self._backoff[0]
            except _Lost as err:
                reason = str(err)
            except (OSError, http.client.HTTPException) as err:
                reason = mjpeg.reason(err)
            except ValueError:  # http.client reading a response closed under it by close()
                reason = "connection closed"
            except Exception as err:  # noqa: BLE001 - e.g. cv2.error from a driver; reopen, never die
                log.warning("reading %s failed unexpectedly", self.name, exc_info=True)
                reason = _one_line(f"{type(err).__name__}: {err}")[:200]
            with self._cond:
                self._conn = None
            self._disconnect(conn)
            if self._closed.is_set():
                break
            self._problem = f"{self.name} lost{f' ({reason})' if reason else ''}, reconnecting in {delay:.1f} s"
            self._closed.wait(delay)
            delay = min(delay * 2, self._backoff[1])

    def _push(self, image: np.ndarray, stamp: float) -> None:
        frame = Frame(image=_readonly(image), index=self._index, timestamp=stamp, source=self.name)
        self._index += 1
        with self._cond:
            if len(self._frames) == self._frames.maxlen:
                self.dropped += 1
            self._frames.append(frame)
            self._last_frame = stamp
            self._cond.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        with self._cond:
            self._cond.wait_for(lambda: self._frames or self._closed.is_set(), timeout)
            if self._closed.is_set() or not self._frames:
                return None
            return self._frames.popleft()

    @property
    def status(self) -> str | None:
        problem = self._problem
        if problem is not None or self._closed.is_set():
            return problem
        age = time.perf_counter() - self._last_frame
        if age > self._stall_after:
            return f"no frame from {self.name} for {age:.1f} s"
        return None

    def close(self, timeout: float = 2.0) -> None:
        """Stop the reader thread; a camera stuck inside its driver is left to finish alone."""
        with self._cond:
            if self._closed.is_set():
                return
            self._closed.set()
            conn = self._conn
            self._cond.notify_all()
        if conn is not None:
            self._abort(conn)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class MjpegSource(_LiveSource):
    """An ``http(s)://`` MJPEG stream; corrupt or truncated JPEGs are skipped and counted."""

    def __init__(self, url: str, *, connect_timeout: float = 3.0, read_timeout: float = 5.0,
                 **live: Any) -> None:
        super().__init__(url, **live)
        self.url = url
        self._timeouts = (connect_timeout, read_timeout)
        self.garbage_bytes = 0  # bytes between parts that belonged to no frame
        self._start(self._connect())

    def _connect(self) -> mjpeg.Connection:
        return mjpeg.connect(self.url, *self._timeouts)

    def _capture(self, conn: mjpeg.Connection) -> Iterator[tuple[np.ndarray, float]]:
        reader = mjpeg.MultipartReader(conn.read1, conn.boundary)
        garbage = self.garbage_bytes
        try:
            while True:
                body = reader.next_part()
                stamp = time.perf_counter()
                self.garbage_bytes = garbage + reader.garbage_bytes
                image = mjpeg.decode_jpeg(body)
                if image is None:
                    self.skipped += 1
                    if time.perf_counter() - self._last_frame > self._stall_after:
                        self._problem = f"{self.url} sends only corrupt frames ({self.skipped} skipped)"
                    continue
                yield image, stamp
        except mjpeg.StreamEnded:
            if reader.partial:
                self.skipped += 1  # the connection dropped inside a frame
            raise _Lost("connection closed") from None
        except (socket.timeout, TimeoutError):
            raise _Lost(f"no data for {self._timeouts[1]:.1f} s") from None
        finally:
            self.garbage_bytes = garbage + reader.garbage_bytes

    def _disconnect(self, conn: mjpeg.Connection) -> None:
        conn.close()

    def _abort(self, conn: mjpeg.Connection) -> None:
        conn.abort()


class CameraSource(_LiveSource):
    """A local camera, through the platform's capture API. Asks for 640x480 and a 1-frame buffer."""

    def __init__(self, index: int, *, width: int | None = 640, height: int | None = 480,
                 fps: float | None = None, fourcc: str | None = None,
                 opener: CameraOpener | None = None, **live: Any) -> None:
        super().__init__(f"camera {index}", fps=fps, **live)
        self.index = index
        self._settings = (width, height, fps, fourcc)
        # ``opener`` stands in for the device where there is none (tests play a file).
        self._opener = opener
        self._start(self._connect())

    def _connect(self) -> cv2.VideoCapture:
        if self._opener is not None:
            cap = self._opener()
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"{self.name} cannot be opened")
            return cap
        return open_camera(self.index, *self._settings)

    def _capture(self, cap: cv2.VideoCapture) -> Iterator[tuple[np.ndarray, float]]:
        while not self._closed.is_set():
            ok, image = cap.read()
            stamp = time.perf_counter()
            if not ok or image is None:
                raise _Lost("")
            yield image, stamp

    def _disconnect(self, cap: cv2.VideoCapture) -> None:
        cap.release()
