"""CIFAR-style ResNet-18, the full-face teacher of the field notes (87.88% FER+ Test at 48 px).

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016),
https://arxiv.org/abs/1512.03385, with the CIFAR stem: one 3x3/1 conv and no max-pool, so
a 48x48 face keeps its resolution into the first stage. About 1.3 GFLOPs per face: a teacher,
not a real-time model.
"""
from __future__ import annotations

from torch import nn

from vrfer.training.nets.registry import register_model
from vrfer.training.nets.student import BasicBlock, PooledHead


class ResNetCifar(PooledHead, nn.Module):
    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), widths: tuple[int, ...] = (64, 128, 256, 512),
                 num_classes: int = 8, in_chans: int = 1, dropout: float = 0.0,
                 in_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        if in_shape is not None:
            in_chans = in_shape[0]
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        cin = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            for j in range(n):
                blocks.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.num_features = cin
        self.head = nn.Linear(cin, num_classes)


@register_model
def resnet18_cifar(num_classes: int = 8, **kwargs) -> ResNetCifar:
    return ResNetCifar((2, 2, 2, 2), num_classes=num_classes, **kwargs)


@register_model
def resnet10_cifar(num_classes: int = 8, **kwargs) -> ResNetCifar:
    """A lighter teacher (one block per stage) for CPU-sized runs."""
    return ResNetCifar((1, 1, 1, 1), num_classes=num_classes, **kwargs)
