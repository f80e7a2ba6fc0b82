"""The window's control panels: each a thin widget over one frozen settings section.

A panel shows a section with ``show(value)``, its signals blocked so a redraw never loops
back, and emits ``changed(new_value)`` when the user edits it. It holds no other state and
starts nothing: the window owns the settings and applies them (napari's layer controls).
"""
from __future__ import annotations

import dataclasses

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QInputDialog, QLabel,
    QLineEdit, QMenu, QPushButton, QSlider, QSpinBox, QVBoxLayout, QWidget,
)

from vrfer.app.settings import Avatar, MouthCamera, Smoothing
from vrfer.app.status import calibration_text, describe_source, is_camera, state_detail
from vrfer.app.widgets import ProbabilityBars, class_colour, shape_label
from vrfer.core.avatar.osc import VRCFT_BABBLE_PORT, VRCHAT_PORT
from vrfer.core.face import ROTATIONS
from vrfer.core.model import shipped_model_names
from vrfer.core.smoothing import METHODS
from vrfer.core.types import ExpressionState

CALIBRATION_TIP = (
    "Neutral capture: relax your face and press this. For 1.5 s vrfer records what the model "
    "reads from your resting face (many faces look a little sad or angry at rest, and a headset "
    "presses on the cheeks), then offsets every class's log-probability so that this resting face "
    "reads as neutral. Changes from it still move the output. Reset removes the offsets. "
    "The calibration is saved with your settings.")
PROFILE_TIP = ("A personal profile recorded with Personal… for this model; it corrects the general model "
               "for your face and camera. 'none' uses the general model.")
AVATAR_LABELS = {"off": "Off", "vrchat": f"VRChat (OSC {VRCHAT_PORT})",
                 "vrcft": f"VRCFaceTracking (Babble {VRCFT_BABBLE_PORT})"}


class _Blocked:
    """``with _Blocked(a, b):`` -- the widgets' signals stay quiet while they are redrawn."""

    def __init__(self, *widgets: QWidget) -> None:
        self.widgets = widgets

    def __enter__(self) -> None:
        for w in self.widgets:
            w.blockSignals(True)

    def __exit__(self, *exc: object) -> None:
        for w in self.widgets:
            w.blockSignals(False)


class MouthPanel(QGroupBox):
    """Mouth-camera mode: a fixed region instead of face detection."""

    changed = pyqtSignal(object)  # MouthCamera

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Mouth camera", parent)
        self.setToolTip("For a camera that sees only the mouth (e.g. mounted on the headset): no face "
                        "detection, the rectangle you drag on the preview is fed to the model as the lower face")
        self.value = MouthCamera()
        form = QFormLayout(self)
        self.enable_check = QCheckBox("use a fixed region (drag it on the preview)")
        self.enable_check.toggled.connect(lambda on: self._emit(enabled=bool(on)))
        form.addRow(self.enable_check)
        rot = QHBoxLayout()
        self.rotate_combo = QComboBox()
        for r in ROTATIONS:
            self.rotate_combo.addItem(f"{r}°", r)
        self.rotate_combo.currentIndexChanged.connect(lambda: self._emit(rotate=int(self.rotate_combo.currentData())))
        rot.addWidget(self.rotate_combo)
        self.flip_check = QCheckBox("mirror")
        self.flip_check.toggled.connect(lambda on: self._emit(flip=bool(on)))
        rot.addWidget(self.flip_check)
        rot.addStretch(1)
        form.addRow("Rotate:", rot)

    def _emit(self, **change: object) -> None:
        self.changed.emit(dataclasses.replace(self.value, **change))

    def show_value(self, mc: MouthCamera) -> None:
        self.value = mc
        with _Blocked(self.enable_check, self.rotate_combo, self.flip_check):
            self.enable_check.setChecked(mc.enabled)
            self.rotate_combo.setCurrentIndex(ROTATIONS.index(mc.rotate))
            self.flip_check.setChecked(mc.flip)
            self.rotate_combo.setEnabled(mc.enabled)
            self.flip_check.setEnabled(mc.enabled)


class CalibrationPanel(QGroupBox):
    """Neutral capture, its reset, the guided personal recording and the profile picker."""

    capture = pyqtSignal()
    reset = pyqtSignal()
    personal = pyqtSignal()
    profile_chosen = pyqtSignal(str)  # a saved name, a path, or "" for none

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Calibration", parent)
        self.setToolTip(CALIBRATION_TIP)
        rows = QVBoxLayout(self)
        row = QHBoxLayout()
        rows.addLayout(row)
        self.neutral_button = QPushButton("Capture neutral face")
        self.neutral_button.setToolTip(CALIBRATION_TIP)
        self.neutral_button.clicked.connect(self.capture)
        row.addWidget(self.neutral_button)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Remove the neutral-face offsets")
        self.reset_button.clicked.connect(self.reset)
        row.addWidget(self.reset_button)
        self.profile_button = QPushButton("Personal…")  # guided recording -> a profile
        self.profile_button.setToolTip("Record each expression in turn and fit a personal profile for this model")
        self.profile_button.clicked.connect(self.personal)
        row.addWidget(self.profile_button)
        self.cal_view = QLabel()
        self.cal_view.setToolTip(CALIBRATION_TIP)
        row.addWidget(self.cal_view, 1)
        prow = QHBoxLayout()
        prow.addWidget(QLabel("Profile:"))
        self.profile_combo = QComboBox()
        self.profile_combo.setToolTip(PROFILE_TIP)
        self.profile_combo.currentIndexChanged.connect(
            lambda i: self.profile_chosen.emit(self.profile_combo.itemData(i) or ""))
        prow.addWidget(self.profile_combo, 1)
        rows.addLayout(prow)

    def show_offsets(self, offsets: dict[str, float]) -> None:
        self.cal_view.setText(calibration_text(offsets))

    def show_profiles(self, names: list[str], chosen: str, chosen_label: str) -> None:
        """'none', the saved profiles, and the chosen one (added when it lies outside the folder)."""
        combo = self.profile_combo
        with _Blocked(combo):
            combo.clear()
            combo.addItem("none", "")
            for name in names:
                combo.addItem(name, name)
            if chosen and combo.findData(chosen) < 0:
                combo.addItem(chosen_label, chosen)
            combo.setCurrentIndex(max(0, combo.findData(chosen)))

    def set_capturing(self, on: bool) -> None:
        self.neutral_button.setEnabled(not on)
        self.neutral_button.setText("Hold a relaxed face…" if on else "Capture neutral face")


class SmoothingPanel(QGroupBox):
    """Filter, strength, the label margin and the hold."""

    changed = pyqtSignal(object)  # Smoothing

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Smoothing", parent)
        form = QFormLayout(self)
        self.method_combo = QComboBox()
        for m in METHODS:
            self.method_combo.addItem({"ema": "moving average", "one_euro": "One Euro (adaptive)"}.get(m, m), m)
        self.method_combo.currentIndexChanged.connect(self._emit)
        form.addRow("Filter:", self.method_combo)
        self.strength_slider, self.strength_view = self._slider(
            form, "Strength:", 100, "0 = raw per-frame output; higher = steadier but slower")
        self.margin_slider, self.margin_view = self._slider(
            form, "Margin:", 50, "How much a new label must beat the current one before the label changes")
        self.hold_spin = QSpinBox()
        self.hold_spin.setRange(1, 60)
        self.hold_spin.setSuffix(" frames")
        self.hold_spin.setToolTip("A new label must keep winning for this many frames in a row before it shows")
        self.hold_spin.valueChanged.connect(self._emit)
        form.addRow("Hold:", self.hold_spin)

    def _slider(self, form: QFormLayout, title: str, maximum: int, tip: str) -> tuple[QSlider, QLabel]:
        row = QHBoxLayout()
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, maximum)
        slider.setToolTip(tip)
        slider.valueChanged.connect(self._emit)
        view = QLabel()
        view.setMinimumWidth(36)
        row.addWidget(slider, 1)
        row.addWidget(view)
        form.addRow(title, row)
        return slider, view

    def _emit(self) -> None:
        self.changed.emit(Smoothing(method=str(self.method_combo.currentData()),
                                    strength=self.strength_slider.value() / 100.0,
                                    margin=self.margin_slider.value() / 100.0,
                                    min_hold_frames=int(self.hold_spin.value())))

    def show_value(self, sm: Smoothing) -> None:
        with _Blocked(self.method_combo, self.strength_slider, self.margin_slider, self.hold_spin):
            self.method_combo.setCurrentIndex(max(0, self.method_combo.findData(sm.method)))
            self.strength_slider.setValue(round(sm.strength * 100))
            self.margin_slider.setValue(round(sm.margin * 100))
            self.hold_spin.setValue(sm.min_hold_frames)
        self.strength_view.setText(f"{sm.strength:.2f}")
        self.margin_view.setText(f"{sm.margin:.2f}")


class AvatarPanel(QGroupBox):
    """Where expressions go: every option of ``vrfer run``'s avatar flags, and the sinks' status."""

    changed = pyqtSignal(object)  # Avatar

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Avatar output", parent)
        self.value = Avatar()
        form = QFormLayout(self)
        self.output_combo = QComboBox()
        for key, text in AVATAR_LABELS.items():
            self.output_combo.addItem(text, key)
        self.output_combo.setToolTip("Send expressions to VRChat directly, or to VRCFaceTracking's Babble module "
                                     "(never both: the avatar would flicker)")
        self.output_combo.currentIndexChanged.connect(self._output_changed)
        form.addRow("Send to:", self.output_combo)
        self.target_edit = QLineEdit()
        self.target_edit.setPlaceholderText("host:port")
        self.target_edit.editingFinished.connect(self._target_changed)
        form.addRow("Target:", self.target_edit)
        self.ft_check = QCheckBox("FT/v2 parameter prefix")
        self.ft_check.setToolTip("VRChat: send as /avatar/parameters/FT/v2/<Name>")
        self.ft_check.toggled.connect(lambda on: self._emit(vrchat_ft=bool(on)))
        self.listen_spin = QSpinBox()
        self.listen_spin.setRange(0, 65535)
        self.listen_spin.setSpecialValueText("off")
        self.listen_spin.setToolTip("VRChat: listen on this UDP port for /avatar/change and re-send everything "
                                    "(9001 is VRChat's output; not while VRCFaceTracking runs, which owns it)")
        self.listen_spin.editingFinished.connect(lambda: self._emit(vrchat_listen=self.listen_spin.value() or None))
        vrow = QHBoxLayout()
        vrow.addWidget(self.ft_check)
        vrow.addWidget(QLabel("listen:"))
        vrow.addWidget(self.listen_spin)
        form.addRow("VRChat:", vrow)
        self.rate_spin = QDoubleSpinBox()
        self.rate_spin.setRange(1.0, 1000.0)
        self.rate_spin.setDecimals(0)
        self.rate_spin.setSuffix(" Hz")
        self.rate_spin.setToolTip("OSC send-rate cap")
        self.rate_spin.editingFinished.connect(lambda: self._emit(rate_hz=float(self.rate_spin.value())))
        self.openxr_check = QCheckBox("OpenXR companion session and face weights")
        self.openxr_check.setToolTip("Neutral avatar while the headset is off, and XR_FB_face_tracking2 weights "
                                     "on the shared-memory channel (needs pyopenxr and an OpenXR runtime)")
        self.openxr_check.toggled.connect(lambda on: self._emit(openxr=bool(on)))
        orow = QHBoxLayout()
        orow.addWidget(self.rate_spin)
        orow.addWidget(self.openxr_check, 1)
        form.addRow("Rate:", orow)
        self.sink_view = QLabel("off")
        self.sink_view.setWordWrap(True)
        form.addRow("Status:", self.sink_view)

    def _emit(self, **change: object) -> None:
        self.changed.emit(dataclasses.replace(self.value, **change))

    def _output_changed(self) -> None:  # switching output shows that output's own target
        self._emit(output=self.output_combo.currentData())

    def _target_changed(self) -> None:
        target, output = self.target_edit.text().strip(), self.value.output
        if output != "off" and target:
            self._emit(**{"vrcft_target" if output == "vrcft" else "vrchat_target": target})

    def show_value(self, a: Avatar) -> None:
        self.value = a
        widgets = (self.output_combo, self.target_edit, self.ft_check, self.listen_spin, self.rate_spin,
                   self.openxr_check)
        with _Blocked(*widgets):
            self.output_combo.setCurrentIndex(max(0, self.output_combo.findData(a.output)))
            self.target_edit.setText(a.vrcft_target if a.output == "vrcft" else a.vrchat_target)
            self.target_edit.setEnabled(a.output != "off")
            self.ft_check.setChecked(a.vrchat_ft)
            self.listen_spin.setValue(a.vrchat_listen or 0)
            self.rate_spin.setValue(a.rate_hz)
            self.openxr_check.setChecked(a.openxr)
            self.ft_check.setEnabled(a.output == "vrchat")
            self.listen_spin.setEnabled(a.output == "vrchat")


FILE_ITEM = "__file__"
URL_ITEM = "__url__"


class SourcePanel(QWidget):
    """The top row: source picker, Start/Stop, model and overlay buttons. Dialogs open here;
    the window hears only the spec or path chosen."""

    source_chosen = pyqtSignal(str)
    start_clicked = pyqtSignal()
    model_chosen = pyqtSignal(str)
    overlay_toggled = pyqtSignal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = ""  # the source shown as selected
        self.model = ""  # where the model dialog starts
        top = QHBoxLayout(self)
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(QLabel("Source:"))
        self.source_combo = QComboBox()
        self.source_combo.setMinimumWidth(240)
        self.source_combo.setToolTip("A camera, the demo slideshow, a video file or an MJPEG/HTTP stream "
                                     "(e.g. an ESP32 mouth camera)")
        self.source_combo.activated.connect(self._activated)
        top.addWidget(self.source_combo, 1)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start_clicked)
        top.addWidget(self.start_button)
        self.model_button = QPushButton("Model…")
        self.model_button.setToolTip("A shipped model by name (realtime is the default), or any exported "
                                     "vrfer .onnx file")
        menu = QMenu(self.model_button)
        for name in shipped_model_names():
            menu.addAction(name, lambda n=name: self.model_chosen.emit(n))
        menu.addSeparator()
        menu.addAction("Other file…", self._model_clicked)
        self.model_button.setMenu(menu)
        top.addWidget(self.model_button)
        self.overlay_button = QPushButton("Overlay (Ctrl+O)")
        self.overlay_button.setCheckable(True)
        self.overlay_button.setToolTip("A compact always-on-top window with the label and bars, for streaming")
        self.overlay_button.toggled.connect(self.overlay_toggled)
        top.addWidget(self.overlay_button)

    @property
    def chosen(self) -> str | None:
        """The source the picker shows, None while it shows a file or URL entry."""
        data = self.source_combo.currentData()
        return None if data in (None, FILE_ITEM, URL_ITEM) else data

    def select(self, spec: str) -> None:
        """Show ``spec`` as the chosen source, adding it to the list when it is new."""
        self.spec = spec
        combo = self.source_combo
        with _Blocked(combo):
            if combo.findData(FILE_ITEM) < 0:
                combo.addItem(describe_source("demo"), "demo")
                combo.addItem("Video file…", FILE_ITEM)
                combo.addItem("Stream URL (MJPEG/HTTP)…", URL_ITEM)
            i = combo.findData(spec)
            if i < 0:
                at = combo.findData(FILE_ITEM) if not is_camera(spec) else 0
                combo.insertItem(at, describe_source(spec), spec)
                i = combo.findData(spec)
            if combo.itemData(i) not in (FILE_ITEM, URL_ITEM):
                combo.setCurrentIndex(i)

    def show_cameras(self, cameras: list) -> None:
        """Name the cameras found (``core.sources.CameraInfo``); camera 0 stays listed when none is."""
        combo = self.source_combo
        with _Blocked(combo):
            for cam in cameras:
                spec = str(cam.index)
                i = combo.findData(spec)
                text = f"Camera {cam.index}: {cam.name} ({cam.width}x{cam.height})"
                if i < 0:
                    combo.insertItem(cameras.index(cam), text, spec)
                else:
                    combo.setItemText(i, text)
            if not cameras:
                if combo.findData("0") < 0:
                    combo.insertItem(0, "", "0")
                combo.setItemText(combo.findData("0"), "Camera 0 (none detected)")
        self.select(self.spec)

    def set_running(self, running: bool) -> None:
        self.start_button.setText("Stop" if running else "Start")

    def set_overlay(self, on: bool) -> None:
        with _Blocked(self.overlay_button):
            self.overlay_button.setChecked(on)

    def _activated(self, index: int) -> None:
        spec = self.source_combo.itemData(index)
        if spec == FILE_ITEM:
            path, _ = QFileDialog.getOpenFileName(self, "Open a video or image", "",
                                                  "Videos and images (*.mp4 *.avi *.mkv *.mov *.webm *.png *.jpg);;All files (*)")
            spec = path or None
        elif spec == URL_ITEM:
            url, ok = QInputDialog.getText(self, "Stream URL", "MJPEG/HTTP URL (e.g. http://192.168.1.50:81/stream):")
            spec = url.strip() if ok and url.strip() else None
        if spec is None:
            self.select(self.spec)  # back to the current source
            return
        self.source_chosen.emit(spec)

    def _model_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a vrfer model", self.model,
                                              "ONNX models (*.onnx);;All files (*)")
        if path:
            self.model_chosen.emit(path)


class ResultPanel(QWidget):
    """The label, what the face path and the demo say, the probability bars and the rates."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        side = QVBoxLayout(self)
        side.setContentsMargins(0, 0, 0, 0)
        self.label_view = QLabel("—")
        self.label_view.setStyleSheet("font-size: 22pt; font-weight: bold;")
        side.addWidget(self.label_view)
        self.detail_view = QLabel(" ")
        self.detail_view.setWordWrap(True)
        side.addWidget(self.detail_view)
        self.bars = ProbabilityBars()
        side.addWidget(self.bars)
        # Second bar group: the model's continuous mouth shapes, or one line saying there are none.
        self.shape_bars = ProbabilityBars(compact=True, on_dark=False)
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

    def show_state(self, state: ExpressionState) -> None:
        if state.label is not None:
            self.label_view.setText(f"{state.label}  {state.confidence * 100:.0f}%")
            colour = class_colour(state.label).name()
        else:
            self.label_view.setText("no face")
            colour = "#8b949e"
        self.label_view.setStyleSheet(f"font-size: 22pt; font-weight: bold; color: {colour};")
        self.detail_view.setText(state_detail(state))
        self.bars.set_probs(state.probs, state.label)
        if state.shapes:
            self.shape_bars.set_probs({shape_label(n): v for n, v in state.shapes.items()}, None)

    def set_shapes(self, shapes: tuple[str, ...]) -> None:
        """The model's mouth shapes (a bar each), or the one-line note that it has none."""
        self.shape_bars.set_classes([shape_label(n) for n in shapes])
        self.shape_bars.setVisible(bool(shapes))
        self.shapes_note.setText("" if shapes else "mouth shapes are not available with this model: "
                                 "the avatar's mouth follows the expression tables")
        self.shapes_note.setVisible(not shapes)
