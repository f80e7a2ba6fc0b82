"""The real main window, offscreen, on the tiny model: every control drives the real pipeline."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtWidgets import QApplication

from vrfer.core.calibration import apply_offsets
from vrfer.app.settings import FORMAT, MouthCamera, Settings, load_settings, save_settings

WAIT_MS = 15_000  # generous: model load and mediapipe start share 2 busy cores


def _video(path: Path, size: tuple[int, int] = (320, 240), frames: int = 90) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 40 + i % 50, np.uint8)
        cv2.circle(img, (size[0] // 2, size[1] // 2), 40 + i % 20, (200, 180, 160), -1)
        writer.write(img)
    writer.release()
    return path


def _roi_settings(config_dir: Path, roi=(160, 120, 320, 240)) -> None:
    save_settings(Settings(source="demo", mouth_camera=MouthCamera(enabled=True, roi=roi)),
                  config_dir / "settings.json")


def _wait_frames(qtbot, w, n: int = 3) -> None:
    start = w.displayed
    qtbot.waitUntil(lambda: w.displayed >= start + n, timeout=WAIT_MS)


def test_window_starts_on_demo_and_draws_states(qtbot, make_window) -> None:
    w = make_window(source="demo")
    _wait_frames(qtbot, w, 5)
    assert w.preview.frame_size == (640, 480)
    assert w.problems == {}
    assert w.source_panel.start_button.text() == "Stop"
    probs = w.result_panel.bars.values
    assert len(probs) == 8
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6) or sum(probs.values()) == 0.0  # 0: no face
    qtbot.waitUntil(lambda: "fps" in w.result_panel.stats_view.text() and "latency ms: locate" in w.result_panel.stats_view.text(),
                    timeout=WAIT_MS)
    img = w.grab().toImage()
    assert img.width() >= 900 and img.height() >= 600


def test_window_start_stop(qtbot, make_window) -> None:
    w = make_window(source="demo")
    _wait_frames(qtbot, w)
    qtbot.mouseClick(w.source_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not w.bridge.running and w.bridge.pipeline is None, timeout=WAIT_MS)
    assert w.source_panel.start_button.text() == "Start"
    frames = w.bridge.frames
    qtbot.wait(300)
    assert w.bridge.frames == frames  # nothing is processed while stopped
    qtbot.mouseClick(w.source_panel.start_button, Qt.MouseButton.LeftButton)
    _wait_frames(qtbot, w)
    assert w.bridge.running and w.source_panel.start_button.text() == "Stop"


def test_window_source_switching(qtbot, make_window, tmp_path: Path, config_dir: Path) -> None:
    w = make_window(source="demo")
    _wait_frames(qtbot, w)
    assert w.preview.frame_size == (640, 480)

    clip = _video(tmp_path / "clip.avi")
    w.set_source(str(clip))
    qtbot.waitUntil(lambda: w.preview.frame_size == (320, 240), timeout=WAIT_MS)
    assert w.source_panel.source_combo.currentData() == str(clip)
    assert w.source_panel.source_combo.currentText() == "File clip.avi"

    w.set_source(str(tmp_path / "missing.mp4"))  # a bad choice is reported, the app keeps going
    qtbot.waitUntil(lambda: "start" in w.problems, timeout=WAIT_MS)
    assert w.problems["start"] == f"'{tmp_path / 'missing.mp4'}' does not exist"
    assert w.banner.isVisible() and w.source_panel.start_button.text() == "Start"

    w.set_source("demo")  # not running: choosing only selects
    assert not w.bridge.running
    qtbot.mouseClick(w.source_panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.preview.frame_size == (640, 480) and w.displayed > 2, timeout=WAIT_MS)
    assert "start" not in w.problems and not w.banner.isVisible()
    w.save_settings()
    assert load_settings(config_dir).settings.source == "demo"


def test_window_video_end_is_reported(qtbot, make_window, tmp_path: Path) -> None:
    clip = _video(tmp_path / "short.avi", frames=10)
    w = make_window(source=str(clip))
    qtbot.waitUntil(lambda: "ended" in w.problems, timeout=WAIT_MS)
    assert w.problems["ended"].startswith("File short.avi stopped: ")
    assert w.source_panel.start_button.text() == "Start"


@pytest.mark.skipif(os.path.exists("/dev/video0"), reason="this machine has a camera 0")
def test_window_without_camera_offers_the_demo(qtbot, make_window) -> None:
    w = make_window(enumerate_cameras=True)  # default settings: camera 0
    qtbot.waitUntil(lambda: "start" in w.problems, timeout=WAIT_MS)
    assert w.source_panel.source_combo.itemText(w.source_panel.source_combo.findData("0")) == "Camera 0 (none detected)"
    assert w.problems["start"] == ("camera 0 cannot be opened (no such device). No camera here? Choose Demo, "
                                   "a video file or a stream URL above and press Start.")
    assert w.source_panel.source_combo.currentData() == "demo"
    assert w.settings.source == "0"  # offered, not yet chosen
    qtbot.mouseClick(w.source_panel.start_button, Qt.MouseButton.LeftButton)
    _wait_frames(qtbot, w)
    assert w.settings.source == "demo" and w.problems == {}


def test_window_missing_model_is_shown_and_another_can_be_chosen(qtbot, make_window, tiny_model: Path,
                                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VRFER_MODEL", str(tmp_path / "none.onnx"))
    w = make_window(source="demo", model="")  # "" = the default model, which is missing
    qtbot.waitUntil(lambda: "start" in w.problems, timeout=WAIT_MS)
    assert w.problems["start"].startswith(f"no model is installed yet ({tmp_path / 'none.onnx'} is missing)")
    assert w.banner.isVisible() and w.banner.text() == w.problems["start"]
    w.set_model(str(tiny_model))  # what the Model… button does once a file is chosen
    qtbot.mouseClick(w.source_panel.start_button, Qt.MouseButton.LeftButton)
    _wait_frames(qtbot, w)
    assert w.problems == {} and not w.banner.isVisible()


def test_window_roi_drag_sets_and_persists_the_mouth_region(qtbot, make_window, config_dir: Path) -> None:
    w = make_window(source="demo")
    _wait_frames(qtbot, w)
    w.mouth_panel.enable_check.setChecked(True)  # no ROI yet: the whole frame
    assert w.settings.mouth_camera.roi == (0, 0, 640, 480)
    assert w.bridge.config.face.mode == "roi"

    pv = w.preview
    a, b = pv.frame_to_widget(100, 200), pv.frame_to_widget(300, 400)
    qtbot.mousePress(pv, Qt.MouseButton.LeftButton, pos=a.toPoint())
    qtbot.mouseMove(pv, pos=((a + b) / 2).toPoint())
    qtbot.mouseRelease(pv, Qt.MouseButton.LeftButton, pos=b.toPoint())
    x, y, rw, rh = w.settings.mouth_camera.roi
    scale = 640 / pv.image_rect().width()  # one widget pixel, in frame pixels
    assert abs(x - 100) <= scale + 1 and abs(y - 200) <= scale + 1
    assert abs(rw - 200) <= 2 * scale + 1 and abs(rh - 200) <= 2 * scale + 1
    roi = w.settings.mouth_camera.roi
    assert w.bridge.config.face.roi == roi and w.bridge.pipeline.config.face.roi == roi

    w.mouth_panel.rotate_combo.setCurrentIndex(w.mouth_panel.rotate_combo.findData(90))
    w.mouth_panel.flip_check.setChecked(True)
    assert w.bridge.pipeline.config.face.rotate == 90 and w.bridge.pipeline.config.face.flip

    seen = []
    w.state_shown.connect(lambda s: seen.append(s))
    qtbot.waitUntil(lambda: any(s.geometry is not None and s.geometry.path == "roi"
                                and s.geometry.box == tuple(map(float, roi)) for s in seen), timeout=WAIT_MS)
    w.save_settings()
    saved = json.loads((config_dir / "settings.json").read_text())
    assert saved["mouth_camera"] == {"enabled": True, "roi": list(roi), "rotate": 90, "flip": True}

    # A small click is not a rectangle: the region stays.
    qtbot.mouseClick(pv, Qt.MouseButton.LeftButton, pos=pv.frame_to_widget(50, 50).toPoint())
    assert w.settings.mouth_camera.roi == roi


def test_window_neutral_calibration_biases_the_live_output(qtbot, make_window, config_dir: Path) -> None:
    _roi_settings(config_dir)  # a fixed region: every frame has a "face", so the capture is deterministic
    w = make_window()
    _wait_frames(qtbot, w)
    assert not w.calibration_panel.neutral_button.toolTip() == "" and "resting face" in w.calibration_panel.neutral_button.toolTip()
    w.smoothing_panel.strength_slider.setValue(0)  # no smoothing: the output is exactly the calibrated frame
    w.smoothing_panel.margin_slider.setValue(0)
    assert w.bridge.pipeline.config.smoothing.strength == 0.0
    qtbot.mouseClick(w.calibration_panel.neutral_button, Qt.MouseButton.LeftButton)
    assert not w.calibration_panel.neutral_button.isEnabled()
    qtbot.waitUntil(lambda: bool(w.settings.calibration), timeout=WAIT_MS)
    offsets = w.settings.calibration
    assert set(offsets) == set(w.result_panel.bars.values) and w.calibration_panel.neutral_button.isEnabled()
    assert dict(w.bridge.pipeline.config.calibration) == offsets
    assert w.calibration_panel.cal_view.text().startswith("calibrated: ")

    seen = []
    w.state_shown.connect(lambda s: seen.append(s))

    def calibrated_output() -> bool:
        return any(s.face and all(abs(s.probs[c] - v) < 1e-6 for c, v in apply_offsets(s.raw_probs, offsets).items())
                   for s in seen[-5:])
    qtbot.waitUntil(calibrated_output, timeout=WAIT_MS)

    qtbot.mouseClick(w.calibration_panel.reset_button, Qt.MouseButton.LeftButton)
    assert w.settings.calibration == {} and w.bridge.pipeline.config.calibration is None
    seen.clear()
    qtbot.waitUntil(lambda: any(s.face and all(abs(s.probs[c] - s.raw_probs[c]) < 1e-6 for c in s.probs)
                                for s in seen[-5:]), timeout=WAIT_MS)


def test_window_neutral_capture_needs_a_running_source(qtbot, make_window) -> None:
    w = make_window(source="demo", autostart=False)
    qtbot.mouseClick(w.calibration_panel.neutral_button, Qt.MouseButton.LeftButton)
    assert w.statusBar().currentMessage() == "neutral capture needs a running source: press Start first"
    assert w.settings.calibration == {}


def test_window_overlay_toggles_by_shortcut_and_button(qtbot, make_window, config_dir: Path) -> None:
    w = make_window(source="demo")
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=2000)  # shortcuts need an active window
    ov = w.overlay
    assert not ov.isVisible()
    qtbot.keyClick(w, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(ov.isVisible, timeout=2000)
    flags = ov.windowFlags()
    assert flags & Qt.WindowType.FramelessWindowHint and flags & Qt.WindowType.WindowStaysOnTopHint
    assert ov.testAttribute(Qt.WidgetAttribute.WA_TranslucentBackground)
    assert w.source_panel.overlay_button.isChecked() and w.settings.overlay.visible
    qtbot.waitUntil(lambda: ov.label_text != "—", timeout=WAIT_MS)  # it follows the live state
    assert ov.bars.values.keys() == w.result_panel.bars.values.keys()

    qtbot.mouseClick(w.source_panel.overlay_button, Qt.MouseButton.LeftButton)
    assert not ov.isVisible() and not w.settings.overlay.visible
    qtbot.mouseClick(w.source_panel.overlay_button, Qt.MouseButton.LeftButton)
    assert ov.isVisible()
    qtbot.mousePress(ov, Qt.MouseButton.LeftButton, pos=QPoint(20, 20))
    qtbot.mouseMove(ov, pos=QPoint(60, 50))
    qtbot.mouseRelease(ov, Qt.MouseButton.LeftButton, pos=QPoint(60, 50))
    assert (w.settings.overlay.x, w.settings.overlay.y) == (ov.x(), ov.y())
    w.save_settings()
    assert load_settings(config_dir).settings.overlay.visible is True


def test_window_recovers_from_a_garbage_settings_file(qtbot, make_window, config_dir: Path) -> None:
    config_dir.mkdir(parents=True)
    (config_dir / "settings.json").write_bytes(b"\x89PNG not settings at all")
    w = make_window(source="demo")
    backups = list(config_dir.glob("settings.json.bad-*"))
    assert len(backups) == 1
    notice = ("settings were reset to defaults: settings.json is not valid JSON; "
              f"the old file was backed up to {backups[0].name}")
    _wait_frames(qtbot, w)  # the app runs normally...
    assert w.notice_view.text() == notice and w.notice_view.isVisible()  # ... and still says what happened
    data = json.loads((config_dir / "settings.json").read_text())
    assert data["format"] == FORMAT


def test_window_sink_status_shows_rate_and_unreachable_target(qtbot, make_window, config_dir: Path) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    port = rx.getsockname()[1]
    try:
        w = make_window(source="demo")
        w.avatar_panel.output_combo.setCurrentIndex(w.avatar_panel.output_combo.findData("vrchat"))
        w.avatar_panel.target_edit.setText(f"127.0.0.1:{port}")
        w.avatar_panel.target_edit.editingFinished.emit()
        assert w.settings.avatar.output == "vrchat" and w.settings.avatar.vrchat_target == f"127.0.0.1:{port}"
        qtbot.waitUntil(lambda: f"vrchat → 127.0.0.1:{port}: on" in w.avatar_panel.sink_view.text()
                        and " 0 msg/s" not in w.avatar_panel.sink_view.text(), timeout=WAIT_MS)
        assert rx.recv(4096).startswith(b"/avatar/parameters/")  # real OSC packets arrive
    finally:
        rx.close()
    # The listener is gone: the port is now closed, and the window says so.
    qtbot.waitUntil(lambda: "sink" in w.problems, timeout=WAIT_MS)
    assert w.problems["sink"].startswith("avatar output vrchat: ")
    assert w.banner.isVisible()
    w.avatar_panel.output_combo.setCurrentIndex(w.avatar_panel.output_combo.findData("off"))
    qtbot.waitUntil(lambda: w.avatar_panel.sink_view.text() == "off" and "sink" not in w.problems, timeout=WAIT_MS)


class _Mjpeg:
    """A real MJPEG server on 127.0.0.1 that can be taken down and brought back on its port."""

    def __init__(self, port: int = 0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        _, buf = cv2.imencode(".jpg", np.full((240, 320, 3), 120, np.uint8))
        body = buf.tobytes()
        alive = threading.Event()
        alive.set()
        self.alive = alive

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while alive.is_set():
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(body)).encode() + b"\r\n\r\n" + body + b"\r\n")
                        self.wfile.flush()
                        time.sleep(0.03)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.alive.clear()
        self.server.shutdown()
        self.server.server_close()


def test_window_shows_a_lost_stream_and_its_return(qtbot, make_window) -> None:
    server = _Mjpeg()
    url = f"http://127.0.0.1:{server.port}/stream"
    try:
        w = make_window(source=url)
        qtbot.waitUntil(lambda: w.preview.frame_size == (320, 240), timeout=WAIT_MS)
        assert w.source_panel.source_combo.currentText() == f"Stream {url}"
        server.stop()
        qtbot.waitUntil(lambda: "source" in w.problems, timeout=WAIT_MS)
        assert w.problems["source"].startswith(f"{url} lost")
        assert "reconnecting in" in w.problems["source"] and w.banner.isVisible()
        assert w.bridge.running  # a lost stream is retried, not the end
        server = _Mjpeg(server.port)
        shown = w.displayed
        qtbot.waitUntil(lambda: "source" not in w.problems and w.displayed > shown + 2, timeout=WAIT_MS)
    finally:
        server.stop()


def test_window_smoothing_controls_apply_live_and_persist_typed(qtbot, make_window, config_dir: Path) -> None:
    from vrfer.core.smoothing import SmoothingConfig

    w = make_window(source="demo")
    _wait_frames(qtbot, w)
    w.smoothing_panel.method_combo.setCurrentIndex(w.smoothing_panel.method_combo.findData("one_euro"))
    w.smoothing_panel.strength_slider.setValue(80)
    w.smoothing_panel.margin_slider.setValue(25)
    w.smoothing_panel.hold_spin.setValue(3)
    want = SmoothingConfig(method="one_euro", strength=0.8, margin=0.25, min_hold_frames=3)
    assert w.bridge.pipeline.config.smoothing == want  # swapped into the running pipeline
    assert w.smoothing_panel.strength_view.text() == "0.80" and w.smoothing_panel.margin_view.text() == "0.25"
    _wait_frames(qtbot, w)  # and frames keep coming under the new settings
    w.save_settings()
    saved = json.loads((config_dir / "settings.json").read_text())["smoothing"]
    assert saved == {"method": "one_euro", "strength": 0.8, "margin": 0.25, "min_hold_frames": 3}
    w.close()
    again = make_window()  # a new window starts from the saved values
    assert again.smoothing_panel.strength_slider.value() == 80 and again.smoothing_panel.hold_spin.value() == 3
    assert again.smoothing_panel.method_combo.currentData() == "one_euro"


def test_window_status_line_names_the_face_path_and_presence(qtbot, make_window) -> None:
    import re

    w = make_window(source="demo")
    qtbot.waitUntil(lambda: "face via" in w.result_panel.detail_view.text(), timeout=4 * WAIT_MS)
    found = re.search(r"face via (mesh|mesh_refined|locator|tracked|roi) \(presence (\d\.\d\d)\)",
                      w.result_panel.detail_view.text())
    assert found is not None, w.result_panel.detail_view.text()
    assert 0.0 <= float(found.group(2)) <= 1.0


def test_model_menu_offers_shipped_models_by_name(qtbot, make_window) -> None:
    from vrfer.core.model import shipped_model_names

    w = make_window(source="demo")
    menu = w.source_panel.model_button.menu()
    names = [a.text() for a in menu.actions() if a.text()]
    assert names[:-1] == shipped_model_names() and names[-1] == "Other file…"
    realtime = next(a for a in menu.actions() if a.text() == "realtime")
    with qtbot.waitSignal(w.source_panel.model_chosen, timeout=WAIT_MS) as sig:
        realtime.trigger()
    assert sig.args == ["realtime"]
    assert w.settings.model == "realtime"
    _wait_frames(qtbot, w)  # the pipeline runs on the model chosen by name
    assert w.bridge.pipeline.model.info.name == "vrfer-student-tinyres-v9"


def test_window_shows_mouth_shapes_as_a_second_bar_group(qtbot, make_window, make_onnx, tiny_meta) -> None:
    from vrfer.core.mouth_shapes import SHAPES

    model = make_onnx("shapes.onnx", meta={**tiny_meta, "vrfer.shapes": ",".join(SHAPES)}, shapes=len(SHAPES))
    w = make_window(source="demo", model=str(model))
    r = w.result_panel
    qtbot.waitUntil(lambda: len(r.shape_bars.values) == len(SHAPES), timeout=WAIT_MS)
    assert r.shape_bars.isVisible() and not r.shapes_note.isVisible()
    assert "jaw_open" in r.shape_bars.values and "smile_left" in r.shape_bars.values
    assert all(0.0 <= v <= 1.0 for v in r.shape_bars.values.values())
    w.toggle_overlay()  # the overlay shows them too
    qtbot.waitUntil(lambda: w.overlay.isVisible() and len(w.overlay.shape_bars.values) == len(SHAPES),
                    timeout=WAIT_MS)


def test_window_says_in_one_line_when_the_model_has_no_mouth_shapes(qtbot, make_window, make_onnx) -> None:
    w = make_window(source="demo", model=str(make_onnx("plain.onnx")))
    _wait_frames(qtbot, w)
    r = w.result_panel
    assert not r.shape_bars.isVisible() and r.shapes_note.isVisible()
    assert r.shapes_note.text().startswith("mouth shapes are not available with this model")
    assert "\n" not in r.shapes_note.text()
