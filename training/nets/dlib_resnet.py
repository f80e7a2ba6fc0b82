"""dlib's ResNet-29 face-identity network, ported to torch: the face-pretrained teacher.

dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (CC0, shipped inside the PyPI package
``face_recognition_models==0.3.0``) was trained on about 3M faces of 7,485 people, VGG-Face
among them: the offline stand-in for the paper's VGG-face. The file is read here without dlib.

Architecture (dlib's ``dnn_face_recognition_ex.cpp``): a 7x7/2 conv, a 3x3/2 max-pool, then
residual stages of 32 (3 blocks), 64 (4), 128 (3), 256 (3) and 256 (1) channels. The first block
of each later stage halves the size with an unpadded 3x3/2 conv; its shortcut is a 2x2 average
pool, added with zero padding (top-left aligned) up to the larger shape, as dlib's ``add_prev``.
dlib's ``affine`` layers are batch norm with the statistics folded in; here they become
``BatchNorm2d`` initialised to reproduce them, so fine-tuning can re-normalise for grey,
upscaled or half-blank faces. ``exact=True`` keeps them frozen affine maps (the reference port).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vrfer.core.adapt import file_sha256
from vrfer.core.errors import ConfigError
from vrfer.training.nets.bn import rebase_batchnorms
from vrfer.training.nets.registry import register_model

DLIB_FILE = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
DLIB_PACKAGE = "face_recognition_models==0.3.0"
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DLIB_ENV = "VRFER_DLIB_MODEL"  # a path that overrides the installed package's file
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def dlib_model_path() -> Path:
    """The installed model file; a one-line ConfigError naming the install step when absent."""
    env = os.environ.get(DLIB_ENV)
    if env:
        path = Path(env)
    else:
        # find_spec, not import: the package's __init__ needs pkg_resources, which new setuptools lack.
        from importlib.util import find_spec

        spec = find_spec("face_recognition_models")
        where = list(spec.submodule_search_locations or []) if spec is not None else []
        path = Path(where[0]) / "models" / DLIB_FILE if where else Path(DLIB_FILE)
    if not path.is_file():
        raise ConfigError(f"the face-pretrained network ({DLIB_FILE}) is not installed: "
                          f"pip install '{DLIB_PACKAGE}' (or `pip install -e '.[train]'`), or set {DLIB_ENV}")
    return path


def verify_checksum(path: Path) -> None:
    digest = file_sha256(path)
    if digest != DLIB_SHA256:
        raise ConfigError(f"{path}: sha256 {digest[:16]}... is not the pinned {DLIB_SHA256[:16]}...; "
                          f"reinstall {DLIB_PACKAGE}")


@dataclass
class DlibLayer:
    kind: str  # con | affine | max_pool | avg_pool | fc
    params: np.ndarray
    ints: tuple[int, ...] = ()


class _Reader:
    """dlib's serialisation: an integer is a byte (size, bit 7 = sign) then that many little-endian
    bytes; a string is an integer length then bytes; a tensor is version, 4 dims, raw float32."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def int(self) -> int:
        head = self.data[self.pos]
        n = head & 0x0F
        if n > 8:
            raise ValueError(f"bad integer header {head:#x} at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ValueError(f"tensor version {version} at byte {self.pos} (expected 2)")
        dims = tuple(self.int() for _ in range(4))
        count = int(np.prod(dims))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise ValueError("tensor runs past the end of the file")
        arr = np.frombuffer(self.data[self.pos:end], dtype="<f4").reshape(dims).copy()
        self.pos = end
        return arr


_TAGS = {b"con_4": "con", b"affine_": "affine", b"max_pool_2": "max_pool", b"avg_pool_2": "avg_pool",
         b"fc_2": "fc"}


def read_dlib_layers(path: Path) -> list[DlibLayer]:
    """The weighted and pooling layers of the file, input side first (dlib writes the sub-network
    before the layer on top of it). Tags are searched only between layers, never inside weights."""
    data = path.read_bytes()
    pos, layers = 0, []
    while True:
        hits = [(data.find(bytes([1, len(tag)]) + tag, pos), tag) for tag in _TAGS]
        hits = [(i, tag) for i, tag in hits if i >= 0]
        if not hits:
            break
        i, tag = min(hits)
        r = _Reader(data, i + 2 + len(tag))
        kind = _TAGS[tag]
        if kind == "con":
            params = r.tensor()
            ints = tuple(r.int() for _ in range(7))  # filters, nr, nc, stride y/x, padding y/x
        elif kind == "affine":
            params, ints = r.tensor(), ()
        elif kind == "fc":
            ints = (r.int(), r.int())  # outputs, inputs
            params = r.tensor()
        else:
            params, ints = np.zeros(0, np.float32), tuple(r.int() for _ in range(6))
        layers.append(DlibLayer(kind, params, ints))
        pos = r.pos
    return layers


class Affine(nn.Module):
    """dlib's folded batch norm, kept exact (for the reference comparison)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def _norm(c: int, exact: bool) -> nn.Module:
    return Affine(c) if exact else nn.BatchNorm2d(c)


def pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: tensors of different shapes are zero-padded (top-left) to the larger one."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t: torch.Tensor) -> torch.Tensor:
        dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if (dc or dh or dw) else t

    return grow(a) + grow(b)


class DlibBlock(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool, exact: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.bn1 = _norm(cout, exact)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.bn2 = _norm(cout, exact)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        short = F.avg_pool2d(x, 2, 2) if self.down else x
        return torch.relu(pad_add(y, short))


class DlibResNet(nn.Module):
    """The face-identity trunk with a new expression head.

    Input: the runtime's preprocessed grey face, 1 x S x S (``region=full``) or 1 x S/2 x S
    (``region=lower``: the hidden upper half is filled with the face's median, 0 after
    preprocessing, and the full square goes in). It is resized to ``res`` px, copied to three
    channels and scaled by ``input_scale`` into the range dlib's (x - mean) / 256 chips have.
    """

    def __init__(self, num_classes: int = 8, res: int = 112, pretrained: bool = True, exact: bool = False,
                 dropout: float = 0.2, input_scale: float = 0.25, in_shape: tuple[int, int, int] | None = None,
                 in_chans: int = 1) -> None:
        super().__init__()
        if res < 112:
            raise ConfigError(f"dlib_resnet29: res must be at least 112 px (the last stage is empty below), got {res}")
        self.res, self.input_scale = int(res), float(input_scale)
        self.in_chans = in_shape[0] if in_shape is not None else in_chans
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 0), _norm(32, exact), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 0))
        blocks, cin = [], 32
        for width, n, down in STAGES:
            for j in range(n):
                blocks.append(DlibBlock(cin, width, down and j == 0, exact))
                cin = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.identity = nn.Linear(256, 128, bias=False)  # dlib's 128-d identity embedding (reference only)
        self.drop = nn.Dropout(dropout)
        self.num_features = 256
        self.head = nn.Linear(256, num_classes)
        self.register_buffer("calibrated", torch.tensor(not pretrained))
        if pretrained:
            path = dlib_model_path()
            verify_checksum(path)
            load_dlib_weights(self, read_dlib_layers(path))

    def calibrate(self, chips: torch.Tensor) -> None:
        """Re-base the folded affines (now batch norms) on the real statistics of ``chips``."""
        rebase_batchnorms(self, self.trunk, chips)
        self.calibrated.fill_(True)

    def chip(self, x: torch.Tensor) -> torch.Tensor:
        """A preprocessed face batch -> dlib-range 3 x res x res chips."""
        if x.shape[2] * 2 == x.shape[3]:  # lower half: put it back under an empty upper half
            x = torch.cat([torch.zeros_like(x), x], dim=2)
        x = F.interpolate(x, size=(self.res, self.res), mode="bilinear", align_corners=False)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x * self.input_scale

    def trunk(self, chips: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(chips))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        chips = self.chip(x)
        if self.training and not bool(self.calibrated) and any(isinstance(m, nn.BatchNorm2d) for m in self.modules()):
            self.calibrate(chips)  # on the first training batch: real statistics of real inputs
        return self.trunk(chips)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return x if pre_logits else self.head(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def descriptor(self, chips: torch.Tensor) -> torch.Tensor:
        """dlib's own output on dlib chips ((RGB - mean) / 256, 3 x H x W): the 128-d embedding."""
        return self.identity(torch.flatten(self.pool(self.trunk(chips)), 1))


def load_dlib_weights(net: DlibResNet, layers: list[DlibLayer]) -> None:
    """Copy the file's 29 convs, 29 affines and fc into ``net``, checking every shape."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, Affine))]
    file_convs = [layer for layer in layers if layer.kind == "con"]
    file_norms = [layer for layer in layers if layer.kind == "affine"]
    fcs = [layer for layer in layers if layer.kind == "fc"]
    if (len(file_convs), len(file_norms), len(fcs)) != (len(convs), len(norms), 1):
        raise ConfigError(f"{DLIB_FILE}: expected {len(convs)} conv, {len(norms)} affine and 1 fc layers, found "
                          f"{len(file_convs)}, {len(file_norms)} and {len(fcs)}")
    with torch.no_grad():
        for conv, layer in zip(convs, file_convs):
            n_out, kh, kw, sy, sx, py, px = layer.ints
            w_shape = conv.weight.shape
            if (n_out, kh, kw, sy, sx, py, px) != (w_shape[0], w_shape[2], w_shape[3], *conv.stride, *conv.padding):
                raise ConfigError(f"{DLIB_FILE}: conv layer {layer.ints} does not match the port's {conv}")
            flat = layer.params.ravel()
            n_w = int(np.prod(w_shape))
            conv.weight.copy_(torch.from_numpy(flat[:n_w].reshape(w_shape)))
            conv.bias.copy_(torch.from_numpy(flat[n_w:n_w + n_out]))
        for norm, layer in zip(norms, file_norms):
            flat = layer.params.ravel()
            c = flat.size // 2
            gamma, beta = torch.from_numpy(flat[:c]), torch.from_numpy(flat[c:])
            norm.weight.copy_(gamma)
            norm.bias.copy_(beta)
            if isinstance(norm, nn.BatchNorm2d):  # identity statistics: (x - 0) / sqrt(1) * gamma + beta
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0 - norm.eps)
        n_out, n_in = fcs[0].ints
        net.identity.weight.copy_(torch.from_numpy(fcs[0].params.reshape(n_in, n_out).T.copy()))


@register_model
def dlib_resnet29(num_classes: int = 8, pretrained: bool = True, **kwargs) -> DlibResNet:
    return DlibResNet(num_classes=num_classes, pretrained=pretrained, **kwargs)

