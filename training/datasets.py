"""Datasets for training: FER+ (folder layout or fer2013.csv + fer2013new.csv), AffectNet CSV
lists and plain class folders. Every one yields canonical 48x48 uint8 faces plus soft targets;
``core.preprocess`` turns them into model inputs, exactly as at run time."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import DatasetError
from vrfer.core.ferplus import N_VOTE_COLUMNS, SPLIT_FOLDERS, csv_rows, ferplus_target, read_label_csv
from vrfer.core.paths import cache_dir



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
    return _with_targets(images, votes, names, mode, str(label_csv))


def load_ferplus_csv(fer2013_csv: str | Path, fer2013new_csv: str | Path, split: str,
                     mode: str = "majority") -> FaceSet:
    """FER+ from the original ``fer2013.csv`` (pixels) and ``fer2013new.csv`` (votes)."""
    usages = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
    if split not in usages:
        raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(usages)}")
    usage = usages[split]
    images, votes, names = [], [], []
    pairs = zip(csv_rows(fer2013_csv), csv_rows(fer2013new_csv))
    next(pairs, None)  # the two header rows
    for (lineno, prow), (_, vrow) in pairs:
        if len(prow) != 3 or len(vrow) != 2 + N_VOTE_COLUMNS:
            raise DatasetError(f"{fer2013_csv}:{lineno}: malformed row")
        if prow[2] != usage or not vrow[1].strip():
            continue
        try:
            pixels = np.array([int(p) for p in prow[1].split()])
            v = np.array([float(x) for x in vrow[2:]], dtype=np.float32)
        except ValueError:
            raise DatasetError(f"{fer2013_csv}:{lineno}: pixels and votes must be numbers") from None
        if pixels.size != 48 * 48:
            raise DatasetError(f"{fer2013_csv}:{lineno}: expected 2304 pixels, got {pixels.size}")
        if pixels.min() < 0 or pixels.max() > 255 or not np.isfinite(v).all() or (v < 0).any():
            raise DatasetError(f"{fer2013_csv}:{lineno}: pixels must be 0..255 and votes finite and not negative")
        images.append(pixels.astype(np.uint8).reshape(48, 48)), votes.append(v), names.append(vrow[1].strip())
    if not images:
        raise DatasetError(f"{fer2013_csv}: no {usage} rows with a FER+ name")
    return _with_targets(np.stack(images), np.stack(votes), names, mode, str(fer2013new_csv))


def _with_targets(images: np.ndarray, votes: np.ndarray, names: list[str], mode: str, origin: str) -> FaceSet:
    keep, targets = [], []
    for i, v in enumerate(votes):
        t = ferplus_target(v, mode)
        if t is not None:
            keep.append(i)
            targets.append(t)
    if not targets:
        raise DatasetError(f"{origin}: no face has a usable {mode} label (every vote row was dropped)")
    idx = np.array(keep, dtype=np.int64)
    return FaceSet(images[idx], np.stack(targets), [names[i] for i in idx])


def _load_images(folder: Path, rows: list[tuple[str, np.ndarray]], cache: bool
                 ) -> tuple[np.ndarray, list[str], np.ndarray]:
    names = [r[0] for r in rows]
    votes = np.stack([r[1] for r in rows])
    key = hashlib.sha1(("\n".join(names) + str(folder.resolve())).encode()).hexdigest()[:16]
    cached = cache_dir() / f"ferplus-{folder.name}-{key}.npy"
    if cache and cached.is_file():
        try:
            images = np.load(cached)
        except (OSError, ValueError, EOFError):
            images = None  # damaged cache: rebuild it from the images below
        if images is not None and images.shape == (len(names), 48, 48):
            return images, names, votes
    images = np.empty((len(names), 48, 48), dtype=np.uint8)
    for i, name in enumerate(names):
        img = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise DatasetError(f"{folder / name}: missing or not an image")
        images[i] = img if img.shape == (48, 48) else cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
    if cache:
        # write then rename: DDP ranks and parallel runs may read this file while another writes it
        tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, images)
        os.replace(tmp, cached)
    return images, names, votes


def duplicate_mask(test: FaceSet, train: FaceSet) -> np.ndarray:
    """True for each test image that appears pixel for pixel in train."""
    seen = {hashlib.sha1(img.tobytes()).digest() for img in train.images}
    return np.array([hashlib.sha1(img.tobytes()).digest() in seen for img in test.images], dtype=bool)


# --- AffectNet --------------------------------------------------------------------------------

AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal")
AFFECTNET_CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
# AffectNet code -> FER+ column: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt.
AFFECTNET_TO_FERPLUS = tuple(FERPLUS_CLASSES.index(c) for c in AFFECTNET_CLASSES)
MAX_BOX_PX = 100_000  # no photo is larger: a bigger box is a broken row, not a face
AFFECTNET_LISTS = {"train": "vrfer.training.csv", "valid": "validation.csv", "test": "validation.csv"}


def box_transform(x: float, y: float, w: float, h: float, size: int = 48) -> np.ndarray:
    """The 2x3 affine that maps a face box in image pixels onto the canonical size x size square."""
    if w <= 0 or h <= 0:
        raise ValueError("face box must have a positive width and height")
    sx, sy = size / w, size / h
    return np.array([[sx, 0.0, -x * sx], [0.0, sy, -y * sy]], dtype=np.float64)


def load_affectnet(root: str | Path, split: str, list_file: str | Path | None = None,
                   images_dir: str | Path | None = None) -> FaceSet:
    """AffectNet from its official CSV lists, cropped by the listed face box into 48x48 gray faces.

    AffectNet has no public test list, so ``test`` reads ``validation.csv`` like ``valid`` does.
    Codes 8, 9 and 10 (None, Uncertain, No-face) are dropped. The crop goes through
    ``core.preprocess.crop_face``, the runtime's own warp.
    """
    from vrfer.core.preprocess import crop_face

    root = Path(root)
    if list_file is None:
        if split not in AFFECTNET_LISTS:
            raise DatasetError(f"unknown split {split!r}; choose one of {', '.join(AFFECTNET_LISTS)}")
        name = AFFECTNET_LISTS[split]
        candidates = [root / name, root / "Manually_Annotated_file_lists" / name]
        list_file = next((c for c in candidates if c.is_file()), candidates[0])
    list_file = Path(list_file)
    if images_dir is None:
        images_dir = root / "Manually_Annotated_Images"
        if not images_dir.is_dir():
            images_dir = root
    images_dir = Path(images_dir)
    images, targets, names = [], [], []
    rows = csv_rows(list_file)
    _, header = next(rows, (1, None))
    if header is None or tuple(h.strip() for h in header[:len(AFFECTNET_COLUMNS)]) != AFFECTNET_COLUMNS:
        raise DatasetError(f"{list_file}:1: not an AffectNet list (expected header {','.join(AFFECTNET_COLUMNS)})")
    for lineno, row in rows:
        if not row:
            continue
        if len(row) != len(AFFECTNET_COLUMNS):
            raise DatasetError(f"{list_file}:{lineno}: expected {len(AFFECTNET_COLUMNS)} fields, got {len(row)}")
        try:
            code = int(row[6])
            x, y, w, h = (float(v) for v in row[1:5])
        except ValueError:
            raise DatasetError(f"{list_file}:{lineno}: face box and expression must be numbers") from None
        if code >= 8:  # None / Uncertain / No-face
            continue
        if code < 0:
            raise DatasetError(f"{list_file}:{lineno}: expression code {code} is not an AffectNet class")
        if not np.isfinite([x, y, w, h]).all() or w < 1 or h < 1 or max(abs(x), abs(y), w, h) > MAX_BOX_PX:
            raise DatasetError(f"{list_file}:{lineno}: face box must be finite, at least 1 px and within "
                               f"{MAX_BOX_PX} px")
        path = images_dir / row[0]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{list_file}:{lineno}: {path} is missing or not an image")
        images.append(crop_face(img, box_transform(x, y, w, h)))
        t = np.zeros(len(FERPLUS_CLASSES), np.float32)
        t[AFFECTNET_TO_FERPLUS[code]] = 1.0
        targets.append(t)
        names.append(row[0])
    if not images:
        raise DatasetError(f"{list_file}: no usable rows (every expression code was 8-10 or the list is empty)")
    return FaceSet(np.stack(images), np.stack(targets), names)


# --- Plain class folders (users' own recordings) ----------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def load_class_folders(root: str | Path, split: str | None = None) -> FaceSet:
    """``root/<class>/*.png`` (or ``root/<split>/<class>/...`` when that folder exists).

    Class folder names are FER+ class names; images are canonical face crops of any square
    size (the app saves 48x48 crops) and are resized to 48x48 gray.
    """
    root = Path(root)
    if split is not None and (root / split).is_dir():
        root = root / split
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    unknown = [p.name for p in folders if p.name.lower() not in FERPLUS_CLASSES]
    if unknown:
        raise DatasetError(f"{root / unknown[0]}: not a class name (use one of {', '.join(FERPLUS_CLASSES)})")
    images, targets, names = [], [], []
    for folder in folders:
        k = FERPLUS_CLASSES.index(folder.name.lower())
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if img is None:
                raise DatasetError(f"{path}: not a readable image")
            if img.shape != (48, 48):
                img = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA if img.shape[0] > 48 else cv2.INTER_LINEAR)
            images.append(img)
            t = np.zeros(len(FERPLUS_CLASSES), np.float32)
            t[k] = 1.0
            targets.append(t)
            names.append(f"{folder.name}/{path.name}")
    if not images:
        raise DatasetError(f"{root}: no images in class folders ({', '.join(FERPLUS_CLASSES)})")
    return FaceSet(np.stack(images), np.stack(targets), names)


# --- One entry point for configs and the CLI --------------------------------------------------

DATASETS = ("ferplus", "ferplus_csv", "affectnet", "folders")


def load_dataset(kind: str, root: str | Path, split: str, mode: str = "majority", cache: bool = True) -> FaceSet:
    """Load ``split`` of a dataset of kind ``ferplus`` (folder layout), ``ferplus_csv``
    (``root/fer2013.csv`` + ``root/fer2013new.csv``), ``affectnet`` or ``folders``."""
    root = Path(root)
    if kind == "ferplus":
        return load_ferplus(root, split, mode, cache)
    if kind == "ferplus_csv":
        return load_ferplus_csv(root / "fer2013.csv", root / "fer2013new.csv", split, mode)
    if kind == "affectnet":
        return load_affectnet(root, split)
    if kind == "folders":
        return load_class_folders(root, split)
    raise DatasetError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}")
