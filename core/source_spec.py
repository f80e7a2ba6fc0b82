"""What a ``--source`` string names, and the runtime defaults that follow from it.

One function, ``classify_source``, reads the spec for every caller: ``open_source`` picks
the source class from it, the app names the source and offers the demo when a camera is
missing, ``vrfer calibrate`` decides which clock to use, and ``source_defaults`` turns it
into the tracking and smoothing defaults that ``vrfer run``, ``vrfer calibrate`` and the
app all apply. Only the file system is looked at (is it a folder, an image?), nothing opened.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
IS_LINUX = sys.platform.startswith("linux")

SourceKind = Literal["camera", "stream", "demo", "folder", "image", "file", "unsupported", "empty"]


@dataclass(frozen=True)
class SourceSpec:
    """A classified ``--source``: ``text`` stripped, ``camera`` the index for a camera."""

    text: str
    kind: SourceKind
    camera: int | None = None

    @property
    def live(self) -> bool:
        """A camera or a stream: frames come in real time and the newest is kept."""
        return self.kind in ("camera", "stream")


def classify_source(spec: str) -> SourceSpec:
    """``0`` and ``/dev/videoN`` (Linux) are cameras, ``http(s)://`` streams, ``demo`` the demo;
    an existing folder or image file is that; any other URL scheme is unsupported; the rest
    is a (video) file, which may not exist: ``open_source`` reports that."""
    text = spec.strip()
    if re.fullmatch(r"\d+", text):
        return SourceSpec(text, "camera", int(text))
    if re.match(r"https?://", text, re.IGNORECASE):
        return SourceSpec(text, "stream")
    if text.lower() == "demo":
        return SourceSpec(text, "demo")
    if not text:
        return SourceSpec(text, "empty")
    if re.match(r"[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
        return SourceSpec(text, "unsupported")
    if IS_LINUX and re.fullmatch(r"/dev/video\d+", text):
        return SourceSpec(text, "camera", int(text[len("/dev/video"):]))
    path = Path(text).expanduser()
    if path.is_dir():
        return SourceSpec(text, "folder")
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        return SourceSpec(text, "image")
    return SourceSpec(text, "file")


@dataclass(frozen=True)
class SourceDefaults:
    """Runtime defaults for one source. ``smoothing`` False means no smoothing and no label margin."""

    tracking: bool
    smoothing: bool


def source_defaults(spec: str, realtime: bool) -> SourceDefaults:
    """Folders, single images and the unpaced demo show a different face in each frame:
    tracking or smoothing across them would blend one face's expression into the next."""
    kind = classify_source(spec).kind
    unrelated = kind in ("folder", "image") or (kind == "demo" and not realtime)
    return SourceDefaults(tracking=not unrelated, smoothing=not unrelated)
