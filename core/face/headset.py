"""Find the face under a VR headset: an occlusion-robust fallback for ``core.face.FaceLocator``.

mediapipe finds 94% of camera-like faces without a headset and 16% with one (field notes).
``HeadsetLocator`` is a small CNN (``assets/models/headset_locator.onnx``), distilled from
mediapipe's geometry on the un-occluded twins of drawn-headset frames. It predicts five
template anchors (eye centres, nose tip, mouth corners) *including the hidden eyes*, and a
face-present score; a similarity fit of those anchors onto the template is the usual
frame->canonical transform, so alignment and the VR crop work as with the mesh.

Coarse to fine, one network: pass 1 sees the whole frame at 128x96; pass 2 sees a window
twice the face's size around pass 1's answer, at the same 128x96, so the face fills more
input pixels. A locator whose metadata says ``vrfer.zoom = "1"`` (its presence head was fitted
counting such answers) looks again, when pass 1 finds nothing in the whole frame, in overlapping
tiles half the frame's height (``zoom_windows``, one batched run): a face of 80 px is 16 px in
the whole frame's input, 32 px in a tile's, which is how the locator learnt faces. The shipped
locator does (since it was trained on webcams at an angle). While the face is held from frame to
frame only pass 2 runs, in the window of the previous answer. After it, ``core.face.fallbacks``' ``GeometryTracker`` repeats the last
good geometry (``path="tracked"``) for a short while when every finder misses, and
``RoiFallback`` is the user's rectangle.

Runtime order (``core.face.default_fallbacks``): mesh when confident -> locator -> tracked -> (far
faces, ``core.face.far``, off by default) -> roi.
"Confident" means the locator, run once in the mesh's face window, does not see a headset
there (``distrusts``): under a visor the mesh guesses the eyes.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.errors import ModelError
from vrfer.core.geometry import canonical_box, face_centre_side, fit_similarity, from_fraction
from vrfer.core.model import open_session
from vrfer.core.paths import ASSETS_DIR
from vrfer.core.types import FaceGeometry, Frame

DEFAULT_LOCATOR = ASSETS_DIR / "models" / "headset_locator.onnx"
KIND = "headset_locator"
FORMAT_VERSION = 1
INPUT_H, INPUT_W = 96, 128
WINDOW_FACES = 2.0  # pass-2 window height in face sides (the canonical square's size in the frame)
N_ANCHORS = 5


# --------------------------------------------------------------------- inputs (training uses these too)

def net_input(gray: np.ndarray, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The network's 96x128 uint8 view of a grayscale frame, or of ``window`` (x, y, w, h) of it.

    Pixels outside the frame repeat its edge. INTER_AREA: a 480 px frame shrinks 5x.
    """
    if window is not None:
        x, y, w, h = window
        fh, fw = gray.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"window {window} lies outside the {fw}x{fh} frame")
        gray = gray[y0:y1, x0:x1]
        if (x1 - x0, y1 - y0) != (w, h):  # pad only the cut, not the frame
            gray = cv2.copyMakeBorder(gray, y0 - y, y + h - y1, x0 - x, x + w - x1, cv2.BORDER_REPLICATE)
    return cv2.resize(gray, (INPUT_W, INPUT_H), interpolation=cv2.INTER_AREA)


def plausible(points: np.ndarray, anchors: np.ndarray, frame_shape: tuple[int, int]) -> bool:
    """A face whose centre is in the frame and whose size is between 16 px and 1.5 frame heights."""
    if not np.isfinite(points).all():
        return False
    try:
        centre, side, _ = face_centre_side(points, anchors)
    except ValueError:  # all anchors at one point
        return False
    fh, fw = frame_shape[:2]
    return 0 <= centre[0] < fw and 0 <= centre[1] < fh and 16 <= side <= 1.5 * fh


def window_around(points: np.ndarray, anchors: np.ndarray,
                  jitter: np.random.Generator | None = None) -> tuple[int, int, int, int]:
    """Integer (x, y, w, h), 4:3, ``WINDOW_FACES`` face sides tall, centred on the face.

    ``jitter`` (training) moves and resizes it as an imperfect first pass would.
    """
    centre, side, _ = face_centre_side(points, anchors)
    if jitter is not None:
        centre = centre + jitter.normal(0, 0.08 * side, 2)
        side *= float(np.exp(jitter.normal(0, 0.1)))
    h = max(int(round(WINDOW_FACES * side)), INPUT_H)
    w = int(round(h * INPUT_W / INPUT_H))
    return int(round(centre[0] - w / 2)), int(round(centre[1] - h / 2)), w, h


ZOOM_SHARE = 0.5  # zoom tiles are this share of the frame's height, overlapping by half a tile
MAX_ZOOM_TILES = 25  # a frame that needs more (a strip thousands of px wide) is not zoomed


def zoom_windows(frame_shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """Overlapping 4:3 tiles (x, y, w, h) covering the frame, ``ZOOM_SHARE`` of its height, one half
    tile apart: any face up to a quarter of the frame's height lies wholly inside one (3 x 3 tiles
    for 4:3 frames, 5 x 3 for 16:9). A side the tile is longer than (a portrait frame's width) is
    centred and padded. No tiles for a frame under two network inputs tall (a tile would barely
    zoom in, or zoom out) or one that would need over ``MAX_ZOOM_TILES``."""
    fh, fw = frame_shape[:2]
    th = int(round(fh * ZOOM_SHARE))
    if th < INPUT_H:  # the frame is under two network inputs tall: little to gain, or a zoom out
        return []
    tw = int(round(th * INPUT_W / INPUT_H))

    def starts(total: int, size: int) -> list[int]:
        if size >= total:
            return [int(round((total - size) / 2))]
        n = int(np.ceil((total - size) / (size / 2))) + 1
        return [int(round(v)) for v in np.linspace(0, total - size, n)]

    tiles = [(x, y, tw, th) for y in starts(fh, th) for x in starts(fw, tw)]
    return tiles if len(tiles) <= MAX_ZOOM_TILES else []


# --------------------------------------------------------------------- the locator

@dataclass(frozen=True)
class LocatorInfo:
    path: Path
    anchors: np.ndarray  # N_ANCHORS x 2, canonical pixels
    metadata: dict[str, str]


def load_locator_info(session, path: Path) -> LocatorInfo:
    """Check the ``vrfer.*`` metadata and the input/output shapes; ModelError naming the field."""
    meta = dict(session.get_modelmeta().custom_metadata_map)
    kind = meta.get("vrfer.kind")
    if kind != KIND:
        raise ModelError(f"{path}: not a headset locator (vrfer.kind is {kind!r}, expected {KIND!r})")
    try:
        version = int(meta.get("vrfer.locator_version", ""))
        anchors = np.asarray(json.loads(meta["vrfer.anchors"]), dtype=np.float64)
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"{path}: headset locator metadata is malformed ({type(exc).__name__}: {exc})") from None
    if version != FORMAT_VERSION:
        raise ModelError(f"{path}: vrfer.locator_version is {version}, this runtime reads {FORMAT_VERSION}")
    if anchors.shape != (N_ANCHORS, 2) or not np.isfinite(anchors).all():
        raise ModelError(f"{path}: vrfer.anchors must be {N_ANCHORS} canonical (x, y) points")
    inputs = session.get_inputs()
    outputs = {o.name for o in session.get_outputs()}
    if len(inputs) != 1 or not {"points", "face"} <= outputs:
        raise ModelError(f"{path}: expected one input and outputs 'points' and 'face'")
    shape = inputs[0].shape
    if len(shape) != 4 or tuple(shape[1:]) != (1, INPUT_H, INPUT_W):
        raise ModelError(f"{path}: input shape {shape} is not N x 1 x {INPUT_H} x {INPUT_W}")
    return LocatorInfo(path, anchors, meta)


class HeadsetLocator:
    """``Frame -> FaceGeometry | None`` (``path="locator"``); usable as a ``FaceLocator`` fallback.

    ``min_score`` is the face-present probability below which it answers None. ``hold_s``: a
    face found within that many seconds before lets the next call skip the whole-frame pass.
    ``zoom``: look in ``zoom_windows`` when the whole frame shows no face; None (the default) does
    what the model's ``vrfer.zoom`` metadata says, which its presence head's fit writes when it
    judged the tiles' answers too (their false faces count against its thresholds). One per stream;
    not thread-safe.
    """

    def __init__(self, model_path: str | os.PathLike[str] = DEFAULT_LOCATOR, *, threads: int = 1,
                 min_score: float = 0.5, min_occluded: float = 0.5, hold_s: float = 0.25,
                 zoom: bool | None = None) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: headset locator model not found")
        self.session = open_session(self.path, threads)
        self.info = load_locator_info(self.session, self.path)
        self._input = self.session.get_inputs()[0].name
        self._one_at_a_time = self.session.get_inputs()[0].shape[0] == 1  # a graph exported with a fixed batch of 1
        outputs = [o.name for o in self.session.get_outputs()]
        self._outputs = ["points", "face"] + [o for o in ("occluded", "presence") if o in outputs]
        self.min_score = min_score
        # Presence head (training.headset.presence): thresholds chosen with it, read from the file.
        # Answers down to the mesh's threshold are candidates: FaceLocator refines them (a crop mesh
        # that finds the face there makes it a mesh answer) and then judges each on its path's threshold.
        self.presence_threshold, self.presence_threshold_mesh = _presence_thresholds(self.info, "presence" in outputs)
        self._vetted: tuple[FaceGeometry, float] | None = None  # (mesh answer, presence) from the last vetting pass
        self.min_occluded = min_occluded
        self.hold_s = hold_s
        self.zoom = self.info.metadata.get("vrfer.zoom") == "1" if zoom is None else zoom
        self._last: tuple[float, np.ndarray] | None = None  # (timestamp, anchors in frame px)
        self._pending: tuple[int, float, np.ndarray, float] | None = None  # answer found while vetting the mesh
        self._occluded: float | None = None  # the headset output of the window pass behind the last answer
        self._answer: tuple[FaceGeometry, float] | None = None  # (last answer, its headset output)
        self.passes = 0  # network inputs run so far (a batch of tiles counts each), for benchmarks

    @property
    def judges_occlusion(self) -> bool:
        """Whether the model says if a headset hides the upper face (an ``occluded`` output)."""
        return "occluded" in self._outputs

    @property
    def scores_presence(self) -> bool:
        """Whether the model has a presence head (then its thresholds gate every answer)."""
        return "presence" in self._outputs

    def _run(self, img: np.ndarray) -> tuple[np.ndarray, float, float]:
        points, face, occluded, _ = self._run4(img)
        return points, face, occluded

    def _run4(self, img: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """(anchor fractions, face, occluded, presence); presence is the face score without a presence head."""
        points, prob = self._run_batch(img[None])
        return points[0], float(prob["face"][0]), float(prob.get("occluded", [0.0])[0]), \
            float(prob.get("presence", prob["face"])[0])

    def _run_batch(self, imgs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """N inputs in one run (one at a time for a graph with a fixed batch of 1):
        (N anchor fractions, {output: N probabilities})."""
        x = (imgs.astype(np.float32) * (2.0 / 255.0) - 1.0)[:, None]
        if self._one_at_a_time and len(x) > 1:
            runs = [self.session.run(self._outputs, {self._input: x[i:i + 1]}) for i in range(len(x))]
            out = {name: np.concatenate([r[k] for r in runs]) for k, name in enumerate(self._outputs)}
        else:
            out = dict(zip(self._outputs, self.session.run(self._outputs, {self._input: x})))
        self.passes += len(imgs)
        prob = {k: 1.0 / (1.0 + np.exp(-np.asarray(v, np.float64).reshape(len(imgs), -1)[:, 0]))
                for k, v in out.items() if k != "points"}
        return out["points"], prob

    def first_pass(self, gray: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Pass 1: (anchors in frame px, face score) from the whole frame, or, when that shows no
        face and the tiles are on, the most confident tile's; the whole frame's plausible answer
        when neither finds a face (its score tells), None when no plausible face is placed.
        ``training.headset.presence`` reads the same answers to fit the presence head."""
        fh, fw = gray.shape[:2]
        frac, score, _ = self._run(net_input(gray))
        points = from_fraction(frac, (0, 0, fw, fh))
        found = plausible(points, self.info.anchors, (fh, fw))
        if found and score >= self.min_score:
            return points, score
        zoomed = self.zoom_search(gray) if self.zoom else None
        if zoomed is not None:
            return zoomed
        return (points, score) if found else None

    def zoom_search(self, gray: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Pass 1 in every ``zoom_windows`` tile at once: the most confident plausible face, or None."""
        tiles = zoom_windows(gray.shape)
        if not tiles:
            return None
        points, prob = self._run_batch(np.stack([net_input(gray, t) for t in tiles]))
        best = None
        for frac, score, tile in zip(points, prob["face"], tiles):
            pts = from_fraction(frac, tile)
            if score >= self.min_score and (best is None or score > best[1]) \
                    and plausible(pts, self.info.anchors, gray.shape[:2]):
                best = (pts, float(score))
        return best

    def threshold(self, path: str) -> float:
        """The presence a geometry found by ``path`` needs: lower when the face mesh found it too."""
        return self.presence_threshold_mesh if path in ("mesh", "mesh_refined") else self.presence_threshold

    def presence(self, frame: Frame, geometry: FaceGeometry) -> float:
        """Face-presence probability in the window where ``geometry`` puts the face.

        Free for the mesh answer just vetted by ``distrusts`` and for this locator's own answer;
        otherwise one window pass. 0 for a face that lies outside the frame or is implausibly sized.
        """
        if self._vetted is not None and self._vetted[0] is geometry:
            return self._vetted[1]
        if self._answer is not None and self._answer[0] is geometry:
            return geometry.score
        anchors = self.info.anchors
        inv = cv2.invertAffineTransform(np.asarray(geometry.transform, dtype=np.float64))
        points = anchors @ inv[:, :2].T + inv[:, 2]
        gray = _gray(frame.image)
        if not plausible(points, anchors, gray.shape[:2]):
            return 0.0
        return self._run4(net_input(gray, window_around(points, anchors)))[3]

    def distrusts(self, frame: Frame, geometry: FaceGeometry) -> bool:
        """True when a headset hides the upper face that ``geometry`` (the mesh's) places.

        mediapipe under a visor still answers now and then, guessing the eyes: on benchmark
        headset frames its anchors were twice as far off as this locator's. One fine pass in
        the window of the mesh's face decides; its answer is kept for the fallback call on the
        same frame, so a distrusted frame costs one pass more, not three.
        """
        if not self.judges_occlusion:
            return False
        if self._answer is not None and self._answer[0] is geometry:  # its own answer: judged already
            return self._answer[1] >= self.min_occluded
        anchors = self.info.anchors
        inv = cv2.invertAffineTransform(np.asarray(geometry.transform, dtype=np.float64))
        mesh_points = anchors @ inv[:, :2].T + inv[:, 2]
        gray = _gray(frame.image)
        if not plausible(mesh_points, anchors, gray.shape[:2]):
            return False
        win = window_around(mesh_points, anchors)
        frac, score, occluded, presence = self._run4(net_input(gray, win))
        self._vetted = (geometry, presence)
        if occluded < self.min_occluded:
            return False
        points = from_fraction(frac, win)
        if (score >= self.min_score and presence >= self.presence_threshold_mesh
                and plausible(points, anchors, gray.shape[:2])):
            self._pending = (frame.index, frame.timestamp, points, presence)
        return True

    def locate(self, image: np.ndarray, timestamp: float | None = None) -> tuple[np.ndarray, float] | None:
        """(anchors in frame px, face score), or None when no face is found."""
        gray = _gray(image)
        fh, fw = gray.shape[:2]
        anchors = self.info.anchors
        now = time.perf_counter() if timestamp is None else timestamp
        points = None
        score = 0.0
        self._occluded = None
        if self._last is not None and 0 <= now - self._last[0] <= self.hold_s:
            win = window_around(self._last[1], anchors)  # tracking: the fine pass only
            frac, score, self._occluded, presence = self._run4(net_input(gray, win))
            points = from_fraction(frac, win)
            if (score < self.min_score or presence < self.presence_threshold_mesh
                    or not plausible(points, anchors, (fh, fw))):
                points, self._occluded = None, None
            else:
                score = presence
        if points is None:
            found = self.first_pass(gray)
            if found is None or found[1] < self.min_score:
                self._last = None
                return None
            points, score = found
            win = window_around(points, anchors)
            frac, fine, occluded, presence = self._run4(net_input(gray, win))
            if presence < self.presence_threshold_mesh:  # the window pass sees no face there: nobody is in view
                self._last = None
                return None
            fine_points = from_fraction(frac, win)
            if fine >= self.min_score and plausible(fine_points, anchors, (fh, fw)):
                points, self._occluded = fine_points, occluded
            score = presence if self.scores_presence else max(score, fine if fine >= self.min_score else 0.0)
        self._last = (now, points)
        return points, score

    def __call__(self, frame: Frame) -> FaceGeometry | None:
        pending, self._pending = self._pending, None
        self._answer = None
        if pending is not None and pending[:2] == (frame.index, frame.timestamp):
            points, score = pending[2], pending[3]
            self._last = (frame.timestamp, points)
            occluded: float | None = self.min_occluded  # pending answers come from a pass that saw a headset
        else:
            found = self.locate(frame.image, frame.timestamp)
            if found is None:
                return None
            points, score = found
            occluded = self._occluded
        geometry = locator_geometry(points, self.info.anchors, frame.image.shape[:2], score)
        if occluded is not None and self.judges_occlusion:
            # Lets ``distrusts`` answer for this geometry (FaceLocator's refinement asks) without a pass.
            self._answer = (geometry, occluded)
        return geometry

    def reset(self) -> None:
        self._last = None
        self._pending = None
        self._answer = None
        self._vetted = None


def _presence_thresholds(info: LocatorInfo, has_head: bool) -> tuple[float, float]:
    """(locator, mesh) presence thresholds from the model's metadata; (0, 0) without a presence head."""
    if not has_head:
        return 0.0, 0.0
    try:
        out = (float(info.metadata["vrfer.presence_threshold"]), float(info.metadata["vrfer.presence_threshold_mesh"]))
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{info.path}: a presence head needs vrfer.presence_threshold and "
                         f"vrfer.presence_threshold_mesh metadata ({type(exc).__name__}: {exc})") from None
    if not all(0.0 <= t <= 1.0 for t in out):
        raise ModelError(f"{info.path}: presence thresholds must lie in [0, 1], got {out}")
    return out


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 2:
        return image
    raise ValueError(f"frame image must be H x W x 3 BGR or H x W gray, got {image.shape}")


def locator_geometry(points: np.ndarray, anchors: np.ndarray, frame_shape: tuple[int, int],
                     score: float) -> FaceGeometry:
    transform, _ = fit_similarity(points, anchors)
    roll = float(np.degrees(np.arctan2(-transform[1, 0], transform[0, 0])))
    return FaceGeometry(transform=transform, box=canonical_box(transform, frame_shape), path="locator",
                        landmarks=np.asarray(points, dtype=np.float64), roll=roll, score=score)
