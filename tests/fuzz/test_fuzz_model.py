"""Fuzz: the ONNX checks (file vetting and the metadata contract) and ``core.preprocess``.

Properties: a model file is accepted or refused with one ModelError line, never another
exception; the metadata check returns a valid spec or one ModelError; preprocess on any frame
shape, dtype and geometry returns finite float32 of the spec's input shape or raises ValueError."""
from __future__ import annotations

import numpy as np
import pytest
from fuzzkit import within
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vrfer.core.errors import ModelError
from vrfer.core.model import META_PREFIX, REQUIRED_KEYS, ExpressionModel, parse_metadata
from vrfer.core.onnx_check import check_model_file
from vrfer.core.preprocess import PreprocessSpec, preprocess


def _one_line(err: Exception) -> None:
    assert str(err) and "\n" not in str(err)


@pytest.fixture(scope="module")
def model_bytes(tiny_model) -> bytes:
    return tiny_model.read_bytes()


@given(data=st.binary(max_size=2000))
def test_check_of_any_bytes_is_a_model_file_or_model_error(tmp_path, data):
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    try:
        with within(5.0):
            checked = check_model_file(path)
    except ModelError as err:
        _one_line(err)
        return
    assert isinstance(checked.metadata, dict)


@given(cuts=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=8)), min_size=1, max_size=6))
def test_mutated_models_load_or_give_one_model_error(tmp_path, model_bytes, cuts):
    data = bytearray(model_bytes)
    for at, patch in cuts:  # overwrite a few bytes at arbitrary places: lengths, tags, names, weights
        at %= len(data)
        data[at:at + len(patch)] = patch
    path = tmp_path / "m.onnx"
    path.write_bytes(bytes(data))
    try:
        with within(10.0):
            model = ExpressionModel(path)
    except ModelError as err:
        _one_line(err)
        return
    probs, _ = model.predict(np.zeros((1, *model.spec.input_shape), np.float32))
    assert probs.shape == (1, len(model.classes))


META_VALUES = st.one_of(st.text(max_size=30), st.sampled_from(["48", "24", "7", "-2", "1e3", "nan", "vr", "none",
                                                               "lower", "full", "1", "2", "3", "a,a", "a,b", ",",
                                                               "99999999999999999999"]))


@given(meta=st.dictionaries(st.sampled_from([META_PREFIX + k for k in REQUIRED_KEYS] + ["vrfer.name", "x"]),
                            META_VALUES, max_size=7))
def test_metadata_check_is_a_spec_or_model_error(meta):
    try:
        classes, spec = parse_metadata(meta, "m.onnx")
    except ModelError as err:
        _one_line(err)
        return
    assert len(classes) >= 2 and len(set(classes)) == len(classes) and isinstance(spec, PreprocessSpec)


DTYPES = st.sampled_from([np.uint8, np.uint16, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64,
                          np.bool_])
SHAPES = st.one_of(hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=70),
                   st.tuples(st.integers(0, 70), st.integers(0, 70), st.integers(0, 5)),
                   hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
GEOMETRY = st.one_of(st.none(), hnp.arrays(np.float64, (2, 3), elements=st.floats(allow_nan=True, allow_infinity=True)),
                     hnp.arrays(np.float64, (2, 3), elements=st.floats(-100, 100)),
                     hnp.arrays(np.float64, st.sampled_from([(6,), (3, 2), (2, 2), (0,)]), elements=st.floats(-2, 2)))
SPECS = st.builds(PreprocessSpec, size=st.sampled_from([8, 48, 64]), occlusion=st.sampled_from(["none", "vr"]),
                  region=st.sampled_from(["full", "lower"]), version=st.sampled_from([1, 2]))


@given(frame=st.tuples(SHAPES, DTYPES).flatmap(lambda sd: hnp.arrays(sd[1], sd[0])), geometry=GEOMETRY, spec=SPECS)
def test_preprocess_is_a_finite_input_or_value_error(frame, geometry, spec):
    try:
        with within(5.0):
            x = preprocess(frame, geometry, spec)
    except ValueError as err:
        _one_line(err)
        return
    assert x.dtype == np.float32 and x.shape == spec.input_shape and np.isfinite(x).all()
