"""Frame sources, chosen by one ``--source`` string (see ``open_source``).

======================  ==========================================  =====  ===========
``--source``            what it opens                               live   frames
======================  ==========================================  =====  ===========
``0``, ``1``, ...       camera (see ``camera_backends``)             yes    newest kept
``clip.mp4``            video file                                  no     every one
``http(s)://...``       MJPEG stream (ESP32 mouth camera)           yes    newest kept
``path/to/folder``      images sorted by file name                  no     every one
``face.png``            one image                                   no     one
``demo``                FER+ Test slideshow, or a synthetic face    no     every one
======================  ==========================================  =====  ===========

The reading contract, which a capture thread can rely on:

* **Finite sources** (files, folders, demo; ``live`` False) deliver every frame in order,
  none dropped, with ``Frame.index`` counting 0, 1, 2, ... without gaps. ``read()`` returns
  None only at the end, after which ``ended`` is True; ``timeout`` is ignored. With
  ``realtime=True`` they are paced at their fps (a video's own, 30 for folders and demo):
  ``read()`` sleeps until the frame is due (at most one frame period) but never drops one,
  and a late reader is not made to catch up in a burst.
* **Live sources** (cameras, MJPEG; ``live`` True) are read by a background thread that
  keeps only the newest ``buffer`` frames (default 1; older ones are counted in
  ``dropped``, so ``Frame.index`` then has gaps). ``read(timeout)`` returns the next frame,
  or None when ``timeout`` seconds pass with none (``timeout=None`` waits). A lost device
  or stream is reopened in the background with exponential backoff (0.5 s doubling to
  5 s) for as long as the source is open; meanwhile ``status`` says what is wrong, e.g.
  ``camera 0 lost, reconnecting in 2.0 s``. A live source ends only when closed.
* ``Frame.timestamp`` is ``time.perf_counter()`` when the frame was captured: when its last
  byte arrived for MJPEG, when the driver handed it over for a camera, and for finite
  sources when ``read()`` hands it over, decoded (and, in realtime mode, due).
* Images are BGR uint8 and read-only: frames are frozen values, so a stage that wants to
  draw must copy. Demo frames held on screen share one array.
* ``close()`` (or leaving a ``with`` block) may be called from any thread; afterwards
  ``read()`` returns None and ``ended`` is True.

Opening problems raise SourceError with one line; once open, a source never raises from
``read()`` for a bad frame: corrupt JPEGs and unreadable images are skipped and counted in
``skipped``.
"""
from __future__ import annotations

import collections
import http.client
import logging
import os
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from vrfer.core import mjpeg, paths
from vrfer.core.backgrounds import background
from vrfer.core.errors import SourceError
from vrfer.core.ferplus import majority_faces
from vrfer.core.source_spec import IMAGE_EXTENSIONS, classify_source
from vrfer.core.source_spec import IS_LINUX as _IS_LINUX
from vrfer.core.types import Frame

DEMO_SIZE = (640, 480)  # width, height
DEFAULT_FPS = 30.0  # pacing of folders and demo in realtime mode
BACKOFF = (0.5, 5.0)  # first and longest wait between reconnection attempts, seconds
log = logging.getLogger("vrfer.sources")


# OpenCV capture APIs per platform, tried in order: Media Foundation is Windows' current
# API and DirectShow opens the older drivers (and virtual cameras) that it does not.
CAMERA_BACKENDS: dict[str, tuple[str, ...]] = {
    "linux": ("V4L2",),
    "win32": ("MSMF", "DSHOW"),
    "darwin": ("AVFOUNDATION",),
}
V4L2_SYSFS = Path("/sys/class/video4linux")  # one folder per device node, with its driver's name


def camera_backends(platform: str = sys.platform) -> tuple[str, ...]:
    """The capture APIs (``cv2.CAP_<name>``) to open a camera with on ``platform``, in order."""
    key = "linux" if platform.startswith("linux") else platform
    return CAMERA_BACKENDS.get(key, ("ANY",))


@dataclass(frozen=True)
class CameraInfo:
    """A camera that opened and delivered a frame, as ``list_cameras`` reports it."""

    index: int
    name: str  # the driver's name where the OS gives one, else "camera N"
    width: int
    height: int
    fps: float
    device: str | None = None  # /dev/videoN on Linux
    backend: str = ""  # the capture API that opened it, e.g. "V4L2", "MSMF"


@dataclass(frozen=True)
class CameraProbe:
    """A camera device found by ``probe_cameras``, and whether it opened."""

    index: int
    name: str
    device: str | None
    info: CameraInfo | None  # None: the device exists but did not open or deliver a frame
    problem: str | None = None  # why not, in one line


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


# ---------------------------------------------------------------- finite sources


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
        self._pos = 0

    def _next(self) -> tuple[np.ndarray, str | None, str | None] | None:
        while self._pos < len(self.files):
            path = self.files[self._pos]
            self._pos += 1
            image = _imread(path)
            if image is not None:
                return image, path.name, None
            self.skipped += 1
            self._problem = f"skipped unreadable image '{path.name}' ({self.skipped} so far)"
        return None

    def __len__(self) -> int:
        return len(self.files)


def _imread(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """cv2.imread that also takes non-ASCII paths and never raises."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, flags)


# ---------------------------------------------------------------- demo


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


# ---------------------------------------------------------------- live sources


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


CameraOpener = Callable[[], "cv2.VideoCapture"]


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


def _camera_device(index: int) -> str:
    return f"/dev/video{index}"


def open_camera(index: int, width: int | None = None, height: int | None = None,
                fps: float | None = None, fourcc: str | None = None) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture for camera ``index``, or SourceError with the reason."""
    if _IS_LINUX:
        device = _camera_device(index)
        if not os.path.exists(device):
            raise SourceError(f"camera {index} cannot be opened (no such device)")
        if not os.access(device, os.R_OK | os.W_OK):
            raise SourceError(f"camera {index} cannot be opened (permission denied on {device}: "
                              "add your user to the 'video' group)")
    if sys.platform == "win32":
        # Media Foundation's hardware colour conversion makes opening take seconds on many cameras.
        os.environ.setdefault("OPENCV_VIDEOIO_MSMF_ENABLE_HW_TRANSFORMS", "0")
    cap = None
    for backend in camera_backends():
        cap = cv2.VideoCapture(index, getattr(cv2, f"CAP_{backend}"))
        if cap.isOpened():
            break
        cap.release()
    else:
        why = "busy or not a capture device" if _IS_LINUX else "no such device, or busy"
        raise SourceError(f"camera {index} cannot be opened ({why})")
    if fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc[:4].ljust(4)))
    if width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    if fps:
        cap.set(cv2.CAP_PROP_FPS, fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued seconds ago
    return cap


def probe_cameras(max_index: int = 10) -> list[CameraProbe]:
    """Every camera among indices 0..max_index-1, opened once to see that it delivers a frame.

    On Linux a device node that exists but fails is reported with the reason; elsewhere the
    OS cannot be asked without opening, so an index that does not open is taken as absent.
    """
    found: list[CameraProbe] = []
    for index in range(max_index):
        device = _camera_device(index) if _IS_LINUX else None
        if device is not None and not os.path.exists(device):
            continue  # skip without asking OpenCV, which would log a warning per index
        name = camera_name(index)
        try:
            cap = open_camera(index)
        except SourceError as err:
            if device is not None:
                found.append(CameraProbe(index, name, device, None, str(err)))
            continue
        try:
            ok, image = cap.read()
            if not ok or image is None:
                continue  # e.g. a V4L2 metadata node beside the real one: not a camera
            fps = cap.get(cv2.CAP_PROP_FPS)
            info = CameraInfo(index=index, name=name, width=image.shape[1], height=image.shape[0],
                              fps=fps if fps > 0 else 0.0, device=device, backend=cap.getBackendName())
            found.append(CameraProbe(index, name, device, info))
        finally:
            cap.release()
    return found


def list_cameras(max_index: int = 10) -> list[CameraInfo]:
    """The cameras among indices 0..max_index-1 that open and deliver a frame."""
    return [probe.info for probe in probe_cameras(max_index) if probe.info is not None]


def camera_name(index: int, sysfs: Path = V4L2_SYSFS) -> str:
    """The driver's name for camera ``index`` where the OS gives one (Linux), else "camera N"."""
    try:
        return (sysfs / f"video{index}" / "name").read_text(errors="replace").strip() or f"camera {index}"
    except OSError:
        return f"camera {index}"


# ---------------------------------------------------------------- choosing a source

_KIND_OPTS: dict[str, frozenset[str]] = {
    "camera": frozenset({"width", "height", "fps", "fourcc", "buffer", "backoff", "stall_after", "opener"}),
    "mjpeg": frozenset({"connect_timeout", "read_timeout", "buffer", "backoff", "stall_after"}),
    "video": frozenset(),
    "folder": frozenset({"fps"}),
    "demo": frozenset({"fps", "hold", "seed", "loop", "synthetic", "root", "length", "face_size"}),
}
_ALL_OPTS = frozenset().union(*_KIND_OPTS.values())
SOURCE_HELP = "a camera index (0), a video file, a folder of images, an http(s):// MJPEG URL or demo"


def open_source(spec: str, *, realtime: bool = False, **opts: Any) -> FrameSource:
    """Open the source that ``spec`` names (see the module docstring).

    ``realtime`` paces finite sources like a camera; live sources always are. ``opts`` go
    to the kind of source chosen and are ignored by the others, so a caller can pass
    e.g. ``seed`` whatever the source: camera ``width``/``height``/``fps``/``fourcc``;
    live ``buffer``/``backoff``/``stall_after``; MJPEG ``connect_timeout``/``read_timeout``;
    folder and demo ``fps``; demo ``hold``/``seed``/``loop``/``synthetic``.
    Raises SourceError (one line) when it cannot be opened.
    """
    unknown = set(opts) - _ALL_OPTS
    if unknown:
        raise TypeError(f"open_source() got unknown options: {', '.join(sorted(unknown))}")
    text = spec.strip()

    def pick(kind: str) -> dict[str, Any]:
        return {k: v for k, v in opts.items() if k in _KIND_OPTS[kind]}

    kind = classify_source(text)
    if kind.kind == "camera":
        return CameraSource(kind.camera, **pick("camera"))
    if kind.kind == "stream":
        return MjpegSource(text, **pick("mjpeg"))
    if kind.kind == "demo":
        return open_demo(realtime=realtime, **pick("demo"))
    if kind.kind == "empty":
        raise SourceError(f"no source given: use {SOURCE_HELP}")
    if kind.kind == "unsupported":
        raise SourceError(f"unsupported source '{text}': use {SOURCE_HELP}")
    path = Path(text).expanduser()
    if kind.kind == "folder":
        return FolderSource(path, realtime=realtime, **pick("folder"))
    if kind.kind == "image":
        if _imread(path) is None:
            raise SourceError(f"image '{text}' cannot be read (corrupt or unsupported)")
        return FolderSource(path.parent, realtime=realtime, files=[path], name=text,
                            **pick("folder"))
    if path.exists():
        return VideoFileSource(path, realtime=realtime)
    if path.suffix or os.sep in text or "/" in text:
        raise SourceError(f"'{text}' does not exist")
    raise SourceError(f"unknown source '{text}': use {SOURCE_HELP}")
