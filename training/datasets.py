"""Datasets for training: FER+ (folder layout or fer2013.csv + fer2013new.csv), AffectNet CSV
lists and plain class folders. Every one yields canonical 48x48 uint8 faces plus soft targets;
``core.preprocess`` turns them into model inputs, exactly as at run time."""
from __future__ import annotations

import csv
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.classes import FERPLUS_CLASSES
from core.errors import DatasetError
from core.paths import cache_dir

LABEL_MODES = ("majority", "probability", "crossentropy")
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
N_VOTE_COLUMNS = 10  # 8 emotions + unknown + NF


@dataclass
class FaceSet:
    """Canonical faces and their targets, held in memory (FER+ is 28k 48x48 images)."""

    images: np.ndarray  # N x 48 x 48 uint8
    targets: np.ndarray  # N x K float32, rows sum to 1 (one-hot in majority mode)
    names: list[str]
    classes: tuple[str, ...] = FERPLUS_CLASSES

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> np.ndarray:
        return self.targets.argmax(axis=1)

    def subset(self, idx: np.ndarray) -> "FaceSet":
        return FaceSet(self.images[idx], self.targets[idx], [self.names[i] for i in idx], self.classes)


def ferplus_target(votes: np.ndarray, mode: str = "majority") -> np.ndarray | None:
    """FER+ votes (10 columns) -> an 8-class target, or None when FERPlus would drop the image.

    Follows Microsoft's ``ferplus.py``: single votes are outliers and ignored; ``majority``
    needs more than half of the remaining votes; ``probability``/``crossentropy`` keep up to
    three top emotions covering 75% of votes. Images whose winner is unknown or NF are dropped.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode must be one of {LABEL_MODES}, got {mode!r}")
    raw = np.asarray(votes, dtype=np.float64).copy()
    raw[raw < 1.0 + sys.float_info.epsilon] = 0.0
    total = raw.sum()
    if total <= 0:
        return None
    emotion = np.zeros_like(raw)
    if mode == "majority":
        if raw.max() > 0.5 * total:
            emotion[int(np.argmax(raw))] = raw.max()
        else:
            return None
    else:
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            maxval = raw.max()
            for i in range(len(raw)):
                if raw[i] == maxval:
                    emotion[i] = maxval
                    raw[i] = 0
                    part += maxval
                    count += 1
                    if i >= 8:
                        valid = False
                        if emotion.sum() > maxval:
                            emotion[i] = 0
                            count -= 1
                        break
        if emotion.sum() <= 0.5 * total or count > 3:
            return None
    if int(np.argmax(emotion)) >= 8:
        return None
    target = emotion[:8]
    return (target / target.sum()).astype(np.float32)


def read_label_csv(path: Path) -> list[tuple[str, np.ndarray]]:
    """Parse a FER+ ``label.csv``; a malformed row raises DatasetError naming file and line."""
    rows: list[tuple[str, np.ndarray]] = []
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
    with handle:
        for lineno, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 2 + N_VOTE_COLUMNS:
                raise DatasetError(f"{path}:{lineno}: expected {2 + N_VOTE_COLUMNS} fields, got {len(row)}")
            try:
                votes = np.array([float(v) for v in row[2:]], dtype=np.float32)
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: vote counts must be numbers") from None
            if (votes < 0).any():
                raise DatasetError(f"{path}:{lineno}: vote counts must not be negative")
            rows.append((row[0].strip(), votes))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    return rows


def load_ferplus(root: str | Path, split: str, mode: str = "majority", cache: bool = True) -> FaceSet:
    """FER+ in Microsoft's folder layout (``FER2013Train/label.csv`` + PNGs)."""
    root = Path(root)
    if split not in SPLIT_FOLDERS:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_FOLDERS)}")
    folder = root / SPLIT_FOLDERS[split]
    label_csv = folder / "label.csv"
    if not label_csv.is_file():
        raise DatasetError(f"{label_csv}: not found (is {root} a FER+ folder?)")
    rows = read_label_csv(label_csv)
    images, names, votes = _load_images(folder, rows, cache)
    return _with_targets(images, votes, names, mode)


def load_ferplus_csv(fer2013_csv: str | Path, fer2013new_csv: str | Path, split: str,
                     mode: str = "majority") -> FaceSet:
    """FER+ from the original ``fer2013.csv`` (pixels) and ``fer2013new.csv`` (votes)."""
    usage = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}[split]
    images, votes, names = [], [], []
    try:
        with open(fer2013_csv, newline="") as f_pix, open(fer2013new_csv, newline="") as f_votes:
            pix_reader, vote_reader = csv.reader(f_pix), csv.reader(f_votes)
            next(pix_reader, None), next(vote_reader, None)
            for lineno, (prow, vrow) in enumerate(zip(pix_reader, vote_reader), start=2):
                if len(prow) != 3 or len(vrow) != 2 + N_VOTE_COLUMNS:
                    raise DatasetError(f"{fer2013_csv}:{lineno}: malformed row")
                if prow[2] != usage or not vrow[1].strip():
                    continue
                try:
                    pixels = np.array(prow[1].split(), dtype=np.uint8)
                    v = np.array([float(x) for x in vrow[2:]], dtype=np.float32)
                except ValueError:
                    raise DatasetError(f"{fer2013_csv}:{lineno}: pixels and votes must be numbers") from None
                if pixels.size != 48 * 48:
                    raise DatasetError(f"{fer2013_csv}:{lineno}: expected 2304 pixels, got {pixels.size}")
                images.append(pixels.reshape(48, 48)), votes.append(v), names.append(vrow[1].strip())
    except OSError as exc:
        raise DatasetError(f"cannot read FER+ CSVs ({exc})") from None
    return _with_targets(np.stack(images), np.stack(votes), names, mode)


def _with_targets(images: np.ndarray, votes: np.ndarray, names: list[str], mode: str) -> FaceSet:
    keep, targets = [], []
    for i, v in enumerate(votes):
        t = ferplus_target(v, mode)
        if t is not None:
            keep.append(i)
            targets.append(t)
    idx = np.array(keep, dtype=np.int64)
    return FaceSet(images[idx], np.stack(targets), [names[i] for i in idx])


def _load_images(folder: Path, rows: list[tuple[str, np.ndarray]], cache: bool
                 ) -> tuple[np.ndarray, list[str], np.ndarray]:
    names = [r[0] for r in rows]
    votes = np.stack([r[1] for r in rows])
    key = hashlib.sha1(("\n".join(names) + str(folder.resolve())).encode()).hexdigest()[:16]
    cached = cache_dir() / f"ferplus-{folder.name}-{key}.npy"
    if cache and cached.is_file():
        images = np.load(cached)
        if images.shape == (len(names), 48, 48):
            return images, names, votes
    images = np.empty((len(names), 48, 48), dtype=np.uint8)
    for i, name in enumerate(names):
        img = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DatasetError(f"{folder / name}: missing or not an image")
        images[i] = img if img.shape == (48, 48) else cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
    if cache:
        np.save(cached, images)
    return images, names, votes


def duplicate_mask(test: FaceSet, train: FaceSet) -> np.ndarray:
    """True for each test image that appears pixel for pixel in train."""
    seen = {hashlib.sha1(img.tobytes()).digest() for img in train.images}
    return np.array([hashlib.sha1(img.tobytes()).digest() in seen for img in test.images], dtype=bool)
