"""The face-pretrained network: the pinned file, the pure-Python reader and the torch port
against dlib itself. Skips with a reason where the file or dlib is not installed."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vrfer.core.errors import ConfigError  # noqa: E402
from vrfer.training.nets import dlib_resnet  # noqa: E402
from vrfer.core.adapt import file_sha256  # noqa: E402
from vrfer.training.nets.dlib_resnet import (DLIB_ENV, DLIB_SHA256, DlibResNet, dlib_model_path,  # noqa: E402
                                       read_dlib_layers, verify_checksum)


def _model_file() -> Path:
    try:
        return dlib_model_path()
    except ConfigError as exc:
        pytest.skip(f"face_recognition_models is not installed ({exc})")


def test_installed_file_has_the_pinned_checksum() -> None:
    path = _model_file()
    assert path.stat().st_size == 22_466_066
    assert file_sha256(path) == DLIB_SHA256
    verify_checksum(path)


def test_reader_finds_the_published_architecture() -> None:
    layers = read_dlib_layers(_model_file())
    kinds = [layer.kind for layer in layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    first = layers[0]
    assert first.kind == "con" and first.ints == (32, 7, 7, 2, 2, 0, 0)  # 7x7/2, no padding
    strided = [layer.ints for layer in layers if layer.kind == "con" and layer.ints[3] == 2]
    assert all(ints[5:] == (0, 0) for ints in strided)  # stride-2 convs have no padding
    assert sum(layer.params.size for layer in layers if layer.kind in ("con", "affine", "fc")) > 5_000_000


def test_a_tampered_file_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _model_file()
    bad = tmp_path / "tampered.dat"
    shutil.copyfile(src, bad)
    with open(bad, "r+b") as f:
        f.seek(5000)
        f.write(b"\x00\x00\x80\x7f")  # one weight becomes +inf
    monkeypatch.setenv(DLIB_ENV, str(bad))
    with pytest.raises(ConfigError, match="is not the pinned") as info:
        DlibResNet()
    assert "\n" not in str(info.value)


def test_missing_file_names_the_install_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DLIB_ENV, str(tmp_path / "absent.dat"))
    with pytest.raises(ConfigError, match=r"pip install 'face_recognition_models==0\.3\.0'"):
        dlib_model_path()


def test_port_matches_dlib_on_random_chips() -> None:
    dlib = pytest.importorskip("dlib", reason="dlib-bin (the reference) is not installed")
    path = _model_file()
    net = DlibResNet(exact=True).eval()
    reference = dlib.face_recognition_model_v1(str(path))
    rng = np.random.default_rng(7)
    mean = torch.tensor(dlib_resnet.DLIB_MEAN_RGB)[None, :, None, None]
    for _ in range(3):
        img = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
        ref = np.asarray(reference.compute_face_descriptor(img))
        chips = (torch.from_numpy(img).float().permute(2, 0, 1)[None] - mean) / 256.0
        with torch.no_grad():
            ours = net.descriptor(chips)[0].numpy()
        assert np.abs(ours - ref).max() < 1e-4, np.abs(ours - ref).max()


def test_batchnorm_calibration_keeps_the_function() -> None:
    _model_file()
    exact = DlibResNet(exact=True).eval()
    trainable = DlibResNet().eval()
    chips = torch.randn(8, 3, 112, 112) * 0.3
    with torch.no_grad():
        before = trainable.trunk(chips)
        trainable.calibrate(chips)
        after = trainable.trunk(chips)
        ref = exact.trunk(chips)
    assert torch.allclose(before, ref, atol=1e-3, rtol=1e-3)
    assert torch.allclose(after, ref, atol=1e-3, rtol=1e-3)
    assert bool(trainable.calibrated)
    bn = trainable.stem[1]
    assert float(bn.running_var.mean()) != pytest.approx(1.0, abs=1e-3)  # real statistics now


def test_lower_half_goes_in_as_a_full_square() -> None:
    net = DlibResNet(pretrained=False, res=112).eval()
    lower = torch.randn(2, 1, 24, 48)
    chips = net.chip(lower)
    assert chips.shape == (2, 3, 112, 112)
    assert float(chips[:, :, :50].abs().max()) == 0.0  # the hidden upper half is the face's median (0)
    assert net(lower).shape == (2, 8)
    with pytest.raises(ConfigError, match="at least 112"):
        DlibResNet(pretrained=False, res=96)


def test_a_trained_checkpoint_loads_without_the_pretrained_file(tiny_ferplus: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Exporting or scoring a fine-tuned network reads its own weights; the dlib file is not needed."""
    _model_file()
    from vrfer.training.config import TrainConfig
    from vrfer.training.train import load_checkpoint, train

    cfg = TrainConfig(name="t", model="dlib_resnet29", region="full", occlusion="none", data=str(tiny_ferplus),
                      epochs=1, batch_size=8, lr=0.002, optimizer="adamw", trunk_lr_scale=0.1, warmup_epochs=0.0,
                      num_threads=1, out=str(tmp_path / "run"), seed=0)
    train(cfg, resume=False, progress=False)
    trained, _ = load_checkpoint(tmp_path / "run" / "best.pt")
    monkeypatch.setenv(DLIB_ENV, str(tmp_path / "absent.dat"))
    again, again_cfg = load_checkpoint(tmp_path / "run" / "best.pt")
    assert again_cfg.model == "dlib_resnet29" and bool(again.calibrated)
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(again(x), trained(x))
    with pytest.raises(ConfigError, match="is not installed"):
        DlibResNet()  # building from scratch still needs it, and says how to get it
