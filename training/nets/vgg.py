"""VGG-f and VGG-face, the two networks of Georgescu & Ionescu (ICPR 2020), from scratch.

- VGG-f: Chatfield et al., "Return of the Devil in the Details" (BMVC 2014),
  https://arxiv.org/abs/1405.3531 -- conv 64 11x11/4, 256 5x5, 256 3x3 x3, fc 4096 x2.
- VGG-face: Parkhi et al., "Deep Face Recognition" (BMVC 2015) -- the VGG-16 layout,
  13 3x3 convs in 5 blocks, fc 4096 x2.

Adapted: BatchNorm after every conv (no LRN, no pretrained weights exist here, and BN is what
makes these trainable from scratch), ceil-mode pooling so that a lower-half input (h = w/2)
never pools to zero, and the first fc layer sized from ``in_shape``. VGG-f keeps the paper's
11x11/4 stem at the paper's 224 px and uses 5x5/1 at native FER+ size (48 px), where a
stride-4 stem would leave almost nothing to pool.
"""
from __future__ import annotations

import torch
from torch import nn

from vrfer.training.nets.registry import register_model


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2 if stride == 1 else 0, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGG(nn.Module):
    """A conv trunk, then fc-ReLU-dropout x2 (the embedding), then the classifier ``head``."""

    def __init__(self, features: nn.Sequential, in_shape: tuple[int, int, int], num_classes: int = 8,
                 fc_dim: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        with torch.no_grad():  # size fc6 from the real trunk output for this input shape
            c, h, w = features(torch.zeros(1, *in_shape)).shape[1:]
        self.fc = nn.Sequential(
            nn.Flatten(1), nn.Linear(c * h * w, fc_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(fc_dim, fc_dim), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(dropout)
        self.num_features = fc_dim
        self.head = nn.Linear(fc_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc(x)  # fc7 output: the embedding the paper distils
        return x if pre_logits else self.head(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _vggf_trunk(in_chans: int, input_size: int, width: float) -> nn.Sequential:
    c1, c2 = int(64 * width), int(256 * width)
    stem = _conv(in_chans, c1, 11, 4) if input_size >= 112 else _conv(in_chans, c1, 5)
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(*stem, pool(), *_conv(c1, c2, 5), pool(),
                         *_conv(c2, c2, 3), *_conv(c2, c2, 3), *_conv(c2, c2, 3), pool())


VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg16_trunk(in_chans: int, width: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_chans
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            layers += _conv(c, int(v * width), 3)
            c = int(v * width)
    return nn.Sequential(*layers)


def _create_vgg(variant: str, num_classes: int, in_shape: tuple[int, int, int] | None,
                width: float = 1.0, fc_dim: int = 4096, dropout: float = 0.5) -> VGG:
    in_shape = tuple(in_shape or (1, 24, 48))
    if variant == "vgg_f":
        trunk = _vggf_trunk(in_shape[0], in_shape[2], width)
    else:
        trunk = _vgg16_trunk(in_shape[0], width)
    return VGG(trunk, in_shape, num_classes, fc_dim, dropout)


@register_model
def vgg_f(num_classes: int = 8, in_shape: tuple[int, int, int] | None = None, **kwargs) -> VGG:
    return _create_vgg("vgg_f", num_classes, in_shape, **kwargs)


@register_model
def vgg_face(num_classes: int = 8, in_shape: tuple[int, int, int] | None = None, **kwargs) -> VGG:
    return _create_vgg("vgg_face", num_classes, in_shape, **kwargs)
