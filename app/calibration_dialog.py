"""Guided personal calibration: each expression in turn, countdown, live face check, skip.

The dialog records from the running pipeline through ``PipelineBridge.add_collector`` (the
collector only appends on the pipeline thread), walks through the classes on a Qt timer,
then fits and saves a profile with ``core.adapt`` and emits ``profile_saved(path)`` so the
window can restart the pipeline with it. It holds no ORT session and runs no inference.
"""
from __future__ import annotations

import time

from PyQt6.QtCore import QTimer, pyqtSignal
from PyQt6.QtWidgets import QDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout

from vrfer.core.adapt import model_fingerprint, save_profile
from vrfer.core.calibration import DEFAULT_COUNTDOWN_S, DEFAULT_RECORD_S, CalibrationSession
from vrfer.core.errors import VrferError
from vrfer.core.types import ExpressionState


class CalibrationDialog(QDialog):
    profile_saved = pyqtSignal(str)  # path of the saved profile

    def __init__(self, bridge, parent=None, *, countdown: float = DEFAULT_COUNTDOWN_S,
                 record: float = DEFAULT_RECORD_S) -> None:
        super().__init__(parent)
        self.setWindowTitle("Personal calibration")
        self.bridge = bridge
        p = bridge.pipeline
        self.classes: tuple[str, ...] = tuple(p.model.classes) if p is not None and p.model is not None else ()
        self.session = CalibrationSession(self.classes, countdown=countdown, record=record)
        self._finished = False
        self._frames: list[ExpressionState] = []  # appended on the pipeline thread, taken on the UI thread
        self._remove = bridge.add_collector(self._collect) if self.classes else None

        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Profile name:"))
        self.name_edit = QLineEdit("me")
        row.addWidget(self.name_edit, 1)
        lay.addLayout(row)
        self.prompt_view = QLabel()
        self.prompt_view.setStyleSheet("font-size: 16pt; font-weight: bold;")
        lay.addWidget(self.prompt_view)
        self.status_view = QLabel()
        lay.addWidget(self.status_view)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start_class)
        self.skip_button = QPushButton("Skip")
        self.skip_button.clicked.connect(self.skip_class)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.reject)
        for b in (self.start_button, self.skip_button, self.cancel_button):
            buttons.addWidget(b)
        lay.addLayout(buttons)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(100)
        if not self.classes:
            self._finish_with("start a source first: calibration records from the running pipeline", ok=False)
        self.tick()

    # The session's timing, settable before a run (tests shorten it).
    countdown = property(lambda self: self.session.countdown,
                         lambda self, v: setattr(self.session, "countdown", v))
    record = property(lambda self: self.session.record, lambda self, v: setattr(self.session, "record", v))

    @property
    def current(self) -> str | None:
        return self.session.current

    def _collect(self, state: ExpressionState) -> None:  # pipeline thread: an append, nothing more
        if state.frame_index >= 0:
            self._frames.append(state)

    def start_class(self) -> None:
        self.session.start(time.monotonic())
        self.tick()

    def skip_class(self) -> None:
        self.session.skip()
        self.tick()

    def tick(self) -> None:
        """Feed the frames collected since the last tick, on the UI's clock, and show the phase."""
        if self._finished:
            return
        frames, self._frames = self._frames, []
        now = time.monotonic()
        for state in frames:
            self.session.feed(state, now)
        self.session.advance(now)
        s = self.session
        if s.current is None:
            self.finish()
            return
        self.prompt_view.setText(f"{s.position}: {s.prompt()}")
        if s.phase == "prompt":
            self.status_view.setText(f"Press Start when ready, or Skip.  [{s.face_text()}]")
        else:
            self.status_view.setText(s.status(now))

    def finish(self) -> None:
        self._finished = True
        try:
            p = self.bridge.pipeline
            if p is None or p.model is None:
                raise VrferError("the pipeline stopped during calibration: start it and try again")
            name = self.name_edit.text().strip() or "me"
            profile = self.session.fit(model_fingerprint(p.model), name=name)
            path = save_profile(profile, name)
        except VrferError as exc:
            self._finish_with(f"not saved: {exc}", ok=False)
            return
        skipped = ", ".join(profile.skipped) or "none"
        self._finish_with(f"saved {path.name}: {len(profile.fitted)} expressions; general model for: {skipped}", ok=True)
        self.profile_saved.emit(str(path))

    def _finish_with(self, message: str, ok: bool) -> None:
        self._finished = True
        self.prompt_view.setText("Calibration finished" if ok else "Calibration not saved")
        self.status_view.setText(message)
        self.start_button.setEnabled(False)
        self.skip_button.setEnabled(False)
        self.cancel_button.setText("Close")
        self._stop_collecting()

    def _stop_collecting(self) -> None:
        self.timer.stop()
        if self._remove is not None:
            self._remove()
            self._remove = None

    def done(self, result: int) -> None:  # close, reject and accept all come here
        self._stop_collecting()
        super().done(result)
