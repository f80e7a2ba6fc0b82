"""One training loop for every model in the paper's sequence.

Checkpoints every epoch (``last.pt``) and resumes from it after a kill with the same result:
the RNG states travel with the checkpoint, and each epoch's shuffling and augmentation are
derived from (seed, epoch). Runs on the CPU, on one GPU (bf16 autocast, channels_last) or
on several through ``torchrun`` (DDP: each rank takes its slice of every epoch).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vrfer.core.paths import ferplus_dir
from vrfer.core.preprocess import CANONICAL_SIZE, PreprocessSpec, preprocess
from vrfer.core.errors import ConfigError
from vrfer.training.checkpoint import read_checkpoint, write_checkpoint
from vrfer.training.config import TrainConfig, checkpoint_config
from vrfer.training.datasets import FaceSet, load_dataset
from vrfer.training.augment import headset_batch, occluder_batch, photometric_batch, visor_batch, webcam_batch
from vrfer.training.headset.webcam import webcam_view
from vrfer.training.losses import TripletProjection, kd_loss, shape_loss, triplet_kd_loss
from vrfer.training.nets.registry import create_model, takes_pretrained
from vrfer.training.nets.shapes_head import add_shapes_head, forward_shapes, has_shapes_head

KD_METHODS = ("none", "classic", "triplet", "both")


def spec_of(cfg: TrainConfig) -> PreprocessSpec:
    return PreprocessSpec(size=cfg.size, occlusion=cfg.occlusion, region=cfg.region, version=cfg.preprocess_version)


def build_net(cfg: TrainConfig, num_classes: int = 8, *, pretrained: bool = True) -> nn.Module:
    """The config's network, sized for the input it sees (after ``upsample``, if any).

    ``pretrained=False`` skips a builder's own pretrained weights: a checkpoint is about to
    overwrite them, so reading it must not need the pretrained file installed.
    """
    spec = spec_of(cfg)
    c, h, w = spec.input_shape
    if cfg.upsample:
        scale = cfg.upsample / cfg.size
        h, w = round(h * scale), round(w * scale)
    kwargs = dict(cfg.model_kwargs)
    if not pretrained and takes_pretrained(cfg.model):
        kwargs["pretrained"] = False
    net = create_model(cfg.model, num_classes=num_classes, in_shape=(c, h, w), **kwargs)
    if cfg.shapes.targets:  # the mouth-shape head beside the class logits
        from vrfer.core.mouth_shapes import SHAPES

        add_shapes_head(net, len(SHAPES))
    if cfg.upsample:
        from vrfer.training.nets.resize import Upsampled

        net = Upsampled(net, (h, w))
    return net


class TrainView(nn.Module):
    """(logits, embedding, projected teacher embedding, mouth shapes or None) in one forward, so
    DDP sees every parameter the losses use, and dropout runs once per batch."""

    def __init__(self, net: nn.Module, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.projection = projection

    def forward(self, x: torch.Tensor, teacher_embedding: torch.Tensor | None = None):
        emb = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        logits = self.net.head(getattr(self.net, "drop", nn.Identity())(emb))
        proj = None
        if teacher_embedding is not None:
            proj = self.projection(teacher_embedding) if self.projection is not None else teacher_embedding
        shapes = forward_shapes(self.net, emb)
        return logits, emb, proj, shapes


def random_transforms(n: int, rng: np.random.Generator, aug) -> list[np.ndarray | None]:
    """Random similarity transforms (source 48x48 face -> canonical) for augmentation."""
    out: list[np.ndarray | None] = []
    c = (CANONICAL_SIZE - 1) / 2.0
    for _ in range(n):
        angle = math.radians(rng.uniform(-aug.rotate, aug.rotate))
        s = rng.uniform(1 - aug.scale, 1 + aug.scale)
        tx, ty = rng.uniform(-aug.shift, aug.shift, size=2)
        flip = -1.0 if aug.flip and rng.random() < 0.5 else 1.0
        a, b = s * math.cos(angle), s * math.sin(angle)
        m = np.array([[a * flip, -b, 0.0], [b * flip, a, 0.0]])
        m[:, 2] = np.array([c + tx, c + ty]) - m[:, :2] @ np.array([c, c])
        out.append(m)
    return out


def make_batch(images: np.ndarray, spec: PreprocessSpec, transforms: list[np.ndarray | None] | None = None,
               occlusion_spec: PreprocessSpec | None = None) -> np.ndarray:
    """Run every face through core.preprocess, the same function the runtime uses."""
    spec = occlusion_spec or spec
    batch = np.empty((len(images), *spec.input_shape), dtype=np.float32)
    for i, img in enumerate(images):
        batch[i] = preprocess(img, None if transforms is None else transforms[i], spec)
    return batch


@dataclass
class EvalResult:
    accuracy: float
    n: int
    predictions: np.ndarray
    labels: np.ndarray
    probs: np.ndarray


@torch.no_grad()
def evaluate(net: nn.Module, data: FaceSet, spec: PreprocessSpec, device: torch.device,
             batch_size: int = 512) -> EvalResult:
    net.eval()
    probs = []
    for start in range(0, len(data), batch_size):
        x = torch.from_numpy(make_batch(data.images[start:start + batch_size], spec)).to(device)
        probs.append(torch.softmax(net(x).float(), dim=1).cpu().numpy())
    p = np.concatenate(probs)
    pred = p.argmax(1)
    labels = data.labels
    return EvalResult(float((pred == labels).mean()), len(labels), pred, labels, p)


class ModelEma:
    """Exponential moving average of the weights; evaluated and exported instead of the raw net."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        import copy

        self.module = copy.deepcopy(net).eval()
        self.decay = decay
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        # Warm the decay up (as timm's ModelEmaV3): a fixed 0.999 from step 0 keeps the random
        # init in the average for thousands of steps and scores like a constant predictor.
        self.updates = getattr(self, "updates", 0) + 1
        decay = self.decay * (1.0 - math.exp(-self.updates / 2000.0))
        for e, p in zip(self.module.state_dict().values(), net.state_dict().values()):
            if e.dtype.is_floating_point:
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
            else:
                e.copy_(p)


def make_optimizer(cfg: TrainConfig, view: nn.Module) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW; the head at ``lr``, the rest at ``lr * trunk_lr_scale``."""
    head_ids = {id(p) for p in view.net.head.parameters()}
    if has_shapes_head(view.net):
        head_ids |= {id(p) for n, p in view.net.named_parameters() if "shapes_head." in n}
    if view.projection is not None:
        head_ids |= {id(p) for p in view.projection.parameters()}
    params = [p for p in view.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) in head_ids], "lr_scale": 1.0},
              {"params": [p for p in params if id(p) not in head_ids], "lr_scale": cfg.trunk_lr_scale}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ConfigError(f"optimizer must be sgd or adamw, got {cfg.optimizer!r}")


def flipped(transforms: list[np.ndarray | None]) -> np.ndarray:
    """Which augmentation transforms mirror the face (negative determinant)."""
    return np.array([t is not None and np.linalg.det(t[:, :2]) < 0 for t in transforms], dtype=bool)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def _dist_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _dist() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_data(cfg: TrainConfig) -> tuple[FaceSet, FaceSet, FaceSet]:
    root = Path(cfg.data) if cfg.data else ferplus_dir()
    train = load_dataset(cfg.dataset, root, "train", cfg.label_mode)
    valid = load_dataset(cfg.dataset, root, "valid", "majority")  # FER+ Valid/Test: majority labels
    test = load_dataset(cfg.dataset, root, "test", "majority")
    if cfg.train_subset:
        idx = np.random.default_rng(cfg.seed).permutation(len(train))[:cfg.train_subset]
        train = train.subset(np.sort(idx))
    if cfg.eval_subset:
        valid = valid.subset(np.arange(min(cfg.eval_subset, len(valid))))
        test = test.subset(np.arange(min(cfg.eval_subset, len(test))))
    return train, valid, test


def compute_loss(logits: torch.Tensor, target: torch.Tensor, cfg: TrainConfig, *,
                 embedding: torch.Tensor | None = None, teacher_logits: torch.Tensor | None = None,
                 teacher_embedding: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy, classic KD, triplet KD (+ cross-entropy) or both, per ``cfg.kd.method``.

    ``teacher_embedding`` must already be projected to the student's embedding size.
    """
    method = cfg.kd.method
    if method in ("classic", "both"):
        loss = kd_loss(logits, teacher_logits, target, cfg.kd.temperature, cfg.kd.alpha, cfg.label_smoothing)
    else:
        loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
    if method in ("triplet", "both"):
        loss = loss + cfg.kd.triplet_weight * triplet_kd_loss(
            embedding, teacher_embedding, target.argmax(dim=1), cfg.kd.margin)
    return loss


def load_teacher(cfg: TrainConfig, device: torch.device) -> tuple[nn.Module, PreprocessSpec] | None:
    """The frozen full-face teacher of ``cfg.kd``, loaded once, or None without distillation."""
    if cfg.kd.method not in KD_METHODS:
        raise ConfigError(f"kd.method must be one of {', '.join(KD_METHODS)}, got {cfg.kd.method!r}")
    if cfg.kd.method == "none":
        return None
    if not cfg.kd.teacher:
        raise ConfigError(f"kd.method is {cfg.kd.method!r} but kd.teacher names no checkpoint")
    if not Path(cfg.kd.teacher).is_file():
        raise ConfigError(f"kd.teacher: {cfg.kd.teacher} not found")
    teacher, tcfg = load_checkpoint(cfg.kd.teacher)
    teacher = TrainView(teacher).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if device.type == "cuda":
        teacher = teacher.to(memory_format=torch.channels_last)
    return teacher, spec_of(tcfg)


SELECTIONS = ("crops", "crops+webcam")
WEBCAM_VIEW_SEED = 0  # the webcam view best.pt is chosen on: `vrfer eval --split valid --webcam 0`


def selection_views(cfg: TrainConfig, valid: FaceSet, rank: int = 0) -> dict[str, FaceSet]:
    """The Valid views whose mean accuracy chooses ``best.pt``: the crops, and with ``select =
    "crops+webcam"`` every Valid face as the broadened family's webcam records it (the view
    ``vrfer eval --webcam`` scores), so that a fine-tune for webcams is not chosen on crops alone.
    Only rank 0 evaluates, so only it draws the view."""
    if cfg.select not in SELECTIONS:
        raise ConfigError(f"select must be one of {', '.join(SELECTIONS)}, got {cfg.select!r}")
    views = {"crops": valid}
    if cfg.select == "crops+webcam" and rank == 0:
        views["webcam"] = dataclasses.replace(valid, images=webcam_view(valid.images, WEBCAM_VIEW_SEED,
                                                                         cfg.augment.webcam_tilt))
    return views


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg``; returns the final metrics. Writes ``last.pt``, ``best.pt`` and ``metrics.json``."""
    owns_group = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not _dist_initialized()
    rank, world = _dist()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = spec_of(cfg)
    torch.manual_seed(cfg.seed)
    train_set, valid_set, _ = load_data(cfg)
    valid_views = selection_views(cfg, valid_set, rank)

    net = build_net(cfg, len(train_set.classes)).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    ema = ModelEma(net, cfg.ema_decay)
    teacher_pack = load_teacher(cfg, device)
    cache = None
    if teacher_pack is not None and cfg.kd.cache:
        from vrfer.training.teacher_cache import teacher_cache

        cache = teacher_cache(cfg.kd.teacher, teacher_pack, train_set, out.parent / "teacher_cache", device)
    projection = None
    if teacher_pack is not None and cfg.kd.method in ("triplet", "both"):
        with torch.no_grad():
            probe = torch.zeros(2, *spec.input_shape, device=device)
            s_dim = TrainView(net).eval()(probe)[1].shape[1]
            if cache is not None:
                t_dim = cache.embeddings.shape[-1]
            else:
                t_probe = torch.zeros(2, *teacher_pack[1].input_shape, device=device)
                t_dim = teacher_pack[0](t_probe)[1].shape[1]
        projection = TripletProjection(t_dim, s_dim).to(device)
    view = TrainView(net, projection)
    mouth = None
    if cfg.shapes.targets:
        from vrfer.training.mouth_targets import train_lookup

        mouth = train_lookup(cfg, train_set, out.parent / "mouth_cache")
    opt = make_optimizer(cfg, view)
    steps_per_epoch = len(train_set) // (cfg.batch_size * world)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    start_epoch, best, history = 0, -1.0, []
    ckpt_path = out / "last.pt"
    if cfg.init and not (resume and ckpt_path.is_file()):
        if str(cfg.init).endswith(".onnx"):  # a shipped model: folded batch norms, re-based on Train faces
            from vrfer.training.nets.bn import rebase_batchnorms
            from vrfer.training.nets.from_onnx import load_folded_onnx

            load_folded_onnx(net, cfg.init)
            probe = torch.from_numpy(make_batch(train_set.images[:512], spec)).to(device)
            rebase_batchnorms(net, net, probe)
            ema.module.load_state_dict(net.state_dict())
        else:
            init_net, _ = load_checkpoint(cfg.init)
            for target in (net, ema.module):
                missing, unexpected = target.load_state_dict(init_net.state_dict(), strict=False)
                if unexpected or any("shapes_head." not in k for k in missing):
                    raise ConfigError(f"init: {cfg.init} does not fit {cfg.model} (missing {missing[:3]}, "
                                      f"unexpected {unexpected[:3]})")  # only a new shapes head may start fresh
    if resume and ckpt_path.is_file():
        ckpt = read_checkpoint(ckpt_path, map_location=device)
        net.load_state_dict(ckpt["model"])
        ema.module.load_state_dict(ckpt["ema"])
        ema.updates = ckpt.get("ema_updates", 0)
        opt.load_state_dict(ckpt["optimizer"])
        if projection is not None and "projection" in ckpt:
            projection.load_state_dict(ckpt["projection"])
        start_epoch, best, history = ckpt["epoch"] + 1, ckpt["best"], ckpt["history"]
        torch.set_rng_state(ckpt["torch_rng"])
    model: nn.Module = view
    if world > 1:
        model = nn.parallel.DistributedDataParallel(view, device_ids=[device.index] if device.type == "cuda" else None)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    from tqdm import tqdm

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    targets_all = torch.from_numpy(train_set.targets)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        perm = rng.permutation(len(train_set))[: steps_per_epoch * cfg.batch_size * world]
        mine = perm[rank::world]
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.name} {epoch + 1}/{cfg.epochs}",
                   disable=not progress or rank != 0, leave=False)
        for it in bar:
            idx = mine[it * cfg.batch_size:(it + 1) * cfg.batch_size]
            tf = random_transforms(len(idx), rng, cfg.augment)
            images = train_set.images[idx]
            if cfg.augment.camera_shift > 0:  # the student sees shifted cameras, the teacher clean faces
                from vrfer.training.adapt_bench import camera_shift_batch

                images = camera_shift_batch(images, rng, cfg.augment.camera_shift)
            if cfg.augment.headset > 0:  # before the light change: the camera sees headset and face alike
                images = headset_batch(images, rng, cfg.augment.headset)
            if cfg.augment.occluder > 0:
                images = occluder_batch(images, rng, cfg.augment.occluder)
            if cfg.augment.webcam > 0:  # its own light and noise: the photometric change does not stack on it
                images = webcam_batch(images, rng, cfg.augment.webcam, cfg.augment.webcam_tilt)
            if cfg.augment.photometric > 0:
                images = photometric_batch(images, rng, cfg.augment.photometric)
            if cfg.augment.visor > 0:
                images = visor_batch(images, rng, cfg.augment.visor)
            x = torch.from_numpy(make_batch(images, spec, tf)).to(device, non_blocking=True)
            t_logits = t_emb = None
            if cache is not None:  # the teacher's outputs on this face, mirrored as the student's view is
                t_logits, t_emb = cache.lookup(idx, flipped(tf), device)
            elif teacher_pack is not None:  # the teacher sees the full face under the SAME augmentation
                xt = torch.from_numpy(make_batch(train_set.images[idx], spec, tf, occlusion_spec=teacher_pack[1]))
                xt = xt.to(device, non_blocking=True)
                if device.type == "cuda":
                    xt = xt.contiguous(memory_format=torch.channels_last)
                with torch.no_grad(), autocast:
                    t_logits, t_emb = teacher_pack[0](xt)[:2]
                t_logits, t_emb = t_logits.float(), t_emb.float()
            target = targets_all[idx].to(device)
            if cfg.label_mode == "probability":  # FERPlus: sample one label from the vote distribution
                target = F.one_hot(torch.multinomial(target, 1, generator=None).squeeze(1), target.shape[1]).float()
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            step = epoch * steps_per_epoch + it
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup, cfg.lr * group["lr_scale"])
            with autocast:
                logits, emb, t_proj, shapes = model(x, t_emb if projection is not None else None)
                loss = compute_loss(logits.float(), target, cfg, embedding=emb.float(), teacher_logits=t_logits,
                                    teacher_embedding=None if t_proj is None else t_proj.float())
                if mouth is not None:  # the mesh's shapes of the unoccluded face, mirrored as the view is
                    loss = loss + cfg.shapes.weight * shape_loss(
                        shapes.float(), mouth.lookup(idx, flipped(tf), device), cfg.shapes.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(net)
            seen += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        if rank == 0:
            # Score both the raw and the averaged weights; keep whichever is better on Valid.
            scores = {name: {kind: evaluate(m, view, spec, device).accuracy for kind, m in (("raw", net), ("ema", ema.module))}
                      for name, view in valid_views.items()}
            mean = {kind: float(np.mean([s[kind] for s in scores.values()])) for kind in ("raw", "ema")}
            source, kind = ("ema", "ema") if mean["ema"] >= mean["raw"] else ("model", "raw")
            score = mean[kind]
            entry = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "valid_acc": scores["crops"][kind],
                     "valid_acc_raw": scores["crops"]["raw"], "valid_acc_ema": scores["crops"]["ema"],
                     "seconds": time.time() - t0, "lr": opt.param_groups[0]["lr"]}
            if len(valid_views) > 1:
                entry |= {"valid_webcam": scores["webcam"][kind], "select": cfg.select, "valid_score": score}
            history.append(entry)
            writer.add_scalar("train/loss", entry["loss"], epoch + 1)
            writer.add_scalar("valid/accuracy", entry["valid_acc"], epoch + 1)
            if "valid_webcam" in entry:
                writer.add_scalar("valid/webcam", entry["valid_webcam"], epoch + 1)
            writer.add_scalar("train/lr", entry["lr"], epoch + 1)
            print(json.dumps(entry), flush=True)
            state = {"model": net.state_dict(), "ema": ema.module.state_dict(), "optimizer": opt.state_dict(),
                     "epoch": epoch, "best": best, "history": history, "torch_rng": torch.get_rng_state(),
                     "ema_updates": ema.updates, "best_source": source,
                     "config": cfg.to_dict()}
            if projection is not None:
                state["projection"] = projection.state_dict()
            if score > best:
                best = state["best"] = score
                write_checkpoint(state, out / "best.pt")
            write_checkpoint(state, out / "last.tmp")
            os.replace(out / "last.tmp", ckpt_path)  # atomic: a kill never leaves a torn checkpoint
        if world > 1:
            torch.distributed.barrier()
    result: dict[str, Any] = {"rank": rank, "world": world,
                              "param_sum": float(sum(p.detach().double().abs().sum() for p in net.parameters()))}
    if rank == 0:  # Valid only: Test is scored by `vrfer eval`, never by a run that chooses weights
        result |= {"name": cfg.name, "model": cfg.model, "best_valid": best, "select": cfg.select, "epochs": cfg.epochs,
                   "history": history}
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        writer.close()
    if owns_group:
        torch.distributed.destroy_process_group()
    return result


def load_checkpoint(path: str | Path, which: str = "best") -> tuple[nn.Module, TrainConfig]:
    """Rebuild the network of a checkpoint and its config.

    ``which`` is ``model`` (raw weights), ``ema`` (averaged) or ``best``: whichever of the two
    scored higher on Valid when the checkpoint was written.
    """
    ckpt = read_checkpoint(path)
    if "config" not in ckpt or which not in ckpt:
        raise ConfigError(f"{path}: not a vrfer training checkpoint (no {which!r} weights)")
    if which == "best":
        which = ckpt.get("best_source", "ema")
    if which not in ("model", "ema") or not isinstance(ckpt.get(which), dict):
        raise ConfigError(f"{path}: not a vrfer training checkpoint (no {which!r} weights)")
    cfg = checkpoint_config(ckpt["config"], str(path))
    net = build_net(cfg, 8, pretrained=False)
    try:
        net.load_state_dict(ckpt[which])
    except RuntimeError as exc:  # weights for another network than the config names
        raise ConfigError(f"{path}: weights do not fit its {cfg.model} config ({str(exc).splitlines()[0][:120]})") \
            from None
    return net.eval(), cfg
