"""The Qt bridge: a fast pipeline queues at most one state event on the UI thread."""
from __future__ import annotations

from pathlib import Path

from vrfer.core.pipeline import PipelineConfig
from vrfer.core.face import FaceConfig


def test_bridge_coalesces_states_while_the_ui_is_busy(qtbot, tiny_model: Path) -> None:
    from vrfer.app.bridge import PipelineBridge

    bridge = PipelineBridge()
    events = []
    bridge.state.connect(events.append)  # a slot that has not yet taken the state
    roi = FaceConfig(mode="roi", roi=(160, 120, 320, 240))  # no mediapipe: the pipeline runs flat out
    with qtbot.waitSignal(bridge.started, timeout=15_000):
        # a looping synthetic demo: the same endless stream with or without FER+ (a finite one can
        # end before the UI takes the state, and then no second event ever comes)
        bridge.start(PipelineConfig(source="demo", model=str(tiny_model), face=roi,
                                    source_options={"synthetic": True, "loop": True}))
    qtbot.waitUntil(lambda: bridge.frames > 20, timeout=5_000)
    qtbot.wait(200)
    assert len(events) == 1  # however many frames came, one event waits until the UI takes it
    before = bridge.frames
    latest = bridge.take_latest()
    assert latest is not None and latest.frame_index > events[0].frame_index  # the newest, not the first
    qtbot.waitUntil(lambda: len(events) == 2, timeout=5_000)  # taking it lets the next one through
    qtbot.wait(200)
    assert len(events) == 2 and bridge.frames > before
    bridge.shutdown()
    assert not bridge.running


def test_bridge_reports_a_failed_start_as_one_line(qtbot, tmp_path: Path) -> None:
    from vrfer.app.bridge import PipelineBridge

    bridge = PipelineBridge()
    with qtbot.waitSignal(bridge.start_failed, timeout=15_000) as sig:
        bridge.start(PipelineConfig(source="demo", model=str(tmp_path / "gone.onnx")))
    assert sig.args == ["demo", f"{tmp_path / 'gone.onnx'}: model file not found"]
    bridge.shutdown()
