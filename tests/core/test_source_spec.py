"""core.source_spec: what a --source string names, and the defaults every front end applies."""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from vrfer.core.source_spec import SourceDefaults, classify_source, source_defaults


@pytest.mark.parametrize("spec, kind, camera, live", [
    ("0", "camera", 0, True),
    (" 12 ", "camera", 12, True),
    ("http://192.168.1.50:81/stream", "stream", None, True),
    ("HTTPS://cam.local/mjpeg", "stream", None, True),
    ("demo", "demo", None, False),
    ("Demo", "demo", None, False),
    ("", "empty", None, False),
    ("rtsp://cam.local/live", "unsupported", None, False),
    ("clip.mp4", "file", None, False),  # need not exist: open_source says so
])
def test_classify_source_names_the_kind(spec, kind, camera, live):
    s = classify_source(spec)
    assert (s.kind, s.camera, s.live, s.text) == (kind, camera, live, spec.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/dev/videoN names a camera on Linux only")
def test_classify_source_dev_video_is_a_camera_on_linux():
    assert (classify_source("/dev/video2").kind, classify_source("/dev/video2").camera) == ("camera", 2)


def test_classify_source_looks_at_the_file_system(tmp_path):
    image = tmp_path / "face.PNG"
    cv2.imwrite(str(tmp_path / "face.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "face.png").rename(image)
    (tmp_path / "notes.txt").write_text("x")
    assert classify_source(str(tmp_path)).kind == "folder"
    assert classify_source(str(image)).kind == "image"
    assert classify_source(str(tmp_path / "notes.txt")).kind == "file"


def test_source_defaults_turn_tracking_and_smoothing_off_for_unrelated_frames(tmp_path):
    related, unrelated = SourceDefaults(tracking=True, smoothing=True), SourceDefaults(tracking=False, smoothing=False)
    assert source_defaults("0", realtime=False) == related
    assert source_defaults("demo", realtime=True) == related  # paced: one face held for about a second
    assert source_defaults("demo", realtime=False) == unrelated  # a new face every frame
    assert source_defaults(str(tmp_path), realtime=True) == unrelated
    assert source_defaults("clip.mp4", realtime=False) == related
