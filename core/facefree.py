"""Frames with no face in them: what a camera sees when the user has walked away.

Seven kinds, each a 640x480 BGR frame drawn with numpy and OpenCV, then put through a camera
model (exposure, blur, sensor noise, sometimes JPEG) as the other benchmark frames are:

- ``empty_room``: walls, a floor line, furniture, a door or a window;
- ``low_light``: a dim room at high sensor gain: grain, colour noise, banding;
- ``headset_on_desk``: a desk with a VR headset lying on it, visor, straps and lenses;
- ``hands``: one or two hands (palm and fingers) in front of a room;
- ``back_of_head``: a head turned away: hair, ears, neck and shoulders;
- ``poster``: posters and screens with texture: patch-scrambled photographs, stripes, text lines;
- ``dark_monitor``: a switched-off monitor with a bezel and a faint reflection.

Two disjoint sides, so a threshold is never chosen on the frames it is judged by:

- ``split="bench"``: the benchmark family. Poster texture comes from FER+ **Test** images
  (scrambled into 8 px patches: texture, no face); seeds start at ``BENCH_SEED``.
- ``split="train"``: for choosing thresholds. Poster texture from FER+ **Train** images; seeds
  start at ``TRAIN_SEED``. Only ``training/headset/presence.py`` reads this side; nothing in
  ``training/`` reads the benchmark side (a test checks).

Without FER+ the posters use procedural texture only (the frames are then marked ``ferplus=False``).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.backgrounds import FRAME_SIZE
from vrfer.core.paths import ferplus_dir

KINDS = ("empty_room", "low_light", "headset_on_desk", "hands", "back_of_head", "poster", "dark_monitor")
SPLITS = {"bench": "FER2013Test", "train": "FER2013Train"}
BENCH_SEED = 0
TRAIN_SEED = 1_000_003  # far from any seed the benchmark uses: the two sides never share a frame
W, H = FRAME_SIZE


@dataclass(frozen=True)
class FaceFreeFrame:
    image: np.ndarray  # H x W x 3 BGR uint8
    kind: str
    index: int  # position within its kind
    split: str


def face_free_frames(n_per_kind: int, *, split: str = "bench", seed: int = 0, kinds: Sequence[str] = KINDS,
                     root: Path | None = None) -> Iterator[FaceFreeFrame]:
    """``n_per_kind`` frames of each kind, kinds interleaved; the same frames for a (split, seed)."""
    if split not in SPLITS:
        raise ValueError(f"face-free split must be one of {', '.join(SPLITS)}, got {split!r}")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown face-free kind {unknown[0]!r} (kinds: {', '.join(KINDS)})")
    base = (BENCH_SEED if split == "bench" else TRAIN_SEED) + seed
    textures = _TextureBank(root, SPLITS[split], np.random.default_rng(base + 7))
    rngs = {k: np.random.default_rng([base, KINDS.index(k)]) for k in kinds}
    for i in range(n_per_kind):
        for kind in kinds:
            rng = rngs[kind]
            image = _DRAW[kind](rng, textures)
            yield FaceFreeFrame(_camera(image, rng, dim=kind == "low_light"), kind, i, split)


# ------------------------------------------------------------------------------ material


class _TextureBank:
    """Patch-scrambled FER+ images of one split: photographic texture without a face in it."""

    def __init__(self, root: Path | None, folder: str, rng: np.random.Generator) -> None:
        self._files: list[Path] = []
        self._rng = rng
        if root is None:
            root = ferplus_dir()
        split_dir = Path(root) / folder
        if split_dir.is_dir():
            self._files = sorted(split_dir.glob("*.png"))

    @property
    def available(self) -> bool:
        return bool(self._files)

    def scrambled(self, w: int, h: int, rng: np.random.Generator) -> np.ndarray | None:
        """A w x h gray texture tiled from 8 px patches of random images, shuffled."""
        if not self._files:
            return None
        tiles = []
        for _ in range(4):
            img = cv2.imread(str(self._files[int(rng.integers(len(self._files)))]), cv2.IMREAD_GRAYSCALE)
            if img is not None and img.shape == (48, 48):
                tiles.extend(img[y:y + 8, x:x + 8] for y in range(0, 48, 8) for x in range(0, 48, 8))
        if not tiles:
            return None
        cols, rows = max(1, w // 16), max(1, h // 16)
        order = rng.integers(len(tiles), size=rows * cols)
        grid = np.vstack([np.hstack([tiles[order[r * cols + c]] for c in range(cols)]) for r in range(rows)])
        return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)


def _colour(rng: np.random.Generator, lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _room(rng: np.random.Generator, furniture: int | None = None) -> np.ndarray:
    """A wall with a floor line and some furniture: rectangles, shelves, a door or a window."""
    wall = np.array(_colour(rng, 60, 230), np.float32)
    t = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(wall * (1.0 - 0.35 * t * rng.uniform(0, 1)), (H, W, 3)).copy()
    floor = int(rng.uniform(0.6, 0.9) * H)
    img[floor:] = np.array(_colour(rng, 30, 180), np.float32)
    img = np.ascontiguousarray(img.astype(np.uint8))
    for _ in range(int(rng.integers(2, 7)) if furniture is None else furniture):
        x, y = int(rng.integers(0, W - 40)), int(rng.integers(0, H - 40))
        w, h = int(rng.integers(30, 260)), int(rng.integers(30, 260))
        what = rng.random()
        if what < 0.5:
            cv2.rectangle(img, (x, y), (x + w, y + h), _colour(rng), -1)
        elif what < 0.75:  # a shelf with books
            cv2.rectangle(img, (x, y), (x + w, y + 6), _colour(rng, 40, 120), -1)
            bx = x
            while bx < x + w - 6:
                bw = int(rng.integers(5, 14))
                cv2.rectangle(img, (bx, y - int(rng.integers(20, 45))), (bx + bw, y), _colour(rng), -1)
                bx += bw + 1
        else:  # a window: a bright pane with a cross
            cv2.rectangle(img, (x, y), (x + w, y + h), _colour(rng, 180, 255), -1)
            cv2.line(img, (x + w // 2, y), (x + w // 2, y + h), (90, 90, 90), 4)
            cv2.line(img, (x, y + h // 2), (x + w, y + h // 2), (90, 90, 90), 4)
    return img


# ------------------------------------------------------------------------------ the seven kinds


def _empty_room(rng: np.random.Generator, _: _TextureBank) -> np.ndarray:
    return _room(rng)


def _low_light(rng: np.random.Generator, _: _TextureBank) -> np.ndarray:
    """A room at 5-20% exposure; ``_camera(dim=True)`` then adds the high-gain grain."""
    return (_room(rng).astype(np.float32) * rng.uniform(0.05, 0.2)).astype(np.uint8)


def _superellipse(cx: float, cy: float, a: float, b: float, n: float, angle: float = 0.0, k: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, k, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    x, y = a * np.sign(c) * np.abs(c) ** (2 / n), b * np.sign(s) * np.abs(s) ** (2 / n)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + x * ca - y * sa, cy + x * sa + y * ca], 1)


def _fill(img: np.ndarray, pts: np.ndarray, colour: tuple[int, ...]) -> None:
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)


def _headset_on_desk(rng: np.random.Generator, _: _TextureBank) -> np.ndarray:
    """A headset lying on a desk, seen from the front or from above, sometimes lenses up."""
    img = _room(rng, furniture=int(rng.integers(0, 3)))
    desk = int(rng.uniform(0.45, 0.7) * H)
    cv2.rectangle(img, (0, desk), (W, H), _colour(rng, 40, 200), -1)
    shell = (28, 28, 30) if rng.random() < 0.5 else ((170, 168, 165) if rng.random() < 0.5 else (236, 236, 232))
    shell = tuple(int(np.clip(v + rng.normal(0, 8), 0, 255)) for v in shell)
    a = float(rng.uniform(70, 170))
    b = a * float(rng.uniform(0.35, 0.55))
    cx = float(rng.uniform(a + 10, W - a - 10))
    cy = float(np.clip(desk + rng.uniform(-0.2, 0.6) * (H - desk), b + 5, H - b - 5))
    angle = float(rng.normal(0, 0.25))
    for side in (-1, 1):  # straps loop back from the visor's sides
        strap = tuple(int(v * rng.uniform(0.3, 0.9)) for v in shell)
        p0 = (int(cx + side * a * 0.95), int(cy))
        p1 = (int(cx + side * a * rng.uniform(1.1, 1.5)), int(cy - b * rng.uniform(0.5, 2.0)))
        cv2.line(img, p0, p1, strap, int(rng.integers(6, 16)), cv2.LINE_AA)
    _fill(img, _superellipse(cx, cy, a, b, float(rng.uniform(2.5, 6)), angle), shell)
    plate = tuple(int(np.clip(v * rng.uniform(0.85, 1.15), 0, 255)) for v in shell)
    _fill(img, _superellipse(cx, cy - b * 0.1, a * 0.85, b * 0.7, float(rng.uniform(2.5, 6)), angle), plate)
    if rng.random() < 0.5:  # lenses up: two dark discs, the likeliest pair of "eyes" in the room
        for side in (-1, 1):
            cv2.circle(img, (int(cx + side * a * 0.4), int(cy)), int(b * 0.45), (15, 15, 18), -1, cv2.LINE_AA)
            cv2.circle(img, (int(cx + side * a * 0.4 - 4), int(cy - 4)), max(2, int(b * 0.1)), (200, 200, 200), -1,
                       cv2.LINE_AA)
    else:  # front cameras
        for side in (-1, 1):
            cv2.circle(img, (int(cx + side * a * 0.6), int(cy - b * 0.3)), max(2, int(b * 0.12)), (12, 12, 12), -1,
                       cv2.LINE_AA)
    return img


def _skin(rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.array([120.0, 150.0, 190.0]) * rng.uniform(0.45, 1.25), 0, 255)


def _hand(img: np.ndarray, rng: np.random.Generator, cx: float, cy: float, size: float, angle: float) -> None:
    skin = _skin(rng)
    _fill(img, _superellipse(cx, cy, size * 0.45, size * 0.55, 2.5, angle), tuple(int(v) for v in skin))
    ca, sa = math.cos(angle), math.sin(angle)
    for f in range(4):  # fingers up from the palm, a thumb to the side
        ox = (f - 1.5) * size * 0.22
        length = size * rng.uniform(0.55, 0.8)
        base = np.array([[ox - size * 0.09, -size * 0.45], [ox + size * 0.09, -size * 0.45],
                         [ox + size * 0.08, -size * 0.45 - length], [ox - size * 0.08, -size * 0.45 - length]])
        pts = np.stack([cx + base[:, 0] * ca - base[:, 1] * sa, cy + base[:, 0] * sa + base[:, 1] * ca], 1)
        _fill(img, pts, tuple(int(v) for v in skin * rng.uniform(0.9, 1.0)))
    thumb = np.array([[size * 0.4, 0.0], [size * 0.5, size * 0.15], [size * 0.85, -size * 0.3],
                      [size * 0.75, -size * 0.4]])
    pts = np.stack([cx + thumb[:, 0] * ca - thumb[:, 1] * sa, cy + thumb[:, 0] * sa + thumb[:, 1] * ca], 1)
    _fill(img, pts, tuple(int(v) for v in skin * 0.95))


def _hands(rng: np.random.Generator, _: _TextureBank) -> np.ndarray:
    img = _room(rng)
    for _ in range(int(rng.integers(1, 3))):
        size = float(rng.uniform(80, 220))
        _hand(img, rng, float(rng.uniform(size, W - size)), float(rng.uniform(size, H - size * 0.3)), size,
              float(rng.normal(0, 0.5)))
    return img


def _back_of_head(rng: np.random.Generator, _: _TextureBank) -> np.ndarray:
    """Shoulders, a neck and a head of hair with the ears showing: a user facing away."""
    img = _room(rng)
    side = float(rng.uniform(140, 300))  # head height
    cx, cy = float(rng.uniform(side * 0.5, W - side * 0.5)), float(rng.uniform(side * 0.45, H - side * 0.2))
    shirt, skin = _colour(rng), _skin(rng)
    cv2.ellipse(img, (int(cx), int(cy + side * 1.1)), (int(side * 1.1), int(side * 0.6)), 0, 180, 360, shirt, -1,
                cv2.LINE_AA)
    cv2.rectangle(img, (int(cx - side * 0.2), int(cy)), (int(cx + side * 0.2), int(cy + side * 0.65)),
                  tuple(int(v) for v in skin * 0.9), -1)
    for s in (-1, 1):  # ears at the sides
        cv2.ellipse(img, (int(cx + s * side * 0.37), int(cy)), (int(side * 0.07), int(side * 0.13)), 0, 0, 360,
                    tuple(int(v) for v in skin), -1, cv2.LINE_AA)
    hair = np.clip(np.array(_colour(rng, 10, 90), np.float64) * rng.uniform(0.5, 1.5), 0, 255)
    _fill(img, _superellipse(cx, cy - side * 0.08, side * 0.38, side * 0.5, 2.2, float(rng.normal(0, 0.1))),
          tuple(int(v) for v in hair))
    # Hair strands: short dark and light strokes over the crown.
    for _ in range(int(rng.integers(30, 90))):
        p = (cx + rng.normal(0, side * 0.15), cy - side * 0.08 + rng.normal(0, side * 0.2))
        q = (p[0] + rng.normal(0, side * 0.05), p[1] + side * rng.uniform(0.04, 0.15))
        shade = tuple(int(np.clip(v * rng.uniform(0.6, 1.4), 0, 255)) for v in hair)
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), shade, 1, cv2.LINE_AA)
    return img


def _poster(rng: np.random.Generator, textures: _TextureBank) -> np.ndarray:
    """One to three posters or screens: scrambled photographs, stripes or text lines."""
    img = _room(rng, furniture=int(rng.integers(0, 3)))
    for _ in range(int(rng.integers(1, 4))):
        w, h = int(rng.integers(120, 420)), int(rng.integers(100, 320))
        x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
        what = rng.random()
        tex = textures.scrambled(w, h, rng) if what < 0.5 else None
        if tex is not None:
            tint = rng.uniform(0.7, 1.2, 3)
            patch = np.clip(tex[..., None].astype(np.float32) * tint, 0, 255).astype(np.uint8)
        elif what < 0.75:  # stripes or checks
            period = int(rng.integers(4, 40))
            yy, xx = np.mgrid[0:h, 0:w]
            pattern = ((xx // period + (yy // period if rng.random() < 0.5 else 0)) % 2).astype(np.float32)
            a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
            patch = (a * pattern[..., None] + b * (1 - pattern[..., None])).astype(np.uint8)
        else:  # a screen of text
            patch = np.empty((h, w, 3), np.uint8)
            patch[:] = _colour(rng, 200, 255) if rng.random() < 0.5 else _colour(rng, 10, 50)
            ink = (0, 0, 0) if patch[0, 0].mean() > 128 else (220, 220, 220)
            for row in range(12, h - 4, int(rng.integers(12, 22))):
                words = "".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(8, 40))))
                cv2.putText(patch, words, (4, row), cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.3, 0.6)), ink, 1,
                            cv2.LINE_AA)
        img[y:y + h, x:x + w] = patch
        cv2.rectangle(img, (x, y), (x + w, y + h), _colour(rng, 0, 80), int(rng.integers(1, 8)))
    return img


def _dark_monitor(rng: np.random.Generator, _: _TextureBank) -> np.ndarray:
    """A switched-off monitor filling much of the view, a faint window reflection on its glass."""
    img = _room(rng, furniture=int(rng.integers(0, 3)))
    w, h = int(rng.uniform(0.5, 0.95) * W), int(rng.uniform(0.45, 0.85) * H)
    x, y = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
    bezel = int(rng.integers(4, 20))
    cv2.rectangle(img, (x, y), (x + w, y + h), _colour(rng, 5, 40), -1)
    glass = np.full((h - 2 * bezel, w - 2 * bezel, 3), rng.integers(8, 25), np.float32)
    gx = np.linspace(0, 1, glass.shape[1], dtype=np.float32)[None, :, None]
    glass += rng.uniform(0, 25) * np.exp(-((gx - rng.uniform(0, 1)) ** 2) / 0.05)  # the reflection
    img[y + bezel:y + h - bezel, x + bezel:x + w - bezel] = np.clip(glass, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:  # a standby light
        cv2.circle(img, (x + w - bezel - 6, y + h - bezel // 2), 2, (0, 120, 255), -1)
    return img


_DRAW = {"empty_room": _empty_room, "low_light": _low_light, "headset_on_desk": _headset_on_desk, "hands": _hands,
         "back_of_head": _back_of_head, "poster": _poster, "dark_monitor": _dark_monitor}


def _camera(img: np.ndarray, rng: np.random.Generator, *, dim: bool = False) -> np.ndarray:
    """Exposure, blur, sensor noise and sometimes JPEG. ``dim``: high gain, so heavy grain and colour noise."""
    out = img.astype(np.float32)
    out = 255.0 * (np.clip(out * rng.uniform(0.7, 1.3), 0, 255) / 255.0) ** rng.uniform(0.8, 1.25)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 2.0))
    if dim:
        gain = rng.uniform(2.0, 6.0)  # dim room: the camera amplifies signal and noise alike
        out = out * gain + rng.normal(0, rng.uniform(6, 22), out.shape).astype(np.float32)
        out += rng.normal(0, rng.uniform(2, 8), (out.shape[0], 1, 1)).astype(np.float32)  # row banding
    else:
        out += rng.normal(0, rng.uniform(1, 6), out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 90))])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out
