"""The paper's combined embedding: concatenate the embeddings of the classic-KD and the
triplet-KD students and classify the concatenation.

Both students are frozen; only the linear head trains, on embeddings computed once per image
(plain and mirrored, a cheap stand-in for augmentation). The result is one ``nn.Module``
(both students plus the head), exported as one ONNX graph with ``training.export``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vrfer.core.errors import ConfigError
from vrfer.training.checkpoint import read_checkpoint, write_checkpoint
from vrfer.training.config import TrainConfig, checkpoint_config
from vrfer.training.datasets import FaceSet
from vrfer.training.train import build_net, load_checkpoint, load_data, make_batch, spec_of


class CombinedEmbedding(nn.Module):
    """[embedding of student a, embedding of student b] -> linear classifier."""

    def __init__(self, a: nn.Module, b: nn.Module, num_classes: int = 8) -> None:
        super().__init__()
        self.a, self.b = a, b
        with torch.no_grad():
            dims = [_embed(m, torch.zeros(2, *_probe_shape(m))).shape[1] for m in (a, b)]
        self.num_features = sum(dims)
        self.drop = nn.Identity()
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([_embed(self.a, x), _embed(self.b, x)], dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.forward_head(net.forward_features(x), pre_logits=True)


def _probe_shape(net: nn.Module) -> tuple[int, ...]:
    return getattr(net, "_vrfer_input_shape", (1, 24, 48))


@dataclass
class CombineConfig:
    epochs: int = 30
    lr: float = 0.01
    weight_decay: float = 1e-4
    batch_size: int = 256
    label_smoothing: float = 0.1
    seed: int = 0


def _frozen(path: str | Path) -> tuple[nn.Module, TrainConfig]:
    net, cfg = load_checkpoint(path)
    net._vrfer_input_shape = spec_of(cfg).input_shape
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval(), cfg


@torch.no_grad()
def embed_set(model: CombinedEmbedding, data: FaceSet, spec, flip: bool = False, batch: int = 256) -> torch.Tensor:
    model.eval()
    out = []
    for s in range(0, len(data), batch):
        imgs = data.images[s:s + batch]
        if flip:
            imgs = imgs[:, :, ::-1]
        out.append(model.forward_features(torch.from_numpy(make_batch(np.ascontiguousarray(imgs), spec))))
    return torch.cat(out)


def train_combined(classic_ckpt: str | Path, triplet_ckpt: str | Path, out: str | Path,
                   cc: CombineConfig | None = None, data_cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Train the head on frozen students; write ``out/combined.pt`` and ``out/metrics.json``."""
    cc = cc or CombineConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    a, cfg_a = _frozen(classic_ckpt)
    b, cfg_b = _frozen(triplet_ckpt)
    spec = spec_of(cfg_a)
    if spec != spec_of(cfg_b):
        raise ConfigError(f"{classic_ckpt} and {triplet_ckpt} were trained on different inputs "
                          f"({spec} vs {spec_of(cfg_b)}); the combined model needs one")
    torch.manual_seed(cc.seed)
    model = CombinedEmbedding(a, b, 8)
    train_set, valid_set, test_set = load_data(data_cfg or cfg_a)
    x_train = torch.cat([embed_set(model, train_set, spec), embed_set(model, train_set, spec, flip=True)])
    y_train = torch.from_numpy(np.concatenate([train_set.targets, train_set.targets]))
    x_valid, y_valid = embed_set(model, valid_set, spec), torch.from_numpy(valid_set.labels)
    # Standardise with train statistics, folded into the head afterwards so the graph stays one Linear.
    mu, sd = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    head = nn.Linear(x_train.shape[1], 8)
    opt = torch.optim.AdamW(head.parameters(), lr=cc.lr, weight_decay=cc.weight_decay)
    gen = torch.Generator().manual_seed(cc.seed)
    best, best_state, history = -1.0, None, []
    steps = max(1, len(x_train) // cc.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cc.epochs * steps)
    for epoch in range(cc.epochs):
        perm = torch.randperm(len(x_train), generator=gen)
        for i in range(steps):
            idx = perm[i * cc.batch_size:(i + 1) * cc.batch_size]
            loss = F.cross_entropy(head((x_train[idx] - mu) / sd), y_train[idx], label_smoothing=cc.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            acc = float((head((x_valid - mu) / sd).argmax(1) == y_valid).float().mean())
        history.append({"epoch": epoch + 1, "valid_acc": acc})
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    with torch.no_grad():  # fold the standardisation: W (x - mu) / sd + b
        w = head.weight / sd
        model.head.weight.copy_(w)
        model.head.bias.copy_(head.bias - w @ mu)
    x_test = embed_set(model, test_set, spec)
    with torch.no_grad():
        test_acc = float((model.head(x_test).argmax(1).numpy() == test_set.labels).mean())
    state = {"combined": {"classic": str(classic_ckpt), "triplet": str(triplet_ckpt),
                          "a": a.state_dict(), "b": b.state_dict(), "head": model.head.state_dict(),
                          "a_config": cfg_a.to_dict(), "b_config": cfg_b.to_dict(), "combine": vars(cc)},
             "config": cfg_a.to_dict()}
    write_checkpoint(state, out / "combined.pt")
    result = {"name": "combined", "best_valid": best, "test_acc": test_acc, "n_test": len(test_set),
              "history": history}
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def load_combined(path: str | Path) -> tuple[CombinedEmbedding, TrainConfig]:
    """Rebuild a combined model saved by ``train_combined``; its config is student a's."""
    ckpt = read_checkpoint(path)
    c = ckpt.get("combined")
    if not isinstance(c, dict):
        raise ConfigError(f"{path}: not a combined-model checkpoint (no 'combined' entry)")
    cfg_a = checkpoint_config(c["a_config"], str(path))
    cfg_b = checkpoint_config(c["b_config"], str(path))
    a, b = build_net(cfg_a, pretrained=False), build_net(cfg_b, pretrained=False)  # weights come from the file
    a.load_state_dict(c["a"])
    b.load_state_dict(c["b"])
    for net, cfg in ((a, cfg_a), (b, cfg_b)):
        net._vrfer_input_shape = spec_of(cfg).input_shape
        net.eval()
    model = CombinedEmbedding(a, b, 8)
    model.head.load_state_dict(c["head"])
    return model.eval(), cfg_a
