"""``FaceLocator``: frame -> ``FaceGeometry`` (a map from frame pixels to the canonical 48x48 face).

Two modes:

- ``mesh``: mediapipe face mesh (478 landmarks, tracking mode) finds the face; a least-squares
  similarity transform fits a few stable landmarks onto ``assets/face_template.json``
  (``core.face_template``), the median position of those landmarks on FER+ *training* faces, so
  a live crop is framed the way the model's training faces were. A head-pose gate drops faces turned too far.
  When the mesh misses a small face but a fallback (the headset locator, the tracked
  geometry) knows roughly where it is, a second mesh looks again in an upscaled square crop
  around that face (``path="mesh_refined"``): the mesh scales a whole 640x480 frame down to
  its detector's 128 px input, where a 140 px face shrinks to 28 px.
- ``roi``: a mouth camera sees no whole face, so no detector runs. A user-set rectangle is
  mapped onto the lower half of the canonical face (rows 24..48), where the mouth of an
  aligned face would be.

Coordinates use OpenCV's pixel-centre convention throughout (pixel i covers [i-0.5, i+0.5)),
which is what ``cv2.warpAffine`` in ``core.preprocess.crop_face`` assumes.

``vrfer bench template`` re-measures the template; ``vrfer bench --locate`` prints per-frame
timings; ``vrfer bench --refine`` compares the locator with and without refinement on the same
frames (``vrfer.bench.face``, docs/benchmarks.md).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.errors import ConfigError
from vrfer.core.face.fallbacks import GeometryTracker, RoiFallback, roi_geometry
from vrfer.core.face.far import FarFaceDetector
from vrfer.core.face.headset import DEFAULT_LOCATOR, HeadsetLocator
from vrfer.core.face_template import TEMPLATE_PATH, FaceTemplate, load_template
from vrfer.core.geometry import ROTATIONS, canonical_box, crop_view, face_square, fit_similarity, from_crop, head_pose
from vrfer.core.types import FaceGeometry, Frame


MIN_FRAME_SIDE = 16  # the headset locator's smallest face; a smaller image holds none
MODES = ("mesh", "roi")


# Refinement (a second mesh on a crop around a face the mesh missed), chosen on FER+ *Valid*
# faces in camera-like frames (228 that the mesh missed and the headset locator found): a crop
# of 1.4 face sides found 89% (1.1: 86%, 1.8: 86%, 2.2: 78%); a second, wider look after a miss
# brings it to 93%. The locator often oversizes small faces (5% of them by 1.9x or more), so
# the size check is lopsided.
REFINE_MARGINS = (1.4, 2.2)  # crop sides, in face sides (the canonical square's side in the frame)
REFINE_SIZE = 256  # crop side in pixels, as the second mesh sees it
REFINE_MAX_SHIFT = 0.5  # the refined face's centre lies within this many hint sides of the hint's ...
REFINE_SIDE_RATIO = (1 / 3, 1.6)  # ... and its side within this range of the hint's, or the hint stands
REFINE_HOLD_S = 0.25  # a refined face this recent is looked for in its own crop first (video)
REFINE_BACKOFF_S = (0.1, 1.0)  # video: after a failed refinement wait this long, doubling up to the max
ROUGH_BACKOFF_S = 0.5  # video: after a rough hint the mesh did not confirm, ask for none for this long


@dataclass(frozen=True)
class FaceConfig:
    """How faces are found. Built from user settings, so bad values raise ``ConfigError``.

    ``tracking`` keeps mediapipe's tracker between frames (a camera); turn it off for a
    folder of unrelated images so each one is detected afresh. ``roi`` is (x, y, w, h) in
    frame pixels; ``rotate`` (clockwise degrees) then ``flip`` (mirror left-right) turn the
    ROI's content upright before it is placed on the lower half of the canonical face.
    """

    mode: str = "mesh"
    # 60°, not 45°: on 3,152 camera-like FER+ Test frames the faces at 45-60° were classified as
    # well as those at 15-45° (docs/benchmarks.md, "head-turn limit"), so refusing them only lost them.
    max_yaw: float = 60.0
    max_pitch: float = 35.0
    tracking: bool = True
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    roi: tuple[int, int, int, int] | None = None
    rotate: int = 0
    flip: bool = False
    template: Path | None = None  # None: the shipped assets/face_template.json
    refine: bool = True  # look again, in a crop, at a face the mesh missed but a fallback found
    # When nothing else finds a face, mediapipe's full-range detector looks for a small, far one,
    # kept only if the mesh then finds it in a crop (core.face.far). Off: on Valid it found one
    # more bare face in 534 (its rule asked two) and doubled the cost of a frame without a face.
    far_faces: bool = False
    # After this long past the mesh's look the fallback chain stops and the frame counts as "no
    # face": a frame without a face must not cost many times what one with a face does (docs/benchmarks.md).
    search_budget_ms: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"face mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("max_yaw", "max_pitch"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 180:
                raise ConfigError(f"face {name} must be a number of degrees in (0, 180], got {value!r}")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"face {name} must be between 0 and 1, got {value!r}")
        if self.rotate not in ROTATIONS:
            raise ConfigError(f"face rotate must be one of 0, 90, 180, 270, got {self.rotate!r}")
        if self.mode == "roi":
            roi = self.roi
            if (not isinstance(roi, (tuple, list)) or len(roi) != 4
                    or not all(isinstance(v, (int, float)) for v in roi)):
                raise ConfigError(f"face roi must be (x, y, w, h) in frame pixels, got {roi!r}")
            if roi[2] < 1 or roi[3] < 1:
                raise ConfigError(f"face roi {tuple(roi)} is empty: width and height must be at least 1 px")
        budget = self.search_budget_ms
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 10_000:
            raise ConfigError(f"face search_budget_ms must be a number of milliseconds in (0, 10000], got {budget!r}")


Fallback = Callable[[Frame], "FaceGeometry | None"]


class FaceLocator:
    """Frame -> ``FaceGeometry | None``. One per video stream; not thread-safe.

    ``fallbacks`` are tried in order when the mesh finds no face, or when one of them
    ``distrusts(frame, geometry)`` the mesh's answer (``core.face.headset.HeadsetLocator`` sees a
    headset over the eyes); each returns a geometry whose ``path`` names it, or None. They go through
    the same pose gate. ``last_reason`` says why the last ``process`` returned None.

    A fallback whose answers are only rough (``needs_refinement``: the full-range detector of
    ``core.face.far``) counts only when that second mesh confirms it.

    Coarse to fine (``cfg.refine``): when the mesh found nothing and a fallback answers with a
    face (not the user's ROI), a second mesh runs on a ``REFINE_SIZE`` square crop of
    ``REFINE_MARGINS`` face sides around it (a wider one after a miss). Its answer replaces the fallback's
    (``path="mesh_refined"``, the mesh's own alignment) unless a fallback distrusts that face
    (a headset: the mesh would guess the eyes) or the two disagree on where the face is. On
    video a refined face is then looked for in its own crop first, while it is held, instead of
    in the whole frame; failed refinements back off, so a fallback's false face costs little.

    Presence: with a fallback that ``scores_presence`` (the headset locator's presence head),
    every accepted face carries its presence in ``score`` and is refused below its path's
    threshold (``_presence``). ``cfg.search_budget_ms`` bounds the search after the mesh's look.
    """

    def __init__(self, cfg: FaceConfig, fallbacks: Sequence[Fallback] = ()) -> None:
        self.cfg = cfg
        self.fallbacks = tuple(fallbacks)
        self.last_reason: str | None = None
        self._mesh = None
        self._crop_mesh = None  # the refinement's mesh, made on first need (about 27 MiB)
        self._view: np.ndarray | None = None  # 2x3 frame -> crop map the held face is followed in
        self._template: FaceTemplate | None = None
        self._held: tuple[float, FaceGeometry] | None = None  # (timestamp, last refined face), video
        self._backoff = 0.0  # seconds to wait after the last failed refinement (video)
        self._next_refine = -math.inf  # frame timestamp before which no refinement is tried
        self._next_rough = -math.inf  # ... and before which no rough hint (core.face.far) is asked for
        self.looks = 0  # crops the refinement's mesh has looked at, for benchmarks
        self._deadline = math.inf  # perf_counter() after which this frame's search stops
        # The fallback that scores face presence (core.face.headset.HeadsetLocator with a presence head).
        self._scorer = next((f for f in self.fallbacks if getattr(f, "scores_presence", False)), None)
        if cfg.mode == "mesh":
            self._template = load_template(cfg.template or TEMPLATE_PATH)
            import mediapipe as mp  # ~1 s import: only when a mesh is wanted

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not cfg.tracking, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=cfg.min_detection_confidence,
                min_tracking_confidence=cfg.min_tracking_confidence)

    def process(self, frame: Frame) -> FaceGeometry | None:
        """Locate the face in ``frame``. None (with ``last_reason`` set) when there is none."""
        if self.cfg.mode == "roi":
            self.last_reason = None
            return roi_geometry(frame.image.shape, self.cfg.roi, self.cfg.rotate, self.cfg.flip)
        if self._mesh is None:
            raise ValueError("FaceLocator is closed")
        _check_image(frame.image)
        h, w = frame.image.shape[:2]
        if min(h, w) < MIN_FRAME_SIDE:
            self.last_reason = f"image too small to hold a face ({w}x{h} px)"
            self._held = None
            return None
        geometry = None
        distrusted = cropped = False
        held = self._held_face(frame.timestamp)
        if held is not None:  # a small face found in a crop last time: look there, not in the whole frame
            cropped = True
            self._view = self._view_for(held)
            geometry = self._look(frame, self._view)
            if geometry is not None and not _agrees(geometry, held):
                geometry = None  # the tracker held on to something else (stale landmarks from an old view)
            if geometry is not None and self._distrusted(frame, geometry):
                geometry, distrusted = None, True  # a headset came down: the fallbacks take it from here
        if geometry is None and not distrusted:
            geometry = self._from_mesh(frame.image)
            if geometry is not None and self._distrusted(frame, geometry):
                geometry, distrusted = None, True  # e.g. the headset locator sees a visor over the eyes the mesh placed
        if geometry is None:
            self.last_reason = "no face found"
            # The mesh's look is what every frame pays; the budget bounds what comes after it.
            self._deadline = time.perf_counter() + self.cfg.search_budget_ms / 1e3
            confirmed = False
            for fallback in self.fallbacks:
                if self._out_of_time():
                    break
                rough = getattr(fallback, "needs_refinement", False)
                if rough and (distrusted or cropped or not self._may_confirm(frame)):
                    continue  # a rough hint the crop mesh cannot check now is no answer
                geometry = fallback(frame)
                if geometry is not None and rough:
                    geometry = self._confirm(frame, geometry)
                    confirmed = geometry is not None
                if geometry is not None:
                    break
            # Not after a distrusted mesh answer (a headset: a second look would be vetoed too),
            # nor right after the crop of a held face missed (that was this look).
            if geometry is not None and not (confirmed or distrusted or cropped):
                geometry = self._refine(frame, geometry)
        if geometry is None:
            self._held = None
            return None
        reason = self._pose_refusal(geometry)
        if reason is None:
            geometry, reason = self._presence(frame, geometry)
        self.last_reason = reason
        if reason:
            self._held = None
            return None
        self._held = (frame.timestamp, geometry) if geometry.path == "mesh_refined" and self.cfg.tracking else None
        for fallback in self.fallbacks:  # e.g. core.face.fallbacks.GeometryTracker remembers good geometry
            observe = getattr(fallback, "observe", None)
            if observe is not None:
                observe(geometry, frame.timestamp, frame.file)
        return geometry

    def _out_of_time(self) -> bool:
        if time.perf_counter() <= self._deadline:
            return False
        self.last_reason = f"no face found within the {self.cfg.search_budget_ms:g} ms search budget"
        return True

    def _presence(self, frame: Frame, geometry: FaceGeometry) -> tuple[FaceGeometry, str | None]:
        """``geometry`` with its presence score, and a refusal when that is below its path's threshold.

        The locator's answers carry their presence already, a refined face its hint's, a tracked face
        the score it was accepted with; a mesh or ROI face is scored in its window (free for a mesh
        face the locator has just vetted). Without a presence scorer every face stands as found.
        """
        scorer = self._scorer
        if scorer is None:
            return geometry, None
        if geometry.path in ("mesh", "roi"):
            geometry = dataclasses.replace(geometry, score=float(scorer.presence(frame, geometry)))
        threshold = scorer.threshold(geometry.path)
        if geometry.score < threshold:
            return geometry, f"no face here (presence {geometry.score:.2f} < {threshold:.2f}, {geometry.path})"
        return geometry, None

    def _distrusted(self, frame: Frame, geometry: FaceGeometry) -> bool:
        return any(getattr(f, "distrusts", None) is not None and f.distrusts(frame, geometry)
                   for f in self.fallbacks)

    def _held_face(self, now: float) -> FaceGeometry | None:
        if self._held is None or self._crop_mesh is None:
            return None
        t, g = self._held
        return g if 0 <= now - t <= REFINE_HOLD_S else None

    def _refine(self, frame: Frame, hint: FaceGeometry) -> FaceGeometry:
        """The mesh's look at the crop around a fallback's face, or the fallback's face itself.
        On video a miss backs the next look off (``REFINE_BACKOFF_S``)."""
        if not (self.cfg.refine and self.fallbacks) or hint.path == "roi":
            return hint
        video = self.cfg.tracking
        if video and frame.timestamp < self._next_refine:
            return hint
        refined = self._look_around(frame, hint)
        if video:
            if refined is None:
                self._backoff = min(REFINE_BACKOFF_S[1], max(REFINE_BACKOFF_S[0], 2 * self._backoff))
                self._next_refine = frame.timestamp + self._backoff
            else:
                self._backoff, self._next_refine = 0.0, -math.inf
        return refined if refined is not None else hint

    def _look_around(self, frame: Frame, hint: FaceGeometry) -> FaceGeometry | None:
        """The mesh's own face in a crop round ``hint`` (a wider one after a miss), with the hint's
        score, or None when it finds none there, finds another face, or a visor is there."""
        # The same check as for the mesh's own answers: under a headset the mesh guesses the eyes.
        # The headset locator judges its own answer from the pass that found it, at no extra cost;
        # another fallback's face (the tracked one) costs it a pass, so this waits out the back-off too.
        if self._distrusted(frame, hint):
            return None
        for margin in REFINE_MARGINS:
            if self._out_of_time():
                return None
            view = _view(hint, margin)
            refined = self._look(frame, view)
            if refined is not None:
                self._view = view  # on video the face is followed in the view that found it
                # Presence was judged on the hint's window: the same face.
                return dataclasses.replace(refined, score=hint.score) if _agrees(refined, hint) else None
        return None

    def _may_confirm(self, frame: Frame) -> bool:
        """Whether a rough hint may be checked now: refinement is on and, on video, the rough hints'
        own back-off (after one the mesh did not confirm) has passed."""
        return self.cfg.refine and not (self.cfg.tracking and frame.timestamp < self._next_rough)

    def _confirm(self, frame: Frame, hint: FaceGeometry) -> FaceGeometry | None:
        """A rough hint (``core.face.far``) kept only as the mesh's own face in a crop round it, its
        presence judged in that face's window. A miss backs off rough hints only (on video), not the
        refinement of the locator's answers."""
        refined = self._look_around(frame, hint)
        if refined is None:
            if self.cfg.tracking:
                self._next_rough = frame.timestamp + ROUGH_BACKOFF_S
            return None
        if self._scorer is not None:
            refined = dataclasses.replace(refined, score=float(self._scorer.presence(frame, refined)))
        return refined

    def _view_for(self, held: FaceGeometry) -> np.ndarray:
        """The last view while the held face stays well inside it (the tracker then finds it where
        it left it); otherwise a new one around the face."""
        if self._view is not None:
            centre, side = face_square(held.transform)
            k = self._view[0, 0]
            offset = float(np.hypot(*(k * centre + self._view[:, 2] - (REFINE_SIZE - 1) / 2)))
            if offset <= 0.15 * REFINE_SIZE and 0.3 <= k * side / REFINE_SIZE <= 0.9:
                return self._view
        return _view(held, REFINE_MARGINS[0])

    def _look(self, frame: Frame, view: np.ndarray) -> FaceGeometry | None:
        """The crop mesh on the ``REFINE_SIZE`` crop that ``view`` (frame -> crop) shows, mapped back."""
        if self._crop_mesh is None:
            import mediapipe as mp

            # Video: tracking mode. A held face is followed in a view that stays put while the face
            # stays inside it, so mediapipe tracks its landmarks instead of detecting afresh (1.5
            # vs 2.4 ms for a 256 px crop); a crop around a new face finds no tracked face and detects.
            self._crop_mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=not self.cfg.tracking, max_num_faces=1, refine_landmarks=True,
                min_detection_confidence=self.cfg.min_detection_confidence,
                min_tracking_confidence=self.cfg.min_tracking_confidence)
        self.looks += 1
        crop = cv2.warpAffine(frame.image, view, (REFINE_SIZE, REFINE_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        result = self._crop_mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts3 = np.array([(p.x * REFINE_SIZE - 0.5, p.y * REFINE_SIZE - 0.5, p.z * REFINE_SIZE) for p in lm],
                        dtype=np.float64)
        return dataclasses.replace(mesh_geometry(from_crop(pts3, view), self._template, frame.image.shape[:2]),
                                   path="mesh_refined")

    def _pose_refusal(self, g: FaceGeometry) -> str | None:
        if abs(g.yaw) > self.cfg.max_yaw:
            return f"head turned too far (yaw {g.yaw:.0f}°)"
        if abs(g.pitch) > self.cfg.max_pitch:
            return f"head tilted too far (pitch {g.pitch:.0f}°)"
        return None

    def _from_mesh(self, image: np.ndarray) -> FaceGeometry | None:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False  # lets mediapipe wrap the buffer instead of copying it
        result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            return None
        h, w = image.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        # Normalised [0, 1] image coordinates -> pixel-centre convention; z shares x's scale.
        pts3 = np.array([(p.x * w - 0.5, p.y * h - 0.5, p.z * w) for p in lm], dtype=np.float64)
        return mesh_geometry(pts3, self._template, (h, w))

    def close(self) -> None:
        for mesh in (self._mesh, self._crop_mesh):
            if mesh is not None:
                mesh.close()
        for fallback in self.fallbacks:  # e.g. core.face.far.FarFaceDetector holds a mediapipe graph
            close = getattr(fallback, "close", None)
            if close is not None:
                close()
        self._mesh = self._crop_mesh = None
        self._held = self._view = None

    def __enter__(self) -> FaceLocator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"frame image must be H x W x 3 uint8 BGR, got {image.shape} {image.dtype}")


def _view(around: FaceGeometry, margin: float) -> np.ndarray:
    """2x3 frame -> crop map of a ``REFINE_SIZE`` square of ``margin`` face sides centred on the face."""
    centre, side = face_square(around.transform)
    return crop_view(centre, side, margin, REFINE_SIZE)


def _agrees(refined: FaceGeometry, hint: FaceGeometry) -> bool:
    """Whether two geometries place the same face (``REFINE_MAX_SHIFT``, ``REFINE_SIDE_RATIO``)."""
    (c1, s1), (c2, s2) = face_square(refined.transform), face_square(hint.transform)
    return (float(np.hypot(*(c1 - c2))) <= REFINE_MAX_SHIFT * s2
            and REFINE_SIDE_RATIO[0] <= s1 / s2 <= REFINE_SIDE_RATIO[1])


def default_fallbacks(cfg: FaceConfig, locator: Path | None = None) -> list[Fallback]:
    """The runtime's order after the mesh: headset locator -> tracked -> far faces -> the user's ROI.

    The locator is used when its model (``assets/models/headset_locator.onnx``, or ``locator``)
    exists; a broken one raises ModelError. Tracking (reusing the last good geometry for a
    moment) only makes sense for video, so ``cfg.tracking=False`` (unrelated images) leaves it
    out. The full-range detector (``core.face.far``, ``cfg.far_faces``) comes after both: it
    costs a pass on every frame without a face. The ROI comes last, when one is set in mesh mode.
    """
    if cfg.mode != "mesh":
        return []
    out: list[Fallback] = []
    path = Path(locator) if locator is not None else DEFAULT_LOCATOR
    if path.is_file():
        out.append(HeadsetLocator(path, hold_s=0.25 if cfg.tracking else 0.0))
    if cfg.tracking:
        out.append(GeometryTracker())
    if cfg.far_faces and cfg.refine:  # its answers stand only once the mesh has confirmed them
        out.append(FarFaceDetector(load_template(cfg.template or TEMPLATE_PATH)))
    roi = cfg.roi
    if (isinstance(roi, (tuple, list)) and len(roi) == 4 and all(isinstance(v, (int, float)) for v in roi)
            and roi[2] >= 1 and roi[3] >= 1):
        out.append(RoiFallback(tuple(roi), cfg.rotate, cfg.flip))
    return out


def mesh_geometry(landmarks: np.ndarray, template: FaceTemplate, frame_shape: tuple[int, int]) -> FaceGeometry:
    """Build the geometry from all mesh landmarks (N x 3, frame pixels; z in x's scale)."""
    chosen = landmarks[template.indices]
    transform, rms = fit_similarity(chosen[:, :2], template.points)
    yaw, pitch, roll = head_pose(chosen, template.points_3d)
    return FaceGeometry(
        transform=transform, box=canonical_box(transform, frame_shape), path="mesh",
        landmarks=landmarks[:, :2].copy(), yaw=yaw, pitch=pitch, roll=roll,
        # Fit quality: how well the face's landmarks match the template's shape (1 = exactly).
        score=float(max(0.0, 1.0 - rms / 4.0)))
