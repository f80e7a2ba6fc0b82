"""The training family, broadened with what a user's webcam does that ``synth.camera`` does not.

``synth`` pastes grey, roughly grey-tinted squares of 150-300 px into frames with mild exposure,
Gaussian blur and occasional JPEG. A webcam gives colour frames (the runtime turns them grey
with OpenCV's BGR->grey weights, so skin colour changes a face's grey levels), faces from 80 px,
JPEG in every frame, defocus and motion blur, sharpening halos, low light with colour noise,
backlight, light headsets with a bright rim and hands on the headset. This module draws those
from the training side's own code (``synth``'s compositing and headsets, plus the factors here);
it is used to teach the presence head that such faces are faces.

Numpy + OpenCV only, like ``synth``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from vrfer.core.preprocess import CANONICAL_SIZE
from vrfer.training.headset.synth import (Headset, Sample, Teacher, card_tilt, compose, draw_headset, make_sample,
                                          placed_square, random_headset)

SIDE_RANGE = (80.0, 300.0)  # face sizes, px
SAMPLE_SIDES = (80.0, 340.0)  # face sizes of webcam_sample (the locator's data), px
LIGHTS = ("normal", "low", "back")
LIGHT_P = (0.55, 0.25, 0.2)

# Skin colours as BGR reflectances, light to dark; each is scaled so its grey (BT.601) is 1,
# then a lightness factor darkens or lightens it.
_SKINS = np.array([[175, 195, 235], [140, 170, 220], [110, 145, 200], [80, 115, 170], [55, 80, 125], [40, 55, 90]],
                  np.float64)
GREY_BGR = np.array([0.114, 0.587, 0.299])  # BGR weights of cv2.COLOR_BGR2GRAY


def skin_tint(rng: np.random.Generator) -> np.ndarray:
    """BGR gains that colour a grey face with a skin tone (its grey level moved by the lightness)."""
    tone = _SKINS[int(rng.integers(len(_SKINS)))] * rng.uniform(0.92, 1.08, 3)
    return tone / float(tone @ GREY_BGR) * rng.uniform(0.75, 1.15)


def cutout(rng: np.random.Generator) -> np.ndarray:
    """A 48x48 uint8 cut-out: a soft oval with a wobbling edge, no square border anywhere."""
    n = CANONICAL_SIZE
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    shift = rng.uniform(0, 1)
    cx, cy = (n - 1) / 2 + rng.uniform(-0.5, 0.5), (n - 1) / 2 + shift
    # Inside the square even at the wobble's widest (x1.09): the square's edge must never show.
    ax, ay = rng.uniform(18, 21), rng.uniform(19.5, 21.5) - shift
    theta = np.arctan2(y - cy, x - cx)
    wobble = 1 + sum(rng.uniform(0, 0.03) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    r = np.hypot((x - cx) / ax, (y - cy) / ay) / wobble
    feather = rng.uniform(0.04, 0.15)
    return (np.clip((1 - r) / feather, 0, 1) * 255).astype(np.uint8)


def draw_tilt(rng: np.random.Generator, share: float) -> tuple[float, float, float] | None:
    """Where the webcam sits, as ``synth.card_tilt``'s (pitch, yaw, focal), or None (straight on):
    in ``share`` of frames below the face looking up (a laptop or a desk: pitch up to 30 degrees)
    or a little above it, and off to either side by up to 35 degrees, through a lens of 450-900 px
    focal length. At ``share`` 0 it draws nothing from ``rng``, so frames are what they were before
    the family had a camera angle."""
    if share <= 0 or rng.random() >= share:
        return None
    return float(rng.uniform(-10.0, 30.0)), float(rng.uniform(-35.0, 35.0)), float(rng.uniform(450.0, 900.0))


def webcam_headset(rng: np.random.Generator) -> Headset:
    """A headset of the broadened family: half light (white or light grey, bright rim); hands on it in 30%."""
    hs = random_headset(rng)
    if rng.random() < 0.5:
        level = rng.uniform(190, 245)
        shell = tuple(int(v) for v in np.clip(level + rng.normal(0, 5, 3), 0, 255))
        rim = tuple(int(v) for v in np.clip(np.array(shell) + rng.uniform(10, 40), 0, 255))
        hs = dataclasses.replace(hs, shell=shell, rim=rim)
    if rng.random() < 0.3:
        hs = dataclasses.replace(hs, extra="grip")
    return hs


def wear(img: np.ndarray, place: np.ndarray, rng: np.random.Generator, hs: Headset | None = None,
         camera: tuple[float, float] | None = None) -> np.ndarray:
    """``img`` with a headset of this family (``hs``, else a new one) worn on the face that ``place``
    (canonical -> frame) put there. A visor stands out in front of the face, so the camera sees it
    shifted over the face away from itself: lower on the face from a camera above it (a webcam on a
    monitor), higher from one below (low on a desk), towards the far cheek from one to the side,
    its near edge a little larger; it casts a soft shadow on the cheeks below it. ``draw_headset``
    draws it flat on the face. ``camera``: (elevation, bearing) in degrees instead of drawn ones."""
    hs = hs if hs is not None else webcam_headset(rng)
    drawn = draw_headset(img, cv2.invertAffineTransform(place), hs, rng)
    mask = (np.abs(drawn.astype(np.int16) - img.astype(np.int16)).max(axis=2) > 0).astype(np.float32)
    n = CANONICAL_SIZE
    unit = float(np.hypot(place[0, 0], place[1, 0]))  # frame px per canonical px
    # The camera's elevation above the face (> 0: above) and its bearing (> 0: to the face's left, image right).
    elevation, bearing = camera if camera is not None else (rng.uniform(-20.0, 25.0), rng.normal(0.0, 15.0))
    above, side = np.radians(elevation), np.radians(bearing)
    depth = rng.uniform(8.0, 15.0)  # how far the visor's front stands out from the eyes, canonical px
    corners = np.array([[0, 0], [n, 0], [n, n], [0, n]], np.float64)
    moved = corners + depth * np.array([-np.sin(side), np.sin(above)])  # away from the camera
    # The edge nearer the camera looks a few percent larger: the right side for a camera on the
    # right, the top for a camera above.
    moved[:, 1] += (moved[:, 1] - n / 2) * 0.25 * abs(np.sin(side)) * np.where((corners[:, 0] > 0) == (side > 0), 1, -1)
    moved[:, 0] += (moved[:, 0] - n / 2) * 0.25 * np.sin(above) * np.where(corners[:, 1] > 0, -1, 1)
    to_frame = lambda p: (p @ place[:, :2].T + place[:, 2]).astype(np.float32)  # noqa: E731
    warp = cv2.getPerspectiveTransform(to_frame(corners), to_frame(moved))
    size = img.shape[1::-1]
    layer = cv2.warpPerspective(drawn, warp, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    m = cv2.warpPerspective(mask, warp, size, flags=cv2.INTER_LINEAR)[..., None]
    out = img.astype(np.float32) * (1 - m) + layer.astype(np.float32) * m
    drop = rng.uniform(1.0, 4.0) * unit  # the shadow falls below the visor, softly
    shadow = cv2.warpAffine(m[..., 0], np.float32([[1, 0, 0], [0, 1, drop]]), size)
    shadow = np.clip(cv2.GaussianBlur(shadow, (0, 0), max(0.8, drop * 0.7)) - m[..., 0], 0, 1)
    out *= 1 - rng.uniform(0.15, 0.5) * shadow[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _disk(radius: float) -> np.ndarray:
    k = int(np.ceil(radius)) * 2 + 1
    y, x = np.mgrid[0:k, 0:k] - k // 2
    kernel = (np.hypot(x, y) <= radius + 0.5).astype(np.float32)
    return kernel / kernel.sum()


def _line(length: float, angle: float) -> np.ndarray:
    k = int(np.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    dx, dy = np.cos(np.radians(angle)) * length / 2, np.sin(np.radians(angle)) * length / 2
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


@dataclass(frozen=True)
class Webcam:
    """One frame's camera: drawn once so that a face's bare and headset twins share it."""

    light: str  # normal, low or back
    exposure: float
    white_balance: tuple[float, float, float]  # BGR gains
    blur: str  # "", "defocus", "motion" or "gauss"
    blur_size: float
    blur_angle: float
    shot: float  # shot-noise scale
    read: float  # read-noise sd
    chroma: float  # blotchy colour-noise sd
    sharpen: float  # unsharp-mask amount, 0 for none
    window: tuple[float, float]  # backlight: the window's offset from the face, in face sides
    quality: int  # JPEG
    seed: int  # the noise


def draw_webcam(rng: np.random.Generator) -> Webcam:
    light = str(rng.choice(LIGHTS, p=LIGHT_P))
    exposure = {"normal": rng.uniform(0.75, 1.25), "low": rng.uniform(0.2, 0.45), "back": rng.uniform(0.45, 0.75)}[light]
    warm = rng.uniform(-1, 1)  # tungsten (-1) to daylight (1)
    blur = str(rng.choice(("", "defocus", "motion", "gauss"), p=(0.35, 0.25, 0.25, 0.15)))
    size = {"": 0.0, "defocus": rng.uniform(1, 3.5), "motion": rng.uniform(3, 12), "gauss": rng.uniform(0.5, 2)}[blur]
    return Webcam(light=light, exposure=float(exposure),
                  white_balance=(float(1 + 0.2 * warm), 1.0, float(1 - 0.2 * warm)), blur=blur, blur_size=float(size),
                  blur_angle=float(rng.uniform(0, 180)), shot=float(rng.uniform(0.05, 0.4)),
                  read=float(rng.uniform(1, 4) * (2.5 if light == "low" else 1)),
                  chroma=float(rng.uniform(3, 10) if light == "low" else rng.uniform(0, 2)),
                  sharpen=float(rng.uniform(0.4, 1.2) if rng.random() < 0.35 else 0.0),
                  window=(float(rng.uniform(-1.2, 1.2)), float(rng.uniform(-1.2, -0.3))),
                  quality=int(rng.integers(30, 91)), seed=int(rng.integers(2**31)))


def shoot(img: np.ndarray, cam: Webcam, face: tuple[tuple[float, float], float] | None = None,
          front: np.ndarray | None = None) -> np.ndarray:
    """``img`` (BGR) as ``cam`` records it. ``face`` ((centre x, y), side px) places a backlight's
    window; ``front`` (H x W, 0..1) is what stands before it (the head), which it only blooms over."""
    rng = np.random.default_rng(cam.seed)
    h, w = img.shape[:2]
    out = img.astype(np.float32) * np.float32(cam.exposure) * np.array(cam.white_balance, np.float32)
    if cam.light == "back":  # a bright window behind and beside the head, blooming over its edge
        (fx, fy), side = face if face is not None else ((w / 2, h / 2), 200.0)
        cx, cy = fx + cam.window[0] * side, fy + cam.window[1] * side
        glow = np.zeros((h, w), np.float32)
        cv2.rectangle(glow, (int(cx - 0.6 * side), int(cy - 0.8 * side)), (int(cx + 0.6 * side), int(cy + 0.8 * side)),
                      1.0, -1)
        if front is not None:
            glow *= 1 - front
        glow = np.maximum(glow, cv2.GaussianBlur(glow, (0, 0), 0.25 * side) * 0.8)
        out = out * (1 - glow[..., None]) + glow[..., None] * np.float32(rng.uniform(230, 255))
    if cam.blur == "defocus":
        out = cv2.filter2D(out, -1, _disk(cam.blur_size))
    elif cam.blur == "motion":
        out = cv2.filter2D(out, -1, _line(cam.blur_size, cam.blur_angle))
    elif cam.blur == "gauss":
        out = cv2.GaussianBlur(out, (0, 0), cam.blur_size)
    noise = rng.normal(0, 1, out.shape).astype(np.float32)
    out = out + noise * np.sqrt(np.clip(out, 0, None) * cam.shot + cam.read ** 2)
    if cam.chroma > 0:  # colour noise in blotches: the sensor's noise after demosaicing and denoising
        small = rng.normal(0, cam.chroma, (max(1, h // 8), max(1, w // 8), 3)).astype(np.float32)
        out += cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if cam.light == "low":  # the camera's gain brings the dark frame partly back, noise and all
        out *= np.float32(rng.uniform(1.0, 2.0))
    if cam.sharpen > 0:
        out = out + cam.sharpen * (out - cv2.GaussianBlur(out, (0, 0), 1.2))
    out = np.clip(out, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, cam.quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class WebcamPair:
    """A face's bare frame and its headset twin, same camera; ``placement`` canonical -> frame."""

    clean: np.ndarray
    headset: np.ndarray
    placement: np.ndarray


def film(img: np.ndarray, cam: Webcam, place: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """``shoot`` a frame whose face was pasted by ``place`` (canonical -> frame) through ``cut``:
    the backlight's window sits by that face and blooms only round the head."""
    centre, side = placed_square(place)
    where = ((float(centre[0]), float(centre[1])), side)
    head = cv2.warpAffine(cut.astype(np.float32) / 255, place, img.shape[1::-1])
    return shoot(img, cam, where, head)


def webcam_batch(images: np.ndarray, rng: np.random.Generator, p: float, tilt: float = 0.0) -> np.ndarray:
    """A fraction ``p`` of the faces as a colour webcam records them, grey again at 48 px.

    Each face is scaled to a webcam face size (80-300 px), given a skin colour, covered by a
    headset of the broadened family half the time (worn: ``webcam.wear`` shifts the visor with the
    camera's angle and shades the cheeks under it), seen from the webcam's angle in a share
    ``tilt`` of them (``draw_tilt``), shot by a random webcam (light, blur, noise, sharpening,
    JPEG: ``training.headset.webcam``) and turned grey with the runtime's weights.
    Only the face's own square is drawn, not a whole frame, so it costs milliseconds.
    """
    out = images.copy()
    n = images.shape[1]
    for i in np.flatnonzero(rng.random(len(images)) < p):
        side = int(rng.uniform(*SIDE_RANGE))
        place = np.array([[side / n, 0.0, 0.0], [0.0, side / n, 0.0]])  # canonical -> the face's own square
        face = cv2.resize(images[i], (side, side), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        bgr = np.clip(face[..., None] * skin_tint(rng)[None, None].astype(np.float32), 0, 255).astype(np.uint8)
        angle = draw_tilt(rng, tilt)
        if rng.random() < 0.5:  # the visor's parallax follows the camera's angle when it has one
            bgr = wear(bgr, place, rng, camera=None if angle is None else (-angle[0], angle[1]))
        if angle is not None:  # the head and what it wears, seen from the webcam's angle
            c = (side - 1) / 2
            bgr = cv2.warpPerspective(bgr, card_tilt((c, c), *angle), (side, side), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REFLECT_101)
        shot = film(bgr, draw_webcam(rng), place, cutout(rng))  # a backlight blooms round the head
        out[i] = cv2.resize(cv2.cvtColor(shot, cv2.COLOR_BGR2GRAY), (n, n), interpolation=cv2.INTER_AREA)
    return out


def webcam_view(images: np.ndarray, seed: int, tilt: float = 0.0) -> np.ndarray:
    """Every face as this family's webcam records it (``webcam_batch`` at p = 1 from ``seed``, a
    share ``tilt`` at an angle): the view ``vrfer eval --webcam SEED [--tilt SHARE]`` scores and
    ``select = "crops+webcam"`` chooses on."""
    return webcam_batch(images, np.random.default_rng(seed), 1.0, tilt)


def webcam_sample(face: np.ndarray, teacher: Teacher, rng: np.random.Generator, max_angle: float = 20.0,
                  tilt: float = 0.0) -> tuple[Sample | None, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """A ``synth.make_sample`` pair (bare frame, headset twin, the teacher's labels) as this family
    records it, and its webcam as ``film(frame, placement)`` for further twins. The locator's
    training data and ``vrfer headset bench --webcam`` draw their webcam share here."""
    cut, cam = cutout(rng), draw_webcam(rng)

    def film_it(img: np.ndarray, place: np.ndarray) -> np.ndarray:
        return film(img, cam, place, cut)

    return make_sample(face, teacher, rng, side_range=SAMPLE_SIDES, max_angle=max_angle, tint=skin_tint(rng),
                       mask=cut, headset=webcam_headset(rng), film=film_it, tilt=draw_tilt(rng, tilt)), film_it


def webcam_pair(face: np.ndarray, rng: np.random.Generator, side_range: tuple[float, float] = SIDE_RANGE,
                max_angle: float = 15.0, tilt: float = 0.0) -> WebcamPair:
    """One grey 48 px face as a colour webcam would see it, bare and under a headset."""
    cut = cutout(rng)
    frame, place = compose(face, rng, side_range, max_angle, tint=skin_tint(rng), mask=cut, tilt=draw_tilt(rng, tilt))
    cam = draw_webcam(rng)
    covered = draw_headset(frame, cv2.invertAffineTransform(place), webcam_headset(rng), rng)
    return WebcamPair(film(frame, cam, place, cut), film(covered, cam, place, cut), place)
