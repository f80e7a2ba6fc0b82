import numpy as np
import pytest

from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.errors import ModelError
from vrfer.core.model import ExpressionModel, default_model_path
from vrfer.core.preprocess import PreprocessSpec


def _ort_parse_error(path) -> str:
    # onnxruntime's own first line, cut at 160 characters by core.model
    return f"[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from {path} failed:Protobuf parsing failed."[:160]


def test_model_loads_metadata_and_predicts(tiny_model):
    model = ExpressionModel(tiny_model)
    assert model.classes == FERPLUS_CLASSES
    assert model.spec == PreprocessSpec(size=48, occlusion="vr", region="lower", version=1)
    assert model.info.name == "tiny-test" and model.info.has_embedding
    batch = np.random.default_rng(1).uniform(-1, 1, (3, 1, 24, 48)).astype(np.float32)
    probs, emb = model.predict(batch)
    assert probs.shape == (3, 8) and emb.shape == (3, 16)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(probs[0], probs[1])  # a real network, not a constant


def test_model_refuses_missing_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelError) as info:
        ExpressionModel(path)
    assert str(info.value) == f"{path}: model file not found"


def test_model_refuses_truncated_file(tiny_model, tmp_path):
    path = tmp_path / "cut.onnx"
    data = tiny_model.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as info:
        ExpressionModel(path)
    assert str(info.value) == f"{path}: not a readable ONNX model ({_ort_parse_error(path)})"


def test_model_refuses_non_onnx_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are my notes, not a network\n")
    with pytest.raises(ModelError) as info:
        ExpressionModel(path)
    assert str(info.value) == f"{path}: not a readable ONNX model ({_ort_parse_error(path)})"


@pytest.mark.parametrize("meta_change, kwargs, message", [
    ("foreign", {}, "not a vrfer model (metadata lacks vrfer.classes)"),
    ({"vrfer.preprocess_version": "3"}, {},
     "vrfer.preprocess_version is 3, this runtime implements 1, 2; re-export the model or update vrfer"),
    ({"vrfer.occlusion": "helmet"}, {},
     "unsupported metadata: occlusion must be one of ('none', 'vr'), got 'helmet'"),
    ({"vrfer.classes": "happy"}, {}, "vrfer.classes must list 2 or more distinct names"),
    ({}, {"input_shape": (1, 48, 48)}, "input shape ['N', 1, 48, 48] does not match metadata (1, 24, 48)"),
])
def test_model_refuses_metadata_it_cannot_honour(make_onnx, tiny_meta, meta_change, kwargs, message):
    meta = {"producer": "someone else"} if meta_change == "foreign" else {**tiny_meta, **meta_change}
    path = make_onnx(meta=meta, **kwargs)
    with pytest.raises(ModelError) as info:
        ExpressionModel(path)
    assert str(info.value) == f"{path}: {message}"


def test_model_default_path_names_the_missing_model(monkeypatch, tmp_path):
    missing = tmp_path / "student.onnx"
    monkeypatch.setenv("VRFER_MODEL", str(missing))
    with pytest.raises(ModelError) as info:
        default_model_path()
    assert str(info.value) == (
        f"no model is installed yet ({missing} is missing): train and export one with "
        "'vrfer train training/configs/student.toml' and 'vrfer export', or pass --model PATH")


def test_shipped_models_are_chosen_by_short_name(tmp_path, monkeypatch):
    from vrfer.core.model import SHIPPED_MODELS, resolve_model, shipped_model_names
    from vrfer.core.paths import ASSETS_DIR

    assert "realtime" in shipped_model_names()
    model = ExpressionModel("realtime")
    assert model.path == ASSETS_DIR / "models" / SHIPPED_MODELS["realtime"]
    assert resolve_model(tmp_path / "x.onnx") == tmp_path / "x.onnx"  # a path stays a path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "realtime").write_bytes(b"")  # a file of that name in the working folder wins
    assert resolve_model("realtime").resolve() == (tmp_path / "realtime").resolve()


def test_a_missing_shipped_model_names_the_installed_ones(monkeypatch, tmp_path):
    import vrfer.core.model as m

    monkeypatch.setattr(m, "ASSETS_DIR", tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "student.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"'accurate' model is not installed.*installed: realtime"):
        m.resolve_model("accurate")


SHAPE_NAMES = "jaw_open,lips_apart,mouth_smile_left"


def test_model_reads_declared_mouth_shapes(make_onnx, tiny_meta):
    model = ExpressionModel(make_onnx(meta={**tiny_meta, "vrfer.shapes": SHAPE_NAMES}, shapes=3))
    assert model.shapes == ("jaw_open", "lips_apart", "mouth_smile_left")
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 1, 24, 48)).astype(np.float32)
    p = model.predict_all(batch)
    assert p.shapes.shape == (2, 3) and 0 < p.shapes.min() and p.shapes.max() < 1
    assert not np.allclose(p.shapes[0], p.shapes[1])
    probs, emb = model.predict(batch)  # the two-value call keeps working
    np.testing.assert_allclose(probs, p.probs)


def test_model_without_shapes_has_none(tiny_model):
    model = ExpressionModel(tiny_model)
    assert model.shapes == () and model.predict_all(np.zeros((1, 1, 24, 48), np.float32)).shapes is None


@pytest.mark.parametrize("declared, outputs, message", [
    (SHAPE_NAMES, 0, "vrfer.shapes declares 3 shapes but the model has no 'shapes' output"),
    (None, 3, "has a 'shapes' output but no vrfer.shapes metadata naming them"),
    (SHAPE_NAMES, 4, "'shapes' output is ['N', 4], metadata declares 3 shapes"),
    ("jaw_open,,x", 3, "vrfer.shapes must list distinct, non-empty names"),
    ("jaw_open,jaw_open,x", 3, "vrfer.shapes must list distinct, non-empty names"),
])
def test_model_refuses_shapes_that_do_not_match_its_outputs(make_onnx, tiny_meta, declared, outputs, message):
    meta = dict(tiny_meta) if declared is None else {**tiny_meta, "vrfer.shapes": declared}
    path = make_onnx(meta=meta, shapes=outputs)
    with pytest.raises(ModelError) as info:
        ExpressionModel(path)
    assert str(info.value) == f"{path}: {message}"
