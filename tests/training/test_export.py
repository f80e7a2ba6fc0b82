"""Export -> core.model.ExpressionModel round trips: torch and ONNX Runtime agree."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vrfer.core.model import ExpressionModel
from vrfer.core.preprocess import PreprocessSpec, preprocess
from vrfer.training.combine import CombinedEmbedding
from vrfer.training.config import TrainConfig
from vrfer.training.export import export_onnx
from vrfer.training.nets.registry import create_model
from vrfer.training.train import build_net


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 48, 48), dtype=np.uint8)


def _randomise_bn(net: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, so the export is tested with real folding work."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return net.eval()


def _round_trip(net: torch.nn.Module, spec: PreprocessSpec, path: Path) -> None:
    export_onnx(net, spec, path, name="roundtrip")
    model = ExpressionModel(path)
    assert model.spec == spec and model.info.has_embedding
    x = np.stack([preprocess(f, None, spec) for f in _faces(5)])
    probs, emb = model.predict(x)
    with torch.no_grad():
        t = torch.from_numpy(x)
        feats = net.forward_head(net.forward_features(t), pre_logits=True)
        t_probs = torch.softmax(net.head(feats), dim=1).numpy()
    np.testing.assert_allclose(probs, t_probs, atol=1e-4)
    np.testing.assert_allclose(emb, feats.numpy(), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("version", [1, 2])
def test_export_student_round_trip_through_expression_model(tmp_path: Path, version: int) -> None:
    torch.manual_seed(0)
    _round_trip(_randomise_bn(create_model("tinyres_s")), PreprocessSpec(version=version), tmp_path / "s.onnx")


def test_checkpoints_from_before_the_version_field_keep_version_1() -> None:
    from vrfer.training.config import checkpoint_config
    from vrfer.training.train import spec_of

    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "preprocess_version"}
    assert spec_of(checkpoint_config(old, "old.pt")).version == 1
    assert spec_of(checkpoint_config(TrainConfig().to_dict(), "new.pt")).version == 2
    assert spec_of(TrainConfig()).version == 2  # new runs train with the current version


def test_export_upsampled_vgg_face_keeps_the_48px_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(model="vgg_face", region="full", occlusion="none", upsample=96,
                      model_kwargs={"width": 0.125, "fc_dim": 64})
    net = _randomise_bn(build_net(cfg))
    assert net.net.features(torch.zeros(1, 1, 96, 96)).shape[-1] == 3  # the trunk really sees 96 px
    spec = PreprocessSpec(occlusion="none", region="full")
    _round_trip(net, spec, tmp_path / "vggface.onnx")
    assert ExpressionModel(tmp_path / "vggface.onnx").session.get_inputs()[0].shape[1:] == [1, 48, 48]


def test_export_combined_embedding_is_one_graph(tmp_path: Path) -> None:
    torch.manual_seed(0)
    a, b = _randomise_bn(create_model("tinyres_s")), _randomise_bn(create_model("tinyres"))
    model = CombinedEmbedding(a, b).eval()
    assert model.num_features == 128 + 256
    _round_trip(model, PreprocessSpec(), tmp_path / "combined.onnx")
    import onnx

    graph = onnx.load(str(tmp_path / "combined.onnx")).graph
    assert len(graph.input) == 1 and [o.name for o in graph.output] == ["logits", "embedding"]


@pytest.mark.parametrize("name, shape", [("vgg_f", (1, 24, 48)), ("vgg_f", (1, 112, 224)), ("vgg_face", (1, 24, 48)),
                                         ("vgg_face", (1, 48, 48)), ("resnet18_cifar", (1, 48, 48))])
def test_nets_take_native_and_paper_sizes(name: str, shape: tuple[int, int, int]) -> None:
    kw = {"width": 0.25, "fc_dim": 32} if name.startswith("vgg") else {}
    net = create_model(name, num_classes=8, in_shape=shape, **kw).eval()
    with torch.no_grad():
        x = torch.zeros(2, *shape)
        emb = net.forward_head(net.forward_features(x), pre_logits=True)
        assert net(x).shape == (2, 8) and emb.shape == (2, net.num_features)


def test_unknown_model_names_the_known_ones() -> None:
    from vrfer.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown model 'vgg19'; known: dlib_resnet29, resnet10_cifar, resnet18_cifar, tinyres"):
        create_model("vgg19")


def test_export_flip_tta_averages_face_and_mirror(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net, spec = _randomise_bn(create_model("tinyres_s")), PreprocessSpec()
    export_onnx(net, spec, tmp_path / "tta.onnx", name="tta", flip_tta=True)
    model = ExpressionModel(tmp_path / "tta.onnx")
    assert model.info.metadata["vrfer.tta"] == "flip"
    x = np.stack([preprocess(f, None, spec) for f in _faces(4, seed=1)])
    probs, emb = model.predict(x)
    with torch.no_grad():
        t = torch.from_numpy(x)
        f = (net.forward_head(net.forward_features(t), pre_logits=True)
             + net.forward_head(net.forward_features(t.flip(-1)), pre_logits=True)) / 2
        expected = torch.softmax(net.head(f), dim=1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    np.testing.assert_allclose(emb, f.numpy(), atol=1e-3, rtol=1e-3)
    # and it differs from the plain export: the mirror really is used
    export_onnx(net, spec, tmp_path / "plain.onnx", name="plain")
    plain, _ = ExpressionModel(tmp_path / "plain.onnx").predict(x)
    assert np.abs(plain - probs).max() > 1e-4
