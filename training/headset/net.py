"""The headset locator network: a 96x128 grayscale view -> five anchors, face-present and headset logits.

A plain strided CNN (about 7M multiply-adds, well under 0.3 ms per pass in onnxruntime on one core of
the reference CPU). Position matters, so the last feature map is flattened, not pooled.
"""
from __future__ import annotations

import torch
from torch import nn

from vrfer.core.face.headset import INPUT_H, INPUT_W, N_ANCHORS


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HeadsetLocatorNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int, int] = (12, 16, 32, 48), hidden: int = 128) -> None:
        super().__init__()
        a, b, c, d = widths
        self.features = nn.Sequential(
            _conv(1, a, 2),   # 48 x 64
            _conv(a, b, 2),   # 24 x 32
            _conv(b, b, 1),
            _conv(b, c, 2),   # 12 x 16
            _conv(c, c, 1),
            _conv(c, d, 2),   # 6 x 8
            _conv(d, d, 1),
        )
        flat = d * (INPUT_H // 16) * (INPUT_W // 16)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(0.1))
        self.points = nn.Linear(hidden, 2 * N_ANCHORS)
        self.face = nn.Linear(hidden, 1)
        self.occluded = nn.Linear(hidden, 1)  # upper face hidden: the mesh is guessing the eyes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.fc(self.features(x))
        # Points as fractions of the input; 0.5 + offset keeps the initial guess mid-frame.
        return 0.5 + self.points(h), self.face(h), self.occluded(h)
