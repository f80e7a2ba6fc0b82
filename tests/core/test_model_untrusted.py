"""ONNX files from strangers: crafted models that ask for custom operators, read external data
from outside their folder, are too large or lack the metadata contract are each refused in one
line naming the reason, before ONNX Runtime parses them; honest models, external data included,
still load."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from vrfer.bench.runtime import bench_model
from vrfer.core.errors import ModelError
from vrfer.core.face.headset import HeadsetLocator
from vrfer.core.model import ExpressionModel
from vrfer.core.onnx_check import MAX_MODEL_BYTES, check_model_file
from vrfer.core.paths import ASSETS_DIR

VRFER = Path(sys.executable).parent / "vrfer"


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(ModelError) as err:
        ExpressionModel(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def _edit(src: Path, dst: Path, change) -> Path:
    model = onnx.load(str(src))
    change(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


def _relu_in_domain(model: onnx.ModelProto, domain: str) -> None:
    """Route the hidden layer through ``domain``.Relu (declared, so only vrfer's check stops it)."""
    node = next(n for n in model.graph.node if n.op_type == "Relu")
    node.domain = domain
    model.opset_import.append(helper.make_opsetid(domain, 1))


@pytest.mark.parametrize("domain", ["com.evil", "com.microsoft"])
def test_custom_domain_operator_is_refused(tiny_model, tmp_path, domain):
    path = _edit(tiny_model, tmp_path / "custom.onnx", lambda m: _relu_in_domain(m, domain))
    _refused(path, "refused", repr(domain), "standard domains")


def test_custom_operator_in_a_subgraph_or_function_is_refused(tiny_model, tmp_path):
    def hide_in_if(model: onnx.ModelProto) -> None:
        relu = next(n for n in model.graph.node if n.op_type == "Relu")
        evil = helper.make_node("Pwn", ["embedding"], ["hidden"], domain="com.evil", name="hidden_pwn")
        branch = helper.make_graph([evil], "branch", [],
                                   [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, None)])
        cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
        model.graph.initializer.append(cond)
        iff = helper.make_node("If", ["cond"], ["hidden"], then_branch=branch, else_branch=branch)
        nodes = [iff if n is relu else n for n in model.graph.node]
        del model.graph.node[:]
        model.graph.node.extend(nodes)

    _refused(_edit(tiny_model, tmp_path / "if.onnx", hide_in_if), "com.evil.Pwn", "hidden_pwn")

    def hide_in_function(model: onnx.ModelProto) -> None:
        fn = helper.make_function("local", "Wrap", ["x"], ["y"],
                                  [helper.make_node("Pwn", ["x"], ["y"], domain="com.evil")],
                                  [helper.make_opsetid("", 17)])
        model.functions.append(fn)

    _refused(_edit(tiny_model, tmp_path / "fn.onnx", hide_in_function), "com.evil.Pwn")


def _externalise(model: onnx.ModelProto, location: str) -> None:
    """Point initializer w1 at ``location`` instead of carrying its bytes."""
    w1 = next(t for t in model.graph.initializer if t.name == "w1")
    onnx.external_data_helper.set_external_data(w1, location=location)
    w1.ClearField("raw_data")


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "/etc/passwd"])
def test_external_data_outside_the_folder_is_refused(tiny_model, tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(bytes(4096))
    path = _edit(tiny_model, tmp_path / "m" / "model.onnx", lambda m: _externalise(m, location))
    _refused(path, "refused", "'w1'", repr(location), "outside the model's folder")


def test_external_data_through_a_link_out_of_the_folder_is_refused(tiny_model, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(4096))
    path = _edit(tiny_model, tmp_path / "m" / "model.onnx", lambda m: _externalise(m, "weights.bin"))
    (path.parent / "weights.bin").symlink_to(secret)
    _refused(path, "refused", "leads outside the model's folder")


def test_external_data_inside_the_folder_still_loads(tiny_model, tmp_path):
    model = onnx.load(str(tiny_model))
    ref = ExpressionModel(tiny_model)
    path = tmp_path / "m" / "model.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    assert check_model_file(path).external_bytes == (path.parent / "w.bin").stat().st_size > 0
    x = np.random.default_rng(0).normal(size=(2, 1, 24, 48)).astype(np.float32)
    np.testing.assert_allclose(ExpressionModel(path).predict(x)[0], ref.predict(x)[0], atol=1e-6)


def test_model_over_the_size_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:  # sparse: the size is claimed, not written
        f.truncate(MAX_MODEL_BYTES + 1)
    _refused(path, "refused", "the cap is 256 MiB")


def test_external_data_counts_toward_the_size_cap(tiny_model, tmp_path):
    path = _edit(tiny_model, tmp_path / "model.onnx", lambda m: _externalise(m, "w.bin"))
    with open(tmp_path / "w.bin", "wb") as f:
        f.truncate(MAX_MODEL_BYTES)
    _refused(path, "refused", "and its external data", "the cap is 256 MiB")


def test_graph_without_the_metadata_contract_is_refused(make_onnx, tiny_meta):
    del tiny_meta["vrfer.region"]
    _refused(make_onnx("nocontract.onnx", meta=tiny_meta), "not a vrfer model", "vrfer.region")


def test_shipped_models_pass_the_checks():
    for name in ("student.onnx", "headset_locator.onnx"):
        checked = check_model_file(ASSETS_DIR / "models" / name)
        assert set(checked.opsets) <= {"ai.onnx", "ai.onnx.ml"} and checked.external_bytes == 0
    HeadsetLocator(ASSETS_DIR / "models" / "headset_locator.onnx")


def test_headset_locator_refuses_custom_operators_too(tmp_path):
    src = ASSETS_DIR / "models" / "headset_locator.onnx"

    def first_node_custom(model: onnx.ModelProto) -> None:
        model.graph.node[0].domain = "com.evil"
        model.opset_import.append(helper.make_opsetid("com.evil", 1))

    path = _edit(src, tmp_path / "locator.onnx", first_node_custom)
    with pytest.raises(ModelError, match="refused, it imports operator set 'com.evil'"):
        HeadsetLocator(path)


def test_model_bench_times_foreign_models_but_not_crafted_ones(make_onnx, tiny_model, tmp_path):
    foreign = make_onnx("foreign.onnx", meta={"producer": "another tool"})
    assert bench_model(foreign, runs=3, warmup=1)  # no vrfer metadata: still timed
    # Weights read through a link out of the model's folder. onnxruntime 1.32 refuses these too;
    # vrfer's check comes first, with its own line, and does not depend on that.
    w1 = next(t for t in onnx.load(str(tiny_model)).graph.initializer if t.name == "w1")
    (tmp_path / "outside.bin").write_bytes(w1.raw_data)
    crafted = _edit(tiny_model, tmp_path / "m" / "model.onnx", lambda m: _externalise(m, "w.bin"))
    (crafted.parent / "w.bin").symlink_to(tmp_path / "outside.bin")
    with pytest.raises(ModelError, match="outside the model's folder"):
        bench_model(crafted, runs=3, warmup=1)


def test_eval_command_refuses_a_crafted_model_in_one_line(tiny_model, tmp_path):
    path = _edit(tiny_model, tmp_path / "custom.onnx", lambda m: _relu_in_domain(m, "com.evil"))
    r = subprocess.run([str(VRFER), "eval", "--model", str(path), "--data", str(tmp_path)], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(f"error: {path}: refused") and len(r.stderr.splitlines()) == 1, r.stderr
