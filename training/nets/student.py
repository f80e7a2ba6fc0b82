"""Fast real-time student: a small residual network that sees only the visible lower half.

Input 1 x (size/2) x size (the lower half of the canonical face, ``region=lower``). At 48 px
it costs about 60M multiply-adds, which runs in under 1 ms in ONNX Runtime on one CPU core.
"""
from __future__ import annotations

import torch
from torch import nn

from vrfer.training.nets.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.short(x))


class PooledHead:
    """forward_features -> global average pool -> dropout -> linear, timm style.

    Subclasses set ``stem``, ``stages``, ``pool``, ``drop`` and ``head``.
    """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.head(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class TinyRes(PooledHead, nn.Module):
    """Stem 3x3/32, stride-2 conv to 64, one basic block per stage (64, 128/2, 256/2)."""

    def __init__(self, num_classes: int = 8, widths: tuple[int, ...] = (32, 64, 128, 256),
                 dropout: float = 0.2, in_chans: int = 1,
                 in_shape: tuple[int, int, int] | None = None) -> None:
        # in_shape is accepted for a uniform builder signature; global pooling makes any size work.
        if in_shape is not None:
            in_chans = in_shape[0]
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True),
            nn.Conv2d(w0, w1, 3, 2, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(inplace=True))
        self.stages = nn.Sequential(BasicBlock(w1, w1), BasicBlock(w1, w2, 2), BasicBlock(w2, w3, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.num_features = w3
        self.head = nn.Linear(w3, num_classes)


@register_model
def tinyres(num_classes: int = 8, **kwargs) -> TinyRes:
    return TinyRes(num_classes=num_classes, **kwargs)


@register_model
def tinyres_s(num_classes: int = 8, **kwargs) -> TinyRes:
    return TinyRes(num_classes=num_classes, widths=(16, 32, 64, 128), **kwargs)
