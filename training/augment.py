"""What the student sees in training that the teacher does not: webcam light, headsets, covered upper faces.

Each function takes canonical 48x48 grey uint8 faces and changes a fraction ``p`` of them, before
the geometric augmentation, so that whatever is drawn moves with the face. Torch-free: evaluation
(``vrfer eval --webcam``, ``training.mouth_eval``) draws the same views.
"""
from __future__ import annotations

import cv2
import numpy as np

from vrfer.training.headset.webcam import webcam_batch

__all__ = ["headset_batch", "occluder_batch", "photometric_batch", "visor_batch", "webcam_batch"]


def photometric_batch(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Webcam-like exposure, contrast, gamma and sensor noise on a fraction ``p`` of the faces.

    The end-to-end benchmark showed light and noise, not alignment, cost most of the gap
    between dataset crops and camera frames.
    """
    out = images.copy()
    for i in np.flatnonzero(rng.random(len(images)) < p):
        f = out[i].astype(np.float32) / 255.0
        f = np.clip(f, 0, 1) ** rng.uniform(0.7, 1.4)
        f = (f - f.mean()) * rng.uniform(0.6, 1.4) + f.mean() + rng.uniform(-0.2, 0.2)
        f = f * 255.0 + rng.normal(0.0, rng.uniform(0.0, 6.0), f.shape)
        out[i] = np.clip(f, 0, 255).astype(np.uint8)
    return out


def visor_batch(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Black out a tilted band just below the midline on a fraction ``p`` of the faces.

    A real headset's lower edge often reaches past the aligned midline (the headset benchmark
    lost 17 points on such frames); the paper's occlusion stops exactly at row 24.
    """
    out = images.copy()
    h, w = images.shape[1:3]
    cols = np.arange(w) - (w - 1) / 2.0
    rows = np.arange(h)[:, None]
    for i in np.flatnonzero(rng.random(len(images)) < p):
        edge = h / 2 + rng.uniform(0.0, 7.0) + np.tan(np.radians(rng.uniform(-8, 8))) * cols \
            + rng.uniform(0.0, 0.08) * (cols ** 2) / (w / 2)  # a visor's edge curves down at the sides
        out[i][rows < edge[None, :]] = rng.integers(0, 40)
    return out


def headset_batch(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Draw a random VR headset (``training.headset.synth``) on a fraction ``p`` of the faces.

    The faces are canonical 48x48 crops, so the headset is placed with the identity transform and
    moves with the face under the geometric augmentation that follows. Shells, straps, glare,
    hands and microphones come from the same renderer as the headset locator's training frames.
    """
    from vrfer.training.headset.synth import draw_headset, random_headset

    out = images.copy()
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for i in np.flatnonzero(rng.random(len(images)) < p):
        bgr = cv2.cvtColor(images[i], cv2.COLOR_GRAY2BGR)
        out[i] = cv2.cvtColor(draw_headset(bgr, identity, random_headset(rng), rng), cv2.COLOR_BGR2GRAY)
    return out


_DRAW = 4  # occluders are drawn at 4x and area-averaged down: smooth edges at 48 px


def _superellipse(cx: float, cy: float, a: float, b: float, n: float, k: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([cx + a * np.sign(c) * np.abs(c) ** (2 / n), cy + b * np.sign(s) * np.abs(s) ** (2 / n)], 1)


def _fill(canvas: np.ndarray, pts: np.ndarray, value: float = 1.0) -> None:
    cv2.fillPoly(canvas, [np.round(pts * _DRAW * 16).astype(np.int32)], value, cv2.LINE_AA, shift=4)


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """A shell's grey levels: any shade (a coloured shell turned grey is any grey), a light
    gradient across it, sometimes a mottled or ribbed texture."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    level = rng.uniform(0, 255) + rng.uniform(-70, 70) * (np.cos(angle) * x + np.sin(angle) * y)
    kind = rng.choice(("flat", "mottled", "ribbed"), p=(0.5, 0.3, 0.2))
    if kind == "mottled":
        small = rng.normal(0, rng.uniform(4, 20), (8, 8)).astype(np.float32)
        level = level + cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    elif kind == "ribbed":
        level = level + rng.uniform(5, 25) * np.sin(2 * np.pi * (x * rng.uniform(3, 9) + rng.uniform(0, 1)))
    return level.astype(np.float32)


def occluder_batch(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Cover the upper face of a fraction ``p`` of the faces with a thing of any shape and shade.

    The drawn headsets (``headset_batch``, the webcam view's) come in three shells of one outline
    family. A headset the student never saw (another outline, a coloured shell that turns some
    other grey, a textured front, a bright rim, straps, a hand on it, its shadow) should not
    change its answer, so here the covering thing is random in each of those: a superellipse of
    any squareness, tilted and shifted, whose lower edge ends anywhere from 3 px above to 9 px
    below the midline, sometimes notched for the nose.
    """
    out = images.copy()
    n = images.shape[1]
    size = n * _DRAW
    for i in np.flatnonzero(rng.random(len(images)) < p):
        face = cv2.resize(images[i], (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        bottom = n / 2 + rng.uniform(-3.0, 9.0)
        b = rng.uniform(8.0, 16.0)
        cx, cy = n / 2 + rng.normal(0, 2.0), bottom - b
        body = _superellipse(cx, cy, rng.uniform(20.0, 30.0), b, rng.uniform(1.6, 8.0))
        if rng.random() < 0.5:  # a notch over the nose
            width, depth = rng.uniform(3.0, 8.0), rng.uniform(1.0, 6.0)
            near = (np.abs(body[:, 0] - cx) < width) & (body[:, 1] > cy)
            body[near, 1] -= depth * (1 - np.abs(body[near, 0] - cx) / width)
        turn = cv2.getRotationMatrix2D((cx, cy), float(rng.normal(0, 7.0)), 1.0)
        body = body @ turn[:, :2].T + turn[:, 2]
        mask = np.zeros((size, size), np.float32)
        _fill(mask, body)
        shell = _surface(rng, size)
        if rng.random() < 0.35:  # straps from its sides back past the cheeks, in their own shade
            t, straps = rng.uniform(1.5, 4.0), np.zeros_like(mask)
            for side in (-1, 1):
                x0 = cx + side * 18
                strap = np.array([[x0, cy - t], [x0 + side * 20, cy - t + rng.normal(0, 2)],
                                  [x0 + side * 20, cy + t + rng.normal(0, 2)], [x0, cy + t]]) @ turn[:, :2].T + turn[:, 2]
                _fill(straps, strap)
            straps = np.clip(straps - mask, 0, 1)  # behind the visor
            shell = shell * (1 - straps) + straps * np.float32(rng.uniform(0, 255))
            mask = np.maximum(mask, straps)
        if rng.random() < 0.35:  # a bright rim round the visor, as light headsets have
            rim = np.zeros_like(mask)
            cv2.polylines(rim, [np.round(body * _DRAW * 16).astype(np.int32)], True, 1.0,
                          int(rng.integers(2, 7)), cv2.LINE_AA, shift=4)
            shell = shell * (1 - rim) + rim * np.float32(rng.uniform(200, 255))
        if rng.random() < 0.15:  # a hand on its side: skin-grey fingers over the edge
            side = 1 if rng.random() < 0.5 else -1
            skin = float(np.median(images[i])) * rng.uniform(0.8, 1.25)
            hand = np.zeros_like(mask)
            edge = cx + side * rng.uniform(14.0, 24.0)
            for f in range(int(rng.integers(2, 5))):
                fy = cy - 5 + f * 3.5 + rng.normal(0, 0.5)
                _fill(hand, np.array([[edge - side * 8, fy - 1.4], [edge + side * 12, fy - 1.6],
                                      [edge + side * 12, fy + 1.6], [edge - side * 8, fy + 1.4]]))
            shell = shell * (1 - hand) + hand * np.float32(skin)
            mask = np.maximum(mask, hand)
        mask = np.clip(mask, 0, 1)
        drop = rng.uniform(0.5, 4.0) * _DRAW  # its shadow on the cheeks below
        shadow = cv2.warpAffine(mask, np.float32([[1, 0, 0], [0, 1, drop]]), (size, size))
        shadow = np.clip(cv2.GaussianBlur(shadow, (0, 0), drop) - mask, 0, 1) * rng.uniform(0.0, 0.6)
        drawn = (face * (1 - shadow)) * (1 - mask) + np.clip(shell, 0, 255) * mask
        out[i] = np.clip(cv2.resize(drawn, (n, n), interpolation=cv2.INTER_AREA), 0, 255).astype(np.uint8)
    return out
