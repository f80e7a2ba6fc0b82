"""Teacher targets for the mouth-shape head: the refined face mesh on every FER+ Train face.

Two stages, each cached beside the runs (atomic writes, keyed by the data's content):

1. ``landmarks-<key>.npz``: mediapipe's refined face mesh (478 points) on every FER2013Train
   face and on its mirror image, in 48 px face coordinates (float16, NaN where the mesh found
   no face). The mesh runs on the mirror itself, so a mirrored face's "left" corner is the one
   the mesh sees on the left of that face: what a student shown the mirrored face must predict.
   About 5 ms a face on one core (57k images: minutes).
2. ``mouth-<key>.npz``: ``core.mouth_shapes`` measures of those meshes, the percentile table
   fitted on them (Train only) and the targets N x 2 x S float32 in 0..1 (NaN where no mesh).

``vrfer mouth targets [--ferplus DIR] [--out DIR]`` builds both and writes
the percentile table to ``assets/mouth_shapes.json``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vrfer.core import mouth_shapes as ms
from vrfer.core.errors import DatasetError
from vrfer.core.paths import ferplus_dir

TRAIN_FOLDER = "FER2013Train"
DEFAULT_CACHE = Path("runs") / "mouth_cache"
MESH_VERSION = 1  # bump when the way faces are meshed changes (placement, mesh options)


@dataclass
class MouthTargets:
    names: list[str]  # FER2013Train image names, in label.csv order
    targets: np.ndarray  # N x 2 x S float32 in 0..1: [face, mirror]; NaN where the mesh failed
    shapes: tuple[str, ...]
    path: Path

    def rows_for(self, names: list[str]) -> np.ndarray:
        """Rows of ``targets`` for these image names (a DatasetError naming one that is absent)."""
        where = {n: i for i, n in enumerate(self.names)}
        try:
            return np.array([where[n] for n in names], dtype=np.intp)
        except KeyError as exc:
            raise DatasetError(f"{self.path}: no mouth targets for image {exc.args[0]}") from None


def read_train_faces(root: Path) -> tuple[list[str], np.ndarray]:
    """Every FER2013Train face (names in label.csv order, N x 48 x 48 uint8)."""
    return read_split_faces(root, TRAIN_FOLDER)


def read_split_faces(root: Path, split_folder: str) -> tuple[list[str], np.ndarray]:
    """Every face of one FER+ split folder (names in label.csv order, N x 48 x 48 uint8)."""
    folder = Path(root) / split_folder
    label = folder / "label.csv"
    if not label.is_file():
        raise DatasetError(f"{label} is missing: is {root} a FER+ folder?")
    names = [line.split(",", 1)[0] for line in label.read_text(encoding="utf-8").splitlines() if line.strip()]
    images = []
    for name in names:
        gray = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        if gray is None or gray.shape != (48, 48):
            raise DatasetError(f"{folder / name}: not a 48x48 image")
        images.append(gray)
    return names, np.stack(images)


def data_key(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _read_npz(path: Path, keys: tuple[str, ...], remove_bad: bool = True) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz (never unpickled), or None when it is torn or foreign; a bad cache
    file is removed (it is rebuilt), a file the user named is left alone."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        if remove_bad:
            path.unlink(missing_ok=True)
        return None


def mesh_landmarks(images: np.ndarray, progress: bool = True, mirrors: bool = True) -> np.ndarray:
    """N x 2 x 478 x 3 float16 landmarks of the faces and their mirrors (NaN: no face found;
    the mirrors are all NaN when ``mirrors`` is False)."""
    import mediapipe as mp

    from vrfer.bench.face import mesh_fer_face

    out = np.full((len(images), 2, ms.MESH_POINTS, 3), np.nan, dtype=np.float16)
    t0 = time.perf_counter()
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        for i, face in enumerate(images):
            for view, img in enumerate((face, face[:, ::-1]) if mirrors else (face,)):
                p = mesh_fer_face(mesh, np.ascontiguousarray(img))
                if p is not None and len(p) == ms.MESH_POINTS:
                    out[i, view] = p
            if progress and (i + 1) % 2000 == 0:
                print(f"mesh: {i + 1}/{len(images)} faces, {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def landmark_cache(images: np.ndarray, folder: Path, progress: bool = True,
                   mirrors: bool = True) -> tuple[np.ndarray, Path, float]:
    """(landmarks, path, seconds spent meshing; 0 when read from disk)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"landmarks-v{MESH_VERSION}{'' if mirrors else '-faces'}-{data_key(images)}.npz"
    cached = _read_npz(path, ("landmarks",))
    if cached is not None:
        return cached["landmarks"], path, 0.0
    t0 = time.perf_counter()
    lm = mesh_landmarks(images, progress, mirrors)
    seconds = time.perf_counter() - t0
    _atomic_savez(path, landmarks=lm)
    return lm, path, seconds


def raw_measures(landmarks: np.ndarray) -> np.ndarray:
    """N x 2 x S raw measures (NaN where no mesh) of ``mesh_landmarks``' output."""
    n = landmarks.shape[0]
    out = np.full((n, 2, len(ms.SHAPES)), np.nan, dtype=np.float32)
    for i in range(n):
        for view in range(2):
            p = landmarks[i, view].astype(np.float64)
            if np.isfinite(p).all():
                out[i, view] = ms.raw_measures(p)
    return out


def build_targets(root: Path | None = None, folder: Path = DEFAULT_CACHE, table_out: Path | None = None,
                  progress: bool = True, only: set[str] | None = None) -> MouthTargets:
    """Mesh (or read) every Train face, fit the percentile table on Train and write the targets.

    ``only``: these Train image names alone (smoke runs and tests; the table is then theirs).
    """
    root = Path(root) if root else ferplus_dir()
    names, images = read_train_faces(root)
    if only is not None:
        keep = [i for i, n in enumerate(names) if n in only]
        names, images = [names[i] for i in keep], images[keep]
    lm, lm_path, mesh_s = landmark_cache(images, folder, progress)
    raw = raw_measures(lm)
    table = ms.fit_table(raw.reshape(-1, len(ms.SHAPES)), source=f"{TRAIN_FOLDER} faces and mirrors, {lm_path.name}")
    targets = ms.normalise(raw, table).astype(np.float32)
    key = hashlib.sha256((data_key(images) + json.dumps(table.to_dict(), sort_keys=True)).encode()).hexdigest()[:16]
    path = Path(folder) / f"mouth-{key}.npz"
    _atomic_savez(path, targets=targets, names=np.array(names), shapes=np.array(ms.SHAPES),
                  table=np.array(json.dumps(table.to_dict())))
    if table_out is not None:
        ms.write_table(table, table_out)
    meshed = np.isfinite(raw[..., 0])
    print(f"mouth targets: {len(names)} faces x 2 views, meshed {meshed[:, 0].mean():.1%} faces, "
          f"{meshed[:, 1].mean():.1%} mirrors, mesh {mesh_s:.0f} s -> {path}", flush=True)
    return MouthTargets(names, targets, ms.SHAPES, path)


def load_targets(path: str | Path) -> MouthTargets:
    """A targets file written by ``build_targets``; ConfigError-style one-line errors otherwise."""
    path = Path(path)
    arrays = _read_npz(path, ("targets", "names", "shapes"), remove_bad=False)
    if arrays is None:
        raise DatasetError(f"{path}: not a mouth targets file (build one: vrfer mouth targets)")
    shapes = tuple(str(s) for s in arrays["shapes"])
    targets = arrays["targets"].astype(np.float32)
    names = [str(n) for n in arrays["names"]]
    if targets.ndim != 3 or targets.shape[:2] != (len(names), 2) or targets.shape[2] != len(shapes):
        raise DatasetError(f"{path}: targets, names and shapes disagree in size")
    return MouthTargets(names, targets, shapes, path)


def latest_targets(folder: Path = DEFAULT_CACHE) -> Path | None:
    """The newest targets file in ``folder`` (``shapes.targets = "auto"``), or None."""
    found = sorted(Path(folder).glob("mouth-*.npz"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


@dataclass
class TrainShapes:
    """The targets of one training set, in its order: ``lookup`` gives a batch's rows."""

    targets: np.ndarray  # len(train_set) x 2 x S float32

    def lookup(self, idx: np.ndarray, mirrored: np.ndarray, device):
        import torch

        return torch.from_numpy(self.targets[idx, mirrored.astype(np.intp)]).to(device)


def train_lookup(cfg, train_set, folder: Path) -> TrainShapes:
    """The mouth targets for ``cfg.shapes`` and this training set ("auto": newest in ``folder``, built if absent)."""
    if cfg.dataset != "ferplus":
        raise DatasetError(f"shapes: mouth targets exist for FER+ Train only, not dataset {cfg.dataset!r}")
    if cfg.shapes.targets == "auto":
        found = latest_targets(folder)
        data = load_targets(found) if found else build_targets(Path(cfg.data) if cfg.data else None, folder)
    else:
        data = load_targets(cfg.shapes.targets)
    if data.shapes != ms.SHAPES:
        raise DatasetError(f"{data.path}: shapes {', '.join(data.shapes)} differ from core.mouth_shapes' "
                           f"{', '.join(ms.SHAPES)}; rebuild the targets")
    rows = data.rows_for(train_set.names)
    found_frac = np.isfinite(data.targets[rows, :, 0]).mean()
    print(f"mouth targets: {data.path} ({found_frac:.1%} of this set's faces and mirrors meshed)", flush=True)
    return TrainShapes(np.ascontiguousarray(data.targets[rows]))
