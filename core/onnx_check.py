"""What an ONNX file from a stranger must pass before ONNX Runtime sees it.

Checked here, on the file's bytes: its size (with any external data) is capped; every operator
set and every node (in subgraphs and local functions too) is in a standard domain, so no custom
operator library is asked for; external tensor data stays inside the model's own folder (no
``../`` or absolute paths, no links out of it). Each refusal is a ModelError of one line.

The runtime does not depend on the ``onnx`` package (it is a training extra), so the file is
parsed with ``protobuf`` (already a runtime dependency, through mediapipe) against a subset of
``onnx.proto`` declared below: the field numbers of the messages and fields these checks read,
nothing else. Fields not declared are skipped by the parser, as protobuf does for any unknown
field, so the subset reads every ONNX file that the full schema reads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from vrfer.core.errors import ModelError

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
MAX_MODEL_BYTES = 256 * 1024 * 1024  # the file plus its external data; vrfer's students are a few MB
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL

# (message, [(field, number, type, label, message type)]) from onnx/onnx-ml.proto.
_OPT, _REP = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_STR, _I64, _I32, _MSG = (descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
                          descriptor_pb2.FieldDescriptorProto.TYPE_INT32, descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE)
_SCHEMA = {
    "StringStringEntryProto": [("key", 1, _STR, _OPT, None), ("value", 2, _STR, _OPT, None)],
    "OperatorSetIdProto": [("domain", 1, _STR, _OPT, None), ("version", 2, _I64, _OPT, None)],
    "TensorProto": [("name", 8, _STR, _OPT, None), ("external_data", 13, _MSG, _REP, "StringStringEntryProto"),
                    ("data_location", 14, _I32, _OPT, None)],
    "SparseTensorProto": [("values", 1, _MSG, _OPT, "TensorProto"), ("indices", 2, _MSG, _OPT, "TensorProto")],
    "AttributeProto": [("name", 1, _STR, _OPT, None), ("t", 5, _MSG, _OPT, "TensorProto"),
                       ("g", 6, _MSG, _OPT, "GraphProto"), ("tensors", 10, _MSG, _REP, "TensorProto"),
                       ("graphs", 11, _MSG, _REP, "GraphProto"), ("sparse_tensor", 22, _MSG, _OPT, "SparseTensorProto"),
                       ("sparse_tensors", 23, _MSG, _REP, "SparseTensorProto")],
    "NodeProto": [("name", 3, _STR, _OPT, None), ("op_type", 4, _STR, _OPT, None),
                  ("attribute", 5, _MSG, _REP, "AttributeProto"), ("domain", 7, _STR, _OPT, None)],
    "GraphProto": [("node", 1, _MSG, _REP, "NodeProto"), ("initializer", 5, _MSG, _REP, "TensorProto"),
                   ("sparse_initializer", 15, _MSG, _REP, "SparseTensorProto")],
    "FunctionProto": [("name", 1, _STR, _OPT, None), ("node", 7, _MSG, _REP, "NodeProto"),
                      ("opset_import", 9, _MSG, _REP, "OperatorSetIdProto"), ("domain", 10, _STR, _OPT, None)],
    "TrainingInfoProto": [("initialization", 1, _MSG, _OPT, "GraphProto"), ("algorithm", 2, _MSG, _OPT, "GraphProto")],
    "ModelProto": [("ir_version", 1, _I64, _OPT, None), ("graph", 7, _MSG, _OPT, "GraphProto"),
                   ("opset_import", 8, _MSG, _REP, "OperatorSetIdProto"),
                   ("metadata_props", 14, _MSG, _REP, "StringStringEntryProto"),
                   ("training_info", 20, _MSG, _REP, "TrainingInfoProto"),
                   ("functions", 25, _MSG, _REP, "FunctionProto")],
}
_PACKAGE = "vrfer_onnx_subset"  # its own package name, so it never clashes with the onnx package's


def _model_class():
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2")
    for name, fields in _SCHEMA.items():
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.ModelProto"))


_ModelProto = _model_class()


@dataclass(frozen=True)
class ModelFile:
    """What the checks read from a model file that passed them."""

    path: Path
    metadata: dict[str, str]
    opsets: dict[str, int]
    external_bytes: int


def _graphs_and_nodes(model) -> tuple[list, list]:
    """Every graph (main, subgraphs of If/Loop/Scan, training) and every node, functions' included."""
    graphs, nodes = [], []
    todo = [model.graph] if model.HasField("graph") else []
    for info in model.training_info:
        todo += [g for g in (info.initialization, info.algorithm)]
    function_nodes = [n for f in model.functions for n in f.node]

    def visit_node(node) -> None:
        nodes.append(node)
        for attr in node.attribute:
            if attr.HasField("g"):
                todo.append(attr.g)
            todo.extend(attr.graphs)

    for node in function_nodes:
        visit_node(node)
    while todo:
        graph = todo.pop()
        graphs.append(graph)
        for node in graph.node:
            visit_node(node)
    return graphs, nodes


def _tensors(graphs: list, nodes: list) -> list:
    out = []
    for g in graphs:
        out += list(g.initializer)
        out += [t for s in g.sparse_initializer for t in (s.values, s.indices)]
    for node in nodes:
        for attr in node.attribute:
            out += ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            sparse = ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)
            out += [t for s in sparse for t in (s.values, s.indices)]
    return out


def _external_bytes(tensors: list, folder: Path, origin: str) -> int:
    """Bytes of external data the tensors read, after proving each file lies inside ``folder``."""
    total, sizes = 0, {}
    root = folder.resolve()
    for t in tensors:
        entries = {e.key: e.value for e in t.external_data}
        if t.data_location != _EXTERNAL and not entries:
            continue
        location = entries.get("location", "")
        if not location:
            raise ModelError(f"{origin}: refused, tensor {t.name!r} has external data without a location")
        rel = Path(location)
        if rel.is_absolute() or "\\" in location or ".." in rel.parts or "\0" in location:
            raise ModelError(f"{origin}: refused, tensor {t.name!r} reads external data from {location!r}, "
                             "outside the model's folder")
        target = (folder / rel).resolve()
        if root not in target.parents:  # a link inside the folder that points out of it
            raise ModelError(f"{origin}: refused, tensor {t.name!r} reads external data from {location!r}, "
                             f"which leads outside the model's folder (to {target})")
        if target not in sizes:
            try:
                sizes[target] = target.stat().st_size
            except OSError:
                raise ModelError(f"{origin}: tensor {t.name!r} reads external data from {location!r}, "
                                 "which is missing") from None
            total += sizes[target]
    return total


def check_model_file(path: str | os.PathLike[str], max_bytes: int = MAX_MODEL_BYTES) -> ModelFile:
    """Refuse, in one line, an ONNX file that is too large, unparseable, asks for operators outside
    the standard domains, or reads external data from outside its folder."""
    path = Path(path)
    origin = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"{origin}: model file cannot be read ({exc.strerror})") from None
    mib = 1024 * 1024
    if size > max_bytes:
        raise ModelError(f"{origin}: refused, the model is {size / mib:.0f} MiB; the cap is {max_bytes / mib:.0f} MiB")
    model = _ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except (DecodeError, RuntimeError, ValueError):  # malformed wire data, nesting past protobuf's limit
        raise ModelError(f"{origin}: not a readable ONNX model (protobuf decoding failed)") from None
    except OSError as exc:
        raise ModelError(f"{origin}: model file cannot be read ({exc.strerror})") from None
    if not model.HasField("graph"):
        raise ModelError(f"{origin}: not a readable ONNX model (no graph)")
    opsets = {}
    for op in list(model.opset_import) + [o for f in model.functions for o in f.opset_import]:
        if op.domain not in STANDARD_DOMAINS:
            raise ModelError(f"{origin}: refused, it imports operator set {op.domain!r}; only the standard "
                             f"domains ({', '.join(repr(d) for d in sorted(STANDARD_DOMAINS))}) are loaded")
        opsets[op.domain or "ai.onnx"] = op.version
    graphs, nodes = _graphs_and_nodes(model)
    for node in nodes:
        if node.domain not in STANDARD_DOMAINS:
            raise ModelError(f"{origin}: refused, node {node.name or node.op_type!r} uses operator "
                             f"{node.domain}.{node.op_type}, outside the standard domains")
    external = _external_bytes(_tensors(graphs, nodes), path.parent, origin)
    if size + external > max_bytes:
        raise ModelError(f"{origin}: refused, the model and its external data are {(size + external) / mib:.0f} "
                         f"MiB; the cap is {max_bytes / mib:.0f} MiB")
    meta = {}
    for prop in model.metadata_props:
        meta[prop.key] = prop.value
    return ModelFile(path, meta, opsets, external)
