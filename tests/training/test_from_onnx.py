"""Starting from a shipped ONNX student: folded batch norms back into a trainable network."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from vrfer.core.errors import ConfigError  # noqa: E402
from vrfer.core.preprocess import PreprocessSpec  # noqa: E402
from vrfer.training.export import export_onnx  # noqa: E402
from vrfer.training.nets.bn import rebase_batchnorms  # noqa: E402
from vrfer.training.nets.from_onnx import load_folded_onnx  # noqa: E402
from vrfer.training.nets.student import TinyRes  # noqa: E402


def _trained_like(seed: int) -> TinyRes:
    """A TinyRes whose batch norms hold non-trivial statistics, as a trained one does."""
    torch.manual_seed(seed)
    net = TinyRes()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def _round_trip(seed: int, tmp_path: Path) -> tuple[TinyRes, TinyRes]:
    """(a trained-like network, a fresh one loaded from its ONNX export)."""
    source = _trained_like(seed)
    path = export_onnx(source, PreprocessSpec(), tmp_path / "s.onnx", name="s")
    target = TinyRes().eval()
    load_folded_onnx(target, path)
    return source, target


def test_onnx_export_loads_back_with_the_same_outputs(tmp_path: Path) -> None:
    source, target = _round_trip(0, tmp_path)
    x = torch.randn(16, 1, 24, 48)
    with torch.no_grad():
        want = source(x)
        got = target(x)
    assert torch.allclose(got, want, atol=1e-4)


def test_rebased_batchnorms_compute_the_same_and_hold_real_statistics(tmp_path: Path) -> None:
    _, net = _round_trip(1, tmp_path)
    x = torch.randn(64, 1, 24, 48)
    with torch.no_grad():
        before = net(x)
    assert rebase_batchnorms(net, net, x) == 10  # every batch norm of TinyRes
    with torch.no_grad():
        after = net.eval()(x)
    assert torch.allclose(before, after, atol=1e-3)
    first = net.stem[1]
    assert float((first.running_var - 1.0).abs().max()) > 1e-2  # statistics of real inputs now
    net.train()
    net.drop.eval()
    with torch.no_grad():
        train_mode = net(x)  # batch statistics = the re-based ones on this batch: still the same function
    assert torch.allclose(train_mode, after, atol=1e-2)


def test_an_onnx_of_another_architecture_is_refused_in_one_line(tmp_path: Path) -> None:
    path = export_onnx(TinyRes(widths=(16, 32, 64, 128)).eval(), PreprocessSpec(), tmp_path / "s.onnx", name="s")
    with pytest.raises(ConfigError, match="shape") as info:
        load_folded_onnx(TinyRes(), path)
    assert "\n" not in str(info.value)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="not a readable ONNX model"):
        load_folded_onnx(TinyRes(), junk)
