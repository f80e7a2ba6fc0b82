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

import os
from pathlib import Path
from typing import Any

from vrfer.core.errors import SourceError
from vrfer.core.source_spec import classify_source
from vrfer.core.sources.base import DEFAULT_FPS, FrameSource
from vrfer.core.sources.cameras import (V4L2_SYSFS, CameraInfo, CameraProbe, camera_backends, camera_name,
                                        list_cameras, open_camera, probe_cameras)
from vrfer.core.sources.demo import DEMO_SIZE, SYNTHETIC_TEXT, DemoSource, SyntheticDemoSource, open_demo
from vrfer.core.sources.files import FolderSource, VideoFileSource, _imread
from vrfer.core.sources.live import CameraSource, MjpegSource

__all__ = [
    "DEFAULT_FPS", "DEMO_SIZE", "SOURCE_HELP", "SYNTHETIC_TEXT", "V4L2_SYSFS", "CameraInfo", "CameraProbe",
    "CameraSource", "DemoSource", "FolderSource", "FrameSource", "MjpegSource", "SyntheticDemoSource",
    "VideoFileSource", "camera_backends", "camera_name", "list_cameras", "open_camera", "open_demo", "open_source",
    "probe_cameras",
]

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
