"""ONNX Runtime inference for expression models, with the metadata contract checked on load.

An exported model carries in ``metadata_props``:

=========================  ===================================================
``vrfer.classes``           comma-separated class names, in output order
``vrfer.input_size``        side of the canonical face the model was trained on
``vrfer.occlusion``         ``none`` or ``vr`` (upper half blacked out)
``vrfer.region``            ``full`` or ``lower`` (only the lower half is fed)
``vrfer.preprocess_version``  the ``core.preprocess.PREPROCESS_VERSION`` it was trained with
``vrfer.name``              a human-readable model name (optional)
=========================  ===================================================

Outputs: ``logits`` (N x classes) and optionally ``embedding`` (N x D).

Models may come from strangers: ``core.onnx_check`` vets the file (size, standard-domain
operators only, external data inside the model's folder) and the metadata contract is checked
before ONNX Runtime parses it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrfer.core.errors import ModelError
from vrfer.core.onnx_check import check_model_file
from vrfer.core.preprocess import SUPPORTED_VERSIONS, PreprocessSpec

META_PREFIX = "vrfer."
REQUIRED_KEYS = ("classes", "input_size", "occlusion", "region", "preprocess_version")
from vrfer.core.paths import ASSETS_DIR
DEFAULT_MODEL = ASSETS_DIR / "models" / "student.onnx"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    classes: tuple[str, ...]
    spec: PreprocessSpec
    metadata: dict[str, str]
    has_embedding: bool
    class_prior: np.ndarray | None = None  # the training set's class frequencies, when recorded


def default_model_path() -> Path:
    """The shipped student, or a one-line error saying how to get one."""
    env = os.environ.get("VRFER_MODEL")
    path = Path(env) if env else DEFAULT_MODEL
    if not path.is_file():
        raise ModelError(
            f"no model is installed yet ({path} is missing): train and export one with "
            "'vrfer train training/configs/student.toml' and 'vrfer export', or pass --model PATH")
    return path


def parse_metadata(meta: dict[str, str], origin: str) -> tuple[tuple[str, ...], PreprocessSpec]:
    """Check the vrfer metadata of a model; raise ModelError naming the file and field."""
    missing = [k for k in REQUIRED_KEYS if META_PREFIX + k not in meta]
    if missing:
        raise ModelError(f"{origin}: not a vrfer model (metadata lacks {META_PREFIX}{missing[0]})")
    classes = tuple(c.strip() for c in meta[META_PREFIX + "classes"].split(",") if c.strip())
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ModelError(f"{origin}: {META_PREFIX}classes must list 2 or more distinct names")
    try:
        version = int(meta[META_PREFIX + "preprocess_version"])
        size = int(meta[META_PREFIX + "input_size"])
    except ValueError as exc:
        raise ModelError(f"{origin}: metadata is not a number ({exc})") from None
    if version not in SUPPORTED_VERSIONS:
        raise ModelError(
            f"{origin}: {META_PREFIX}preprocess_version is {version}, this runtime implements "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}; re-export the model or update vrfer")
    try:
        spec = PreprocessSpec(size=size, occlusion=meta[META_PREFIX + "occlusion"],
                              region=meta[META_PREFIX + "region"], version=version)
    except ValueError as exc:
        raise ModelError(f"{origin}: unsupported metadata: {exc}") from None
    return classes, spec


def _class_prior(meta: dict[str, str], k: int, origin: str) -> np.ndarray | None:
    raw = meta.get(META_PREFIX + "class_prior")
    if raw is None:
        return None
    try:
        prior = np.array([float(v) for v in raw.split(",")], dtype=np.float64)
    except ValueError:
        raise ModelError(f"{origin}: {META_PREFIX}class_prior must be {k} numbers") from None
    if prior.shape != (k,) or (prior <= 0).any():
        raise ModelError(f"{origin}: {META_PREFIX}class_prior must be {k} positive numbers")
    return prior / prior.sum()


def open_session(path: Path, threads: int = 1):
    """A CPU onnxruntime session tuned for batch-1 latency; a bad or untrusted file is a one-line ModelError."""
    check_model_file(path)
    return _session(path, threads)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 4
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a readable ONNX model ({first[:160]})") from None


class ExpressionModel:
    """An ONNX Runtime session plus the preprocessing it was trained with.

    ``predict(batch)`` takes float32 ``N x C x H x W`` from ``core.preprocess`` and returns
    (probabilities ``N x K``, embedding ``N x D`` or None).
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        meta = check_model_file(self.path).metadata
        classes, spec = parse_metadata(meta, str(self.path))  # before onnxruntime parses the file
        self.session = _session(self.path, threads)
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or "logits" not in outputs:
            raise ModelError(f"{self.path}: expected one input and an output named 'logits'")
        shape = inputs[0].shape
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], spec.input_shape)):
            raise ModelError(f"{self.path}: input shape {shape} does not match metadata {spec.input_shape}")
        self._input = inputs[0].name
        self._outputs = ["logits"] + (["embedding"] if "embedding" in outputs else [])
        self.info = ModelInfo(self.path, meta.get(META_PREFIX + "name", self.path.stem), classes, spec,
                              meta, "embedding" in outputs, _class_prior(meta, len(classes), str(self.path)))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def spec(self) -> PreprocessSpec:
        return self.info.spec

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(self._outputs, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        logits = out[0].astype(np.float64)
        if logits.shape[-1] != len(self.classes):
            raise ModelError(f"{self.path}: model gave {logits.shape[-1]} outputs for {len(self.classes)} classes")
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs.astype(np.float32), (out[1] if len(out) > 1 else None)
