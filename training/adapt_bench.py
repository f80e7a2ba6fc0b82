"""Camera shift and the personal-calibration benchmark (torch-free).

The shift stands for a mouth camera inside a headset, the case users complain about most:

* **close-up from below**: a keystone warp that widens the chin and narrows the forehead, as a
  lens a few centimetres below the mouth sees a face (the aligner's similarity transform
  cannot undo a perspective);
* **camera roll** of 8 degrees: the camera is clipped on askew, and in mouth-camera (ROI)
  mode nothing re-levels the crop;
* **infrared-like tone**: near-IR illumination makes skin bright and flat (gamma 0.7,
  contrast x0.75) and an LED next to the lens lights the centre more than the edges
  (vignette, 30% at the corners);
* **blur** (sigma 0.7 canonical px: a fixed-focus lens too close) and **sensor noise**
  (sigma 5 grey levels: a small, cheap sensor in low light).

``BENCH_SHIFT`` is the one "user camera" of the benchmark; ``sample_shift`` draws from the
family around it for training-time augmentation (``AugmentConfig.camera_shift``).

Benchmark: FER+ Test faces under the shift (noise seeded per image, so the set is fixed);
for each draw, k faces per class are the user's recording, a profile is fitted on them
(``core.adapt.fit_profile``) and every other face is the held-out evaluation. A class with
fewer than k + 5 faces is skipped, as a user may skip one; it falls back to the general model.
The same protocol without the shift shows whether adaptation hurts when nothing changed.

    vrfer bench adapt --model assets/models/student.onnx --draws 10
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.preprocess import PreprocessSpec, preprocess


@dataclass(frozen=True)
class CameraShift:
    """One camera's departure from a FER+ face (all zero = no change)."""

    below: float = 0.0  # keystone: bottom edge widened, top narrowed, by this fraction of the width each
    roll: float = 0.0  # degrees
    gamma: float = 1.0  # < 1 brightens the mid-tones
    contrast: float = 1.0  # multiplies deviations from mid-grey
    vignette: float = 0.0  # light lost at the corners (fraction)
    blur: float = 0.0  # Gaussian sigma, canonical px
    noise: float = 0.0  # Gaussian sigma, grey levels


BENCH_SHIFT = CameraShift(below=0.25, roll=8.0, gamma=0.7, contrast=0.75, vignette=0.3, blur=0.7, noise=5.0)
NO_SHIFT = CameraShift()


def apply_shift(face: np.ndarray, shift: CameraShift, rng: np.random.Generator) -> np.ndarray:
    """A canonical 48x48 (or any square) uint8 grey face as ``shift``'s camera would see it."""
    img = face if face.ndim == 2 else cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    n = img.shape[0]
    if shift.below or shift.roll:
        w = n - 1.0
        d = shift.below * w / 2
        src = np.float32([[0, 0], [w, 0], [w, w], [0, w]])
        dst = np.float32([[d, 0], [w - d, 0], [w + d, w], [-d, w]])
        h = cv2.getPerspectiveTransform(src, dst)
        c = w / 2
        r = np.vstack([cv2.getRotationMatrix2D((c, c), shift.roll, 1.0), [0, 0, 1]])
        img = cv2.warpPerspective(img, r @ h, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x = img.astype(np.float32) / 255.0
    if shift.gamma != 1.0:
        x = x ** shift.gamma
    if shift.contrast != 1.0:
        x = 0.5 + (x - 0.5) * shift.contrast
    if shift.vignette:
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        r2 = ((xx - (n - 1) / 2) ** 2 + (yy - (n - 1) / 2) ** 2) / (2 * ((n - 1) / 2) ** 2)  # 1 at the corners
        x = x * (1.0 - shift.vignette * r2)
    if shift.blur > 0:
        x = cv2.GaussianBlur(x, (0, 0), shift.blur)
    x = x * 255.0
    if shift.noise > 0:
        x = x + rng.normal(0.0, shift.noise, x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def sample_shift(rng: np.random.Generator, scale: float = 1.0) -> CameraShift:
    """A random camera from the family around ``BENCH_SHIFT`` (each factor on or off at random,
    its size uniform up to 1.5x the benchmark's), for training-time augmentation."""
    b = BENCH_SHIFT

    def amount(v: float) -> float:
        return float(rng.uniform(0, 1.5 * scale * v)) if rng.random() < 0.6 else 0.0
    gamma = float(np.exp(rng.uniform(np.log(0.5), np.log(1.6)))) if rng.random() < 0.6 else 1.0
    return CameraShift(below=amount(b.below), roll=float(rng.choice([-1, 1])) * amount(b.roll), gamma=gamma,
                       contrast=1.0 - amount(1.0 - b.contrast), vignette=min(amount(b.vignette), 0.8),
                       blur=amount(b.blur), noise=amount(b.noise))


def camera_shift_batch(images: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Training hook: each face goes through a random camera of the family with probability p."""
    if p <= 0:
        return images
    out = np.array(images, copy=True)
    for i in np.flatnonzero(rng.random(len(images)) < p):
        out[i] = apply_shift(out[i], sample_shift(rng), rng)
    return out


def shifted_set(images: np.ndarray, shift: CameraShift, seed: int = 0) -> np.ndarray:
    """The whole set under one camera; image i's noise is seeded by (seed, i), so it is fixed."""
    if shift == NO_SHIFT:
        return images
    return np.stack([apply_shift(img, shift, np.random.default_rng([seed, i])) for i, img in enumerate(images)])


# -- the benchmark -------------------------------------------------------------------------

def embed(model, images: np.ndarray, spec: PreprocessSpec, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(general probabilities N x K, embeddings N x D) of canonical faces, preprocessed as the model says."""
    probs, embs = [], []
    for s in range(0, len(images), batch):
        x = np.stack([preprocess(img, None, spec) for img in images[s:s + batch]])
        p, e = model.predict(x)
        probs.append(p)
        embs.append(e)
    return np.concatenate(probs).astype(np.float64), np.concatenate(embs).astype(np.float64)


def t95(n: int) -> float:
    """Two-sided 95% Student t quantile for n samples (n - 1 degrees of freedom)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 14: 2.145, 19: 2.093, 29: 2.045}
    df = n - 1
    return table.get(df, table[max(k for k in table if k <= df)] if df > 1 else float("nan"))


def mean_ci(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    half = t95(len(v)) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(half)


@dataclass(frozen=True)
class DrawResult:
    before: float
    after: float
    before_balanced: float
    after_balanced: float
    adapted: tuple[str, ...]
    held_out: int


def one_draw(probs: np.ndarray, emb: np.ndarray, labels: np.ndarray, fp, k: int, rng: np.random.Generator,
             l2: float, min_heldout: int = 5) -> DrawResult:
    from vrfer.core.adapt import fit_profile

    classes = fp.classes
    pick = []
    for c in range(len(classes)):
        idx = np.flatnonzero(labels == c)
        if len(idx) >= k + min_heldout:
            pick.append(rng.choice(idx, size=k, replace=False))
    adapt = np.concatenate(pick)
    held = np.setdiff1d(np.arange(len(labels)), adapt)
    profile = fit_profile(emb[adapt], probs[adapt], labels[adapt], fp, l2=l2)
    y = labels[held]
    before = probs[held].argmax(1)
    after = profile.apply(probs[held], emb[held]).argmax(1)

    def balanced(pred: np.ndarray) -> float:
        return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))
    return DrawResult(float(np.mean(before == y)), float(np.mean(after == y)), balanced(before), balanced(after),
                      profile.fitted, len(held))


def run_benchmark(model_path: str | Path, *, split: str = "test", ks: tuple[int, ...] = (5, 10, 20),
                  draws: int = 10, l2: float | None = None, seed: int = 0, shift: CameraShift = BENCH_SHIFT,
                  data: str | Path | None = None, log=print) -> dict:
    """Accuracy of the general model and of the adapted one, with and without the shift."""
    from vrfer.core.adapt import DEFAULT_L2, model_fingerprint
    from vrfer.core.model import ExpressionModel
    from vrfer.core.paths import ferplus_dir
    from vrfer.training.datasets import load_ferplus

    l2 = DEFAULT_L2 if l2 is None else l2
    model = ExpressionModel(model_path, threads=1)
    fp = model_fingerprint(model)
    faces = load_ferplus(data or ferplus_dir(), split)
    labels = faces.labels
    out: dict = {"model": str(model_path), "model_name": fp.name, "sha256": fp.sha256, "split": split,
                 "n": len(labels), "draws": draws, "l2": l2, "seed": seed, "shift": asdict(shift), "conditions": {}}
    for cond, sh in (("shift", shift), ("no shift", NO_SHIFT)):
        t0 = time.perf_counter()
        probs, emb = embed(model, shifted_set(faces.images, sh, seed), model.spec)
        full = float(np.mean(probs.argmax(1) == labels))
        log(f"{cond}: general model {100 * full:.2f}% on all {len(labels)} {split} faces "
            f"(embedded in {time.perf_counter() - t0:.1f} s)")
        rows = {}
        for k in ks:
            t0 = time.perf_counter()
            res = [one_draw(probs, emb, labels, fp, k, np.random.default_rng([seed, k, d]), l2) for d in range(draws)]
            row = {
                "before": mean_ci([r.before for r in res]), "after": mean_ci([r.after for r in res]),
                "gain": mean_ci([r.after - r.before for r in res]),
                "before_balanced": mean_ci([r.before_balanced for r in res]),
                "after_balanced": mean_ci([r.after_balanced for r in res]),
                "gain_balanced": mean_ci([r.after_balanced - r.before_balanced for r in res]),
                "adapted": list(res[0].adapted), "held_out": res[0].held_out,
                "seconds_per_fit": (time.perf_counter() - t0) / draws,
            }
            rows[str(k)] = row
            log(f"  k={k:>2}: {_pct(row['before'])} -> {_pct(row['after'])}  gain {_pts(row['gain'])}  "
                f"(balanced {_pts(row['gain_balanced'])}; {len(row['adapted'])} classes adapted, "
                f"{row['held_out']} held out, {row['seconds_per_fit']:.2f} s per fit)")
        out["conditions"][cond] = {"full_set_accuracy": full, "k": rows}
    return out


def sweep_l2(model_path: str | Path, grid: list[float], *, split: str = "valid", k: int = 10, draws: int = 10,
             seed: int = 0, log=print) -> dict[float, dict[str, tuple[float, float]]]:
    """Gain at one k for several prior strengths, with and without the shift (for choosing l2 on Valid)."""
    from vrfer.core.adapt import model_fingerprint
    from vrfer.core.model import ExpressionModel
    from vrfer.core.paths import ferplus_dir
    from vrfer.training.datasets import load_ferplus

    model = ExpressionModel(model_path, threads=1)
    fp = model_fingerprint(model)
    faces = load_ferplus(ferplus_dir(), split)
    sets = {c: embed(model, shifted_set(faces.images, s, seed), model.spec)
            for c, s in (("shift", BENCH_SHIFT), ("no shift", NO_SHIFT))}
    out: dict[float, dict[str, tuple[float, float]]] = {}
    for l2 in grid:
        out[l2] = {}
        for cond, (probs, emb) in sets.items():
            res = [one_draw(probs, emb, faces.labels, fp, k, np.random.default_rng([seed, k, d]), l2)
                   for d in range(draws)]
            out[l2][cond] = mean_ci([r.after - r.before for r in res])
        log(f"l2={l2:g}: gain at k={k} under shift {_pts(out[l2]['shift'])}, without {_pts(out[l2]['no shift'])}")
    return out


def markdown(result: dict) -> str:
    lines = ["| condition | k | classes adapted | held out | general model | adapted | gain (points) | "
             "gain, balanced accuracy |", "|---|---|---|---|---|---|---|---|"]
    for cond, c in result["conditions"].items():
        for k, r in c["k"].items():
            lines.append(f"| {cond} | {k} | {len(r['adapted'])} | {r['held_out']} | {_pct(r['before'])} | "
                         f"{_pct(r['after'])} | {_pts(r['gain'])} | {_pts(r['gain_balanced'])} |")
    return "\n".join(lines)


def _pct(mc: tuple[float, float]) -> str:
    return f"{100 * mc[0]:.2f}% ± {100 * mc[1]:.2f}"


def _pts(mc: tuple[float, float]) -> str:
    return f"{100 * mc[0]:+.2f} ± {100 * mc[1]:.2f}"
