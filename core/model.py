"""ONNX Runtime inference for expression models, with the metadata contract checked on load.

An exported model carries in ``metadata_props``:

=========================  ===================================================
``vrfer.classes``           comma-separated class names, in output order
``vrfer.input_size``        side of the canonical face the model was trained on
``vrfer.occlusion``         ``none`` or ``vr`` (upper half blacked out)
``vrfer.region``            ``full`` or ``lower`` (only the lower half is fed)
``vrfer.preprocess_version``  the ``core.preprocess.PREPROCESS_VERSION`` it was trained with
``vrfer.name``              a human-readable model name (optional)
``vrfer.shapes``            comma-separated mouth shape names (optional; with a ``shapes`` output)
=========================  ===================================================

Outputs: ``logits`` (N x classes), optionally ``embedding`` (N x D) and, when the metadata
declares shapes, ``shapes`` (N x S, 0..1; ``core.mouth_shapes``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vrfer.core.errors import ModelError
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
    shapes: tuple[str, ...] = ()  # mouth shape names of the ``shapes`` output; () = none


@dataclass(frozen=True)
class Prediction:
    probs: np.ndarray  # N x K float32
    embedding: np.ndarray | None  # N x D, when the model has one
    shapes: np.ndarray | None  # N x S float32 in 0..1, when the model has a shapes head


SHIPPED_MODELS = {"realtime": "student.onnx", "accurate": "accurate.onnx"}  # short name -> file in assets/models


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """A path, a shipped model's short name (``realtime``, ``accurate``) or None (the default)."""
    if model is None:
        return default_model_path()
    name = str(model)
    if name in SHIPPED_MODELS and not Path(name).exists():
        path = ASSETS_DIR / "models" / SHIPPED_MODELS[name]
        if not path.is_file():
            raise ModelError(f"the {name!r} model is not installed ({path} is missing); "
                             f"installed: {', '.join(shipped_model_names())}")
        return path
    return Path(model)


def shipped_model_names() -> list[str]:
    return [n for n, f in SHIPPED_MODELS.items() if (ASSETS_DIR / "models" / f).is_file()]


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


def _shape_names(meta: dict[str, str], outputs: dict[str, list], origin: str) -> tuple[str, ...]:
    """The declared mouth shapes, checked against the ``shapes`` output (both or neither)."""
    raw = meta.get(META_PREFIX + "shapes")
    if raw is None:
        if "shapes" in outputs:
            raise ModelError(f"{origin}: has a 'shapes' output but no {META_PREFIX}shapes metadata naming them")
        return ()
    names = tuple(n.strip() for n in raw.split(","))
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise ModelError(f"{origin}: {META_PREFIX}shapes must list distinct, non-empty names")
    if "shapes" not in outputs:
        raise ModelError(f"{origin}: {META_PREFIX}shapes declares {len(names)} shapes but the model has no 'shapes' output")
    dims = outputs["shapes"]
    if len(dims) != 2 or (isinstance(dims[1], int) and dims[1] != len(names)):
        raise ModelError(f"{origin}: 'shapes' output is {dims}, metadata declares {len(names)} shapes")
    return names


def open_session(path: Path, threads: int = 1):
    """A CPU onnxruntime session tuned for batch-1 latency; a bad file is a one-line ModelError."""
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
        self.path = resolve_model(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        self.session = open_session(self.path, threads)
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        classes, spec = parse_metadata(meta, str(self.path))
        inputs = self.session.get_inputs()
        out_dims = {o.name: list(o.shape) for o in self.session.get_outputs()}
        outputs = list(out_dims)
        if len(inputs) != 1 or "logits" not in outputs:
            raise ModelError(f"{self.path}: expected one input and an output named 'logits'")
        shape = inputs[0].shape
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], spec.input_shape)):
            raise ModelError(f"{self.path}: input shape {shape} does not match metadata {spec.input_shape}")
        self._input = inputs[0].name
        shapes = _shape_names(meta, out_dims, str(self.path))
        self._outputs = ["logits"] + (["embedding"] if "embedding" in outputs else []) + (["shapes"] if shapes else [])
        self.info = ModelInfo(self.path, meta.get(META_PREFIX + "name", self.path.stem), classes, spec,
                              meta, "embedding" in outputs, _class_prior(meta, len(classes), str(self.path)), shapes)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def spec(self) -> PreprocessSpec:
        return self.info.spec

    @property
    def shapes(self) -> tuple[str, ...]:
        return self.info.shapes

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        p = self.predict_all(batch)
        return p.probs, p.embedding

    def predict_all(self, batch: np.ndarray) -> Prediction:
        """Probabilities, embedding and mouth shapes (the last two None where the model lacks them)."""
        out = dict(zip(self._outputs, self.session.run(
            self._outputs, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})))
        logits = out["logits"].astype(np.float64)
        if logits.shape[-1] != len(self.classes):
            raise ModelError(f"{self.path}: model gave {logits.shape[-1]} outputs for {len(self.classes)} classes")
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        shapes = out.get("shapes")
        if shapes is not None:
            if shapes.shape != (len(logits), len(self.shapes)):
                raise ModelError(f"{self.path}: model gave shapes {shapes.shape} for {len(self.shapes)} declared shapes")
            shapes = np.clip(shapes.astype(np.float32), 0.0, 1.0)
        return Prediction(probs.astype(np.float32), out.get("embedding"), shapes)
