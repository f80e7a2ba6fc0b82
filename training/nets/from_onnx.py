"""Start a network from an exported ONNX model (the shipped student), whose batch norms the
exporter folded into the convolutions.

Each Conv node's weight and bias go, in graph order, into the network's Conv2d layers in module
order; the BatchNorm2d after each conv becomes the identity plus the folded bias, and
``rebase_batchnorms`` then gives it real statistics before training. The head is the last Gemm.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vrfer.core.errors import ConfigError


def load_folded_onnx(net: nn.Module, path: str | Path) -> None:
    """Copy an ONNX export of the same architecture into ``net`` (BN folded, see module doc)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError, OSError and others
        raise ConfigError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0][:100]})") from None
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    conv_nodes = [n for n in model.graph.node if n.op_type == "Conv"]
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    modules = list(net.modules())
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    bns = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    if len(conv_nodes) != len(convs) or len(bns) != len(convs) or len(gemms) != 1:
        raise ConfigError(f"{path}: {len(conv_nodes)} convs and {len(gemms)} linear layers do not match the network's "
                          f"{len(convs)} convs")
    with torch.no_grad():
        for node, conv, bn in zip(conv_nodes, convs, bns):
            w = inits[node.input[1]]
            b = inits[node.input[2]] if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ConfigError(f"{path}: conv {node.name} has shape {w.shape}, the network {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w.copy()))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b.copy()))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        gemm = gemms[0]
        w, b = inits[gemm.input[1]], inits[gemm.input[2]]
        trans_b = any(a.name == "transB" and a.i == 1 for a in gemm.attribute)
        head = net.head
        head.weight.copy_(torch.from_numpy((w if trans_b else w.T).copy()))
        head.bias.copy_(torch.from_numpy(b.copy()))
