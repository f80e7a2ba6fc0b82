"""Camera-like frames with and without a drawn VR headset, labelled by a teacher that saw the bare face.

One sample is built in three steps:

1. ``compose``: a 48 px FER+ face, upscaled and turned, is pasted into a 640x480 frame with a
   random background, exposure, blur and noise. The placement (canonical -> frame) is known.
2. ``Teacher``: mediapipe face mesh runs on that *un-occluded* frame; its geometry (the
   similarity fitted onto ``assets/face_template.json``) is the label. The label is stored as
   ``ANCHORS`` (eye centres, nose tip, mouth corners of the template) mapped into the frame:
   five points that carry exactly the teacher's similarity transform.
3. ``draw_headset``: a headset shell (dark, light grey or white), sometimes with straps, a
   glare highlight, a hand or a microphone near the mouth, is drawn over the upper face,
   placed with the teacher's geometry.

Everything here is numpy + OpenCV (+ mediapipe for the teacher) so the benchmark and the tests
can build the same frames without torch.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from vrfer.core import backgrounds
from vrfer.core.face import FaceTemplate, load_template, mesh_geometry
from vrfer.core.face.locator import REFINE_SIZE
from vrfer.core.geometry import crop_view, face_square, from_crop
from vrfer.core.preprocess import CANONICAL_SIZE

W, H = 640, 480
C = (CANONICAL_SIZE - 1) / 2  # canonical centre, pixel-centre convention

# Template points the locator predicts: right iris, left iris, nose tip, right and left mouth
# corner ("right" = the subject's). Any two determine a similarity; five average out noise.
ANCHOR_NAMES = ("right_iris", "left_iris", "nose_tip", "right_mouth", "left_mouth")
FLIP_ORDER = (1, 0, 2, 4, 3)  # anchor order after a left-right mirror


def anchors(template: FaceTemplate | None = None) -> np.ndarray:
    """The ``ANCHOR_NAMES`` points in canonical 48x48 coordinates (5 x 2)."""
    t = template or load_template()
    return np.array([t.points[t.names.index(n)] for n in ANCHOR_NAMES], dtype=np.float64)


def frame_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map canonical ``points`` into the frame through the inverse of a frame->canonical transform."""
    inv = cv2.invertAffineTransform(np.asarray(transform, dtype=np.float64))
    return points @ inv[:, :2].T + inv[:, 2]


def placed_square(place: np.ndarray) -> tuple[np.ndarray, float]:
    """(frame centre, side in frame px) of the canonical square that ``place`` (canonical -> frame) puts there."""
    return face_square(cv2.invertAffineTransform(np.asarray(place, dtype=np.float64)))


def placement(side: float, angle: float, centre: tuple[float, float]) -> np.ndarray:
    """2x3 canonical->frame map: the 48 px square becomes ``side`` px, turned ``angle`` degrees."""
    m = cv2.getRotationMatrix2D((C, C), angle, side / CANONICAL_SIZE)
    m[:, 2] += np.asarray(centre, dtype=np.float64) - C
    return m


# --------------------------------------------------------------------- frames

def background(rng: np.random.Generator, w: int = W, h: int = H) -> np.ndarray:
    """A ``core.backgrounds`` wall of any kind with furniture in front: what a room behind a user might be."""
    img = backgrounds.background(rng, backgrounds.KINDS[int(rng.integers(len(backgrounds.KINDS)))], (w, h))
    img = np.ascontiguousarray(img)
    for _ in range(rng.integers(0, 6)):  # furniture: rectangles and lines
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        if rng.random() < 0.6:
            cv2.rectangle(img, p1, p2, colour, -1)
        else:
            cv2.line(img, p1, p2, colour, int(rng.integers(2, 12)), cv2.LINE_AA)
    return img


def card_tilt(centre: tuple[float, float], pitch: float, yaw: float, focal: float) -> np.ndarray:
    """3x3 frame -> frame homography: the picture around ``centre`` as a flat card turned ``pitch``
    degrees about its horizontal axis (> 0: its lower edge comes nearer, as a webcam low on a desk
    sees a face) and ``yaw`` about its vertical one (> 0: its right side, in the image, comes
    nearer), seen by a pinhole camera of ``focal`` px from where ``centre`` keeps its scale."""
    a, b = math.radians(-pitch), math.radians(yaw)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    r = ry @ rx
    card = np.array([[r[0, 0], r[0, 1], 0.0], [r[1, 0], r[1, 1], 0.0], [r[2, 0] / focal, r[2, 1] / focal, 1.0]])
    cx, cy = centre
    return np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]]) @ card @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])


def compose(face: np.ndarray, rng: np.random.Generator, side_range: tuple[float, float] = (150, 300),
            max_angle: float = 10.0, *, tint: np.ndarray | None = None,
            mask: np.ndarray | None = None,
            tilt: tuple[float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paste a grayscale 48 px face into a random frame. Returns (BGR frame, canonical->frame placement).

    ``tint``: BGR gains for the face (default a random one near grey); ``mask``: a 48x48 uint8
    cut-out (default the whole square, half the time with a soft edge); ``tilt``: (pitch, yaw,
    focal) for ``card_tilt``, the face seen at that angle (the placement is then the face's
    similarity before the tilt, true at its centre)."""
    side = float(rng.uniform(*side_range))
    margin = 0.55 * side
    centre = (float(rng.uniform(margin, W - margin)), float(rng.uniform(margin, H - margin)))
    m = placement(side, float(rng.uniform(-max_angle, max_angle)), centre)
    frame = background(rng)
    drawn = rng.uniform(0.8, 1.15, 3)  # faces are gray in FER+; cameras see skin colours
    tint = drawn if tint is None else np.asarray(tint, np.float64)
    square = mask is None
    cut = np.full((CANONICAL_SIZE, CANONICAL_SIZE), 255, np.uint8) if square else mask
    if tilt is None:
        big = cv2.warpAffine(face, m, (W, H), flags=cv2.INTER_CUBIC)
        mask = cv2.warpAffine(cut, m, (W, H), flags=cv2.INTER_LINEAR)
    else:
        h3 = card_tilt(centre, *tilt) @ np.vstack([m, [0.0, 0.0, 1.0]])
        big = cv2.warpPerspective(face, h3, (W, H), flags=cv2.INTER_CUBIC)
        mask = cv2.warpPerspective(cut, h3, (W, H), flags=cv2.INTER_LINEAR)
    if rng.random() < 0.5 and square:  # a soft edge sometimes, so the square's border is not the only cue
        k = int(side * 0.06) | 1
        mask = cv2.GaussianBlur(cv2.erode(mask, np.ones((k, k), np.uint8)), (k, k), 0)
    alpha = mask.astype(np.float32)[..., None] / 255.0
    face_bgr = big.astype(np.float32)[..., None] * tint[None, None]
    out = frame.astype(np.float32) * (1 - alpha) + face_bgr * alpha
    return np.clip(out, 0, 255).astype(np.uint8), m


def camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure, blur, sensor noise and sometimes JPEG: applied last, to the whole frame."""
    out = img.astype(np.float32)
    gain, gamma = rng.uniform(0.6, 1.4), rng.uniform(0.7, 1.4)
    out = 255.0 * (np.clip(out * gain, 0, 255) / 255.0) ** gamma
    if rng.random() < 0.4:
        sigma = rng.uniform(0.5, 2.5)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    out += rng.normal(0, rng.uniform(0, 8), out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


# --------------------------------------------------------------------- headset

@dataclass(frozen=True)
class Headset:
    """A headset's look and fit, in canonical face units (the face is 48 wide)."""

    shell: tuple[int, int, int]  # BGR
    width: float  # visor width
    height: float  # visor height
    dx: float  # centre offset from the eyes' midpoint
    dy: float
    tilt: float  # degrees, on top of the face's own roll
    roundness: float  # superellipse exponent: 2 = ellipse, large = box
    straps: bool
    top_strap: bool
    glare: bool
    extra: str  # "", "hand", "mic" or "grip" (fingers over the visor's side)
    rim: tuple[int, int, int] | None = None  # BGR of a bright edge round the visor (light headsets)


SHELLS = {"dark": (28, 28, 30), "grey": (170, 168, 165), "white": (236, 236, 232)}


def random_headset(rng: np.random.Generator) -> Headset:
    name = ("dark", "grey", "white")[rng.integers(3)]
    base = np.array(SHELLS[name], np.float64) + rng.normal(0, 8, 3)
    extra = "" if rng.random() < 0.7 else ("hand" if rng.random() < 0.5 else "mic")
    return Headset(
        shell=tuple(int(v) for v in np.clip(base, 0, 255)), width=float(rng.uniform(46, 62)),
        height=float(rng.uniform(17, 26)), dx=float(rng.normal(0, 1.2)), dy=float(rng.uniform(-3.5, 2.0)),
        tilt=float(rng.normal(0, 4)), roundness=float(rng.uniform(2.5, 6)), straps=bool(rng.random() < 0.6),
        top_strap=bool(rng.random() < 0.35), glare=bool(rng.random() < 0.35), extra=extra)


def _superellipse(cx: float, cy: float, a: float, b: float, n: float, k: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([cx + a * np.sign(c) * np.abs(c) ** (2 / n), cy + b * np.sign(s) * np.abs(s) ** (2 / n)], 1)


def _to_frame(points: np.ndarray, canon_to_frame: np.ndarray) -> np.ndarray:
    return points @ canon_to_frame[:, :2].T + canon_to_frame[:, 2]


def _fill(img: np.ndarray, pts: np.ndarray, colour: tuple[int, ...]) -> None:
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)


def draw_headset(img: np.ndarray, transform: np.ndarray, hs: Headset, rng: np.random.Generator) -> np.ndarray:
    """Draw ``hs`` over the upper face of ``img`` (BGR, a new array) placed by the frame->canonical ``transform``."""
    out = img.copy()
    tpl = anchors()
    eyes = (tpl[0] + tpl[1]) / 2
    inv = cv2.invertAffineTransform(np.asarray(transform, dtype=np.float64))
    # The headset's own frame: canonical coordinates turned by its tilt about the eyes.
    cx, cy = eyes[0] + hs.dx, eyes[1] + hs.dy
    rot = cv2.getRotationMatrix2D((cx, cy), -hs.tilt, 1.0)
    m = np.vstack([inv, [0, 0, 1]]) @ np.vstack([rot, [0, 0, 1]])
    m = m[:2]
    shell = np.array(hs.shell, np.float64)
    a, b = hs.width / 2, hs.height / 2
    if hs.straps:  # side straps run from the visor's sides back past the head's edge
        strap = tuple(int(v) for v in np.clip(shell * rng.uniform(0.3, 0.9), 0, 255))
        t = rng.uniform(2.5, 5.0)
        for side in (-1, 1):
            x0, x1 = cx + side * (a - 2), cx + side * (a + rng.uniform(6, 14))
            pts = np.array([[x0, cy - t], [x1, cy - t - 1], [x1, cy + t + 1], [x0, cy + t]])
            _fill(out, _to_frame(pts, m), strap)
        if hs.top_strap:
            pts = np.array([[cx - t, cy - b + 2], [cx + t, cy - b + 2], [cx + t + 1, cy - b - 18],
                            [cx - t - 1, cy - b - 18]])
            _fill(out, _to_frame(pts, m), strap)
    body = _superellipse(cx, cy, a, b, hs.roundness)
    # A nose notch: pull the bottom-centre points up.
    near = (np.abs(body[:, 0] - cx) < 5.5) & (body[:, 1] > cy)
    body[near, 1] -= rng.uniform(1.5, 4.0) * (1 - np.abs(body[near, 0] - cx) / 5.5)
    _fill(out, _to_frame(body, m), tuple(int(v) for v in shell))
    if hs.rim is not None:
        width = max(1, int(round(math.hypot(inv[0, 0], inv[1, 0]) * rng.uniform(0.6, 1.4))))
        cv2.polylines(out, [np.round(_to_frame(body, m) * 16).astype(np.int32)], True, hs.rim, width,
                      cv2.LINE_AA, shift=4)
    # Shading: a darker lower rim and a lighter front plate, so it is not a flat blob.
    plate = _superellipse(cx, cy - b * 0.1, a * rng.uniform(0.75, 0.92), b * rng.uniform(0.6, 0.8), hs.roundness)
    plate_colour = np.clip(shell * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15), 0, 255)
    _fill(out, _to_frame(plate, m), tuple(int(v) for v in plate_colour))
    if rng.random() < 0.5:  # cameras / sensors on the front plate
        for sx in (-1, 1):
            p = _to_frame(np.array([[cx + sx * a * 0.6, cy - b * 0.3]]), m)[0]
            r = max(1, int(abs(inv[0, 0]) * 1.6 + 0.5))
            cv2.circle(out, (int(p[0]), int(p[1])), r, (15, 15, 15), -1, cv2.LINE_AA)
    if hs.glare:
        gx, gy = cx + rng.uniform(-a, a) * 0.6, cy - b * rng.uniform(0.1, 0.5)
        g = np.zeros(out.shape[:2], np.float32)
        pts = _to_frame(_superellipse(gx, gy, rng.uniform(3, 9), rng.uniform(1, 3), 2.0), m)
        cv2.fillPoly(g, [np.round(pts).astype(np.int32)], 1.0)
        scale = math.hypot(inv[0, 0], inv[1, 0])
        g = cv2.GaussianBlur(g, (0, 0), max(1.0, scale * 1.2)) * rng.uniform(0.5, 1.0)
        out = np.clip(out + (255 - out.astype(np.float32)) * g[..., None], 0, 255).astype(np.uint8)
    if hs.extra == "hand":  # a hand beside the chin: a palm and fingers, never over the lips
        side = 1 if rng.random() < 0.5 else -1
        hx, hy = 24 + side * rng.uniform(20, 28), rng.uniform(38, 50)
        skin = np.clip(np.array([120, 150, 190]) * rng.uniform(0.6, 1.2), 0, 255)
        _fill(out, _to_frame(_superellipse(hx, hy, 7, 9, 2.5), inv), tuple(int(v) for v in skin))
        for f in range(4):
            fx = hx - side * 4 + f * 2.6 * (-side)
            pts = np.array([[fx - 1, hy - 6], [fx + 1, hy - 6], [fx + 1 - side * 4, hy - 15], [fx - 1 - side * 4, hy - 15]])
            _fill(out, _to_frame(pts, inv), tuple(int(v) for v in skin * 0.95))
    elif hs.extra == "grip":  # a hand holding the headset: fingers across the visor's side edge
        side = 1 if rng.random() < 0.5 else -1
        skin = np.clip(np.array([120, 150, 190]) * rng.uniform(0.5, 1.2), 0, 255)
        edge, y0 = cx + side * a, cy + rng.uniform(-0.4, 0.2) * b
        _fill(out, _to_frame(_superellipse(edge + side * 9, y0 + 4, 7, 10, 2.5), m), tuple(int(v) for v in skin))
        for f in range(int(rng.integers(2, 5))):
            fy = y0 - 4 + f * 3.2
            pts = np.array([[edge + side * 6, fy - 1.3], [edge + side * 6, fy + 1.3],
                            [edge - side * rng.uniform(4, 9), fy + 1.1], [edge - side * rng.uniform(4, 9), fy - 1.1]])
            _fill(out, _to_frame(pts, m), tuple(int(v) for v in skin * rng.uniform(0.85, 1.0)))
    elif hs.extra == "mic":  # a boom from the ear to beside the mouth corner
        side = 1 if rng.random() < 0.5 else -1
        ear = np.array([[24 + side * 26, 24.0]])
        tip = np.array([[24 + side * rng.uniform(10, 15), rng.uniform(36, 42)]])
        p0, p1 = _to_frame(ear, inv)[0], _to_frame(tip, inv)[0]
        scale = math.hypot(inv[0, 0], inv[1, 0])
        cv2.line(out, tuple(int(v) for v in p0), tuple(int(v) for v in p1), (30, 30, 30),
                 max(1, int(scale * 1.2)), cv2.LINE_AA)
        cv2.circle(out, tuple(int(v) for v in p1), max(2, int(scale * 2.5)), (20, 20, 20), -1, cv2.LINE_AA)
    return out


# --------------------------------------------------------------------- teacher

TEACHER_MARGIN = 1.6  # face sides in the second look's crop (the runtime refinement's is 1.4, then 2.2)


class Teacher:
    """mediapipe face mesh (static images) on an un-occluded frame -> frame->canonical transform."""

    def __init__(self) -> None:
        import mediapipe as mp

        self.template = load_template()
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                     refine_landmarks=True, min_detection_confidence=0.5)

    def _landmarks(self, image: np.ndarray) -> np.ndarray | None:
        result = self._mesh.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * w - 0.5, p.y * h - 0.5, p.z * w) for p in lm], dtype=np.float64)

    def __call__(self, image: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """The frame->canonical transform of the face in ``image``. ``near`` (canonical -> frame: where
        the face was pasted): when the whole frame gives no face, look again in an upscaled crop of
        1.6 face sides around it, as the runtime's refinement does; the whole-frame mesh misses faces
        under about 110 px, and without this they would never be labelled."""
        pts3 = self._landmarks(image)
        if pts3 is None and near is not None:
            view = crop_view(*placed_square(near), TEACHER_MARGIN, REFINE_SIZE)
            crop = cv2.warpAffine(image, view, (REFINE_SIZE, REFINE_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
            found = self._landmarks(crop)
            pts3 = None if found is None else from_crop(found, view)
        if pts3 is None:
            return None
        return mesh_geometry(pts3, self.template, image.shape[:2]).transform

    def close(self) -> None:
        self._mesh.close()


def teacher_agrees(transform: np.ndarray, place: np.ndarray, tol: float = 0.25) -> bool:
    """The mesh's face is the pasted one: its centre within ``tol`` face widths of the placement's."""
    placed, side = placed_square(place)
    return float(np.linalg.norm(face_square(transform)[0] - placed)) < tol * side


@dataclass(frozen=True)
class Sample:
    """A clean frame, its headset twin, and the teacher's geometry on the clean one."""

    clean: np.ndarray  # BGR
    headset: np.ndarray  # BGR
    transform: np.ndarray  # teacher, frame -> canonical
    points: np.ndarray  # ANCHORS in frame pixels (5 x 2)
    placement: np.ndarray  # canonical -> frame, where the 48 px face was pasted
    hs: Headset
    raw: np.ndarray | None = None  # the composed frame before the camera


def make_sample(face: np.ndarray, teacher: Teacher, rng: np.random.Generator,
                side_range: tuple[float, float] = (150, 300), max_angle: float = 10.0, *,
                tint: np.ndarray | None = None, mask: np.ndarray | None = None, headset: Headset | None = None,
                film: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                tilt: tuple[float, float, float] | None = None) -> Sample | None:
    """One clean/headset pair, or None when the teacher does not find the pasted face.

    ``tint``/``mask``/``tilt`` go to ``compose``; ``headset`` (default ``random_headset``) is drawn on the
    twin; ``film(frame, placement)`` records both twins alike (default ``camera`` with one seed)."""
    raw, place = compose(face, rng, side_range, max_angle, tint=tint, mask=mask, tilt=tilt)
    if film is None:
        cam_seed = int(rng.integers(2**31))  # the same exposure, blur and noise for both twins

        def film(img: np.ndarray, _place: np.ndarray) -> np.ndarray:
            return camera(img, np.random.default_rng(cam_seed))
    clean = film(raw, place)
    transform = teacher(clean, place)
    if transform is None or not teacher_agrees(transform, place):
        return None
    hs = headset or random_headset(rng)
    occluded = film(draw_headset(raw, transform, hs, rng), place)
    return Sample(clean, occluded, transform, frame_points(transform, anchors(teacher.template)), place, hs, raw)
