"""The locator's training set: network inputs and teacher labels from FER+ **Train** faces.

``vrfer headset data --n 3000 --out runs/headset/train.npz`` (``write``) writes

- ``x``: N x 96 x 128 uint8, the network input (a whole frame, or a window around the face);
- ``y``: N x 5 x 2 float32, the teacher's anchors in that input, as fractions of its width/height;
- ``face``: N uint8, 1 when a face is there (0: background only, or a headset without a face);
- ``headset``: N uint8, 1 when a headset is drawn.

Each face gives two headset frames and one clean frame, each as the whole frame and as a
window around the face, cut the way ``core.face.headset`` cuts its refine window but with the
centre and size jittered as a coarse estimate would be.

``--face-free N`` adds N Train-side ``core.facefree`` frames of each kind (empty rooms, dark
rooms, headsets on desks, hands, backs of heads, posters, dark monitors; seed ``FACE_FREE_SEED``,
which the presence head's fit and choice never use) as negatives, each as the whole frame and as
a window where a face might have been placed, some through a webcam.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.errors import DatasetError
from vrfer.core.facefree import face_free_frames
from vrfer.core.ferplus import split_names
from vrfer.core.face.headset import INPUT_H, INPUT_W, net_input, window_around
from vrfer.core.geometry import to_fraction
from vrfer.core.paths import ferplus_dir
from vrfer.training.augment import draw_occluder
from vrfer.training.headset import webcam
from vrfer.training.headset.synth import (H, W, Teacher, anchors, background, camera, draw_headset,
                                          make_sample, placement, random_headset)

WEBCAM_SIDES = webcam.SAMPLE_SIDES
FACE_FREE_SEED = 2  # training/headset/presence.py fits on seed 0 and chooses on seed 1


def ferplus_names(split: str, root: Path | None = None) -> tuple[Path, list[str]]:
    folder = (root or ferplus_dir()) / split
    return folder, split_names(folder)


ANCHORS = anchors()


def _inputs(img: np.ndarray, pts: np.ndarray, rng: np.random.Generator | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, anchors as fractions) for the whole frame and for a jittered window round the face."""
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    out = [(net_input(gray), to_fraction(pts, (0, 0, W, H)))]
    if rng is not None:
        win = window_around(pts, ANCHORS, jitter=rng)
        out.append((net_input(gray, win), to_fraction(pts, win)))
    return out


def generate(n_faces: int, seed: int, split: str = "FER2013Train", negatives: float = 0.06,
             max_angle: float = 20.0, log_every: int = 100, webcam_share: float = 0.0,
             occluder_share: float = 0.0, tilt: float = 0.0) -> dict[str, np.ndarray]:
    """``webcam_share`` of the faces (and of the negatives) are recorded the way
    ``training.headset.webcam`` draws a user's webcam: skin colour, an oval cut-out, 80-340 px,
    its headsets and one ``webcam.film`` camera for both twins; the teacher labels the bare one.
    ``occluder_share`` of the faces get their second headset twin as ``augment.draw_occluder``
    draws it (any outline, colour, rim, straps, hand), so that no one headset look is what the
    locator learns to see past. ``tilt`` of the webcam faces are seen from an angle (``webcam.draw_tilt``)."""
    if "Test" in split:
        raise DatasetError("the locator is never trained on FER+ Test faces")
    folder, names = ferplus_names(split)
    rng = np.random.default_rng(seed)
    picked = rng.choice(names, min(n_faces, len(names)), replace=False)
    teacher = Teacher()
    xs, ys, faces, hss = [], [], [], []
    t0, found = time.time(), 0

    def add(pairs, face: int, hs: int) -> None:
        for x, y in pairs:
            xs.append(x)
            ys.append(y.astype(np.float32))
            faces.append(face)
            hss.append(hs)

    try:
        for i, name in enumerate(picked):
            img = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
            if img is None:
                continue
            cam = rng.random() < webcam_share
            if cam:
                s, film = webcam.webcam_sample(img, teacher, rng, max_angle, tilt)
            else:
                s = make_sample(img, teacher, rng, side_range=(110, 340), max_angle=max_angle)
            if s is None:
                continue
            found += 1
            add(_inputs(s.headset, s.points, rng), 1, 1)
            add(_inputs(s.clean, s.points, rng), 1, 0)
            # A second headset on the same face: the label costs nothing more.
            before = s.raw if cam else s.clean  # s.clean is through the camera once; a second pass adds little
            if occluder_share > 0 and rng.random() < occluder_share:  # no draw at 0: older sets re-draw alike
                covered = draw_occluder(before, cv2.invertAffineTransform(s.transform), rng)
            else:
                covered = draw_headset(before, s.transform, webcam.webcam_headset(rng) if cam else random_headset(rng), rng)
            other = film(covered, s.placement) if cam else camera(covered, rng)  # cam: the same camera as its twins
            add(_inputs(other, s.points, rng), 1, 1)
            if rng.random() < negatives * 3:  # no face: a background, sometimes with a headset lying there
                bg = background(rng)
                hs = rng.random() < 0.5
                cam_bg = rng.random() < webcam_share
                if hs:
                    fake = cv2.invertAffineTransform(placement(float(rng.uniform(120, 300)), 0.0,
                                                               (float(rng.uniform(100, 540)), float(rng.uniform(100, 380)))))
                    bg = draw_headset(bg, fake, webcam.webcam_headset(rng) if cam_bg else random_headset(rng), rng)
                bg = webcam.shoot(bg, webcam.draw_webcam(rng)) if cam_bg else camera(bg, rng)
                add([(net_input(cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY)), np.zeros((5, 2)))], 0, int(hs))
            if log_every and (i + 1) % log_every == 0:
                print(f"{i + 1}/{len(picked)} faces, teacher found {found}, {len(xs)} inputs, "
                      f"{time.time() - t0:.0f} s", flush=True)
    finally:
        teacher.close()
    return {"x": np.stack(xs), "y": np.stack(ys), "face": np.array(faces, np.uint8),
            "headset": np.array(hss, np.uint8), "anchors": anchors().astype(np.float32)}


def face_free_inputs(n_per_kind: int, rng: np.random.Generator, webcam_share: float = 0.0,
                     seed: int = FACE_FREE_SEED) -> dict[str, np.ndarray]:
    """Negatives from Train-side face-free frames: each frame whole and in a jittered window where a
    80-340 px face could sit (the window pass sees such views when the whole-frame pass answers)."""
    xs, hss = [], []
    for f in face_free_frames(n_per_kind, split="train", seed=seed):
        img = webcam.shoot(f.image, webcam.draw_webcam(rng)) if rng.random() < webcam_share else f.image
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        side = float(rng.uniform(*WEBCAM_SIDES))
        place = placement(side, float(rng.uniform(-20, 20)),
                          (float(rng.uniform(side / 3, W - side / 3)), float(rng.uniform(side / 3, H - side / 3))))
        pts = ANCHORS @ place[:, :2].T + place[:, 2]
        hs = int(f.kind == "headset_on_desk")
        for x in (net_input(gray), net_input(gray, window_around(pts, ANCHORS, jitter=rng))):
            xs.append(x)
            hss.append(hs)
    n = len(xs)
    return {"x": np.stack(xs), "y": np.zeros((n, 5, 2), np.float32), "face": np.zeros(n, np.uint8),
            "headset": np.array(hss, np.uint8)}


def write(n: int, seed: int, out: Path, webcam_share: float = 0.0, face_free: int = 0,
          occluder_share: float = 0.0, tilt: float = 0.0) -> None:
    """``generate`` the set (plus ``face_free`` negatives of each face-free kind) and save it to ``out``."""
    data = generate(n, seed, webcam_share=webcam_share, occluder_share=occluder_share, tilt=tilt)
    if face_free:
        extra = face_free_inputs(face_free, np.random.default_rng([seed, 7]), webcam_share)
        # First: the validation set is the last rows (training/headset/train.py); these stay out of it.
        data.update({k: np.concatenate([extra[k], data[k]]) for k in extra})
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **data)
    print(f"wrote {out}: {len(data['x'])} inputs ({INPUT_W}x{INPUT_H})")
