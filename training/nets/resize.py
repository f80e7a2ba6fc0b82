"""Upsampling on the device: train a network at the paper's 224 px on 48 px FER+ faces.

The batch stays 48 px through ``core.preprocess`` (the runtime's function) and is resized by
``F.interpolate`` as the network's first operation, so the exported ONNX graph carries the
same resize and still takes the runtime's 48 px input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Upsampled(nn.Module):
    """Wraps a network: bilinear resize of the input to ``size`` (h, w), then the network."""

    def __init__(self, net: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.size = (int(size[0]), int(size[1]))
        self.num_features = getattr(net, "num_features", None)

    @property
    def head(self) -> nn.Module:
        return self.net.head

    @property
    def drop(self) -> nn.Module:
        return getattr(self.net, "drop", nn.Identity())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.net.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.net.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
