"""Neutral-face calibration: per-class log-probability offsets from a short resting capture.

People's resting faces differ (and a headset presses on cheeks differently), so the model may
read someone's relaxed face as, say, 40% sadness. The capture averages the model's raw output
over a second or two of the user's neutral face (geometric mean, matching the log-space
correction), then picks offsets that map that average onto a target in which ``neutral``
holds ``NEUTRAL_TARGET`` and the other classes share the rest. The pipeline adds the offsets to
each frame's log-probabilities before smoothing, so any *change* from the resting face still
moves the output, while the resting face itself reads as neutral.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from vrfer.core.errors import VrferError

NEUTRAL_TARGET = 0.6  # what the resting face should read as: clearly neutral, not saturated
OFFSET_LIMIT = 4.0  # nats; one extreme capture must not silence a class for good
MIN_FRAMES = 5
CAPTURE_SECONDS = 1.5
EPS = 1e-6


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


def apply_offsets(probs: Mapping[str, float], offsets: Mapping[str, float]) -> dict[str, float]:
    """What the pipeline does with the offsets, for display and tests: softmax(log p + offset)."""
    names = list(probs)
    logp = np.log(np.maximum(np.array([probs[c] for c in names], np.float64), 1e-12))
    logp += np.array([offsets.get(c, 0.0) for c in names])
    e = np.exp(logp - logp.max())
    return dict(zip(names, map(float, e / e.sum())))
