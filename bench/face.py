"""Face-stage tooling: measuring the face template, timing ``FaceLocator.process``, and the
refinement benchmark (``vrfer bench template``, ``vrfer bench --locate``, ``vrfer bench --refine``)."""
from __future__ import annotations

import math
import random
import time
from pathlib import Path

import cv2
import numpy as np

from vrfer.bench.runtime import CameraLikeSpec, camera_like_frames, machine, summarise_e2e
from vrfer.core.backgrounds import KINDS, background
from vrfer.core.errors import DatasetError
from vrfer.core.face import FaceConfig, FaceLocator, default_fallbacks
from vrfer.core.face_template import LANDMARKS, mirror_name
from vrfer.core.geometry import fit_similarity, similarity_matrix, similarity_params
from vrfer.core.ferplus import majority_faces, split_names
from vrfer.core.model import ExpressionModel
from vrfer.core.paths import ferplus_dir
from vrfer.core.preprocess import preprocess
from vrfer.core.sources import DemoSource
from vrfer.core.types import Frame

# Measuring setup: FER+ faces are tightly cropped 48 px images; the detector finds far more of
# them when upscaled and given a grey margin (98% vs 93% without one, on 300 Train faces).
MEASURE_UPSCALE = 192
MEASURE_PAD = 64
MEASURE_PAD_VALUE = 128


def mesh_fer_face(mesh, gray: np.ndarray) -> np.ndarray | None:
    """All mesh landmarks (478 x 3, 48 px face coordinates; z in x's scale) of one 48x48 FER+
    face, or None where the mesh finds no face.

    ``mesh`` is a ``FaceMesh(static_image_mode=True, refine_landmarks=True)``. The face is
    upscaled 48 -> ``MEASURE_UPSCALE`` px (INTER_CUBIC) and given a ``MEASURE_PAD`` px grey margin
    so the detector sees some context.
    """
    size = gray.shape[1]
    scale = size / MEASURE_UPSCALE
    side = MEASURE_UPSCALE + 2 * MEASURE_PAD
    big = cv2.resize(gray, (MEASURE_UPSCALE, MEASURE_UPSCALE), interpolation=cv2.INTER_CUBIC)
    big = cv2.copyMakeBorder(big, *(MEASURE_PAD,) * 4, cv2.BORDER_CONSTANT, value=MEASURE_PAD_VALUE)
    result = mesh.process(cv2.cvtColor(big, cv2.COLOR_GRAY2RGB))
    if not result.multi_face_landmarks:
        return None
    lm = result.multi_face_landmarks[0].landmark
    p = np.array([(q.x * side - 0.5, q.y * side - 0.5, q.z * side) for q in lm], dtype=np.float64)
    # Big-image pixel centres -> face pixel centres (the inverse of cv2.resize's mapping).
    p[:, :2] = (p[:, :2] - MEASURE_PAD + 0.5) * scale - 0.5
    p[:, 2] *= scale
    return p


def measure_template(ferplus_root: Path, n: int, seed: int) -> dict:
    """Median positions of ``LANDMARKS`` on ``n`` random FER+ Train faces, in 48x48 coordinates.

    Each face is upscaled 48 -> 192 px (INTER_CUBIC) and given a 64 px grey margin so the
    detector sees some context, then meshed with ``static_image_mode=True``. Train only: the
    Test split must never shape anything the model is evaluated with.
    """
    import mediapipe as mp

    split = Path(ferplus_root) / "FER2013Train"
    names = split_names(split)
    picked = random.Random(seed).sample(names, min(n, len(names)))
    indices = np.array(list(LANDMARKS.values()))
    found: list[np.ndarray] = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        for name in picked:
            gray = cv2.imread(str(split / name), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                continue
            p = mesh_fer_face(mesh, gray)
            if p is not None:
                found.append(p[indices])
    if not found:
        raise DatasetError(f"face mesh found no face in {len(picked)} images under {split}")
    stack = np.stack(found)
    median = np.median(stack, axis=0)
    spread = np.median(np.abs(stack - median), axis=0)  # per-point MAD, canonical px
    # A least-squares fit of a noisy face onto the median shape comes out ~5% small (the
    # face's own shape noise dilutes the scale), so a typical training face would be cropped
    # zoomed out. Move the template by the inverse of the median per-face fit instead, so
    # that the typical FER+ Train face maps onto itself.
    fits = np.array([similarity_params(fit_similarity(p[:, :2], median[:, :2])[0]) for p in stack])
    scale, angle, dx, dy = np.median(fits, axis=0)
    calib = similarity_matrix(scale, angle, dx, dy)
    points = median[:, :2] @ np.linalg.inv(calib[:, :2]).T - np.linalg.solve(calib[:, :2], calib[:, 2])
    return {
        "names": list(LANDMARKS),
        "indices": indices.tolist(),
        "points": np.round(points, 3).tolist(),
        "median_points": np.round(median[:, :2], 3).tolist(),
        "median_fit_before_correction": {"scale": round(float(scale), 4), "angle_deg": round(float(angle), 3),
                                         "dx": round(float(dx), 3), "dy": round(float(dy), 3)},
        "points_3d": np.round(_symmetrise(median), 3).tolist(),
        "mad": np.round(spread[:, :2], 3).tolist(),
        "images_tried": len(picked),
        "images_used": len(found),
        "detection_rate": round(len(found) / len(picked), 4),
        "split": "FER2013Train",
        "seed": seed,
        "coordinates": "canonical 48x48 pixels, pixel centres at integers (OpenCV warpAffine convention)",
        "method": (
            f"mediapipe {mp.__version__} FaceMesh(static_image_mode=True, max_num_faces=1, "
            f"refine_landmarks=True) on FER+ Train faces upscaled 48->{MEASURE_UPSCALE} px with "
            f"INTER_CUBIC and padded by {MEASURE_PAD} px of constant grey {MEASURE_PAD_VALUE}; landmarks "
            "mapped back to 48x48; per-point median over the faces where a mesh was found (median_points). "
            "points is median_points moved by the inverse of the median per-face similarity fit onto "
            "median_points (median_fit_before_correction, about the canonical centre), so the typical "
            "Train face maps onto itself: a least-squares fit of a noisy face comes out small. points_3d "
            "is that median made mirror-symmetric (averaged with its left-right mirror), used as the "
            "zero-pose reference for yaw/pitch/roll; mad is the per-point median absolute deviation."),
    }

def _symmetrise(points_3d: np.ndarray) -> np.ndarray:
    names = list(LANDMARKS)
    mirror = [names.index(mirror_name(nm)) for nm in names]
    cx = points_3d[:, 0].mean()  # the name set is closed under mirroring, so this is the axis
    flipped = points_3d[mirror].copy()
    flipped[:, 0] = 2 * cx - flipped[:, 0]
    return (points_3d + flipped) / 2

def locate_timings(n_frames: int) -> None:
    """Per-frame cost of ``FaceLocator.process`` on 640x480 frames of a FER+ Test face drifting."""
    test = ferplus_dir() / "FER2013Test"
    face = cv2.imread(str(test / split_names(test)[0]), cv2.IMREAD_GRAYSCALE)
    face = cv2.cvtColor(cv2.resize(face, (200, 200), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    times, found = [], 0
    with FaceLocator(FaceConfig()) as loc:
        for i in range(n_frames):
            img = np.full((480, 640, 3), 90, np.uint8)
            x = 200 + int(20 * math.sin(i / 15))
            img[140:340, x:x + 200] = face
            t = time.perf_counter()
            found += loc.process(Frame(img, i, t)) is not None
            times.append((time.perf_counter() - t) * 1000)
    t = np.array(times[10:])
    print(f"FaceLocator.process, 640x480, tracking: p50 {np.percentile(t, 50):.2f} ms, "
          f"p99 {np.percentile(t, 99):.2f} ms, found {found}/{n_frames}")


def refine_bench(model_path: Path, *, n: int | None = 800, seed: int = 0, stream_frames: int = 300,
                 empty_hold: int = 30, small_faces: int = 60, hold: int = 10) -> dict:
    """Coarse-to-fine refinement off and on, both locators on the same frames, one after the other.

    - ``e2e``: ``n`` camera-like FER+ Test frames (``vrfer.bench.runtime.camera_like_frames``, static
      mode, the runtime's fallbacks), scored as ``vrfer.bench.runtime.e2e_accuracy`` does, with
      ``process`` timed per frame and per path (None: all faces).
    - ``demo``: the demo source (tracking, 30 frames a face, 160-300 px faces), ``process`` timed.
    - ``empty``: frames with no face (3 plain, 3 gradient, 3 textured backgrounds, ``empty_hold``
      frames each), video.
    - ``small``: ``small_faces`` faces of 120-159 px, each held ``hold`` frames as a still user.
    """
    root = ferplus_dir()
    model = ExpressionModel(model_path)

    def label(image: np.ndarray, transform: np.ndarray | None) -> str:
        return model.classes[int(np.argmax(model.predict(preprocess(image, transform, model.spec)[None])[0][0]))]

    def ms(values: list[float]) -> dict[str, float]:
        return {"p50": round(float(np.percentile(values, 50)), 2), "p99": round(float(np.percentile(values, 99)), 2),
                "n": len(values)} if values else {}

    def run(frames, tracking: bool, truth_of=None) -> dict:
        """Both locators over ``frames`` ((image, truth) pairs); timings, paths, rows."""
        out = {}
        locs = {}
        for name, refine in (("off", False), ("on", True)):
            cfg = FaceConfig(tracking=tracking, refine=refine)
            locs[name] = FaceLocator(cfg, default_fallbacks(cfg))
        stats = {name: {"ms": {}, "paths": {}, "correct": 0, "rows": []} for name in locs}
        try:
            for i, (image, extra) in enumerate(frames):
                order = list(locs) if i % 2 == 0 else list(locs)[::-1]  # neither always runs first
                for name in order:
                    t0 = time.perf_counter()
                    g = locs[name].process(Frame(image, i, i / 30 if tracking else t0))
                    dt = (time.perf_counter() - t0) * 1e3
                    st = stats[name]
                    path = g.path if g is not None else "none"
                    st["paths"][path] = st["paths"].get(path, 0) + 1
                    st["ms"].setdefault(path, []).append(dt)
                    st["ms"].setdefault("all", []).append(dt)
                    if truth_of is not None:
                        predicted = label(image, g.transform) if g is not None else None
                        st["correct"] += predicted == truth_of(extra)
                        st["rows"].append((g, predicted, locs[name].last_reason, extra))
            for name, st in stats.items():
                out[name] = {"locate_ms": {p: ms(v) for p, v in st["ms"].items()}, "paths": st["paths"],
                             "crop_looks": locs[name].looks, "rows": st["rows"], "correct": st["correct"]}
        finally:
            for loc in locs.values():
                loc.close()
        return out

    report: dict = {"model": str(model_path), "seed": seed, "machine_at_start": machine()}
    faces = majority_faces(root)
    if n is not None and n < len(faces):
        faces = random.Random(seed).sample(faces, n)
    cfs = list(camera_like_frames(faces, root / "FER2013Test", seed=seed))
    e2e = run([(cf.image, cf) for cf in cfs], tracking=False, truth_of=lambda cf: cf.truth)
    crop = [label(cf.face, None) for cf in cfs]
    placed = [label(cf.image, cf.placed) for cf in cfs]
    report["e2e"] = {}
    for name, res in e2e.items():
        rows = [{"truth": cf.truth, "crop": c, "placed": p, "e2e": pred, "reason": None if g else reason,
                 "size": cf.params["size"], "path": g.path if g else None}
                for (g, pred, reason, cf), c, p in zip(res["rows"], crop, placed)]
        summary = summarise_e2e(rows, frames_seed=seed)
        report["e2e"][name] = {k: summary[k] for k in ("frames", "found_pct", "found_by_path", "found_by_face_size",
                                                       "not_found", "accuracy", "gap", "by_path")}
        report["e2e"][name].update(locate_ms=res["locate_ms"], crop_looks=res["crop_looks"])

    demo = DemoSource(hold=30, seed=seed, loop=True)
    demo_frames = []
    for frame in demo:
        demo_frames.append((frame.image, None))
        if len(demo_frames) >= stream_frames:
            break
    report["demo"] = {name: {k: res[k] for k in ("locate_ms", "paths", "crop_looks")}
                      for name, res in run(demo_frames, tracking=True).items()}

    rng = np.random.default_rng(seed)
    h, w = 480, 640
    empty = []
    for kind in range(9):
        empty += [(background(rng, KINDS[kind % 3], (w, h)), None)] * empty_hold
    report["empty"] = {name: {k: res[k] for k in ("locate_ms", "paths", "crop_looks")}
                       for name, res in run(empty, tracking=True).items()}

    picked = random.Random(seed + 2).sample(majority_faces(root), small_faces)
    small = list(camera_like_frames(picked, root / "FER2013Test", seed=seed + 2,
                                    spec=CameraLikeSpec(face_size=(120, 159))))
    held = run([(cf.image, cf) for cf in small for _ in range(hold)], tracking=True, truth_of=lambda cf: cf.truth)
    crop_small = 100.0 * sum(label(cf.face, None) == cf.truth for cf in small) / len(small)
    report["small"] = {name: {"locate_ms": res["locate_ms"], "paths": res["paths"], "crop_looks": res["crop_looks"],
                              "accuracy": 100.0 * res["correct"] / (len(small) * hold), "crop_accuracy": crop_small}
                       for name, res in held.items()}
    report["machine_at_end"] = machine()
    return report

