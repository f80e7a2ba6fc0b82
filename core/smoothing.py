"""Temporal smoothing of class probabilities, and label hysteresis so the label does not flicker.

Two filters share one ``strength`` knob in 0..1 (0 = off):

- ``ema``: an exponential moving average. ``strength`` is the share of the old value kept
  per 1/30 s, so at 30 fps ``out = s * prev + (1 - s) * new``; at other frame rates the
  same time constant holds (``alpha = 1 - s ** (dt * 30)``). Capped at ``MAX_RETAIN`` so a
  slider at 1.0 slows the output down rather than freezing it.
- ``one_euro``: Casiez et al.'s One Euro filter (CHI 2012) per class: smooth when the
  probabilities hold still, follow quickly when they move. ``strength`` sets the minimum
  cutoff on a log scale (``0.1 * 100 ** (1 - s)`` Hz: 0.5 -> 1 Hz, 1 -> 0.1 Hz), ``beta``
  how fast the cutoff opens with speed.

The output is renormalised to sum to 1 (One Euro filters each class on its own).

Mouth shapes (``update_shapes``) are filtered beside the probabilities, at the same strength,
always by One Euro (they move fast: a mouth opens in a tenth of a second), not renormalised,
and reset with them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from vrfer.core.errors import ConfigError

METHODS = ("ema", "one_euro")
REFERENCE_FPS = 30.0
MAX_RETAIN = 0.98
MIN_DT = 1e-3  # two frames with one timestamp would otherwise divide by zero
MAX_DT = 1.0  # after a long gap, treat the next frame as one second later, not as a reset


@dataclass(frozen=True)
class SmoothingConfig:
    """How probabilities are smoothed and when the label may change.

    ``margin``: a new class must beat the current label's probability by this much.
    ``min_hold_frames``: ... and keep doing so for this many consecutive frames (1 = at once).
    """

    method: str = "ema"
    strength: float = 0.5
    margin: float = 0.1
    min_hold_frames: int = 1
    beta: float = 0.5  # One Euro speed coefficient (per unit of probability per second)
    d_cutoff: float = 1.0  # One Euro cutoff for the speed estimate, Hz

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"smoothing.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name, lo, hi in (("strength", 0.0, 1.0), ("margin", 0.0, 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"smoothing.{name} must be a number from {lo:g} to {hi:g}, got {value!r}")
        if not isinstance(self.min_hold_frames, int) or self.min_hold_frames < 1:
            raise ConfigError(f"smoothing.min_hold_frames must be an integer >= 1, got {self.min_hold_frames!r}")
        if not isinstance(self.beta, (int, float)) or self.beta < 0:
            raise ConfigError(f"smoothing.beta must be a number >= 0, got {self.beta!r}")
        if not isinstance(self.d_cutoff, (int, float)) or self.d_cutoff <= 0:
            raise ConfigError(f"smoothing.d_cutoff must be a number > 0, got {self.d_cutoff!r}")

    @property
    def min_cutoff(self) -> float:
        """One Euro minimum cutoff in Hz for this strength."""
        return 0.1 * 100.0 ** (1.0 - self.strength)


def _one_euro_alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class Smoother:
    """Stateful probability filter; ``update`` once per frame with the frame's capture time."""

    def __init__(self, cfg: SmoothingConfig | None = None, normalise: bool = True) -> None:
        self.cfg = cfg or SmoothingConfig()
        self.normalise = normalise
        self._shapes: Smoother | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next ``update`` returns its input unchanged."""
        if self._shapes is not None:
            self._shapes.reset()
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def update(self, probs: np.ndarray, t: float) -> np.ndarray:
        """Filter one probability vector observed at time ``t`` (seconds); returns a new array."""
        x = np.asarray(probs, dtype=np.float64).reshape(-1)
        if self._x is None or self._x.shape != x.shape or self.cfg.strength == 0.0:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = min(max(t - (self._t if self._t is not None else t), MIN_DT), MAX_DT)
        self._t = t
        if self.cfg.method == "ema":
            retain = min(self.cfg.strength, MAX_RETAIN) ** (dt * REFERENCE_FPS)
            out = retain * self._x + (1.0 - retain) * x
        else:
            dx = (x - self._x) / dt
            a_d = _one_euro_alpha(self.cfg.d_cutoff, dt)
            self._dx = a_d * dx + (1.0 - a_d) * self._dx
            cutoff = self.cfg.min_cutoff + self.cfg.beta * np.abs(self._dx)
            a = _one_euro_alpha(cutoff, dt)
            out = a * x + (1.0 - a) * self._x
        self._x = out
        total = out.sum()
        return out / total if total > 0 and self.normalise else out.copy()

    def update_shapes(self, shapes: np.ndarray, t: float) -> np.ndarray:
        """Filter one mouth-shape vector (0..1 each) observed at time ``t``; One Euro, not renormalised."""
        if self._shapes is None:
            self._shapes = Smoother(dataclasses.replace(self.cfg, method="one_euro"), normalise=False)
        return np.clip(self._shapes.update(shapes, t), 0.0, 1.0)


class LabelHysteresis:
    """Keeps the current label until a challenger clearly and steadily beats it.

    A challenger (the arg-max class) takes over when its probability exceeds the current
    label's by at least ``margin`` on ``min_hold_frames`` consecutive frames.
    """

    def __init__(self, margin: float = 0.1, min_hold_frames: int = 1) -> None:
        self.margin = margin
        self.min_hold_frames = max(1, int(min_hold_frames))
        self.reset()

    @classmethod
    def from_config(cls, cfg: SmoothingConfig) -> LabelHysteresis:
        return cls(cfg.margin, cfg.min_hold_frames)

    def reset(self) -> None:
        self.current: int | None = None
        self._challenger: int | None = None
        self._streak = 0

    def update(self, probs: np.ndarray) -> int:
        """Return the index of the label to show for these (smoothed) probabilities."""
        p = np.asarray(probs).reshape(-1)
        best = int(np.argmax(p))
        if self.current is None:
            self.current = best
            return best
        if best != self.current and p[best] - p[self.current] >= self.margin:
            self._streak = self._streak + 1 if best == self._challenger else 1
            self._challenger = best
            if self._streak >= self.min_hold_frames:
                self.current, self._challenger, self._streak = best, None, 0
        else:
            self._challenger, self._streak = None, 0
        return self.current
