"""Distillation at cross-entropy cost: the teacher's outputs computed once per Train face.

For every training face and its mirror, the frozen teacher's logits and pooled embedding are
stored in one ``.npz`` keyed by the teacher file's sha256 and the training set's content, so a
student trains without running the teacher. A student whose augmentation mirrors a face takes
the mirrored entry; the smaller rotations, shifts and scalings are not re-run through the
teacher (the price of the cache: soft targets of the un-jittered face).
"""
from __future__ import annotations

import hashlib
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vrfer.core.adapt import file_sha256
from vrfer.core.preprocess import PreprocessSpec, preprocess


@dataclass
class TeacherCache:
    logits: np.ndarray  # N x 2 x K float32: [face, mirror]
    embeddings: np.ndarray  # N x 2 x D float32
    path: Path
    seconds: float = 0.0  # time spent building it (0 when read from disk)

    def lookup(self, idx: np.ndarray, mirrored: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        view = mirrored.astype(np.intp)
        return (torch.from_numpy(self.logits[idx, view]).to(device),
                torch.from_numpy(self.embeddings[idx, view]).to(device))


def cache_key(teacher_file: str | Path, images: np.ndarray) -> str:
    data = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    return f"{file_sha256(teacher_file)[:16]}-{data[:16]}"


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, spec: PreprocessSpec, images: np.ndarray, device: torch.device,
                    batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(logits, embeddings), each N x 2 x ..., for the faces and their mirrors."""
    teacher.eval()
    logits, embs = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        views = []
        for faces in (chunk, chunk[:, :, ::-1]):
            x = np.stack([preprocess(np.ascontiguousarray(f), None, spec) for f in faces])
            lg, emb = teacher(torch.from_numpy(x).to(device))[:2]
            views.append((lg.float().cpu().numpy(), emb.float().cpu().numpy()))
        logits.append(np.stack([views[0][0], views[1][0]], axis=1))
        embs.append(np.stack([views[0][1], views[1][1]], axis=1))
    return np.concatenate(logits), np.concatenate(embs)


def teacher_cache(teacher_file: str | Path, teacher_pack: tuple[nn.Module, PreprocessSpec], train_set,
                  folder: Path, device: torch.device) -> TeacherCache:
    """Read the cache for this teacher and training set, building it (atomically) when absent."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"teacher-{cache_key(teacher_file, train_set.images)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return TeacherCache(z["logits"], z["embeddings"], path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # a torn or foreign file: rebuild it
    t0 = time.perf_counter()
    logits, embs = teacher_outputs(teacher_pack[0], teacher_pack[1], train_set.images, device)
    seconds = time.perf_counter() - t0
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, logits=logits.astype(np.float32), embeddings=embs.astype(np.float32))
    os.replace(tmp, path)
    print(f"teacher cache: {len(logits)} faces x 2 views in {seconds:.0f} s -> {path}", flush=True)
    return TeacherCache(logits.astype(np.float32), embs.astype(np.float32), path, seconds)


def bench_online_vs_cached(config: str | Path, steps: int = 20, batch_size: int = 64) -> dict[str, float]:
    """Seconds per student step with the teacher run online vs read from the cache, measured in one
    run on the same batches (the cache's build time is reported per face, for the break-even)."""
    from vrfer.training.config import TrainConfig
    from vrfer.training.train import (TrainView, build_net, compute_loss, flipped, load_data, load_teacher,
                                      make_batch, random_transforms, spec_of)

    cfg = TrainConfig.from_toml(config)
    cfg.train_subset = steps * batch_size
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device("cpu")
    train_set, _, _ = load_data(cfg)
    spec = spec_of(cfg)
    net = build_net(cfg).to(device)
    view = TrainView(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    teacher, tspec = load_teacher(cfg, device)
    t0 = time.perf_counter()
    logits, embs = teacher_outputs(teacher, tspec, train_set.images, device)
    build = time.perf_counter() - t0
    cache = TeacherCache(logits, embs, Path("-"))
    timings = {}
    for mode in ("online", "cached"):
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for it in range(steps):
            idx = np.arange(it * batch_size, (it + 1) * batch_size)
            tf = random_transforms(len(idx), rng, cfg.augment)
            x = torch.from_numpy(make_batch(train_set.images[idx], spec, tf))
            if mode == "online":
                xt = torch.from_numpy(make_batch(train_set.images[idx], spec, tf, occlusion_spec=tspec))
                with torch.no_grad():
                    t_logits = teacher(xt)[0]
            else:
                t_logits, _ = cache.lookup(idx, flipped(tf), device)
            logits_s, emb = view(x)[:2]
            loss = compute_loss(logits_s, torch.from_numpy(train_set.targets[idx]), cfg, embedding=emb,
                                teacher_logits=t_logits)
            opt.zero_grad()
            loss.backward()
            opt.step()
        timings[mode] = (time.perf_counter() - t0) / steps
    n_faces = len(train_set.images)
    return {"online_s_per_step": timings["online"], "cached_s_per_step": timings["cached"],
            "speedup": timings["online"] / timings["cached"], "build_s_per_face_and_mirror": build / n_faces,
            "steps": steps, "batch_size": batch_size}
