"""Cameras on every OS: the capture API chosen per platform, and names where the OS gives them."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest

from vrfer.core.sources import V4L2_SYSFS, camera_backends, camera_name, list_cameras, probe_cameras


@pytest.mark.parametrize("platform, backends", [
    ("linux", ("V4L2",)),
    ("linux2", ("V4L2",)),
    ("win32", ("MSMF", "DSHOW")),  # Media Foundation first, DirectShow for the drivers it does not open
    ("darwin", ("AVFOUNDATION",)),
    ("freebsd14", ("ANY",)),
])
def test_camera_backends_are_chosen_per_platform(platform, backends):
    assert camera_backends(platform) == backends
    for name in backends:  # each is a capture API this OpenCV build knows
        assert isinstance(getattr(cv2, f"CAP_{name}"), int)


def test_camera_backends_default_to_this_platform():
    assert camera_backends() == camera_backends(sys.platform)


def test_camera_name_is_the_drivers_name_from_sysfs(tmp_path: Path):
    (tmp_path / "video0").mkdir()
    (tmp_path / "video0" / "name").write_text("HD Pro Webcam C920\n")
    (tmp_path / "video1").mkdir()
    (tmp_path / "video1" / "name").write_text("\n")
    (tmp_path / "video2").mkdir()
    (tmp_path / "video2" / "name").write_bytes(b"Cam\xff\n")  # not UTF-8: still a name, never an error
    assert camera_name(0, tmp_path) == "HD Pro Webcam C920"
    assert camera_name(1, tmp_path) == "camera 1"  # an empty name
    assert camera_name(2, tmp_path) == "Cam\ufffd"
    assert camera_name(3, tmp_path) == "camera 3"  # no such node


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="V4L2 and sysfs are Linux's")
def test_cameras_on_this_linux_machine_match_its_device_nodes():
    nodes = sorted(int(p.name[5:]) for p in Path("/dev").glob("video*") if p.name[5:].isdigit())
    probes = probe_cameras(10)
    assert {p.index for p in probes} <= set(nodes)  # only existing nodes are opened
    for probe in probes:
        assert probe.device == f"/dev/video{probe.index}"
        sysfs = V4L2_SYSFS / f"video{probe.index}" / "name"
        assert probe.name == (sysfs.read_text().strip() if sysfs.is_file() else f"camera {probe.index}")
        assert (probe.info is None) == (probe.problem is not None)
    assert list_cameras(10) == [p.info for p in probes if p.info is not None]
    if not nodes:
        assert probes == []
