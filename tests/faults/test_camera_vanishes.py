"""Fault: the camera disappears mid-run (unplugged) and comes back. This machine has no camera,
so a real ``CameraSource`` reads a video file through its ``opener`` hook: the file's end is
what an unplugged camera looks like to OpenCV, and the second opening fails as if the device
were still gone. The pipeline must report the loss, keep running and resume on its own.
(The source alone: tests/core/test_sources.py::test_camera_that_vanishes_is_reopened_with_backoff.)"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from vrfer import core
from vrfer.core.face import FaceConfig
from vrfer.core.pipeline import STATUS_FRAME_INDEX, Pipeline, PipelineConfig
from vrfer.core.smoothing import SmoothingConfig
from vrfer.core.sources import CameraSource

FRAMES = 12


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(FRAMES):
        writer.write(np.full((48, 64, 3), 10 + 10 * i, np.uint8))
    writer.release()
    return path


def test_pipeline_reports_a_vanished_camera_and_resumes(clip, tmp_path, tiny_model, monkeypatch):
    opened: list[int] = []

    def opener() -> cv2.VideoCapture:
        opened.append(1)
        return cv2.VideoCapture(str(clip if len(opened) != 2 else tmp_path / "gone.avi"))

    # The pipeline opens its source by name; hand it camera 0 played from the file.
    monkeypatch.setattr(core.pipeline, "open_source",
                        lambda spec, realtime=False, **kw: CameraSource(0, opener=opener, buffer=100,
                                                                        backoff=(0.2, 0.4)))
    messages: list[str] = []
    frames_per_opening: list[int] = []
    resumed = threading.Event()

    def watch(state) -> None:
        # The status rides on status-only states and on the frames still buffered when it changed.
        if state.message and (not messages or messages[-1] != state.message):
            messages.append(state.message)
        if state.frame_index == STATUS_FRAME_INDEX:
            return
        if not frames_per_opening or (len(messages) >= 2 and state.message is None and len(frames_per_opening) == 1):
            frames_per_opening.append(0)  # the first frame, or the first one after the loss
        frames_per_opening[-1] += 1
        if len(frames_per_opening) == 2:
            resumed.set()

    cfg = PipelineConfig(source="0", model=tiny_model, face=FaceConfig(mode="roi", roi=(0, 0, 64, 48)),
                         smoothing=SmoothingConfig(strength=0.0, margin=0.0))
    pipeline = Pipeline(cfg)
    pipeline.subscribe(watch)
    try:
        pipeline.start()
        assert resumed.wait(15), f"no frame after the camera came back; messages {messages}"
        assert pipeline.running
        errors = pipeline.stats.errors
    finally:
        assert pipeline.stop()
    assert errors == 0 and len(opened) >= 3
    assert messages[:2] == ["camera 0 lost, reconnecting in 0.2 s", "camera 0 cannot be opened, reconnecting in 0.4 s"]
