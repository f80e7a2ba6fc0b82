"""Cameras: the capture APIs per platform, opening one by index, and listing those that deliver."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2

from vrfer.core.errors import SourceError
from vrfer.core.source_spec import IS_LINUX as _IS_LINUX

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
