"""Guided personal calibration: each expression in turn, countdown, live face check, skip.

The dialog records from the running pipeline through ``PipelineBridge.add_collector`` (the
collector only appends on the pipeline thread), walks through the classes on a Qt timer,
then fits and saves a profile with ``core.adapt`` and emits ``profile_saved(path)`` so the
window can restart the pipeline with it. It holds no ORT session and runs no inference.
"""
from __future__ import annotations

import time

import numpy as np
from PyQt6.QtCore import QTimer, pyqtSignal
from PyQt6.QtWidgets import QDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout

from vrfer.core.errors import VrferError
from vrfer.core.types import ExpressionState

PROMPTS = {
    "neutral": "a neutral, relaxed face", "happiness": "a happy face (smile)",
    "surprise": "a surprised face (mouth open)", "sadness": "a sad face (corners down)",
    "anger": "an angry face (lips pressed)", "disgust": "a disgusted face (upper lip raised)",
    "fear": "a fearful face (mouth stretched)", "contempt": "a contemptuous face (one-sided smirk)",
}
COUNTDOWN_S = 3.0
RECORD_S = 3.0
MAX_PER_CLASS = 30


class CalibrationDialog(QDialog):
    profile_saved = pyqtSignal(str)  # path of the saved profile

    def __init__(self, bridge, parent=None, *, countdown: float = COUNTDOWN_S, record: float = RECORD_S) -> None:
        super().__init__(parent)
        self.setWindowTitle("Personal calibration")
        self.bridge = bridge
        self.countdown, self.record = countdown, record
        p = bridge.pipeline
        self.classes: tuple[str, ...] = tuple(p.model.classes) if p is not None and p.model is not None else ()
        self.index = 0
        self.phase = "prompt"  # prompt -> countdown -> record -> prompt (next class) ... -> done
        self.phase_start = 0.0
        self.samples: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.latest_face = False
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

    @property
    def current(self) -> str | None:
        return self.classes[self.index] if self.index < len(self.classes) else None

    def _collect(self, state: ExpressionState) -> None:  # pipeline thread: an append, nothing more
        if state.frame_index >= 0:
            self._frames.append(state)

    def start_class(self) -> None:
        if self.phase == "prompt" and self.current is not None:
            self.phase, self.phase_start = "countdown", time.monotonic()
            self.tick()

    def skip_class(self) -> None:
        if self.current is None:
            return
        self.samples.pop(self.current, None)
        self.index += 1
        self.phase = "prompt"
        self.tick()

    def tick(self) -> None:
        frames, self._frames = self._frames, []
        if frames:
            self.latest_face = bool(frames[-1].face)
        face = "face found" if self.latest_face else "NO FACE: move into view"
        cls = self.current
        if self.phase == "done":
            return
        if cls is None:
            self.finish()
            return
        elapsed = time.monotonic() - self.phase_start
        if self.phase == "prompt":
            self.prompt_view.setText(f"{self.index + 1}/{len(self.classes)}: show {PROMPTS.get(cls, cls)}")
            self.status_view.setText(f"Press Start when ready, or Skip.  [{face}]")
        elif self.phase == "countdown":
            if elapsed >= self.countdown:
                self.phase, self.phase_start = "record", time.monotonic()
            else:
                self.status_view.setText(f"Recording in {int(np.ceil(self.countdown - elapsed))}…  [{face}]")
        if self.phase == "record":
            got = self.samples.setdefault(cls, [])
            for s in frames:
                if s.face and s.embedding is not None and s.raw_probs:
                    got.append((np.array([s.raw_probs[c] for c in self.classes]), np.asarray(s.embedding, float)))
            elapsed = time.monotonic() - self.phase_start
            self.status_view.setText(f"Recording {cls}: {elapsed:.1f}/{self.record:g} s, {len(got)} faces  [{face}]")
            if elapsed >= self.record:
                self.index += 1
                self.phase = "prompt"
                self.tick()

    def finish(self) -> None:
        from vrfer.core.adapt import fit_profile, model_fingerprint, save_profile

        self.phase = "done"
        try:
            p = self.bridge.pipeline
            if p is None or p.model is None:
                raise VrferError("the pipeline stopped during calibration: start it and try again")
            fp = model_fingerprint(p.model)
            es, ps, ys = [], [], []
            for i, c in enumerate(self.classes):
                got = self.samples.get(c, [])
                for j in np.unique(np.linspace(0, len(got) - 1, min(len(got), MAX_PER_CLASS)).round().astype(int)) if got else ():
                    ps.append(got[j][0])
                    es.append(got[j][1])
                    ys.append(i)
            name = self.name_edit.text().strip() or "me"
            profile = fit_profile(np.array(es).reshape(len(ys), fp.embedding_dim), np.array(ps).reshape(len(ys), -1),
                                  np.array(ys, dtype=int), fp, name=name)
            path = save_profile(profile, name)
        except VrferError as exc:
            self._finish_with(f"not saved: {exc}", ok=False)
            return
        skipped = ", ".join(profile.skipped) or "none"
        self._finish_with(f"saved {path.name}: {len(profile.fitted)} expressions; general model for: {skipped}", ok=True)
        self.profile_saved.emit(str(path))

    def _finish_with(self, message: str, ok: bool) -> None:
        self.phase = "done"
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
