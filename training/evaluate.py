"""Evaluate any exported ONNX model on a dataset split, through the runtime's own code.

Torch-free on purpose: ``core.model.ExpressionModel`` runs the graph and ``core.preprocess``
prepares each face with the occlusion and region the model's metadata declares, so the
number measured here is the number the app gets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vrfer.core.errors import DatasetError
from vrfer.core.model import ExpressionModel
from vrfer.core.preprocess import preprocess
from vrfer.training.datasets import FaceSet, duplicate_mask, load_dataset


@dataclass
class Evaluation:
    model: str
    split: str
    classes: tuple[str, ...]
    accuracy: float
    n: int
    accuracy_dedup: float | None  # without the images that have an exact duplicate in Train
    n_dedup: int
    per_class: dict[str, dict[str, float]]
    confusion: np.ndarray  # rows: true class, columns: predicted class (dataset class order)
    predictions: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    duplicate: np.ndarray = field(repr=False)
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> np.ndarray:
        return self.predictions == self.labels

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "split": self.split, "accuracy": self.accuracy, "n": self.n,
                "accuracy_dedup": self.accuracy_dedup, "n_dedup": self.n_dedup, "per_class": self.per_class,
                "confusion": self.confusion.tolist(), "classes": list(self.classes), "spec": self.spec}


def predict_set(model: ExpressionModel, data: FaceSet, batch: int = 256) -> np.ndarray:
    """Predicted dataset-class indices (model outputs mapped by class name)."""
    to_data = np.array([data.classes.index(c) if c in data.classes else -1 for c in model.classes])
    preds = np.empty(len(data), dtype=np.int64)
    spec = model.spec
    for s in range(0, len(data), batch):
        imgs = data.images[s:s + batch]
        x = np.stack([preprocess(img, None, spec) for img in imgs])
        probs, _ = model.predict(x)
        preds[s:s + len(imgs)] = to_data[probs.argmax(axis=1)]
    return preds


def evaluate_model(model_path: str | Path, data_root: str | Path, split: str = "test", dataset: str = "ferplus",
                   threads: int = 1, data: FaceSet | None = None, train: FaceSet | None = None,
                   view_of: FaceSet | None = None) -> Evaluation:
    """``data`` (default: the split) scored by the model; ``view_of``: the faces ``data`` was drawn
    from (a webcam view of them, say), on which Train duplicates are found."""
    model = ExpressionModel(model_path, threads=threads)
    if data is None:
        data = load_dataset(dataset, data_root, split, "majority")
    if train is None and split != "train":
        try:
            train = load_dataset(dataset, data_root, "train", "majority")
        except DatasetError:
            train = None  # no Train split to deduplicate against
    if view_of is not None and len(view_of) != len(data):
        raise DatasetError(f"a view of {len(view_of)} faces cannot score {len(data)} images")
    dup = (duplicate_mask(view_of if view_of is not None else data, train) if train is not None
           else np.zeros(len(data), dtype=bool))
    preds = predict_set(model, data)
    labels = data.labels
    k = len(data.classes)
    conf = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(labels, preds):
        if p >= 0:
            conf[t, p] += 1
    correct = preds == labels
    per_class = {}
    for i, name in enumerate(data.classes):
        m = labels == i
        per_class[name] = {"accuracy": float(correct[m].mean()) if m.any() else None, "n": int(m.sum())}
    keep = ~dup
    n_dedup = int(keep.sum()) if dup.any() or train is not None else 0
    acc_dedup = float(correct[keep].mean()) if train is not None and keep.any() else None
    spec = model.spec
    return Evaluation(model.info.name, split, data.classes, float(correct.mean()), len(labels), acc_dedup,
                      n_dedup, per_class, conf, preds, labels, dup,
                      {"size": spec.size, "occlusion": spec.occlusion, "region": spec.region,
                       "version": spec.version})


def confusion_png(conf: np.ndarray, classes: tuple[str, ...], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (OpenCV drawing: no plotting library needed)."""
    import cv2

    k = len(classes)
    cell, left, top = 56, 110, 40 + (24 if title else 0)
    img = np.full((top + k * cell + 90, left + k * cell + 10, 3), 255, np.uint8)
    rows = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(img, title[:60], (8, 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(k):
        cv2.putText(img, classes[i][:11], (4, top + i * cell + cell // 2 + 5), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(k):
            v = float(rows[i, j])
            shade = int(255 * (1 - v))
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), (255, shade, shade), -1)
            colour = (255, 255, 255) if v > 0.5 else (0, 0, 0)
            cv2.putText(img, f"{100 * v:.0f}", (x0 + 14, y0 + cell // 2 + 5), font, 0.45, colour, 1, cv2.LINE_AA)
    for j in range(k):
        x = left + j * cell + 4
        cv2.putText(img, classes[j][:7], (x, top + k * cell + 18 + (j % 2) * 16), font, 0.38, (0, 0, 0), 1,
                    cv2.LINE_AA)
    cv2.putText(img, "rows: true class, columns: predicted (% of row)", (4, top + k * cell + 70), font, 0.4,
                (0, 0, 0), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path
