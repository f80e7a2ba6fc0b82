"""Train the headset locator on ``training.headset.data`` output and export it to ONNX.

``vrfer headset train --config training/configs/headset.toml`` (``train_from``)

Loss: L1 on the anchors divided by the teacher's inter-ocular distance (the benchmark's unit,
so small and large faces count alike), on inputs that hold a face; binary cross-entropy on the
face-present logit for all, and on the headset (upper face hidden) logit where there is a face. Augmentation: left-right mirror (anchors swap sides), contrast and
brightness. The last 5% of the rows (whole faces, in generation order) are the validation set.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vrfer.core.config import from_dict, read_toml
from vrfer.core.face.headset import FORMAT_VERSION, INPUT_H, INPUT_W, KIND
from vrfer.training.checkpoint import read_checkpoint, write_checkpoint
from vrfer.training.headset.net import HeadsetLocatorNet
from vrfer.training.headset.synth import FLIP_ORDER

ASPECT = torch.tensor([INPUT_W, INPUT_H], dtype=torch.float32)  # fractions -> input pixels


@dataclass(frozen=True)
class HeadsetTrainConfig:
    data: str = "runs/headset/train.npz"
    out: str = "runs/headset"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    face_weight: float = 0.3
    threads: int = 1
    seed: int = 0
    export: str = "assets/models/headset_locator.onnx"

    @classmethod
    def from_toml(cls, path: Path) -> HeadsetTrainConfig:
        return from_dict(cls, read_toml(Path(path)), str(path))


def iod_pixels(y: torch.Tensor) -> torch.Tensor:
    """Inter-ocular distance of anchor sets (B x 5 x 2 fractions) in input pixels, floored at 1."""
    return ((y[:, 0] - y[:, 1]) * ASPECT).norm(dim=1).clamp_min(1.0)


def losses(points: torch.Tensor, logit: torch.Tensor, occ: torch.Tensor, y: torch.Tensor, face: torch.Tensor,
           headset: torch.Tensor, face_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pts = points.view(-1, 5, 2)
    has = face > 0.5
    bce = F.binary_cross_entropy_with_logits(logit.view(-1), face)
    if has.any():
        err = ((pts[has] - y[has]) * ASPECT).norm(dim=2).mean(1) / iod_pixels(y[has])
        geo = err.mean()
        bce = bce + F.binary_cross_entropy_with_logits(occ.view(-1)[has], headset[has])
    else:
        err = torch.zeros(0)
        geo = torch.zeros(())
    return geo + face_weight * bce, geo, err


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    yf = y[:, list(FLIP_ORDER)].clone()
    yf[..., 0] = 1.0 - yf[..., 0]
    y = torch.where(flip[:, None, None], yf, y)
    contrast = torch.empty(b, 1, 1, 1).uniform_(0.6, 1.3, generator=gen)
    bright = torch.empty(b, 1, 1, 1).uniform_(-0.25, 0.25, generator=gen)
    return (x * contrast + bright).clamp(-1, 1), y


def train(cfg: HeadsetTrainConfig) -> Path:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    data = np.load(cfg.data)
    x_all = torch.from_numpy(data["x"]).unsqueeze(1)  # uint8, converted per batch
    y_all = torch.from_numpy(data["y"]).float()
    f_all = torch.from_numpy(data["face"]).float()
    h_all = torch.from_numpy(data["headset"]).float()
    anchors = data["anchors"].tolist()
    n = len(x_all)
    n_val = max(64, n // 20)
    tr, va = np.arange(n - n_val), np.arange(n - n_val, n)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    net = HeadsetLocatorNet()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(tr) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, history = math.inf, []
    for epoch in range(cfg.epochs):
        net.train()
        t0, total = time.time(), 0.0
        perm = tr[torch.randperm(len(tr), generator=gen).numpy()]
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            x = x_all[idx].float() * (2 / 255) - 1
            x, y = augment(x, y_all[idx], gen)
            points, logit, occ = net(x)
            loss, _, _ = losses(points, logit, occ, y, f_all[idx], h_all[idx], cfg.face_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        val = evaluate(net, x_all[va], y_all[va], f_all[va], h_all[va])
        val.update(epoch=epoch + 1, train_loss=total / len(tr), seconds=round(time.time() - t0, 1))
        history.append(val)
        print(json.dumps(val), flush=True)
        if val["nme_median"] < best:
            best = val["nme_median"]
            write_checkpoint({"state_dict": net.state_dict(), "anchors": anchors, "val": val}, out / "best.pt")
    (out / "metrics.json").write_text(json.dumps(history, indent=1) + "\n")
    ckpt = read_checkpoint(out / "best.pt")
    net.load_state_dict(ckpt["state_dict"])
    return export(net, ckpt["anchors"], Path(cfg.export), ckpt["val"])


@torch.no_grad()
def evaluate(net: HeadsetLocatorNet, x: torch.Tensor, y: torch.Tensor, face: torch.Tensor,
             headset: torch.Tensor) -> dict:
    net.eval()
    errs, correct, occ_correct = [], 0, 0
    for i in range(0, len(x), 256):
        xb = x[i:i + 256].float() * (2 / 255) - 1
        points, logit, occ = net(xb)
        f, h = face[i:i + 256], headset[i:i + 256]
        _, _, err = losses(points, logit, occ, y[i:i + 256], f, h, 0.0)
        errs.append(err)
        correct += int(((logit.view(-1) > 0) == (f > 0.5)).sum())
        occ_correct += int((((occ.view(-1) > 0) == (h > 0.5)) & (f > 0.5)).sum())
    e = torch.cat(errs).numpy()
    return {"nme_mean": round(float(e.mean()), 4), "nme_median": round(float(np.median(e)), 4),
            "nme_p90": round(float(np.percentile(e, 90)), 4), "face_acc": round(correct / len(x), 4),
            "headset_acc": round(occ_correct / max(int((face > 0.5).sum()), 1), 4)}


def export(net: HeadsetLocatorNet, anchors: list, path: Path, val: dict) -> Path:
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    dummy = torch.zeros(1, 1, INPUT_H, INPUT_W)
    with torch.no_grad():
        torch.onnx.export(net, (dummy,), str(path), input_names=["input"], output_names=["points", "face", "occluded"],
                          dynamic_axes={k: {0: "batch"} for k in ("input", "points", "face", "occluded")},
                          opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    meta = {"kind": KIND, "locator_version": str(FORMAT_VERSION), "anchors": json.dumps(anchors),
            "input": f"1x{INPUT_H}x{INPUT_W} gray, (x/255)*2-1", "name": "headset-locator",
            "val_nme_median": str(val["nme_median"])}
    del model.metadata_props[:]
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = "vrfer." + key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def train_from(config: Path, epochs: int | None = None, threads: int | None = None) -> Path:
    """``train`` with the config file's settings, ``epochs`` and ``threads`` overriding it where given."""
    cfg = HeadsetTrainConfig.from_toml(config)
    over = {k: v for k, v in (("epochs", epochs), ("threads", threads)) if v is not None}
    return train(HeadsetTrainConfig(**{**asdict(cfg), **over}))
