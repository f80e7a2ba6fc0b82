"""The teacher cache: built once per teacher file and training set, mirrored views, torn files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vrfer.training.config import KDConfig, TrainConfig  # noqa: E402
from vrfer.training.train import flipped, load_data, load_teacher, random_transforms, train  # noqa: E402
from vrfer.training.teacher_cache import teacher_cache, teacher_outputs  # noqa: E402


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(name="tiny", model="tinyres_s", data=str(data), epochs=1, batch_size=16, lr=0.05,
                warmup_epochs=0.5, ema_decay=0.9, num_threads=1, out=str(out), seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def teacher_ckpt(tiny_ferplus: Path, tmp_path: Path) -> Path:
    train(_cfg(tiny_ferplus, tmp_path / "teacher", region="full", occlusion="none"), resume=False, progress=False)
    return tmp_path / "teacher" / "best.pt"


def test_cache_holds_the_teachers_outputs_for_faces_and_mirrors(tiny_ferplus: Path, tmp_path: Path,
                                                                 teacher_ckpt: Path) -> None:
    cfg = _cfg(tiny_ferplus, tmp_path / "s", kd=KDConfig(teacher=str(teacher_ckpt), method="classic"))
    train_set, _, _ = load_data(cfg)
    pack = load_teacher(cfg, torch.device("cpu"))
    cache = teacher_cache(teacher_ckpt, pack, train_set, tmp_path / "cache", torch.device("cpu"))
    assert cache.logits.shape == (len(train_set), 2, 8)
    direct, _ = teacher_outputs(pack[0], pack[1], train_set.images[:4], torch.device("cpu"))
    assert np.allclose(cache.logits[:4], direct, atol=1e-5)
    assert not np.allclose(cache.logits[:, 0], cache.logits[:, 1])  # the mirror is its own view
    mirrored = np.array([False, True, False, True])
    got, _ = cache.lookup(np.arange(4), mirrored, torch.device("cpu"))
    assert np.allclose(got.numpy(), cache.logits[np.arange(4), mirrored.astype(int)])
    # A second call reads the file instead of running the teacher.
    mtime = cache.path.stat().st_mtime_ns
    again = teacher_cache(teacher_ckpt, pack, train_set, tmp_path / "cache", torch.device("cpu"))
    assert again.seconds == 0.0 and cache.path.stat().st_mtime_ns == mtime
    # Another teacher file gets another cache.
    other = tmp_path / "other.pt"
    other.write_bytes(teacher_ckpt.read_bytes() + b"\0")
    assert teacher_cache(other, pack, train_set, tmp_path / "cache", torch.device("cpu")).path != cache.path


def test_a_torn_cache_is_rebuilt(tiny_ferplus: Path, tmp_path: Path, teacher_ckpt: Path) -> None:
    cfg = _cfg(tiny_ferplus, tmp_path / "s", kd=KDConfig(teacher=str(teacher_ckpt), method="classic"))
    train_set, _, _ = load_data(cfg)
    pack = load_teacher(cfg, torch.device("cpu"))
    first = teacher_cache(teacher_ckpt, pack, train_set, tmp_path / "cache", torch.device("cpu"))
    first.path.write_bytes(first.path.read_bytes()[:100])
    rebuilt = teacher_cache(teacher_ckpt, pack, train_set, tmp_path / "cache", torch.device("cpu"))
    assert rebuilt.seconds > 0 and np.allclose(rebuilt.logits, first.logits)


def test_cached_distillation_trains_and_flip_detection_follows_the_transform(tiny_ferplus: Path, tmp_path: Path,
                                                                               teacher_ckpt: Path) -> None:
    cfg = _cfg(tiny_ferplus, tmp_path / "s", region="lower", kd=KDConfig(teacher=str(teacher_ckpt), method="both"))
    r = train(cfg, resume=False, progress=False)
    assert r["best_valid"] >= 0.0 and (tmp_path / "teacher_cache").is_dir()
    rng = np.random.default_rng(0)
    tf = random_transforms(200, rng, cfg.augment)
    f = flipped(tf)
    assert 60 < f.sum() < 140  # about half mirrored
    assert all((np.linalg.det(t[:, :2]) < 0) == m for t, m in zip(tf, f))
