"""Shared real fixtures: the FER+ folder (skips when absent) and tiny ONNX classifiers built
with the onnx helper API, so that tests never depend on the shipped model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.paths import ferplus_available, ferplus_dir as _ferplus_dir

TINY_META = {
    "vrfer.classes": ",".join(FERPLUS_CLASSES),
    "vrfer.input_size": "48",
    "vrfer.occlusion": "vr",
    "vrfer.region": "lower",
    "vrfer.preprocess_version": "1",
    "vrfer.name": "tiny-test",
}


def build_onnx_classifier(path: Path, *, meta: dict[str, str] | None = None,
                          input_shape: tuple[int, int, int] = (1, 24, 48), classes: int = 8,
                          embedding: int = 16, seed: int = 0, shapes: int = 0) -> Path:
    """Write Flatten -> Gemm (embedding) -> Relu -> Gemm (logits) as a real ONNX file, and with
    ``shapes`` > 0 a ``shapes`` output beside them (Gemm -> Sigmoid), as a mouth-shapes head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    c, h, w = input_shape
    w1 = rng.normal(0, 0.05, (c * h * w, embedding)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (embedding, classes)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.zeros(embedding, np.float32), "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(np.zeros(classes, np.float32), "b2")]
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["embedding"]),
        helper.make_node("Relu", ["embedding"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "w2", "b2"], ["logits"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes]),
               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", embedding])]
    if shapes:
        w3 = rng.normal(0, 0.5, (embedding, shapes)).astype(np.float32)
        inits += [numpy_helper.from_array(w3, "w3"), numpy_helper.from_array(np.zeros(shapes, np.float32), "b3")]
        nodes += [helper.make_node("Gemm", ["hidden", "w3", "b3"], ["shape_logits"]),
                  helper.make_node("Sigmoid", ["shape_logits"], ["shapes"])]
        outputs.append(helper.make_tensor_value_info("shapes", TensorProto.FLOAT, ["N", shapes]))
    graph = helper.make_graph(
        nodes, "tiny_vrfer",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, h, w])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime 1.32 reads without complaint
    helper.set_model_props(model, TINY_META if meta is None else meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A correctly tagged 8-class lower-face classifier: input N x 1 x 24 x 48, logits and embedding."""
    return build_onnx_classifier(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture
def make_onnx(tmp_path: Path) -> Callable[..., Path]:
    """Build a variant of the tiny model (other metadata, shape) in this test's tmp folder."""
    def make(name: str = "variant.onnx", **kwargs) -> Path:
        return build_onnx_classifier(tmp_path / name, **kwargs)
    return make


@pytest.fixture
def tiny_meta() -> dict[str, str]:
    """The metadata the tiny model carries (a fresh copy to vary)."""
    return dict(TINY_META)


@pytest.fixture(scope="session", autouse=True)
def _log_dir(tmp_path_factory: pytest.TempPathFactory):
    """The commands under test (and their subprocesses) log here, not into the user's log folder."""
    old = os.environ.get("VRFER_LOG_DIR")
    os.environ["VRFER_LOG_DIR"] = str(tmp_path_factory.mktemp("logs"))
    yield
    if old is None:
        os.environ.pop("VRFER_LOG_DIR", None)
    else:
        os.environ["VRFER_LOG_DIR"] = old


@pytest.fixture(scope="session")
def ferplus_dir() -> Path:
    if not ferplus_available():
        pytest.skip(f"FER+ data not found at {_ferplus_dir()} (set VRFER_FERPLUS)")
    return _ferplus_dir()
