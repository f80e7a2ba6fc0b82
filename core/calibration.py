"""Calibration, Qt-free: the neutral-face offsets and the guided personal recording.

Both front ends only present what this module decides. ``vrfer calibrate`` feeds it states
from a terminal loop, the app's dialog from a Qt timer; the prompts, the phases, their
timing, which frames are kept and the fit are the same.

**Neutral offsets.** People's resting faces differ (and a headset presses on cheeks
differently), so the model may read someone's relaxed face as, say, 40% sadness. A short
capture averages the model's raw output over the user's neutral face (geometric mean,
matching the log-space correction), then picks offsets that map that average onto a target
in which ``neutral`` holds ``NEUTRAL_TARGET`` and the other classes share the rest. The
pipeline adds the offsets to each frame's log-probabilities (``apply_bias``) before
smoothing, so any *change* from the resting face still moves the output.

**Personal recording.** ``CalibrationSession`` walks the classes: prompt, countdown,
recording, next. Time is whatever clock the caller passes (capture time, a file's frame
index over its fps, or the UI's clock). Only frames with a face and an embedding are kept,
at most ``max_per_class`` per class, evenly spaced, since consecutive camera frames are
nearly the same picture. ``fit`` turns them into a ``core.adapt`` profile.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vrfer.core.adapt import DEFAULT_L2, ModelFingerprint, Profile, fit_profile
from vrfer.core.errors import VrferError
from vrfer.core.types import ExpressionState

NEUTRAL_TARGET = 0.6  # what the resting face should read as: clearly neutral, not saturated
OFFSET_LIMIT = 4.0  # nats; one extreme capture must not silence a class for good
MIN_FRAMES = 5
CAPTURE_SECONDS = 1.5
EPS = 1e-6

PROMPTS = {
    "neutral": "a neutral, relaxed face",
    "happiness": "a happy face (smile)",
    "surprise": "a surprised face (mouth open)",
    "sadness": "a sad face (corners down)",
    "anger": "an angry face (lips pressed)",
    "disgust": "a disgusted face (upper lip raised)",
    "fear": "a fearful face (mouth stretched)",
    "contempt": "a contemptuous face (one-sided smirk)",
}
DEFAULT_COUNTDOWN_S = 3.0
DEFAULT_RECORD_S = 3.0
DEFAULT_MAX_PER_CLASS = 30

Phase = Literal["prompt", "armed", "countdown", "record", "done"]


# --- neutral offsets -------------------------------------------------------------------------

def neutral_offsets(samples: Sequence[Mapping[str, float]], classes: Sequence[str],
                    neutral: str = "neutral", target: float = NEUTRAL_TARGET,
                    limit: float = OFFSET_LIMIT) -> dict[str, float]:
    """Offsets (class -> nats, mean 0) that turn the samples' average into the target.

    ``samples`` are raw (uncalibrated) probabilities from frames with a face. Without a class
    named ``neutral`` the target is uniform: the capture then only removes the user's bias.
    """
    if len(samples) < MIN_FRAMES:
        raise VrferError(f"neutral capture saw a face in only {len(samples)} frames (needs {MIN_FRAMES}): "
                         "face the camera with a relaxed face and try again")
    logp = np.log(np.maximum(np.array([[s.get(c, 0.0) for c in classes] for s in samples], np.float64), EPS))
    mean = logp.mean(axis=0)
    mean -= np.log(np.exp(mean - mean.max()).sum()) + mean.max()  # log of the normalised geometric mean
    k = len(classes)
    if neutral in classes:
        goal = np.full(k, (1.0 - target) / (k - 1))
        goal[list(classes).index(neutral)] = target
    else:
        goal = np.full(k, 1.0 / k)
    offsets = np.log(goal) - mean
    offsets = np.clip(offsets - offsets.mean(), -limit, limit)
    return {c: float(o) for c, o in zip(classes, offsets)}


def apply_bias(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """softmax(log p + bias): what the pipeline does to each frame's probabilities."""
    logp = np.log(np.maximum(probs, 1e-12)) + bias
    odds = np.exp(logp - logp.max())
    return odds / odds.sum()


def apply_offsets(probs: Mapping[str, float], offsets: Mapping[str, float]) -> dict[str, float]:
    """``apply_bias`` by class name, for display and tests."""
    names = list(probs)
    out = apply_bias(np.array([probs[c] for c in names], np.float64), np.array([offsets.get(c, 0.0) for c in names]))
    return dict(zip(names, map(float, out)))


# --- personal recording ----------------------------------------------------------------------

@dataclass
class Recording:
    """Recorded faces per class: general-model probabilities and embeddings."""

    probs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    embeddings: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, cls: str, probs: np.ndarray, embedding: np.ndarray) -> None:
        self.probs.setdefault(cls, []).append(probs)
        self.embeddings.setdefault(cls, []).append(embedding)

    def drop(self, cls: str) -> None:
        self.probs.pop(cls, None)
        self.embeddings.pop(cls, None)

    def count(self, cls: str) -> int:
        return len(self.probs.get(cls, ()))

    def arrays(self, classes: Sequence[str], cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, probs, labels), at most ``cap`` evenly spaced faces per class."""
        es, ps, ys = [], [], []
        for i, c in enumerate(classes):
            n = self.count(c)
            if not n:
                continue
            keep = np.unique(np.linspace(0, n - 1, min(n, cap)).round().astype(int))
            es.extend(self.embeddings[c][j] for j in keep)
            ps.extend(self.probs[c][j] for j in keep)
            ys.extend([i] * len(keep))
        if not ys:
            return np.zeros((0, 0)), np.zeros((0, len(classes))), np.zeros(0, dtype=np.int64)
        return np.stack(es), np.stack(ps), np.asarray(ys)


class CalibrationSession:
    """The guided recording's state: which class, which phase, what was kept.

    ``plan`` is (class, seconds) in order; by default every class for ``record`` seconds.
    ``arm()`` starts the current class at the next ``feed``'s time, ``start(now)`` at ``now``;
    with ``auto=True`` each class is armed as soon as the previous one ends (no key presses).
    ``feed(state, now)`` returns the class whose recording that state ended, else None; the
    state that ends a class is not part of it (with ``auto`` it opens the next one).
    """

    def __init__(self, classes: Sequence[str], plan: Sequence[tuple[str, float]] | None = None, *,
                 countdown: float = DEFAULT_COUNTDOWN_S, record: float = DEFAULT_RECORD_S,
                 max_per_class: int = DEFAULT_MAX_PER_CLASS, auto: bool = False) -> None:
        self.classes = tuple(classes)
        self.countdown, self.max_per_class, self.auto = countdown, max_per_class, auto
        steps = plan if plan is not None else [(c, record) for c in self.classes]
        self.plan = [(c, float(s)) for c, s in steps if s > 0]
        self._record = record if plan is None else None  # a plan's own seconds win
        self.index = 0
        self.phase: Phase = "armed" if auto and self.plan else ("prompt" if self.plan else "done")
        self.face = False  # whether the latest frame had a face
        self.recording = Recording()
        self.frames: dict[str, int] = {}  # frames seen while recording a class, face or not
        self._start = 0.0

    @property
    def record(self) -> float:
        """Seconds recorded for the current class."""
        if self._record is not None:
            return self._record
        return self.plan[self.index][1] if self.current is not None else 0.0

    @record.setter
    def record(self, seconds: float) -> None:
        self._record = seconds

    @property
    def current(self) -> str | None:
        return self.plan[self.index][0] if self.index < len(self.plan) and self.phase != "done" else None

    @property
    def position(self) -> str:
        return f"{self.index + 1}/{len(self.plan)}"

    def arm(self) -> None:
        if self.phase == "prompt":
            self.phase = "armed"

    def start(self, now: float) -> None:
        if self.phase in ("prompt", "armed"):
            self.phase, self._start = "countdown", now

    def skip(self) -> None:
        """Drop what the current class recorded and go on to the next."""
        if self.current is not None:
            self.recording.drop(self.current)
            self._next()

    def stop(self) -> None:
        """Finish early with what is recorded."""
        self.phase = "done"

    def advance(self, now: float) -> str | None:
        """Move on by the clock alone; the class that ended, if one did."""
        if self.phase in ("countdown", "record"):
            elapsed = now - self._start
            if elapsed >= self.countdown + self.record:
                ended = self.current
                self.frames.setdefault(ended, 0)
                self._next()
                return ended
            if elapsed >= self.countdown:
                self.phase = "record"
        return None

    def feed(self, state: ExpressionState, now: float) -> str | None:
        """One frame's state at time ``now``; the class it ended, if any."""
        if state.frame_index < 0:
            return None
        self.face = bool(state.face)
        if self.phase == "armed":
            self.start(now)
        ended = self.advance(now)
        if ended is not None and self.phase == "armed":
            self.start(now)
            self.advance(now)
        if self.phase == "record":
            cls = self.current
            self.frames[cls] = self.frames.get(cls, 0) + 1
            if state.face and state.embedding is not None and state.raw_probs:
                self.recording.add(cls, np.array([state.raw_probs[c] for c in self.classes]),
                                   np.asarray(state.embedding, dtype=np.float64))
        return ended

    def _next(self) -> None:
        self.index += 1
        if self.index >= len(self.plan):
            self.phase = "done"
        else:
            self.phase = "armed" if self.auto else "prompt"

    # -- what the front ends show ----------------------------------------------------------

    def face_text(self) -> str:
        return "face found" if self.face else "NO FACE: move into view"

    def prompt(self) -> str:
        cls = self.current
        return f"show {PROMPTS.get(cls, cls)}" if cls is not None else ""

    def status(self, now: float) -> str:
        """One line: the countdown or the recording's progress, with the live face check."""
        cls = self.current
        if cls is None:
            return ""
        elapsed = now - self._start
        if self.phase == "countdown":
            return f"{self.prompt()}: {math.ceil(self.countdown - elapsed)}...  [{self.face_text()}]"
        if self.phase == "record":
            return (f"recording {cls}: {min(elapsed - self.countdown, self.record):4.1f}/{self.record:g} s, "
                    f"face in {self.recording.count(cls)}/{self.frames.get(cls, 0)} frames  [{self.face_text()}]")
        return f"{self.prompt()}  [{self.face_text()}]"

    def summary(self, cls: str) -> str:
        return f"{cls}: {self.recording.count(cls)} faces recorded in {self.frames.get(cls, 0)} frames"

    # -- the result ------------------------------------------------------------------------

    def fit(self, fingerprint: ModelFingerprint, *, l2: float = DEFAULT_L2, name: str = "") -> Profile:
        """The personal profile from what was recorded; ConfigError when too little was."""
        e, p, y = self.recording.arrays(self.classes, self.max_per_class)
        return fit_profile(e.reshape(len(y), fingerprint.embedding_dim), p.reshape(len(y), len(self.classes)), y,
                           fingerprint, l2=l2, name=name)
