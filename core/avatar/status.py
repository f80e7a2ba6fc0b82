"""What every avatar sink shares: its status value, the sink protocol and the away decay."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vrfer.core.types import ExpressionState


@dataclass(frozen=True)
class SinkStatus:
    """A snapshot for the app's status bar and for ``vrfer run``'s log."""

    name: str  # "vrchat", "vrcft", "openxr"
    target: str  # "127.0.0.1:9000", or the runtime's name
    enabled: bool  # False once closed, or when set-up failed for good
    messages_per_s: float  # over the last second or so
    last_error: str | None = None  # the most recent problem, cleared after a quiet spell
    away: bool = True  # True while the avatar is held in (or decaying to) the away pose


class Sink(Protocol):
    """The one sink shape, for ``vrfer run`` and the app alike. ``send`` is called on the pipeline thread."""

    name: str

    def send(self, state: ExpressionState) -> None: ...

    def status(self) -> SinkStatus: ...

    def close(self) -> None: ...


def decay_toward(current: np.ndarray, target: np.ndarray, dt: float, tau: float) -> np.ndarray:
    """First-order approach to ``target``: after ``tau`` seconds 63% of the gap is closed.
    Used for the away pose, so the avatar relaxes instead of freezing or snapping."""
    if tau <= 0.0 or dt <= 0.0:
        return target.copy() if tau <= 0.0 else current
    k = 1.0 - math.exp(-dt / tau)
    return current + (target - current) * np.float32(k)
