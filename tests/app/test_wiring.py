"""app/wiring.py: what the window starts for its settings, without a window."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import cv2
import numpy as np

from vrfer.app.settings import Avatar, MouthCamera, Settings, Smoothing
from vrfer.app.wiring import avatar_config, pipeline_config
from vrfer.core.avatar.osc import VRChatSink
from vrfer.core.avatar.sinks import AvatarConfig, make_sinks
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.face import FaceConfig
from vrfer.core.smoothing import SmoothingConfig
from vrfer.core.types import ExpressionState


def test_wiring_applies_the_per_source_defaults_vrfer_run_applies(tmp_path: Path) -> None:
    sm = Smoothing(method="one_euro", strength=0.7, margin=0.2, min_hold_frames=2)
    camera = pipeline_config(Settings(source="0", smoothing=sm), realtime=True, profile=None)
    assert camera.face == FaceConfig(tracking=True)
    assert camera.smoothing == SmoothingConfig(method="one_euro", strength=0.7, margin=0.2, min_hold_frames=2)
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    still = pipeline_config(Settings(source=str(image), smoothing=sm), realtime=True, profile=None)
    assert still.face == FaceConfig(tracking=False)  # one face per frame: nothing to track or smooth across
    assert still.smoothing == SmoothingConfig(method="one_euro", strength=0.0, margin=0.0, min_hold_frames=2)
    roi = pipeline_config(Settings(source="demo", mouth_camera=MouthCamera(enabled=True, roi=(1, 2, 30, 40))),
                          realtime=True, profile=None)
    assert roi.face == FaceConfig(mode="roi", roi=(1, 2, 30, 40))


def test_wiring_avatar_settings_build_the_cli_sinks() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5.0)
        target = f"127.0.0.1:{rx.getsockname()[1]}"
        a = Avatar(output="vrchat", vrchat_target=target, vrchat_ft=True, rate_hz=20.0)
        cfg = avatar_config(a)
        assert cfg == AvatarConfig(vrchat=target, vrchat_ft=True, rate_hz=20.0)
        sinks = make_sinks(cfg)
        try:
            assert [type(s) for s in sinks] == [VRChatSink] and sinks[0].timing.rate_hz == 20.0
            sinks[0].send(ExpressionState(frame_index=0, timestamp=time.perf_counter(), face=True, label="happiness",
                                          confidence=1.0, probs=dict(zip(FERPLUS_CLASSES, np.eye(8)[1])),
                                          raw_probs={}, timings_ms={}))
            assert rx.recv(4096).startswith(b"/avatar/parameters/FT/v2/")  # the FT prefix option reached the sink
        finally:
            for s in sinks:
                s.close()
    assert avatar_config(Avatar()) == AvatarConfig()
