"""FER+ on disk: the ``label.csv`` reader and Microsoft's label rules, for every caller.

Training (``training.datasets``), the demo source, the benchmarks and the template
measurement all read FER+ through here, so one rule decides which faces have a label.
A ``label.csv`` row is ``name,"(x, y, w, h)",`` then 10 vote counts: the 8 emotions of
``FERPLUS_CLASSES``, unknown, and NF (not a face).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from vrfer.core import paths
from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import DatasetError

LABEL_MODES = ("majority", "probability", "crossentropy")
SPLIT_FOLDERS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
N_VOTE_COLUMNS = 10  # 8 emotions + unknown + NF


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


def majority_label(votes: np.ndarray | list[int]) -> str | None:
    """The FER+ "majority" class name of one row's 10 votes, or None when the row is dropped."""
    target = ferplus_target(np.asarray(votes), "majority")
    return None if target is None else FERPLUS_CLASSES[int(np.argmax(target))]


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


def split_names(split_dir: Path) -> list[str]:
    """Every image name a split's ``label.csv`` lists, labelled or not, in file order."""
    label = split_dir / "label.csv"
    if not label.is_file():
        raise DatasetError(f"{label} is missing: is {split_dir.parent} a FER+ folder?")
    return [name for name, _ in read_label_csv(label)]


def majority_faces(root: Path | None = None, folder_name: str = "FER2013Test") -> list[tuple[str, str]]:
    """(file name, majority label) for the images of one split folder that have one, in file order."""
    label_csv = (root or paths.ferplus_dir()) / folder_name / "label.csv"
    faces = [(name, label) for name, votes in read_label_csv(label_csv)
             if (label := majority_label(votes)) is not None]
    if not faces:
        raise DatasetError(f"{label_csv} has no image with a majority label")
    return faces
