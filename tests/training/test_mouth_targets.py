"""Mouth-shape targets from the real mesh on real FER+ Train faces, and a student trained with the
shapes head: one ONNX graph with both outputs, read by core."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vrfer.core import mouth_shapes as ms
from vrfer.core.errors import DatasetError
from vrfer.core.model import ExpressionModel
from vrfer.core.preprocess import preprocess
from vrfer.training.config import ShapesConfig, TrainConfig
from vrfer.training.mouth_targets import build_targets, load_targets
from vrfer.training.nets.shapes_head import forward_shapes
from vrfer.training.train import load_data, train

N = 64


def _cfg(ferplus_dir: Path, out: Path, targets: str, weight: float = 1.0) -> TrainConfig:
    return TrainConfig(name="shapes", model="tinyres_s", data=str(ferplus_dir), epochs=1, batch_size=16, lr=0.05,
                       warmup_epochs=0.5, ema_decay=0.9, num_threads=1, train_subset=N, eval_subset=32,
                       out=str(out), seed=1, shapes=ShapesConfig(targets=targets, weight=weight))


@pytest.fixture(scope="module")
def targets(ferplus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Targets of the N Train faces the tiny run draws, meshed for real (faces and mirrors)."""
    names = load_data(_cfg(ferplus_dir, Path("unused"), ""))[0].names
    folder = tmp_path_factory.mktemp("mouth_cache")
    return build_targets(ferplus_dir, folder, progress=False, only=set(names)).path


def test_targets_file_holds_faces_and_mirrors_in_0_1(targets: Path) -> None:
    data = load_targets(targets)
    assert data.shapes == ms.SHAPES and data.targets.shape == (N, 2, len(ms.SHAPES))
    meshed = np.isfinite(data.targets[..., 0])
    assert meshed.mean() > 0.85  # the mesh finds most upscaled FER+ faces
    assert (np.isfinite(data.targets).all(axis=2) == meshed).all()  # a face is meshed whole or not at all
    ok = data.targets[meshed]
    assert ok.min() >= 0.0 and ok.max() <= 1.0


def test_mirror_targets_swap_left_and_right(targets: Path) -> None:
    """The mesh on the mirror sees the face's left corner on its right: the mirror's targets
    match the face's with sides swapped better than without."""
    t = load_targets(targets).targets
    both = np.isfinite(t[:, 0, 0]) & np.isfinite(t[:, 1, 0])
    face, mirror = t[both, 0], t[both, 1]
    sided = [j for j, m in enumerate(ms.MIRROR) if m != j]
    swapped = np.abs(face[:, list(ms.MIRROR)] - mirror)[:, sided].mean()
    unswapped = np.abs(face - mirror)[:, sided].mean()
    print(f"mirror vs face, sided shapes: MAE swapped {swapped:.3f}, unswapped {unswapped:.3f}")
    assert swapped < unswapped


def test_missing_targets_file_is_a_one_line_error(ferplus_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(ferplus_dir, tmp_path / "run", str(tmp_path / "nope.npz"))
    with pytest.raises(DatasetError, match="not a mouth targets file") as info:
        train(cfg, resume=False, progress=False)
    assert "\n" not in str(info.value)


def test_student_with_shapes_head_exports_both_outputs_and_core_reads_them(
        ferplus_dir: Path, targets: Path, tmp_path: Path) -> None:
    from vrfer.training.export import export_onnx, load_for_export

    r = train(_cfg(ferplus_dir, tmp_path / "run", str(targets)), resume=False, progress=False)
    assert r["best_valid"] >= 0
    net, spec, name = load_for_export(tmp_path / "run" / "best.pt")
    assert net.shapes_head.out_features == len(ms.SHAPES)  # any registered network can carry the head
    faces = load_data(_cfg(ferplus_dir, tmp_path, ""))[1].images[:4]
    x = np.stack([preprocess(f, None, spec) for f in faces])
    for tta in (False, True):
        path = export_onnx(net, spec, tmp_path / f"s{tta}.onnx", name=name, flip_tta=tta)
        model = ExpressionModel(path)
        assert model.shapes == ms.SHAPES and model.info.metadata["vrfer.shapes"] == ",".join(ms.SHAPES)
        p = model.predict_all(x)
        assert p.probs.shape == (4, 8) and p.embedding is not None
        assert p.shapes.shape == (4, len(ms.SHAPES)) and 0 <= p.shapes.min() and p.shapes.max() <= 1
        if not tta:
            with torch.no_grad():
                feats = net.forward_head(net.forward_features(torch.from_numpy(x)), pre_logits=True)
                np.testing.assert_allclose(p.shapes, forward_shapes(net, feats).numpy(), atol=1e-4)
        else:  # the mirrored face's shapes are the face's with left and right swapped
            mirrored = model.predict_all(np.ascontiguousarray(x[..., ::-1])).shapes
            np.testing.assert_allclose(mirrored, p.shapes[:, list(ms.MIRROR)], atol=1e-4)


@pytest.mark.parametrize("kind", ["pickle", "torn", "foreign", "sizes"])
def test_bad_targets_files_are_one_line_errors_and_are_kept(tmp_path: Path, kind: str) -> None:
    """A pickled object array is never unpickled (no code runs); a torn, foreign or inconsistent
    file is refused in one line and left where it is."""
    path = tmp_path / "targets.npz"
    if kind == "pickle":
        np.savez(path, targets=np.zeros((1, 2, 14), np.float32), names=np.array([object()], dtype=object),
                 shapes=np.array(ms.SHAPES))
    elif kind == "torn":
        good = tmp_path / "good.npz"
        np.savez(good, targets=np.zeros((1, 2, 14), np.float32), names=np.array(["a"]), shapes=np.array(ms.SHAPES))
        path.write_bytes(good.read_bytes()[:200])
    elif kind == "foreign":
        np.savez(path, weights=np.zeros(3))
    else:
        np.savez(path, targets=np.zeros((2, 2, 14), np.float32), names=np.array(["a"]), shapes=np.array(ms.SHAPES))
    before = path.read_bytes()
    with pytest.raises(DatasetError) as info:
        load_targets(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == before
