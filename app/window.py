"""The main window: source picker, live preview, label and bars, and the runtime controls.

Settings flow one way: a control changes ``self.settings`` (a frozen value) through
``_change``, which saves it (debounced) and pushes the runtime part to the bridge. Controls
are redrawn from the settings with their signals blocked, so a redraw never loops back.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QInputDialog, QLabel,
    QLineEdit, QMainWindow, QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget,
)

from vrfer.app import calibration
from vrfer.app.bridge import PipelineBridge
from vrfer.app.settings import Loaded, Settings, load_settings, save_settings
from vrfer.app.widgets import OverlayWindow, PreviewWidget, ProbabilityBars, class_colour, shape_label
from vrfer.core.errors import VrferError
from vrfer.core.face import FaceConfig, ROTATIONS
from vrfer.core.pipeline import PipelineConfig
from vrfer.core.smoothing import METHODS, SmoothingConfig
from vrfer.core.types import ExpressionState

log = logging.getLogger("vrfer.app")

FILE_ITEM = "__file__"
URL_ITEM = "__url__"
POLL_MS = 250
LATENCY_EMA = 0.1  # per displayed state: a readable, steady latency figure
FRAME_ERROR_HOLD_S = 2.0
CALIBRATION_TIP = (
    "Neutral capture: relax your face and press this. For 1.5 s vrfer records what the model "
    "reads from your resting face (many faces look a little sad or angry at rest, and a headset "
    "presses on the cheeks), then offsets every class's log-probability so that this resting face "
    "reads as neutral. Changes from it still move the output. Reset removes the offsets. "
    "The calibration is saved with your settings.")
PROFILE_TIP = ("A personal profile recorded with Personal… for this model; it corrects the general model "
               "for your face and camera. 'none' uses the general model.")
AVATAR_LABELS = {"off": "Off", "vrchat": "VRChat (OSC 9000)", "vrcft": "VRCFaceTracking (Babble 8888)"}


def _is_camera(spec: str) -> bool:
    return bool(re.fullmatch(r"\d+|/dev/video\d+", spec.strip()))


def describe_source(spec: str) -> str:
    if spec == "demo":
        return "Demo (FER+ faces)"
    if _is_camera(spec):
        return f"Camera {re.sub(r'[^0-9]', '', spec)}"
    if re.match(r"https?://", spec, re.IGNORECASE):
        return f"Stream {spec}"
    return f"File {Path(spec).name}"


def _profile_setting(profile: str) -> str:
    """A profile file in the profiles folder is stored by name (what the picker lists), others by path."""
    from vrfer.core.adapt import profile_path

    if not profile:
        return ""
    path = Path(profile)
    try:
        if path.stem != profile and profile_path(path.stem).resolve() == path.resolve():
            return path.stem
    except VrferError:  # a file name that is not a valid profile name: keep the path
        pass
    return profile


def _check_profile(profile: str, model: tuple[Path, str] | None) -> None:
    """ConfigError for a profile that cannot be read, ModelError for one fitted on another model file."""
    from vrfer.core.adapt import ModelFingerprint, check_profile, load_profile

    prof = load_profile(profile)
    if model is not None:
        path, sha = model
        # Same sha256, same file, so same classes and embedding: the core check's message with this file.
        check_profile(prof, ModelFingerprint(sha, prof.model.classes, prof.model.embedding_dim, path.stem), path)


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
        self._latency: dict[str, float] = {}
        self._fps = 0.0
        self._poll_frames = (0, time.perf_counter())
        self._frame_errors = (0, 0.0)  # count seen, when it last grew
        self._running = False
        self._capture_stop = None
        self._classes: tuple[str, ...] = ()
        self._offered_source: str | None = None  # shown in the picker after the saved one failed
        self._model_sha: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256, for profile checks

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

        top = QHBoxLayout()
        top.addWidget(QLabel("Source:"))
        self.source_combo = QComboBox()
        self.source_combo.setMinimumWidth(240)
        self.source_combo.setToolTip("A camera, the demo slideshow, a video file or an MJPEG/HTTP stream "
                                     "(e.g. an ESP32 mouth camera)")
        self.source_combo.activated.connect(self._source_activated)
        top.addWidget(self.source_combo, 1)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self._start_clicked)
        top.addWidget(self.start_button)
        self.model_button = QPushButton("Model…")
        self.model_button.setToolTip("Choose an exported vrfer .onnx model (default: the shipped student)")
        self.model_button.clicked.connect(self._model_clicked)
        top.addWidget(self.model_button)
        self.overlay_button = QPushButton("Overlay (Ctrl+O)")
        self.overlay_button.setCheckable(True)
        self.overlay_button.setToolTip("A compact always-on-top window with the label and bars, for streaming")
        self.overlay_button.toggled.connect(self.set_overlay_visible)
        top.addWidget(self.overlay_button)
        outer.addLayout(top)
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
        self.label_view = QLabel("—")
        self.label_view.setStyleSheet("font-size: 22pt; font-weight: bold;")
        side.addWidget(self.label_view)
        self.detail_view = QLabel(" ")
        self.detail_view.setWordWrap(True)
        side.addWidget(self.detail_view)
        self.bars = ProbabilityBars()
        side.addWidget(self.bars)
        # Second bar group: the model's continuous mouth shapes, or one line saying there are none.
        self.shape_bars = ProbabilityBars(compact=True)
        self.shape_bars.setToolTip("Mouth and jaw shapes the model reads directly (0..1), sent to the avatar")
        self.shape_bars.setVisible(False)
        side.addWidget(self.shape_bars)
        self.shapes_note = QLabel("")
        self.shapes_note.setVisible(False)
        side.addWidget(self.shapes_note)
        self.stats_view = QLabel("fps —")
        self.stats_view.setWordWrap(True)
        self.stats_view.setToolTip("Frames per second processed, frames dropped because inference was busy, "
                                   "and per-stage latency in ms; total runs from capture to result")
        side.addWidget(self.stats_view)

        mouth = QGroupBox("Mouth camera")
        mouth.setToolTip("For a camera that sees only the mouth (e.g. mounted on the headset): no face "
                         "detection, the rectangle you drag on the preview is fed to the model as the lower face")
        form = QFormLayout(mouth)
        self.mouth_check = QCheckBox("use a fixed region (drag it on the preview)")
        self.mouth_check.toggled.connect(self._mouth_toggled)
        form.addRow(self.mouth_check)
        rot = QHBoxLayout()
        self.rotate_combo = QComboBox()
        for r in ROTATIONS:
            self.rotate_combo.addItem(f"{r}°", r)
        self.rotate_combo.currentIndexChanged.connect(self._rotate_changed)
        rot.addWidget(self.rotate_combo)
        self.flip_check = QCheckBox("mirror")
        self.flip_check.toggled.connect(self._flip_changed)
        rot.addWidget(self.flip_check)
        rot.addStretch(1)
        form.addRow("Rotate:", rot)
        side.addWidget(mouth)

        cal = QGroupBox("Calibration")
        cal.setToolTip(CALIBRATION_TIP)
        cal_rows = QVBoxLayout(cal)
        row = QHBoxLayout()
        cal_rows.addLayout(row)
        self.neutral_button = QPushButton("Capture neutral face")
        self.neutral_button.setToolTip(CALIBRATION_TIP)
        self.neutral_button.clicked.connect(self.capture_neutral)
        row.addWidget(self.neutral_button)
        self.reset_cal_button = QPushButton("Reset")
        self.reset_cal_button.setToolTip("Remove the neutral-face offsets")
        self.reset_cal_button.clicked.connect(self.reset_calibration)
        row.addWidget(self.reset_cal_button)
        self.profile_button = QPushButton("Personal…")  # issue 8: guided recording -> a profile
        self.profile_button.setToolTip("Record each expression in turn and fit a personal profile for this model")
        self.profile_button.clicked.connect(self.open_profile_dialog)
        row.addWidget(self.profile_button)
        self.cal_view = QLabel()
        self.cal_view.setToolTip(CALIBRATION_TIP)
        row.addWidget(self.cal_view, 1)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("Profile:"))
        self.profile_combo = QComboBox()
        self.profile_combo.setToolTip(PROFILE_TIP)
        self.profile_combo.currentIndexChanged.connect(self._profile_chosen)
        prow.addWidget(self.profile_combo, 1)
        cal_rows.addLayout(prow)
        side.addWidget(cal)

        smooth = QGroupBox("Smoothing")
        sform = QFormLayout(smooth)
        self.method_combo = QComboBox()
        for m in METHODS:
            self.method_combo.addItem({"ema": "moving average", "one_euro": "One Euro (adaptive)"}.get(m, m), m)
        self.method_combo.currentIndexChanged.connect(self._smoothing_changed)
        sform.addRow("Filter:", self.method_combo)
        self.strength_slider, self.strength_view = self._slider(sform, "Strength:", 100,
                                                                "0 = raw per-frame output; higher = steadier but slower")
        self.hysteresis_slider, self.hysteresis_view = self._slider(
            sform, "Hysteresis:", 50, "How much a new label must beat the current one before the label changes")
        self.hold_spin = QSpinBox()
        self.hold_spin.setRange(1, 60)
        self.hold_spin.setSuffix(" frames")
        self.hold_spin.setToolTip("A new label must keep winning for this many frames in a row before it shows")
        self.hold_spin.valueChanged.connect(self._smoothing_changed)
        sform.addRow("Hold:", self.hold_spin)
        side.addWidget(smooth)

        avatar = QGroupBox("Avatar output")
        aform = QFormLayout(avatar)
        self.avatar_combo = QComboBox()
        for key, text in AVATAR_LABELS.items():
            self.avatar_combo.addItem(text, key)
        self.avatar_combo.setToolTip("Send expressions to VRChat directly, or to VRCFaceTracking's Babble module "
                                     "(never both: the avatar would flicker)")
        self.avatar_combo.currentIndexChanged.connect(self._avatar_changed)
        aform.addRow("Send to:", self.avatar_combo)
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("host:port")
        self.target_edit.editingFinished.connect(self._avatar_changed)
        aform.addRow("Target:", self.target_edit)
        self.sink_view = QLabel("off")
        self.sink_view.setWordWrap(True)
        aform.addRow("Status:", self.sink_view)
        side.addWidget(avatar)
        side.addStretch(1)
        self.resize(1180, 760)

    def _slider(self, form: QFormLayout, title: str, maximum: int, tip: str) -> tuple[QSlider, QLabel]:
        row = QHBoxLayout()
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, maximum)
        slider.setToolTip(tip)
        slider.valueChanged.connect(self._smoothing_changed)
        view = QLabel()
        view.setMinimumWidth(36)
        row.addWidget(slider, 1)
        row.addWidget(view)
        form.addRow(title, row)
        return slider, view

    def _redraw_controls(self) -> None:
        """Show ``self.settings`` in the controls without their signals firing."""
        s = self.settings
        widgets = (self.source_combo, self.mouth_check, self.rotate_combo, self.flip_check, self.method_combo,
                   self.strength_slider, self.hysteresis_slider, self.hold_spin, self.avatar_combo, self.target_edit)
        for w in widgets:
            w.blockSignals(True)
        try:
            self._select_source_item(self._offered_source or s.source)
            self.mouth_check.setChecked(s.mouth_camera.enabled)
            self.rotate_combo.setCurrentIndex(ROTATIONS.index(s.mouth_camera.rotate))
            self.flip_check.setChecked(s.mouth_camera.flip)
            self.rotate_combo.setEnabled(s.mouth_camera.enabled)
            self.flip_check.setEnabled(s.mouth_camera.enabled)
            self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(s.smoothing.method)))
            self.strength_slider.setValue(round(s.smoothing.strength * 100))
            self.hysteresis_slider.setValue(round(s.smoothing.hysteresis * 100))
            self.hold_spin.setValue(s.smoothing.min_hold_frames)
            self.avatar_combo.setCurrentIndex(max(0, self.avatar_combo.findData(s.avatar.output)))
            self.target_edit.setText(self._avatar_target())
            self.target_edit.setEnabled(s.avatar.output != "off")
        finally:
            for w in widgets:
                w.blockSignals(False)
        self.strength_view.setText(f"{s.smoothing.strength:.2f}")
        self.hysteresis_view.setText(f"{s.smoothing.hysteresis:.2f}")
        self.preview.roi_editing = s.mouth_camera.enabled
        self.preview.roi = s.mouth_camera.roi
        self.preview.update()
        cal = s.calibration
        if cal:
            top = sorted(cal.items(), key=lambda kv: -abs(kv[1]))[:2]
            self.cal_view.setText("calibrated: " + ", ".join(f"{k} {v:+.1f}" for k, v in top))
        else:
            self.cal_view.setText("not calibrated")

    # -- settings -------------------------------------------------------------------------

    def _change(self, settings: Settings) -> None:
        """The one way settings change: store, push what the pipeline uses, save soon."""
        old, self.settings = self.settings, settings
        self._redraw_controls()
        cfg = self._runtime_config()
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

    def _face_config(self) -> FaceConfig:
        mc = self.settings.mouth_camera
        if mc.enabled and mc.roi is not None:
            return FaceConfig(mode="roi", roi=mc.roi, rotate=mc.rotate, flip=mc.flip)
        return FaceConfig()

    def _runtime_config(self) -> dict[str, object]:
        sm = self.settings.smoothing
        return {
            "face": self._face_config(),
            "smoothing": SmoothingConfig(method=sm.method, strength=sm.strength, margin=sm.hysteresis,
                                         min_hold_frames=sm.min_hold_frames),
            "calibration": dict(self.settings.calibration) or None,
        }

    # -- source and start/stop ------------------------------------------------------------

    def _select_source_item(self, spec: str) -> None:
        combo = self.source_combo
        specials = (FILE_ITEM, URL_ITEM)
        if combo.findData(FILE_ITEM) < 0:
            combo.addItem(describe_source("demo"), "demo")
            combo.addItem("Video file…", FILE_ITEM)
            combo.addItem("Stream URL (MJPEG/HTTP)…", URL_ITEM)
        i = combo.findData(spec)
        if i < 0:
            at = combo.findData(FILE_ITEM) if not _is_camera(spec) else 0
            combo.insertItem(at, describe_source(spec), spec)
            i = combo.findData(spec)
        if combo.itemData(i) not in specials:
            combo.setCurrentIndex(i)

    def _on_cameras(self, cameras: list) -> None:
        combo = self.source_combo
        combo.blockSignals(True)
        try:
            for cam in cameras:
                spec = str(cam.index)
                i = combo.findData(spec)
                text = f"Camera {cam.index}: {cam.name} ({cam.width}x{cam.height})"
                if i < 0:
                    combo.insertItem(0 if not cameras else cameras.index(cam), text, spec)
                else:
                    combo.setItemText(i, text)
            if not cameras:
                if combo.findData("0") < 0:
                    combo.insertItem(0, "", "0")
                combo.setItemText(combo.findData("0"), "Camera 0 (none detected)")
            self._select_source_item(self._offered_source or self.settings.source)
        finally:
            combo.blockSignals(False)

    def _source_activated(self, index: int) -> None:
        spec = self.source_combo.itemData(index)
        if spec == FILE_ITEM:
            path, _ = QFileDialog.getOpenFileName(self, "Open a video or image", "",
                                                  "Videos and images (*.mp4 *.avi *.mkv *.mov *.webm *.png *.jpg);;All files (*)")
            spec = path or None
        elif spec == URL_ITEM:
            url, ok = QInputDialog.getText(self, "Stream URL", "MJPEG/HTTP URL (e.g. http://192.168.1.50:81/stream):")
            spec = url.strip() if ok and url.strip() else None
        if spec is None:
            self._redraw_controls()  # back to the current source
            return
        self.set_source(spec)

    def set_source(self, spec: str) -> None:
        """Choose a source; a running pipeline restarts on it at once."""
        self._offered_source = None
        self._change(dataclasses.replace(self.settings, source=spec))
        if self._running:
            self.start()

    def _model_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a vrfer model", self.settings.model or "",
                                              "ONNX models (*.onnx);;All files (*)")
        if path:
            self.set_model(path)

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
        chosen = self.source_combo.currentData()
        if chosen not in (None, FILE_ITEM, URL_ITEM) and chosen != self.settings.source:
            self._change(dataclasses.replace(self.settings, source=chosen))
        self._verify_profile()  # may fall back to no profile, so read the settings after it
        s = self.settings
        cfg = PipelineConfig(source=s.source, realtime=self._realtime, model=s.model or None,
                             profile=self.profile, **self._runtime_config())
        self._running = True
        self.displayed = 0
        self.start_button.setText("Stop")
        for key in ("start", "ended", "error", "frames"):
            self._problems.pop(key, None)
        self._show_problems()
        self.preview.clear(f"Starting {describe_source(s.source)}…")
        self.statusBar().showMessage(f"starting {describe_source(s.source)}…")
        self.bridge.start(cfg)

    def stop(self) -> None:
        self._running = False
        self.start_button.setText("Start")
        self.bridge.stop()

    def _on_started(self, spec: str) -> None:
        p = self.bridge.pipeline
        if p is not None and p.model is not None:
            self._classes = p.model.classes
            self.bars.set_classes(self._classes)
            shapes = p.model.shapes
            self.shape_bars.set_classes([shape_label(n) for n in shapes])
            self.shape_bars.setVisible(bool(shapes))
            self.shapes_note.setText("" if shapes else "mouth shapes are not available with this model: "
                                     "the avatar's mouth follows the expression tables")
            self.shapes_note.setVisible(not shapes)
            self.statusBar().showMessage(f"running on {describe_source(spec)} with model {p.model.info.name}")

    def _on_start_failed(self, spec: str, message: str) -> None:
        self._running = False
        self.start_button.setText("Start")
        if _is_camera(spec) and "camera" in message:
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
            self.start_button.setText("Start")
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
        if state.label is not None:
            self.label_view.setText(f"{state.label}  {state.confidence * 100:.0f}%")
            self.label_view.setStyleSheet(f"font-size: 22pt; font-weight: bold; color: {class_colour(state.label).name()};")
        else:
            self.label_view.setText("no face")
            self.label_view.setStyleSheet("font-size: 22pt; font-weight: bold; color: #8b949e;")
        detail = []
        if state.message:
            detail.append(state.message)
        if state.truth:
            detail.append(f"demo truth: {state.truth}")
        if state.geometry is not None:
            g = state.geometry
            detail.append(f"face via {g.path}" + (f", yaw {g.yaw:+.0f}° pitch {g.pitch:+.0f}°" if g.path != "roi" else ""))
        self.detail_view.setText(" · ".join(detail) or " ")
        self.bars.set_probs(state.probs, state.label)
        if state.shapes:
            self.shape_bars.set_probs({shape_label(n): v for n, v in state.shapes.items()}, None)
        if self.overlay.isVisible():
            self.overlay.set_state(state)
        for k, v in state.timings_ms.items():
            old = self._latency.get(k)
            self._latency[k] = v if old is None else old + LATENCY_EMA * (v - old)
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
        if p is not None and self._running:
            stats = p.stats
            order = ("locate", "preprocess", "model", "smooth", "total")
            lat = " · ".join(f"{k} {self._latency[k]:.1f}" for k in order if k in self._latency)
            self.stats_view.setText(f"{self._fps:.1f} fps · {stats.processed} frames · {stats.dropped} dropped\n"
                                    f"latency ms: {lat or '—'}")
            seen, since = self._frame_errors
            if stats.errors > seen:
                self._frame_errors = (stats.errors, now)
                self._problems["frames"] = f"{stats.errors} frames failed; last: {stats.last_error}"
                self._show_problems()
            elif "frames" in self._problems and now - since > FRAME_ERROR_HOLD_S:
                del self._problems["frames"]
                self._show_problems()
        elif not self._running:
            self.stats_view.setText("not running")
        self._poll_sinks()

    # -- avatar sinks ---------------------------------------------------------------------

    def _avatar_target(self) -> str:
        a = self.settings.avatar
        return a.vrcft_target if a.output == "vrcft" else a.vrchat_target

    def _avatar_changed(self) -> None:
        output = self.avatar_combo.currentData()
        a = self.settings.avatar
        target = self.target_edit.text().strip()
        if self.sender() is self.avatar_combo:  # switching output shows that output's own target
            target = a.vrcft_target if output == "vrcft" else a.vrchat_target
        key = "vrcft_target" if output == "vrcft" else "vrchat_target"
        new = dataclasses.replace(a, output=output, **({key: target} if output != "off" and target else {}))
        self._change(dataclasses.replace(self.settings, avatar=new))

    def _apply_avatar(self) -> None:
        a = self.settings.avatar
        if a.output == "off":
            self.bridge.set_sinks([])
            return
        from vrfer.core.avatar.osc import VRCFT_BABBLE_PORT, VRCHAT_PORT, VRCFTSink, VRChatSink, parse_target

        try:
            if a.output == "vrchat":
                host, port = parse_target(a.vrchat_target, VRCHAT_PORT)
                factory = lambda: VRChatSink(host, port)  # noqa: E731
            else:
                host, port = parse_target(a.vrcft_target, VRCFT_BABBLE_PORT)
                factory = lambda: VRCFTSink(host, port)  # noqa: E731
        except VrferError as exc:
            self._on_error(str(exc))
            return
        self._problems.pop("error", None)
        self.bridge.set_sinks([factory])

    def _poll_sinks(self) -> None:
        statuses = self.bridge.sink_statuses()
        if not statuses:
            self.sink_view.setText("off" if self.settings.avatar.output == "off" else "starting…")
            bad = False
        else:
            lines, bad = [], False
            for st in statuses:
                state = "on" if st.enabled else "off"
                line = f"{st.name} → {st.target}: {state}, {st.messages_per_s:.0f} msg/s"
                if st.away:
                    line += " (away pose)"
                if st.last_error:
                    line += f" — {st.last_error}"
                    self._problems["sink"] = f"avatar output {st.name}: {st.last_error}"
                    bad = True
                lines.append(line)
            self.sink_view.setText("\n".join(lines))
        if not bad and self._problems.pop("sink", None) is not None:
            self._show_problems()
        elif bad:
            self._show_problems()

    # -- mouth camera ---------------------------------------------------------------------

    def _mouth_toggled(self, on: bool) -> None:
        mc = self.settings.mouth_camera
        roi = mc.roi
        if on and roi is None and self.preview.frame_size is not None:
            w, h = self.preview.frame_size
            roi = (0, 0, w, h)  # a mouth camera mostly sees the mouth: start from the whole frame
        self._change(dataclasses.replace(self.settings, mouth_camera=dataclasses.replace(mc, enabled=on, roi=roi)))
        if on and roi is None:
            self.statusBar().showMessage("drag a rectangle around the mouth on the preview")

    def _roi_drawn(self, roi: tuple[int, int, int, int]) -> None:
        mc = self.settings.mouth_camera
        self._change(dataclasses.replace(self.settings, mouth_camera=dataclasses.replace(mc, roi=tuple(roi))))
        self.statusBar().showMessage(f"mouth region set to x={roi[0]} y={roi[1]} {roi[2]}x{roi[3]} px")

    def _rotate_changed(self) -> None:
        mc = self.settings.mouth_camera
        self._change(dataclasses.replace(self.settings, mouth_camera=dataclasses.replace(
            mc, rotate=int(self.rotate_combo.currentData()))))

    def _flip_changed(self, on: bool) -> None:
        mc = self.settings.mouth_camera
        self._change(dataclasses.replace(self.settings, mouth_camera=dataclasses.replace(mc, flip=bool(on))))

    # -- smoothing ------------------------------------------------------------------------

    def _smoothing_changed(self) -> None:
        sm = dataclasses.replace(self.settings.smoothing, method=str(self.method_combo.currentData()),
                                 strength=self.strength_slider.value() / 100.0,
                                 hysteresis=self.hysteresis_slider.value() / 100.0,
                                 min_hold_frames=int(self.hold_spin.value()))
        self._change(dataclasses.replace(self.settings, smoothing=sm))

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
        self.neutral_button.setEnabled(False)
        self.neutral_button.setText("Hold a relaxed face…")
        QTimer.singleShot(round(calibration.CAPTURE_SECONDS * 1000), lambda: self._finish_capture(samples, classes))

    def _finish_capture(self, samples: list[dict[str, float]], classes: tuple[str, ...]) -> None:
        if self._capture_stop is not None:
            self._capture_stop()
            self._capture_stop = None
        self.neutral_button.setEnabled(True)
        self.neutral_button.setText("Capture neutral face")
        try:
            offsets = calibration.neutral_offsets(list(samples), classes)
        except VrferError as exc:
            self._on_error(str(exc))
            return
        self._problems.pop("error", None)
        self._show_problems()
        self._change(dataclasses.replace(self.settings, calibration=offsets))
        self.statusBar().showMessage(f"neutral face captured from {len(samples)} frames")

    def open_profile_dialog(self) -> None:
        """Guided personal calibration; a saved profile is used from the next start (restarted now)."""
        from vrfer.app.calibration_dialog import CalibrationDialog

        self.profile_dialog = CalibrationDialog(self.bridge, self)
        self.profile_dialog.profile_saved.connect(self.set_profile)
        self.profile_dialog.show()

    @property
    def profile(self) -> str | None:
        """The selected profile's file, or None."""
        from vrfer.core.adapt import profile_path

        try:
            return str(profile_path(self.settings.profile)) if self.settings.profile else None
        except VrferError:
            return None

    def set_profile(self, profile: str | None) -> None:
        """Use a personal profile (a saved name or a path; "" or None = none), saved with the
        settings; a running pipeline restarts with it. The picker and the Personal… dialog both
        come here. One that cannot be read or fits another model is reported and none is used."""
        self._change(dataclasses.replace(self.settings, profile=_profile_setting(profile or "")))
        self._redraw_profiles()
        if self._running:
            self.start()  # verifies it
        else:
            self._verify_profile()
        if self.settings.profile:
            self.statusBar().showMessage(f"personal profile: {self.settings.profile}")
        elif not profile:
            self.statusBar().showMessage("personal profile off")

    def _profile_chosen(self, index: int) -> None:
        self.set_profile(self.profile_combo.itemData(index))

    def _redraw_profiles(self) -> None:
        """List 'none' and the saved profiles (a directory listing: cheap), the chosen one selected."""
        from vrfer.core.adapt import list_profiles

        combo, chosen = self.profile_combo, self.settings.profile
        combo.blockSignals(True)
        try:
            combo.clear()
            combo.addItem("none", "")
            for name in list_profiles():
                combo.addItem(name, name)
            if chosen and combo.findData(chosen) < 0:  # a profile given by path, outside the folder
                combo.addItem(Path(chosen).name, chosen)
            combo.setCurrentIndex(max(0, combo.findData(chosen)))
        finally:
            combo.blockSignals(False)

    def _verify_profile(self) -> None:
        """Check the chosen profile against the model before a start, so a bad one falls back to
        none instead of keeping the pipeline from starting. Reads the profile JSON and the model
        file's sha256 (cached per file); the pipeline's own load_profile still checks it in full."""
        self._problems.pop("profile", None)
        name = self.settings.profile
        if name:
            try:
                _check_profile(name, self._model_file_sha())
            except VrferError as exc:
                self._problems["profile"] = f"personal profile not used: {exc}"
                self.statusBar().showMessage(self._problems["profile"])
                self._change(dataclasses.replace(self.settings, profile=""))
                self._redraw_profiles()
        self._show_problems()

    def _model_file_sha(self) -> tuple[Path, str] | None:
        """The model file the next start loads and its sha256; None when it is missing (the start
        reports that itself)."""
        from vrfer.core.adapt import file_sha256
        from vrfer.core.model import default_model_path

        try:
            path = Path(self.settings.model) if self.settings.model else default_model_path()
            st = path.stat()
            key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
            if key not in self._model_sha:
                self._model_sha[key] = file_sha256(path)
        except (VrferError, OSError):
            return None
        return path, self._model_sha[key]

    def reset_calibration(self) -> None:
        self._change(dataclasses.replace(self.settings, calibration={}))
        self.statusBar().showMessage("calibration reset")

    # -- overlay --------------------------------------------------------------------------

    def toggle_overlay(self) -> None:
        self.set_overlay_visible(not self.overlay.isVisible())

    def set_overlay_visible(self, on: bool) -> None:
        self.overlay.setVisible(on)
        self.overlay_button.blockSignals(True)
        self.overlay_button.setChecked(on)
        self.overlay_button.blockSignals(False)
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

