"""How well a student's mouth shapes follow the teacher's, on FER+ Test faces it never saw.

The teacher is the refined face mesh on the whole 48 px face (``core.mouth_shapes`` measures,
mapped to 0..1 by the Train percentile table in ``assets/mouth_shapes.json``). The student is an
exported ONNX model with a ``shapes`` output, on the same faces as dataset crops and with a VR
headset drawn over them (``training.headset.synth``, as in training). Reports per shape the
Pearson r and the mean absolute error (0..1 units) against the issue's goals, the latency the
head adds (p50/p99 of ``predict_all``, as a ratio to a reference model timed in the same loop,
with the load average) and, with ``--picture``, a tiled picture of faces with both sets of values.

``vrfer mouth eval MODEL.onnx [--reference assets/models/student.onnx]
[--picture docs/mouth_shapes.png] [--json out.json]``. Test is for reporting only: nothing
here chooses a model.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from vrfer.core import mouth_shapes as ms
from vrfer.core.errors import ModelError
from vrfer.core.model import ExpressionModel
from vrfer.core.paths import ferplus_dir
from vrfer.core.preprocess import preprocess
from vrfer.training.mouth_targets import DEFAULT_CACHE, landmark_cache, raw_measures, read_split_faces

TEST_FOLDER = "FER2013Test"
GOALS = {"jaw_open": 0.8, "mouth_smile_left": 0.8, "mouth_smile_right": 0.8}  # the rest: 0.6
OTHER_GOAL = 0.6


def goal(shape: str) -> float:
    return GOALS.get(shape, OTHER_GOAL)


def teacher_shapes(root: Path, folder: Path = DEFAULT_CACHE) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, faces, N x S teacher shapes with NaN where the mesh missed) of FER+ Test."""
    names, images = read_split_faces(root, TEST_FOLDER)
    lm, _, _ = landmark_cache(images, folder, progress=False, mirrors=False)
    raw = raw_measures(lm)[:, 0]
    return names, images, ms.normalise(raw, ms.load_table()).astype(np.float32)


def student_shapes(model: ExpressionModel, images: np.ndarray, batch: int = 256) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch):
        x = np.stack([preprocess(f, None, model.spec) for f in images[start:start + batch]])
        out.append(model.predict_all(x).shapes)
    return np.concatenate(out)


def with_headsets(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every face with a random drawn headset (the renderer the student trains with)."""
    from vrfer.training.augment import headset_batch

    return headset_batch(images, np.random.default_rng(seed), 1.0)


def agreement(teacher: np.ndarray, student: np.ndarray) -> dict[str, dict[str, float]]:
    """Per shape: Pearson r and mean absolute error over the faces the mesh measured."""
    ok = np.isfinite(teacher).all(axis=1)
    out = {}
    for j, name in enumerate(ms.SHAPES):
        t, s = teacher[ok, j].astype(np.float64), student[ok, j].astype(np.float64)
        r = float(np.corrcoef(t, s)[0, 1]) if t.std() > 0 and s.std() > 0 else float("nan")
        out[name] = {"r": r, "mae": float(np.abs(t - s).mean()), "n": int(ok.sum())}
    return out


def head_latency(model_path: Path, reference: Path, runs: int = 400, warmup: int = 40) -> dict:
    """``predict_all`` p50/p99 of the shapes model and of the reference, interleaved in one loop."""
    from vrfer.bench.runtime import machine, percentiles

    models = {"shapes": ExpressionModel(model_path), "reference": ExpressionModel(reference)}
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(warmup + runs):
        for key, m in models.items():
            x = rng.uniform(-1, 1, (1, *m.spec.input_shape)).astype(np.float32)
            t0 = time.perf_counter()
            m.predict_all(x)
            if i >= warmup:
                times[key].append((time.perf_counter() - t0) * 1e3)
    stats = {k: percentiles(v) for k, v in times.items()}
    return {**stats, "ratio_p50": stats["shapes"]["p50"] / stats["reference"]["p50"],
            "ratio_p99": stats["shapes"]["p99"] / stats["reference"]["p99"],
            "reference_model": str(reference), **machine()}


def picture(path: Path, faces: np.ndarray, headset: np.ndarray, teacher: np.ndarray, student: np.ndarray,
            shapes: tuple[str, ...] = ("jaw_open", "lips_apart", "mouth_smile_left", "mouth_smile_right",
                                       "mouth_pucker", "mouth_funnel")) -> None:
    """One tile per face: the full face, the student's headset view, then per shape a teacher bar
    (grey) above a student bar (green)."""
    scale, bar_w, row_h = 3, 120, 14
    tiles = []
    for face, hs, t, s in zip(faces, headset, teacher, student):
        side = 48 * scale
        img = np.full((side + row_h * len(shapes) + 6, 2 * side + 4, 3), 255, np.uint8)
        img[:side, :side] = cv2.cvtColor(cv2.resize(face, (side, side), interpolation=cv2.INTER_NEAREST),
                                         cv2.COLOR_GRAY2BGR)
        img[:side, side + 4:] = cv2.cvtColor(cv2.resize(hs, (side, side), interpolation=cv2.INTER_NEAREST),
                                             cv2.COLOR_GRAY2BGR)
        for k, name in enumerate(shapes):
            j = ms.SHAPES.index(name)
            y = side + 4 + k * row_h
            cv2.putText(img, name.replace("mouth_", "")[:11], (2, y + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                        (0, 0, 0), 1, cv2.LINE_AA)
            x0 = 2 * side + 4 - bar_w - 4
            cv2.rectangle(img, (x0, y + 1), (x0 + int(bar_w * np.nan_to_num(t[j])), y + 5), (150, 150, 150), -1)
            cv2.rectangle(img, (x0, y + 7), (x0 + int(bar_w * s[j]), y + 11), (60, 170, 60), -1)
        tiles.append(img)
    cols = 4
    rows = [np.hstack(tiles[i:i + cols] + [np.full_like(tiles[0], 255)] * (cols - len(tiles[i:i + cols])))
            for i in range(0, len(tiles), cols)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.vstack(rows))


def evaluate(model_path: Path, root: Path | None = None, reference: Path | None = None,
             picture_path: Path | None = None, seed: int = 0) -> dict:
    root = Path(root) if root else ferplus_dir()
    model = ExpressionModel(model_path)
    if tuple(model.shapes) != ms.SHAPES:
        raise ModelError(f"{model_path}: has shapes {model.shapes or 'none'}, not this runtime's {ms.SHAPES}")
    _, faces, teacher = teacher_shapes(root)
    headset = with_headsets(faces, seed)
    crops, worn = student_shapes(model, faces), student_shapes(model, headset)
    result = {"model": str(model_path), "split": TEST_FOLDER, "faces": len(faces),
              "meshed": float(np.isfinite(teacher).all(axis=1).mean()),
              "crops": agreement(teacher, crops), "headset": agreement(teacher, worn),
              "goals": {n: goal(n) for n in ms.SHAPES}}
    if reference is not None:
        result["latency"] = head_latency(model_path, reference)
    if picture_path is not None:
        pick = np.flatnonzero(np.isfinite(teacher).all(axis=1))
        pick = np.random.default_rng(seed).choice(pick, 8, replace=False)
        picture(picture_path, faces[pick], headset[pick], teacher[pick], worn[pick])
    return result


def markdown(result: dict) -> str:
    lines = ["| shape | goal r | r crops | r headset | MAE crops | MAE headset |", "|---|---|---|---|---|---|"]
    for n in ms.SHAPES:
        c, h, g = result["crops"][n], result["headset"][n], result["goals"][n]
        mark = "" if h["r"] >= g else " (below)"
        lines.append(f"| {n} | {g:.1f} | {c['r']:.2f} | {h['r']:.2f}{mark} | {c['mae']:.3f} | {h['mae']:.3f} |")
    return "\n".join(lines)
