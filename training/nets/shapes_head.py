"""The mouth-shapes head: a linear layer beside any network's class head, on the same pooled
features, with a sigmoid so every shape lies in 0..1 (``core.mouth_shapes``)."""
from __future__ import annotations

import torch
from torch import nn


def add_shapes_head(net: nn.Module, shapes: int) -> nn.Module:
    """Give ``net`` (any registered network: it has ``num_features``) a head for ``shapes`` shapes."""
    inner = getattr(net, "net", net)  # an Upsampled wrapper keeps its network in ``net``
    inner.shapes_head = nn.Linear(inner.num_features, shapes)
    return net


def has_shapes_head(net: nn.Module) -> bool:
    inner = getattr(net, "net", net)
    return isinstance(getattr(inner, "shapes_head", None), nn.Module)


def forward_shapes(net: nn.Module, features: torch.Tensor) -> torch.Tensor | None:
    """0..1 shapes from pooled features (``forward_head(..., pre_logits=True)``), or None without a head."""
    if not has_shapes_head(net):
        return None
    return torch.sigmoid(getattr(net, "net", net).shapes_head(features))
