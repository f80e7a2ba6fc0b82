"""What the student sees in training that the teacher does not: webcam light, headsets, covered upper faces.

Each ``*_batch`` function takes canonical 48x48 grey uint8 faces and changes a fraction ``p`` of
them, before the geometric augmentation, so that whatever is drawn moves with the face;
``draw_occluder`` draws on one image (a crop or a colour frame) where a placement puts the face.
Torch-free: evaluation (``vrfer eval --webcam``, ``training.mouth_eval``) draws the same views.
"""
from __future__ import annotations

import cv2
import numpy as np

from vrfer.core.preprocess import CANONICAL_SIZE
from vrfer.training.headset.webcam import GREY_BGR, webcam_batch

__all__ = ["draw_occluder", "headset_batch", "occluder_batch", "photometric_batch", "visor_batch", "webcam_batch"]


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


_DRAW = 4  # 48 px faces get their occluder drawn at 4x and area-averaged down: smooth edges
_TEXTURE = (-16.0, 64.0, 4)  # the shell's texture raster: canonical span and px per canonical px


def _superellipse(cx: float, cy: float, a: float, b: float, n: float, k: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([cx + a * np.sign(c) * np.abs(c) ** (2 / n), cy + b * np.sign(s) * np.abs(s) ** (2 / n)], 1)


def _fill(canvas: np.ndarray, pts: np.ndarray) -> None:
    cv2.fillPoly(canvas, [np.round(pts * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A shell's grey levels over canonical space (``_TEXTURE``): any shade (a coloured shell turned
    grey is any grey), a light gradient across it, sometimes a mottled or ribbed front."""
    lo, hi, k = _TEXTURE
    size = int((hi - lo) * k)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    level = rng.uniform(0, 255) + rng.uniform(-70, 70) * (np.cos(angle) * x + np.sin(angle) * y)
    kind = rng.choice(("flat", "mottled", "ribbed"), p=(0.5, 0.3, 0.2))
    if kind == "mottled":
        small = rng.normal(0, rng.uniform(4, 20), (10, 10)).astype(np.float32)
        level = level + cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    elif kind == "ribbed":
        level = level + rng.uniform(5, 25) * np.sin(2 * np.pi * (x * rng.uniform(3, 9) + rng.uniform(0, 1)))
    return level.astype(np.float32)


def _hue(rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """BGR gains with grey 1: neutral, or with probability ``p`` any colour."""
    if rng.random() >= p:
        return np.ones(3)
    gains = rng.uniform(0.2, 1.8, 3)
    return gains / float(gains @ GREY_BGR)


def draw_occluder(img: np.ndarray, place: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``img`` (grey H x W or BGR H x W x 3, uint8; a new array) with a thing over the upper face
    that ``place`` (canonical -> image) put there.

    The drawn headsets (``synth.draw_headset``) come in three shells of one outline family. A
    headset never seen in training (another outline, a coloured shell, a textured front, a bright
    rim, straps, a hand on it, its shadow) should neither change the student's answer nor hide the
    face from the locator, so here each of those is random: a superellipse of any squareness,
    tilted and shifted, whose lower edge ends anywhere from 3 px above to 9 px below the midline,
    sometimes notched for the nose, in any shade (colour images: any colour half the time).
    """
    place = np.asarray(place, np.float64)
    colour = img.ndim == 3
    unit = float(np.hypot(place[0, 0], place[1, 0]))  # image px per canonical px
    to_img = lambda p: p @ place[:, :2].T + place[:, 2]  # noqa: E731
    n = float(CANONICAL_SIZE)
    bottom = n / 2 + rng.uniform(-3.0, 9.0)
    b = rng.uniform(8.0, 16.0)
    cx, cy = n / 2 + rng.normal(0, 2.0), bottom - b
    body = _superellipse(cx, cy, rng.uniform(20.0, 30.0), b, rng.uniform(1.6, 8.0))
    if rng.random() < 0.5:  # a notch over the nose
        width, depth = rng.uniform(3.0, 8.0), rng.uniform(1.0, 6.0)
        near = (np.abs(body[:, 0] - cx) < width) & (body[:, 1] > cy)
        body[near, 1] -= depth * (1 - np.abs(body[near, 0] - cx) / width)
    turn = cv2.getRotationMatrix2D((cx, cy), float(rng.normal(0, 7.0)), 1.0)
    turned = lambda p: p @ turn[:, :2].T + turn[:, 2]  # noqa: E731
    body = turned(body)
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    _fill(mask, to_img(body))
    lo, _, k = _TEXTURE
    to_texture = np.vstack([k * cv2.invertAffineTransform(place), [0, 0, 1]])
    to_texture[:2, 2] -= k * lo
    level = cv2.warpAffine(_texture(rng), to_texture[:2], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
    shell = level[..., None] * _hue(rng).astype(np.float32) if colour else level
    if rng.random() < 0.35:  # straps from its sides back past the cheeks, in their own shade
        t, straps = rng.uniform(1.5, 4.0), np.zeros_like(mask)
        for side in (-1, 1):
            x0 = cx + side * 18
            _fill(straps, to_img(turned(np.array([[x0, cy - t], [x0 + side * 20, cy - t + rng.normal(0, 2)],
                                                  [x0 + side * 20, cy + t + rng.normal(0, 2)], [x0, cy + t]]))))
        straps = np.clip(straps - mask, 0, 1)  # behind the visor
        tone = rng.uniform(0, 255) * (_hue(rng) if colour else 1.0)
        s_ = straps[..., None] if colour else straps
        shell = shell * (1 - s_) + s_ * np.asarray(tone, np.float32)
        mask = np.maximum(mask, straps)
    if rng.random() < 0.35:  # a bright rim round the visor, as light headsets have
        rim = np.zeros_like(mask)
        cv2.polylines(rim, [np.round(to_img(body) * 16).astype(np.int32)], True, 1.0,
                      max(1, int(round(unit * rng.uniform(0.4, 1.6)))), cv2.LINE_AA, shift=4)
        r_ = rim[..., None] if colour else rim
        shell = shell * (1 - r_) + r_ * np.float32(rng.uniform(200, 255))
        mask = np.maximum(mask, rim)  # both halves of the line, not only the one inside the visor
    if rng.random() < 0.15:  # a hand on its side: fingers over the edge, the colour of the face's skin
        side = 1 if rng.random() < 0.5 else -1
        chin = np.round(to_img(np.array([[16.0, 34.0], [32.0, 44.0]]))).astype(int)
        x0, x1 = np.clip(np.sort(chin[:, 0]), 0, w - 1)
        y0, y1 = np.clip(np.sort(chin[:, 1]), 0, h - 1)
        patch = img[y0:y1 + 1, x0:x1 + 1].reshape(-1, *img.shape[2:])
        skin = np.median(patch, axis=0).astype(np.float32) * np.float32(rng.uniform(0.8, 1.25))
        hand = np.zeros_like(mask)
        edge = cx + side * rng.uniform(14.0, 24.0)
        for f in range(int(rng.integers(2, 5))):
            fy = cy - 5 + f * 3.5 + rng.normal(0, 0.5)
            _fill(hand, to_img(np.array([[edge - side * 8, fy - 1.4], [edge + side * 12, fy - 1.6],
                                         [edge + side * 12, fy + 1.6], [edge - side * 8, fy + 1.4]])))
        h_ = hand[..., None] if colour else hand
        shell = shell * (1 - h_) + h_ * skin
        mask = np.maximum(mask, hand)
    mask = np.clip(mask, 0, 1)
    drop = rng.uniform(0.5, 4.0) * unit  # its shadow on the cheeks below
    shadow = cv2.warpAffine(mask, np.float32([[1, 0, 0], [0, 1, drop]]), (w, h))
    shadow = np.clip(cv2.GaussianBlur(shadow, (0, 0), drop) - mask, 0, 1) * rng.uniform(0.0, 0.6)
    if colour:
        mask, shadow = mask[..., None], shadow[..., None]
    drawn = img.astype(np.float32) * (1 - shadow) * (1 - mask) + np.clip(shell, 0, 255) * mask
    return np.clip(drawn, 0, 255).astype(np.uint8)


def occluder_batch(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """``draw_occluder`` over the upper face of a fraction ``p`` of the faces (drawn at 4x, then
    area-averaged back to 48 px)."""
    out = images.copy()
    n = images.shape[1]
    size = n * _DRAW
    place = np.array([[_DRAW, 0.0, (_DRAW - 1) / 2], [0.0, _DRAW, (_DRAW - 1) / 2]])  # pixel centres, as cv2.resize
    for i in np.flatnonzero(rng.random(len(images)) < p):
        big = cv2.resize(images[i], (size, size), interpolation=cv2.INTER_LINEAR)
        out[i] = cv2.resize(draw_occluder(big, place, rng), (n, n), interpolation=cv2.INTER_AREA)
    return out
