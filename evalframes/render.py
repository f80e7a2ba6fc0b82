"""The held-out frames: a FER+ face as a colour webcam would see it, with or without a headset.

Written apart from the training renderer on purpose (nothing is shared with
``training/headset/synth.py`` or the training augmentation), and different from it in every
respect it can be:

- the grey face is colourised in CIELAB from a skin-tone palette and cut out with a soft,
  irregular superelliptic mask (no square border, no feathered square), over a neck, shoulders
  and a colour room (wall, furniture, window, lamp);
- it is placed through a perspective camera: the face card is pitched (camera low on a desk,
  looking up), yawed (camera off to the side) and rolled, 80-300 px across;
- the camera adds exposure, backlight from a window, low light with colour noise, white
  balance, defocus, motion blur, sharpening halos and JPEG at webcam qualities (4:2:0);
- a headset is a 3-D solid (front, side walls, nose cut-out, straps) posed from the face
  mesh's head pose (mediapipe on the bare frame), shaded by a light and casting a shadow on
  the face; shapes vary (box, goggle, wide visor, slim) and so do colours, white and light
  grey with a bright rim included; sometimes a hand touches it.

Every random choice is drawn up front into a ``Look`` (seeded), so a factor can be switched
off (``neutral``) and the same frame drawn again without it: that is how the benchmark's
cause table is measured.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from vrfer.core.face import FaceTemplate, fit_similarity, load_template

W, H = 640, 480
FOCAL = 560.0  # px: a webcam's ~60° horizontal field of view at 640 px
UP = 4  # the 48 px face is upscaled this much before the camera warp
# Skin tones as CIELAB (L*, a*, b*) means, light to dark.
SKIN_TONES = ((80, 8, 15), (73, 11, 18), (65, 13, 21), (56, 14, 23), (46, 13, 21), (36, 11, 16))
SHAPES = ("box", "goggle", "wide", "slim")
SHELLS = {  # BGR shell colour, rim colour (None: no rim)
    "white": ((238, 238, 236), (255, 255, 255)),
    "light_grey": ((196, 196, 192), (250, 250, 250)),
    "dark_grey": ((66, 64, 62), (120, 120, 120)),
    "black": ((26, 26, 28), None),
    "blue_grey": ((120, 104, 92), (200, 200, 200)),
}
LIGHTS = ("normal", "low", "back")
# Factors the benchmark switches off one at a time (see ``neutral``).
FACTORS = ("resolution", "colour", "compression", "blur", "light", "camera_angle", "visor_shape", "hand")


@dataclass(frozen=True)
class HeadsetLook:
    """One headset, in canonical face units (the template's 48 px face; eyes at y 18)."""

    shape: str
    shell: str
    half_width: float  # x extent from the face's centre line
    top: float  # y of the visor's top edge
    bottom: float  # y of its bottom edge, beside the nose cut-out
    depth: float  # how far the front stands out in front of the eyes
    curve: float  # how much the front bends back towards the sides
    roundness: float  # superellipse exponent of the outline (2 round ... 6 boxy)
    notch: tuple[float, float]  # nose cut-out width and height
    straps: bool
    top_strap: bool
    shadow: float  # strength of the shadow under the visor, 0..1
    light: tuple[float, float, float]  # direction towards the light, face coordinates
    hand: str | None  # None, "side" (fingers on the visor's side) or "under" (lifting the bottom)
    hand_side: int  # -1 the image's left, +1 its right


@dataclass(frozen=True)
class Look:
    """Every random choice for one frame, drawn once per face."""

    size: float  # face card side, px
    centre: tuple[float, float]  # where the face card's centre lands in the frame
    pitch: float  # degrees: > 0 the camera sits low and looks up at the face
    yaw: float  # degrees: the camera off to the side
    roll: float
    tone: tuple[float, float, float]  # skin CIELAB mean
    contrast: float  # face lightness contrast
    mask: tuple[float, ...]  # cx, cy, a, b, exponent, feather, 3 harmonic amplitudes, 3 phases
    grey: bool  # keep the face grey (only as a neutral for the cause table)
    scene_seed: int
    light: str  # normal, low or back
    gain: float
    white_balance: tuple[float, float, float]  # B, G, R gains
    defocus: float  # disk radius, px (0: none)
    motion: tuple[float, float]  # length px (0: none), angle degrees
    noise: float  # read noise sigma
    chroma_noise: float
    sharpen: float
    jpeg: int | None  # quality; None: no compression
    headset: HeadsetLook


def draw_look(rng: np.random.Generator) -> Look:
    """A random look: webcam-like spreads, seeded."""
    size = float(rng.uniform(80, 300))
    half = 0.62 * size
    centre = (float(rng.uniform(half, W - half)), float(rng.uniform(half * 0.9, H - half * 1.2)))
    light = str(rng.choice(LIGHTS, p=(0.5, 0.3, 0.2)))
    gain = {"normal": rng.uniform(0.8, 1.2), "low": rng.uniform(0.22, 0.45), "back": rng.uniform(0.5, 0.75)}[light]
    tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    tone = (tone[0] + rng.uniform(-4, 4), tone[1] + rng.uniform(-2, 2), tone[2] + rng.uniform(-3, 3))
    mask = (23.5 + rng.uniform(-1, 1), 24.5 + rng.uniform(-1, 1), rng.uniform(19.5, 23.0), rng.uniform(22.5, 24.0),
            rng.uniform(2.0, 3.2), rng.uniform(0.5, 2.0), *rng.uniform(0, 1.2, 3), *rng.uniform(0, 2 * np.pi, 3))
    warm = rng.uniform(-0.15, 0.15)  # tungsten to daylight
    wb = (1.0 - warm + rng.uniform(-0.04, 0.04), 1.0, 1.0 + warm + rng.uniform(-0.04, 0.04))
    return Look(
        size=size, centre=centre,
        pitch=float(rng.uniform(0, 28) if rng.random() < 0.6 else rng.uniform(-8, 8)),
        yaw=float(rng.choice((-1, 1)) * (rng.uniform(8, 30) if rng.random() < 0.5 else rng.uniform(0, 8))),
        roll=float(rng.uniform(-8, 8)),
        tone=tuple(float(v) for v in tone), contrast=float(rng.uniform(0.8, 1.1)),
        mask=tuple(float(v) for v in mask), grey=False, scene_seed=int(rng.integers(2**31)),
        light=light, gain=float(gain), white_balance=tuple(float(v) for v in wb),
        defocus=float(rng.uniform(1.0, 3.5)) if rng.random() < 0.3 else 0.0,
        motion=(float(rng.uniform(3, 12)) if rng.random() < 0.3 else 0.0, float(rng.uniform(0, 180))),
        noise=float(rng.uniform(1.5, 4.0) * (2.5 if light == "low" else 1.0)),
        chroma_noise=float(rng.uniform(3, 9) if light == "low" else rng.uniform(0, 2)),
        sharpen=float(rng.uniform(0.3, 0.9)) if rng.random() < 0.4 else 0.0,
        jpeg=int(rng.integers(35, 86)),
        headset=_draw_headset_look(rng),
    )


def _draw_headset_look(rng: np.random.Generator) -> HeadsetLook:
    shape = str(rng.choice(SHAPES))
    base = {  # half_width, top, bottom, depth, curve, roundness
        "box": (27.0, 4.0, 27.5, 20.0, 3.0, 4.5),
        "goggle": (26.0, 8.5, 26.5, 13.0, 9.0, 2.4),
        "wide": (29.5, 1.5, 28.5, 22.0, 5.0, 3.2),
        "slim": (25.5, 7.0, 25.5, 11.0, 4.0, 6.0),
    }[shape]
    j = rng.uniform(-1, 1, 6) * (1.5, 1.5, 1.2, 3.0, 2.0, 0.4)
    hw, top, bottom, depth, curve, roundness = (b + d for b, d in zip(base, j))
    light = np.array([rng.uniform(-0.6, 0.6), -rng.uniform(0.4, 1.0), -rng.uniform(0.5, 1.0)])
    hand = None if rng.random() < 0.7 else str(rng.choice(("side", "under")))
    return HeadsetLook(
        shape=shape, shell=str(rng.choice(list(SHELLS), p=(0.3, 0.2, 0.15, 0.25, 0.1))),
        half_width=float(hw), top=float(top), bottom=float(bottom), depth=float(depth), curve=float(curve),
        roundness=float(roundness), notch=(float(rng.uniform(7, 11)), float(rng.uniform(3, 6))),
        straps=bool(rng.random() < 0.8), top_strap=bool(rng.random() < 0.5), shadow=float(rng.uniform(0.25, 0.6)),
        light=tuple(float(v) for v in light / np.linalg.norm(light)), hand=hand,
        hand_side=int(rng.choice((-1, 1))))


# A fixed headset for the "visor shape" neutral: the same plain dark box on every face.
REFERENCE_HEADSET = HeadsetLook(shape="box", shell="dark_grey", half_width=27.0, top=4.0, bottom=27.0, depth=18.0,
                                curve=3.0, roundness=4.5, notch=(9.0, 4.5), straps=False, top_strap=False,
                                shadow=0.0, light=(0.0, -0.6, -0.8), hand=None, hand_side=1)


def neutral(look: Look, factor: str) -> Look:
    """``look`` with one factor switched off: what the frame would be without it."""
    if factor == "resolution":
        return dataclasses.replace(look, size=220.0)
    if factor == "colour":
        return dataclasses.replace(look, grey=True, white_balance=(1.0, 1.0, 1.0), chroma_noise=0.0)
    if factor == "compression":
        return dataclasses.replace(look, jpeg=None)
    if factor == "blur":
        return dataclasses.replace(look, defocus=0.0, motion=(0.0, 0.0), sharpen=0.0)
    if factor == "light":
        return dataclasses.replace(look, light="normal", gain=1.0, noise=1.5, chroma_noise=0.0)
    if factor == "camera_angle":
        return dataclasses.replace(look, pitch=0.0, yaw=0.0, roll=0.0)
    if factor == "visor_shape":
        return dataclasses.replace(look, headset=dataclasses.replace(
            REFERENCE_HEADSET, hand=look.headset.hand, hand_side=look.headset.hand_side))
    if factor == "hand":
        return dataclasses.replace(look, headset=dataclasses.replace(look.headset, hand=None))
    raise ValueError(f"unknown factor {factor!r}; one of {FACTORS}")


# ------------------------------------------------------------------ geometry


def _rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Camera axes (x right, y down, z away from the camera)."""
    p, y, r = (math.radians(v) for v in (pitch, yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def card_homography(look: Look) -> np.ndarray:
    """3x3 map from canonical 48 px face coordinates to frame pixels through a pinhole camera.

    The face is a flat card (it is a photograph) at the distance where it spans ``size`` px.
    A camera low on a desk sees it pitched with its top edge farther away (``pitch`` > 0
    brings the chin nearer); a camera off to the side sees it yawed.
    """
    c = 23.5
    dist = FOCAL * 48.0 / look.size
    r = _rotation(-look.pitch, look.yaw, look.roll)
    k = np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1.0]])
    t = np.array([(look.centre[0] - W / 2) / FOCAL * dist, (look.centre[1] - H / 2) / FOCAL * dist, dist])
    plane = np.column_stack([r[:, 0], r[:, 1], t])  # card (a, b) -> camera a r1 + b r2 + t
    shift = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])  # canonical -> card, centred
    return k @ plane @ shift


def apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.column_stack([pts, np.ones(len(pts))]) @ h.T
    return p[:, :2] / p[:, 2:3]


def ideal_transform(h: np.ndarray, template: FaceTemplate) -> np.ndarray:
    """The similarity (frame -> canonical) that best undoes the placement on the template's
    landmarks: the alignment a perfect face finder would give, for the cause table."""
    m, _ = fit_similarity(apply_h(h, template.points), template.points)
    return m


# ------------------------------------------------------------------ scene


def _scene(rng: np.random.Generator, look: Look) -> np.ndarray:
    """A colour room behind the user: wall, furniture, a window and sometimes a lamp (float BGR)."""
    hue = rng.uniform(0, 180)
    wall = cv2.cvtColor(np.uint8([[[hue, rng.uniform(10, 90), rng.uniform(90, 220)]]]), cv2.COLOR_HSV2BGR)[0, 0]
    y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, W, dtype=np.float32)[None, :, None]
    fall = 1.0 - 0.35 * rng.uniform() * (x if rng.random() < 0.5 else 1 - x) - 0.2 * rng.uniform() * y
    img = np.broadcast_to(wall.astype(np.float32) * fall, (H, W, 3)).copy()
    for _ in range(int(rng.integers(2, 6))):  # shelves, doors, posters, a monitor's back
        colour = cv2.cvtColor(np.uint8([[[rng.uniform(0, 180), rng.uniform(0, 200), rng.uniform(30, 230)]]]),
                              cv2.COLOR_HSV2BGR)[0, 0].tolist()
        x0, y0 = int(rng.uniform(-50, W)), int(rng.uniform(-50, H))
        cv2.rectangle(img, (x0, y0), (x0 + int(rng.uniform(40, 260)), y0 + int(rng.uniform(30, 300))), colour, -1)
    window = look.light == "back" or rng.random() < 0.25
    if window:  # a bright window behind the user; with backlight it sits right behind the head
        cx = look.centre[0] + rng.uniform(-0.6, 0.6) * look.size if look.light == "back" else rng.uniform(0, W)
        ww, wh = rng.uniform(1.2, 2.5) * max(look.size, 120), rng.uniform(1.2, 2.2) * max(look.size, 120)
        x0, y0 = int(cx - ww / 2), int(look.centre[1] - wh * rng.uniform(0.4, 0.7))
        sky = np.array([255, 245, 235]) * rng.uniform(0.9, 1.0)
        cv2.rectangle(img, (x0, y0), (int(x0 + ww), int(y0 + wh)), sky.tolist(), -1)
        bar = max(2, int(ww * 0.03))
        cv2.line(img, (int(x0 + ww / 2), y0), (int(x0 + ww / 2), int(y0 + wh)), (70, 70, 70), bar)
    if rng.random() < 0.3:  # a desk lamp's glow
        cx, cy, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(60, 200)
        d2 = ((np.arange(W)[None, :] - cx) ** 2 + (np.arange(H)[:, None] - cy) ** 2) / r**2
        img += (np.exp(-d2)[..., None] * np.array([60, 120, 170])).astype(np.float32)
    return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 3.0))


def _colourise(gray: np.ndarray, look: Look) -> np.ndarray:
    """Grey face -> skin colours (float BGR 0..255): lightness from the grey, chroma from the tone."""
    g = gray.astype(np.float32)
    if look.grey:
        return np.repeat(g[..., None], 3, axis=2)
    lum = np.clip(look.tone[0] + (g - g.mean()) * (100.0 / 255.0) * look.contrast * 1.1, 0, 100)
    chroma = np.clip(1.0 - np.abs(lum - 55.0) / 60.0, 0.25, 1.0)  # shadows and highlights carry less colour
    lab = np.dstack([lum, look.tone[1] * chroma, look.tone[2] * chroma]).astype(np.float32)
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2BGR) * 255.0, 0, 255)


def _face_mask(look: Look, side: int) -> np.ndarray:
    """A soft, irregular superellipse over the face (0..1 at ``side`` px), as a matting
    model's cut-out would be: no straight border anywhere near the lower face."""
    cx, cy, a, b, n, feather, *harm = look.mask
    amps, phases = harm[:3], harm[3:]
    k = side / 48.0
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    u, v = ((xx + 0.5) / k - 0.5 - cx) / a, ((yy + 0.5) / k - 0.5 - cy) / b
    theta = np.arctan2(v, u)
    wobble = 1.0 + sum(amp / 24.0 * np.sin((i + 2) * theta + ph) for i, (amp, ph) in enumerate(zip(amps, phases)))
    rho = (np.abs(u) ** n + np.abs(v) ** n) ** (1.0 / n) / wobble
    return np.clip((1.0 - rho) * min(a, b) / feather + 0.5, 0.0, 1.0)


def compose_plain(face: np.ndarray, look: Look) -> tuple[np.ndarray, np.ndarray]:
    """The bare scene before the camera's processing (float BGR) and the canonical->frame homography."""
    rng = np.random.default_rng(look.scene_seed)
    img = _scene(rng, look)
    h = card_homography(look)
    colour = _colourise(face, look)
    # Neck and shoulders below the card, in the skin tone and a shirt colour (canonical units).
    neck_colour = colour[30:44, 16:32].reshape(-1, 3).mean(axis=0) * 0.8
    shirt = cv2.cvtColor(np.uint8([[[rng.uniform(0, 180), rng.uniform(0, 220), rng.uniform(30, 220)]]]),
                         cv2.COLOR_HSV2BGR)[0, 0].astype(float)
    shoulders = np.array([[-40, 140], [-30, 78], [10, 64], [37, 64], [77, 78], [88, 140]], dtype=np.float64)
    neck = np.array([[12, 36], [35, 36], [36, 72], [11, 72]], dtype=np.float64)
    for poly, col in ((shoulders, shirt), (neck, neck_colour)):
        pts = np.round(apply_h(h, poly) * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], col.tolist(), cv2.LINE_AA, shift=4)
    side = 48 * UP
    big = cv2.resize(colour, (side, side), interpolation=cv2.INTER_LANCZOS4)
    alpha = _face_mask(look, side)
    up = np.array([[1.0 / UP, 0, 0.5 / UP - 0.5], [0, 1.0 / UP, 0.5 / UP - 0.5], [0, 0, 1]])  # big px -> canonical
    hb = h @ up
    face_layer = cv2.warpPerspective(big, hb, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = cv2.warpPerspective(alpha, hb, (W, H), flags=cv2.INTER_LINEAR)[..., None]
    face_gain = 1.0 if look.light != "back" else 0.75  # the window behind outshines the face
    img = img * (1 - a) + face_layer * face_gain * a
    return img, h


# ------------------------------------------------------------------ headset


@dataclass(frozen=True)
class HeadPose:
    """Weak-perspective pose: frame point = scale * rot @ canonical 3-D point + shift (x, y);
    z (rot's third row) orders depth, larger is farther."""

    scale: float
    rot: np.ndarray
    shift: np.ndarray
    source: str  # "mesh" (the face mesh on the bare frame) or "placement" (the mesh missed)

    def project(self, pts: np.ndarray) -> np.ndarray:
        """N x 3 canonical -> N x 3 (frame x, frame y, depth)."""
        p = self.scale * pts @ self.rot.T
        p[:, :2] += self.shift[:2]
        return p


def pose_from_mesh(landmarks: np.ndarray, template: FaceTemplate) -> HeadPose:
    """3-D similarity (Umeyama) taking the template's zero-pose points onto mesh landmarks (N x 3)."""
    p = landmarks[template.indices]
    q = template.points_3d
    mp_, mq = p.mean(axis=0), q.mean(axis=0)
    pc, qc = p - mp_, q - mq
    u, s, vt = np.linalg.svd(pc.T @ qc)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ d @ vt
    scale = float((s * np.diag(d)).sum() / (qc**2).sum())
    return HeadPose(scale, rot, mp_ - scale * rot @ mq, "mesh")


def pose_from_placement(h: np.ndarray, look: Look) -> HeadPose:
    """The card's own pose, for a frame whose bare face the mesh could not find."""
    rot = _rotation(-look.pitch, look.yaw, look.roll)
    centre = apply_h(h, np.array([[23.5, 23.5]]))[0]
    scale = look.size / 48.0
    return HeadPose(scale, rot, np.array([*(centre - scale * (rot @ [23.5, 23.5, 0])[:2]), 0.0]), "placement")


def _outline(hs: HeadsetLook, k: int = 64) -> np.ndarray:
    """The visor's outline as x, y (canonical), counter-clockwise, nose cut-out included."""
    cx, cy = 23.6, (hs.top + hs.bottom) / 2
    a, b = hs.half_width, (hs.bottom - hs.top) / 2
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x = cx + a * np.sign(c) * np.abs(c) ** (2 / hs.roundness)
    y = cy + b * np.sign(s) * np.abs(s) ** (2 / hs.roundness)
    nw, nh = hs.notch
    near = np.abs(x - cx) < nw / 2
    bottom = s > 0
    y = np.where(near & bottom, y - nh * np.cos(np.clip((x - cx) / (nw / 2), -1, 1) * np.pi / 2) ** 0.7, y)
    return np.column_stack([x, y])


def _face_depth(x: np.ndarray) -> np.ndarray:
    """How far back the face surface lies at canonical x (0 at the eyes, 16 at the cheeks)."""
    return 16.0 * np.clip(np.abs(x - 23.6) / 19.0, 0, 1.3) ** 2


def _shade(colour: tuple[int, int, int], normal: np.ndarray, light: np.ndarray) -> list[float]:
    lit = 0.45 + 0.6 * max(0.0, float(normal @ light))
    return [min(255.0, c * lit) for c in colour]


def draw_headset(img: np.ndarray, pose: HeadPose, hs: HeadsetLook, skin: np.ndarray) -> np.ndarray:
    """Draw the posed headset solid (and a hand) on a float BGR image; returns a new image."""
    out = img.copy()
    shell, rim = SHELLS[hs.shell]
    light = pose.rot @ np.asarray(hs.light)  # the light is fixed to the face: it turns with it
    o = _outline(hs)
    front = np.column_stack([o, -hs.depth + hs.curve * ((o[:, 0] - 23.6) / hs.half_width) ** 2])
    back_xy = np.column_stack([23.6 + (o[:, 0] - 23.6) * 0.9, o[:, 1]])
    back = np.column_stack([back_xy, _face_depth(back_xy[:, 0]) + 1.0])
    pf, pb = pose.project(front), pose.project(back)

    def poly(points: np.ndarray, colour, target=None) -> None:
        cv2.fillPoly(out if target is None else target, [np.round(points[:, :2] * 16).astype(np.int32)],
                     colour, cv2.LINE_AA, shift=4)

    # Shadow on the face under the visor's lower edge, towards where the light does not reach.
    if hs.shadow > 0:
        lower = back[back[:, 1] > (hs.top + hs.bottom) / 2]
        drop = np.array([0.0, 4.0 + 6.0 * (1 + hs.light[1]), 0.0])
        band = np.vstack([lower, (lower + drop)[::-1]])
        shade = np.zeros(out.shape[:2], np.float32)
        cv2.fillPoly(shade, [np.round(pose.project(band)[:, :2] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        shade = cv2.GaussianBlur(shade, (0, 0), max(1.0, 1.5 * pose.scale))
        out *= (1.0 - hs.shadow * shade)[..., None]
    strap = tuple(0.5 * c for c in shell) if hs.shell in ("white", "light_grey") else (30, 30, 32)
    width = max(2, int(round(4.0 * pose.scale)))
    if hs.straps:
        for side in (-1, 1):
            i = int(np.argmax(side * back[:, 0]))
            start = back[i]
            path = np.array([start, start + [side * 2.0, -3.0, 14.0], start + [side * 3.0, -5.0, 30.0]])
            facing = (pose.rot @ np.array([side, 0.0, 0.0]))[2]  # < 0: this side turns towards the camera
            if facing < 0.15:
                cv2.polylines(out, [np.round(pose.project(path)[:, :2] * 16).astype(np.int32)], False, strap,
                              width, cv2.LINE_AA, shift=4)
    if hs.top_strap:
        top = back[int(np.argmin(back[:, 1]))]
        path = np.array([top, top + [0.0, -8.0, 8.0], top + [0.0, -16.0, 24.0]])
        cv2.polylines(out, [np.round(pose.project(path)[:, :2] * 16).astype(np.int32)], False, strap, width + 1,
                      cv2.LINE_AA, shift=4)
    # The gasket: a dark band where the headset meets the face.
    cv2.polylines(out, [np.round(pb[:, :2] * 16).astype(np.int32)], True, (20, 20, 22), max(1, width // 2),
                  cv2.LINE_AA, shift=4)
    # Side walls, far ones first; only those that face the camera.
    n = len(o)
    quads = []
    for i in range(n):
        j = (i + 1) % n
        q3 = np.array([front[i], front[j], back[j], back[i]])
        q = np.array([pf[i], pf[j], pb[j], pb[i]])
        normal = np.cross(q3[1] - q3[0], q3[3] - q3[0])
        normal = pose.rot @ (normal / (np.linalg.norm(normal) + 1e-9))
        quads.append((q[:, 2].mean(), q, normal))
    for _, q, normal in sorted(quads, key=lambda t: -t[0]):
        if normal[2] > 0:  # outline runs counter-clockwise: outward normals; > 0 faces away
            continue
        poly(q, _shade(shell, -normal, light))
    # The front, lit from the light's side, with a soft highlight.
    front_normal = pose.rot @ np.array([0.0, 0.0, -1.0])
    poly(pf, _shade(shell, front_normal, light))
    glow = np.zeros(out.shape[:2], np.float32)
    centre = pose.project(np.array([[23.6 - 8 * hs.light[0], hs.top + (hs.bottom - hs.top) * 0.3, -hs.depth]]))[0]
    cv2.ellipse(glow, (int(centre[0]), int(centre[1])),
                (max(1, int(hs.half_width * 0.5 * pose.scale)), max(1, int((hs.bottom - hs.top) * 0.2 * pose.scale))),
                0, 0, 360, 1.0, -1)
    inside = np.zeros(out.shape[:2], np.float32)
    poly(pf, 1.0, inside)
    glow = cv2.GaussianBlur(glow, (0, 0), max(1.0, 3 * pose.scale)) * inside
    out += (glow * 40.0)[..., None]
    if rim is not None:  # bright rim round the front (white and light headsets)
        cv2.polylines(out, [np.round(pf[:, :2] * 16).astype(np.int32)], True, rim, max(1, int(round(1.2 * pose.scale))),
                      cv2.LINE_AA, shift=4)
    if hs.hand is not None:
        _draw_hand(out, pose, hs, front, skin)
    return out


def _draw_hand(out: np.ndarray, pose: HeadPose, hs: HeadsetLook, front: np.ndarray, skin: np.ndarray) -> None:
    """A hand touching the headset: fingers over its side, or under its bottom edge lifting it."""
    s = hs.hand_side
    cx = 23.6
    if hs.hand == "side":
        root = np.array([cx + s * (hs.half_width + 6), (hs.top + hs.bottom) / 2 + 10, -hs.depth / 2])
        tips = [np.array([cx + s * (hs.half_width - 7 - 2 * k), hs.top + 4 + 4.5 * k, -hs.depth - 1]) for k in range(4)]
        palm = np.array([cx + s * (hs.half_width + 8), (hs.top + hs.bottom) / 2 + 12, -hs.depth / 2])
    else:
        # From beside the cheek: the fingers reach in under the edge, the palm stays off the mouth.
        root = np.array([cx + s * (hs.half_width + 2), hs.bottom + 8, -hs.depth / 2])
        tips = [np.array([cx + s * (9 + 4 * k), hs.bottom - 1, -hs.depth - 1]) for k in range(4)]
        palm = np.array([cx + s * (hs.half_width + 6), hs.bottom + 12, -hs.depth / 2])
    colour = [float(c) for c in skin]
    shadow = [0.7 * c for c in colour]
    width = max(2, int(round(3.6 * pose.scale)))
    p_root, p_palm = pose.project(root[None])[0], pose.project(palm[None])[0]
    for tip in tips:
        pt = pose.project(tip[None])[0]
        for col, wd in ((shadow, width + 2), (colour, width)):
            cv2.line(out, (int(p_root[0] * 16), int(p_root[1] * 16)), (int(pt[0] * 16), int(pt[1] * 16)), col, wd,
                     cv2.LINE_AA, shift=4)
    axes = (max(2, int(9 * pose.scale)), max(2, int(7 * pose.scale)))
    cv2.ellipse(out, (int(p_palm[0]), int(p_palm[1])), axes, 0, 0, 360, colour, -1, cv2.LINE_AA)


# ------------------------------------------------------------------ camera


def camera(img: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """The webcam's processing of a float BGR scene -> uint8 BGR frame."""
    out = img * look.gain * np.asarray(look.white_balance, dtype=np.float32)
    if look.light == "back":  # the window blooms into the face's edges
        bright = np.clip(out - 200.0, 0, None)
        out = out + cv2.GaussianBlur(bright, (0, 0), 6.0) * 0.8
    if look.defocus > 0:
        r = look.defocus
        k = int(math.ceil(r)) * 2 + 1
        disk = np.zeros((k, k), np.float32)
        cv2.circle(disk, (k // 2, k // 2), int(round(r)), 1.0, -1, cv2.LINE_AA)
        out = cv2.filter2D(out, -1, disk / disk.sum())
    if look.motion[0] > 0:
        length, angle = look.motion
        k = int(math.ceil(length)) | 1
        line = np.zeros((k, k), np.float32)
        c, d = k // 2, length / 2
        dx, dy = d * math.cos(math.radians(angle)), d * math.sin(math.radians(angle))
        cv2.line(line, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1,
                 cv2.LINE_AA)
        out = cv2.filter2D(out, -1, line / line.sum())
    # Sensor noise: shot noise grows with the signal, read noise and colour (chroma) noise on top.
    shot = np.sqrt(np.clip(out, 0, None) / 255.0) * look.noise * 1.5
    out = out + rng.standard_normal(out.shape).astype(np.float32) * (shot + look.noise)
    if look.chroma_noise > 0:
        blotch = cv2.GaussianBlur(rng.standard_normal(out.shape).astype(np.float32), (0, 0), 1.5)
        out = out + blotch * look.chroma_noise * 2.0
    if look.sharpen > 0:
        out = out + look.sharpen * (out - cv2.GaussianBlur(out, (0, 0), 1.2))
    frame = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if look.jpeg is not None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg])
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return frame


# ------------------------------------------------------------------ frames


@dataclass(frozen=True)
class HeldOutFrame:
    """One frame of the held-out family, with what is needed to score it."""

    image: np.ndarray  # 480 x 640 x 3 BGR uint8
    ideal: np.ndarray  # 2x3 frame -> canonical similarity a perfect face finder would give
    headset: bool
    pose_source: str | None  # headset frames: "mesh" or "placement"


class Poser:
    """mediapipe face mesh on the bare frame -> the head pose the headset is drawn with."""

    def __init__(self, template: FaceTemplate | None = None) -> None:
        import mediapipe as mp

        self.template = template or load_template()
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)

    def __call__(self, image: np.ndarray) -> HeadPose | None:
        rgb = np.ascontiguousarray(image[..., ::-1])
        result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([(p.x * W - 0.5, p.y * H - 0.5, p.z * W) for p in lm], dtype=np.float64)
        return pose_from_mesh(pts, self.template)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> Poser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def render(face: np.ndarray, look: Look, *, headset: bool, poser: Poser | None = None,
           noise_seed: int = 0) -> HeldOutFrame:
    """Draw one frame of ``face`` (48x48 grey) as ``look`` says, with or without the headset.

    The headset needs ``poser`` (the face mesh); where it finds no face on the bare scene the
    card's own pose stands in, and ``pose_source`` says so.
    """
    if face.ndim != 2:
        raise ValueError(f"expected a grey face, got shape {face.shape}")
    if face.shape != (48, 48):
        face = cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA)
    template = poser.template if poser is not None else load_template()
    scene, h = compose_plain(face, look)
    source = None
    if headset:
        if poser is None:
            raise ValueError("a headset frame needs a Poser (the face mesh that poses the headset)")
        bare = np.clip(np.rint(scene), 0, 255).astype(np.uint8)
        pose = poser(bare)
        source = "mesh" if pose is not None else "placement"
        if pose is None:
            pose = pose_from_placement(h, look)
        skin = _colourise(np.full((1, 1), 150, np.uint8), dataclasses.replace(look, contrast=0.0))[0, 0]
        scene = draw_headset(scene, pose, look.headset, skin)
    image = camera(scene, look, np.random.default_rng([look.scene_seed, noise_seed]))
    return HeldOutFrame(image, ideal_transform(h, template), headset, source)
