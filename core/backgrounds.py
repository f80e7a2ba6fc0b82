"""Synthetic frame backgrounds: the one generator behind the demo, the benchmarks and the
locator's training frames, so "a plain wall" means the same picture everywhere.

Kinds: ``plain`` (one colour), ``gradient`` (two colours, top to bottom), ``texture`` (a
blurred random pattern: detail a detector must ignore), ``blocks`` (large flat patches).
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

BackgroundKind = Literal["plain", "gradient", "texture", "blocks"]
KINDS: tuple[BackgroundKind, ...] = ("plain", "gradient", "texture", "blocks")
FRAME_SIZE = (640, 480)  # width, height: the demo and benchmark frames
COLOURS = (20, 236)  # colour channels are drawn from [20, 236): no pure black or white walls


def background(rng: np.random.Generator, kind: BackgroundKind, size: tuple[int, int]) -> np.ndarray:
    """A ``size`` = (width, height) BGR uint8 background of ``kind``, drawn from ``rng``."""
    w, h = size
    if kind == "plain":
        return np.broadcast_to(rng.integers(*COLOURS, 3).astype(np.uint8), (h, w, 3)).copy()
    if kind == "gradient":
        top, bottom = rng.integers(*COLOURS, 3), rng.integers(*COLOURS, 3)
        t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        return np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).astype(np.uint8)
    if kind == "texture":
        small = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if kind == "blocks":
        small = rng.integers(0, 256, (int(rng.integers(2, 8)), int(rng.integers(2, 10)), 3)).astype(np.uint8)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    raise ValueError(f"background kind must be one of {', '.join(KINDS)}, got {kind!r}")
