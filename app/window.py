"""The main window: it composes the panels, owns the settings and drives the bridge.

Settings flow one way: a panel emits a new settings section, ``_change`` stores it in
``self.settings`` (a frozen value), saves it (debounced), pushes the runtime part to the
bridge and redraws the panels from it with their signals blocked, so a redraw never loops
back. What the settings mean for the core lives in ``app/wiring.py``, the text shown in
``app/status.py``, the panels in ``app/panels.py``.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QVBoxLayout, QWidget

from vrfer.app import wiring
from vrfer.app.bridge import PipelineBridge
from vrfer.app.panels import AvatarPanel, CalibrationPanel, MouthPanel, ResultPanel, SmoothingPanel, SourcePanel
from vrfer.app.settings import Loaded, Settings, load_settings, save_settings
from vrfer.app.status import Latency, describe_source, is_camera, sink_text, stats_text
from vrfer.app.widgets import OverlayWindow, PreviewWidget
from vrfer.core import calibration
from vrfer.core.adapt import list_profiles
from vrfer.core.avatar.sinks import AvatarConfig, check_avatar, make_sinks
from vrfer.core.errors import VrferError
from vrfer.core.types import ExpressionState

log = logging.getLogger("vrfer.app")

POLL_MS = 250
FRAME_ERROR_HOLD_S = 2.0


class MainWindow(QMainWindow):
    """``persist=False`` never writes the settings file (screenshots, tests of other things)."""

    state_shown = pyqtSignal(object)  # after the widgets took a state (for tests and screenshots)

    def __init__(self, *, settings_dir: Path | None = None, source: str | None = None, model: str | None = None,
                 realtime: bool = True, autostart: bool = True, persist: bool = True,
                 enumerate_cameras: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("vrfer — expression recognition under a VR headset")
        loaded: Loaded = load_settings(settings_dir, repair=persist)
        self.settings: Settings = loaded.settings
        self._settings_path = loaded.path
        self._persist = persist
        if source is not None:
            self.settings = dataclasses.replace(self.settings, source=source)
        if model is not None:
            self.settings = dataclasses.replace(self.settings, model=model)
        self._realtime = realtime
        self.bridge = PipelineBridge(self)
        self.displayed = 0  # states drawn since start
        self._problems: dict[str, str] = {}
        self._latency = Latency()
        self._fps = 0.0
        self._poll_frames = (0, time.perf_counter())
        self._frame_errors = (0, 0.0)  # count seen, when it last grew
        self._running = False
        self._capture_stop = None
        self._classes: tuple[str, ...] = ()
        self._offered_source: str | None = None  # shown in the picker after the saved one failed
        self._models = wiring.ModelFiles()  # sha256 per model file, for profile checks

        self._save_timer = QTimer(self, singleShot=True, interval=400)
        self._save_timer.timeout.connect(self.save_settings)
        self._build()
        self._redraw_controls()
        self._redraw_profiles()
        self.overlay = OverlayWindow(self.settings.overlay.opacity)
        self.overlay.moved.connect(self._overlay_moved)
        if self.settings.overlay.x is not None and self.settings.overlay.y is not None:
            self.overlay.move(self.settings.overlay.x, self.settings.overlay.y)

        b = self.bridge
        b.state.connect(self._on_state)
        b.error.connect(self._on_error)
        b.started.connect(self._on_started)
        b.start_failed.connect(self._on_start_failed)
        b.stopped.connect(self._on_stopped)
        b.cameras.connect(self._on_cameras)
        self._poll_timer = QTimer(self, interval=POLL_MS)
        self._poll_timer.timeout.connect(self._poll)
        self._poll_timer.start()

        # Reported once, in the status bar for this session (not overwritten by later messages);
        # the file has been fixed, so the next start is quiet.
        self.notice_view = QLabel(loaded.notice or "")
        self.notice_view.setStyleSheet("color: #b35900;")
        self.notice_view.setWordWrap(False)
        self.notice_view.setVisible(bool(loaded.notice))
        self.statusBar().addPermanentWidget(self.notice_view)
        self._apply_avatar()
        if enumerate_cameras:
            b.list_cameras()
        if self.settings.overlay.visible:
            QTimer.singleShot(0, lambda: self.set_overlay_visible(True))
        if autostart:
            QTimer.singleShot(0, self.start)

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        central = QWidget(self)
        self.setCentralWidget(central)
        outer = QVBoxLayout(central)
        self.source_panel = SourcePanel()
        self.source_panel.source_chosen.connect(self.set_source)
        self.source_panel.start_clicked.connect(self._start_clicked)
        self.source_panel.model_chosen.connect(self.set_model)
        self.source_panel.overlay_toggled.connect(self.set_overlay_visible)
        outer.addWidget(self.source_panel)
        self.overlay_shortcut = QShortcut(QKeySequence("Ctrl+O"), self)
        self.overlay_shortcut.setContext(Qt.ShortcutContext.ApplicationShortcut)
        self.overlay_shortcut.activated.connect(self.toggle_overlay)

        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("QLabel { background: #5c1d1d; color: #ffe3e3; padding: 6px; border-radius: 4px; }")
        self.banner.hide()
        outer.addWidget(self.banner)

        body = QHBoxLayout()
        outer.addLayout(body, 1)
        self.preview = PreviewWidget()
        self.preview.roi_drawn.connect(self._roi_drawn)
        body.addWidget(self.preview, 3)
        side = QVBoxLayout()
        body.addLayout(side, 2)
        self.result_panel = ResultPanel()
        side.addWidget(self.result_panel)
        self.mouth_panel = MouthPanel()
        self.mouth_panel.changed.connect(self._mouth_changed)
        side.addWidget(self.mouth_panel)
        self.calibration_panel = CalibrationPanel()
        self.calibration_panel.capture.connect(self.capture_neutral)
        self.calibration_panel.reset.connect(self.reset_calibration)
        self.calibration_panel.personal.connect(self.open_profile_dialog)
        self.calibration_panel.profile_chosen.connect(self.set_profile)
        side.addWidget(self.calibration_panel)
        self.smoothing_panel = SmoothingPanel()
        self.smoothing_panel.changed.connect(lambda sm: self._change(dataclasses.replace(self.settings, smoothing=sm)))
        side.addWidget(self.smoothing_panel)
        self.avatar_panel = AvatarPanel()
        self.avatar_panel.changed.connect(lambda a: self._change(dataclasses.replace(self.settings, avatar=a)))
        side.addWidget(self.avatar_panel)
        side.addStretch(1)
        self.resize(1180, 760)

    def _redraw_controls(self) -> None:
        """Show ``self.settings`` in the panels without their signals firing."""
        s = self.settings
        self.source_panel.select(self._offered_source or s.source)
        self.source_panel.model = s.model
        self.mouth_panel.show_value(s.mouth_camera)
        self.smoothing_panel.show_value(s.smoothing)
        self.avatar_panel.show_value(s.avatar)
        self.calibration_panel.show_offsets(s.calibration)
        self.preview.roi_editing = s.mouth_camera.enabled
        self.preview.roi = s.mouth_camera.roi
        self.preview.update()

    # -- settings -------------------------------------------------------------------------

    def _change(self, settings: Settings) -> None:
        """The one way settings change: store, push what the pipeline uses, save soon."""
        old, self.settings = self.settings, settings
        self._redraw_controls()
        cfg = wiring.runtime_config(settings, self._realtime)
        changes = {k: v for k, v in cfg.items() if getattr(self.bridge.config, k) != v}
        if changes:
            self.bridge.update(**changes)
        if settings.avatar != old.avatar:
            self._apply_avatar()
        if self._persist:
            self._save_timer.start()

    def save_settings(self) -> None:
        if not self._persist:
            return
        try:
            save_settings(self.settings, self._settings_path)
        except OSError as exc:
            self.statusBar().showMessage(f"settings could not be saved: {exc.strerror or exc}")

    # -- source and start/stop ------------------------------------------------------------

    def _on_cameras(self, cameras: list) -> None:
        self.source_panel.spec = self._offered_source or self.settings.source
        self.source_panel.show_cameras(cameras)

    def set_source(self, spec: str) -> None:
        """Choose a source; a running pipeline restarts on it at once."""
        self._offered_source = None
        self._change(dataclasses.replace(self.settings, source=spec))
        if self._running:
            self.start()

    def set_model(self, path: str) -> None:
        """Use another model file ("" = the shipped one); a running pipeline restarts on it."""
        self._change(dataclasses.replace(self.settings, model=path))
        if self._running:
            self.start()

    def _start_clicked(self) -> None:
        if self._running:
            self.stop()
        else:
            self.start()

    def start(self) -> None:
        self._offered_source = None
        chosen = self.source_panel.chosen
        if chosen is not None and chosen != self.settings.source:
            self._change(dataclasses.replace(self.settings, source=chosen))
        self._verify_profile()  # may fall back to no profile, so read the settings after it
        s = self.settings
        cfg = wiring.pipeline_config(s, self._realtime, self.profile)
        self._running = True
        self.displayed = 0
        self.source_panel.set_running(True)
        for key in ("start", "ended", "error", "frames"):
            self._problems.pop(key, None)
        self._show_problems()
        self.preview.clear(f"Starting {describe_source(s.source)}…")
        self.statusBar().showMessage(f"starting {describe_source(s.source)}…")
        self.bridge.start(cfg)

    def stop(self) -> None:
        self._running = False
        self.source_panel.set_running(False)
        self.bridge.stop()

    def _on_started(self, spec: str) -> None:
        p = self.bridge.pipeline
        if p is not None and p.model is not None:
            self._classes = p.model.classes
            self.result_panel.bars.set_classes(self._classes)
            self.result_panel.set_shapes(p.model.shapes)
            self.statusBar().showMessage(f"running on {describe_source(spec)} with model {p.model.info.name}")

    def _on_start_failed(self, spec: str, message: str) -> None:
        self._running = False
        self.source_panel.set_running(False)
        if is_camera(spec) and "camera" in message:
            text = (f"{message}. No camera here? Choose Demo, a video file or a stream URL above and "
                    "press Start.")
            self._offered_source = "demo"  # offered, not chosen: Start makes it the source
            self._redraw_controls()
        else:
            text = message
        self._problems["start"] = text
        self._show_problems()
        self.preview.clear(text)
        self.statusBar().showMessage("not running")

    def _on_stopped(self, reason: str) -> None:
        if reason:  # ended by itself
            self._running = False
            self.source_panel.set_running(False)
            self._problems["ended"] = f"{describe_source(self.settings.source)} stopped: {reason}"
            self._show_problems()
        if not self._running:
            self.statusBar().showMessage("stopped")

    def _on_error(self, message: str) -> None:
        self.statusBar().showMessage(message)
        self._problems["error"] = message
        self._show_problems()

    def _show_problems(self) -> None:
        text = "\n".join(v for v in self._problems.values() if v)
        self.banner.setText(text)
        self.banner.setVisible(bool(text))

    @property
    def problems(self) -> dict[str, str]:
        return dict(self._problems)

    # -- live state -----------------------------------------------------------------------

    def _on_state(self, _emitted: ExpressionState) -> None:
        state = self.bridge.take_latest()
        if state is None:
            return
        self.show_state(state)

    def show_state(self, state: ExpressionState) -> None:
        if state.frame_index < 0:  # a source status with no frame: lost, reconnecting...
            if state.message:
                self._problems["source"] = state.message
                self._show_problems()
            return
        if self._problems.pop("source", None) is not None:
            self._show_problems()
        self.preview.set_state(state)
        self.result_panel.show_state(state)
        if self.overlay.isVisible():
            self.overlay.set_state(state)
        self._latency.add(state.timings_ms)
        self.displayed += 1
        self.state_shown.emit(state)

    def _poll(self) -> None:
        """4 Hz: frame rate, per-stage latency, dropped frames, sink status, frame errors."""
        now = time.perf_counter()
        frames = self.bridge.frames
        f0, t0 = self._poll_frames
        if frames >= f0 and now > t0:
            inst = (frames - f0) / (now - t0)
            self._fps = inst if self._fps == 0 else 0.5 * self._fps + 0.5 * inst
        self._poll_frames = (frames, now)
        p = self.bridge.pipeline
        stats_view = self.result_panel.stats_view
        if p is not None and self._running:
            stats = p.stats
            stats_view.setText(stats_text(self._fps, stats.processed, stats.dropped, self._latency))
            seen, since = self._frame_errors
            if stats.errors > seen:
                self._frame_errors = (stats.errors, now)
                self._problems["frames"] = f"{stats.errors} frames failed; last: {stats.last_error}"
                self._show_problems()
            elif "frames" in self._problems and now - since > FRAME_ERROR_HOLD_S:
                del self._problems["frames"]
                self._show_problems()
        elif not self._running:
            stats_view.setText("not running")
        self._poll_sinks()

    # -- avatar sinks ---------------------------------------------------------------------

    def _apply_avatar(self) -> None:
        cfg = wiring.avatar_config(self.settings.avatar)
        try:
            check_avatar(cfg)  # a bad target is reported here, not in the worker
        except VrferError as exc:
            self._on_error(str(exc))
            return
        if cfg != AvatarConfig():
            self._problems.pop("error", None)
        self.bridge.set_sinks(lambda: make_sinks(cfg))

    def _poll_sinks(self) -> None:
        a = self.settings.avatar
        text, problem = sink_text(self.bridge.sink_statuses(), off=a.output == "off" and not a.openxr)
        self.avatar_panel.sink_view.setText(text)
        if problem is not None:
            self._problems["sink"] = problem
            self._show_problems()
        elif self._problems.pop("sink", None) is not None:
            self._show_problems()

    # -- mouth camera ---------------------------------------------------------------------

    def _mouth_changed(self, mc) -> None:
        if mc.enabled and not self.settings.mouth_camera.enabled and mc.roi is None \
                and self.preview.frame_size is not None:
            w, h = self.preview.frame_size
            mc = dataclasses.replace(mc, roi=(0, 0, w, h))  # a mouth camera mostly sees the mouth: the whole frame
        self._change(dataclasses.replace(self.settings, mouth_camera=mc))
        if mc.enabled and mc.roi is None:
            self.statusBar().showMessage("drag a rectangle around the mouth on the preview")

    def _roi_drawn(self, roi: tuple[int, int, int, int]) -> None:
        mc = self.settings.mouth_camera
        self._change(dataclasses.replace(self.settings, mouth_camera=dataclasses.replace(mc, roi=tuple(roi))))
        self.statusBar().showMessage(f"mouth region set to x={roi[0]} y={roi[1]} {roi[2]}x{roi[3]} px")

    # -- calibration ----------------------------------------------------------------------

    def capture_neutral(self) -> None:
        """Record raw probabilities for ``CAPTURE_SECONDS`` on the pipeline thread, then set offsets."""
        p = self.bridge.pipeline
        if p is None or not self.bridge.running or p.model is None:
            self._on_error("neutral capture needs a running source: press Start first")
            return
        if self._capture_stop is not None:
            return
        classes = p.model.classes
        samples: list[dict[str, float]] = []

        def collect(state: ExpressionState) -> None:  # pipeline thread: an append, nothing more
            if state.face and state.raw_probs:
                samples.append(state.raw_probs)
        self._capture_stop = self.bridge.add_collector(collect)
        self.calibration_panel.set_capturing(True)
        QTimer.singleShot(round(calibration.CAPTURE_SECONDS * 1000), lambda: self._finish_capture(samples, classes))

    def _finish_capture(self, samples: list[dict[str, float]], classes: tuple[str, ...]) -> None:
        if self._capture_stop is not None:
            self._capture_stop()
            self._capture_stop = None
        self.calibration_panel.set_capturing(False)
        try:
            offsets = calibration.neutral_offsets(list(samples), classes)
        except VrferError as exc:
            self._on_error(str(exc))
            return
        self._problems.pop("error", None)
        self._show_problems()
        self._change(dataclasses.replace(self.settings, calibration=offsets))
        self.statusBar().showMessage(f"neutral face captured from {len(samples)} frames")

    def reset_calibration(self) -> None:
        self._change(dataclasses.replace(self.settings, calibration={}))
        self.statusBar().showMessage("calibration reset")

    def open_profile_dialog(self) -> None:
        """Guided personal calibration; a saved profile is used from the next start (restarted now)."""
        from vrfer.app.calibration_dialog import CalibrationDialog  # built when asked for

        self.profile_dialog = CalibrationDialog(self.bridge, self)
        self.profile_dialog.profile_saved.connect(self.set_profile)
        self.profile_dialog.show()

    @property
    def profile(self) -> str | None:
        """The selected profile's file, or None."""
        return wiring.profile_file(self.settings.profile)

    def set_profile(self, profile: str | None) -> None:
        """Use a personal profile (a saved name or a path; "" or None = none), saved with the
        settings; a running pipeline restarts with it. The picker and the Personal… dialog both
        come here. One that cannot be read or fits another model is reported and none is used."""
        self._change(dataclasses.replace(self.settings, profile=wiring.profile_setting(profile or "")))
        self._redraw_profiles()
        if self._running:
            self.start()  # verifies it
        else:
            self._verify_profile()
        if self.settings.profile:
            self.statusBar().showMessage(f"personal profile: {self.settings.profile}")
        elif not profile:
            self.statusBar().showMessage("personal profile off")

    def _redraw_profiles(self) -> None:
        """List 'none' and the saved profiles (a directory listing: cheap), the chosen one selected."""
        chosen = self.settings.profile
        self.calibration_panel.show_profiles(list_profiles(), chosen, Path(chosen).name)

    def _verify_profile(self) -> None:
        """Check the chosen profile against the model before a start, so a bad one falls back to
        none instead of keeping the pipeline from starting."""
        self._problems.pop("profile", None)
        name = self.settings.profile
        if name:
            try:
                self._models.check_profile(name, self.settings.model)
            except VrferError as exc:
                self._problems["profile"] = f"personal profile not used: {exc}"
                self.statusBar().showMessage(self._problems["profile"])
                self._change(dataclasses.replace(self.settings, profile=""))
                self._redraw_profiles()
        self._show_problems()

    # -- overlay --------------------------------------------------------------------------

    def toggle_overlay(self) -> None:
        self.set_overlay_visible(not self.overlay.isVisible())

    def set_overlay_visible(self, on: bool) -> None:
        self.overlay.setVisible(on)
        self.source_panel.set_overlay(on)
        ov = self.settings.overlay
        if ov.visible != on:
            self._change(dataclasses.replace(self.settings, overlay=dataclasses.replace(ov, visible=on)))

    def _overlay_moved(self, x: int, y: int) -> None:
        self._change(dataclasses.replace(self.settings, overlay=dataclasses.replace(self.settings.overlay, x=x, y=y)))

    # -- shutdown -------------------------------------------------------------------------

    def closeEvent(self, ev: QCloseEvent) -> None:
        self._poll_timer.stop()
        if self._save_timer.isActive():
            self._save_timer.stop()
        self.save_settings()
        self.overlay.close()
        self.bridge.shutdown()
        super().closeEvent(ev)
