"""Fixtures for training tests: a tiny FER+ folder written in Microsoft's layout, and a
per-test cache folder so the loaders never touch the user's cache."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vrfer.core.classes import FERPLUS_CLASSES

SPLITS = {"train": ("FER2013Train", 96), "valid": ("FER2013Valid", 32), "test": ("FER2013Test", 32)}


def write_tiny_ferplus(root: Path, seed: int = 0) -> Path:
    """48x48 faces whose lower half carries a class-dependent stripe, 10 votes each."""
    rng = np.random.default_rng(seed)
    for split, (folder, n) in SPLITS.items():
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            k = i % 4  # four classes keep every batch mixed
            img = rng.integers(0, 60, (48, 48), dtype=np.uint8)
            img[24 + 5 * k:28 + 5 * k, 8:40] = 220
            name = f"fer{split}{i:05d}.png"
            cv2.imwrite(str(d / name), img)
            votes = [0] * 10
            votes[k] = 10
            lines.append(f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
        (d / "label.csv").write_text("\n".join(lines) + "\n")
    # one Test image that is byte-identical to a Train image, for the dedup accuracy
    tr = cv2.imread(str(root / "FER2013Train" / "fertrain00000.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "FER2013Test" / "fertest00000.png"), tr)
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("VRFER_CACHE", str(cache))
    return cache


@pytest.fixture
def tiny_ferplus(tmp_path: Path) -> Path:
    return write_tiny_ferplus(tmp_path / "ferplus")


__all__ = ["FERPLUS_CLASSES", "write_tiny_ferplus"]
