"""Export a trained network to ONNX with the metadata ``core.model`` requires."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vrfer.core.classes import FERPLUS_CLASSES
from vrfer.core.model import META_PREFIX
from vrfer.core.preprocess import PreprocessSpec
from vrfer.training.nets.shapes_head import forward_shapes, has_shapes_head
from vrfer.training.checkpoint import read_checkpoint


class _WithEmbedding(nn.Module):
    """Outputs (logits, embedding[, shapes]) so the runtime can adapt a personal head on the
    embedding, and drive an avatar's mouth from the shapes head when the network has one."""

    def __init__(self, net: nn.Module, flip_tta: bool = False) -> None:
        super().__init__()
        self.net = net
        self.flip_tta = flip_tta

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.flip_tta:
            # Faces are near-symmetric: average the features of the face and its mirror image,
            # inside the graph, so the runtime needs no change. The head is linear, so this is
            # also the average of the two logit vectors.
            n = x.shape[0]
            both = self.net.forward_head(self.net.forward_features(torch.cat([x, x.flip(-1)], 0)), pre_logits=True)
            feats = (both[:n] + both[n:]) * 0.5
            if has_shapes_head(self.net):
                # Shapes are not mirror-symmetric: the mirror's left is the face's right.
                from vrfer.core.mouth_shapes import MIRROR

                s = forward_shapes(self.net, both)
                return self.net.head(feats), feats, (s[:n] + s[n:][:, list(MIRROR)]) * 0.5
        else:
            feats = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        if has_shapes_head(self.net):
            return self.net.head(feats), feats, forward_shapes(self.net, feats)
        return self.net.head(feats), feats


def export_onnx(net: nn.Module, spec: PreprocessSpec, out: str | Path, *, name: str,
                classes: tuple[str, ...] = FERPLUS_CLASSES, extra: dict[str, str] | None = None,
                embedding: bool = True, flip_tta: bool = False) -> Path:
    """Write ``out`` (a single self-contained .onnx) with ``vrfer.*`` metadata."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval().float().to("cpu").to(memory_format=torch.contiguous_format)
    # A new wrapper is in training mode, and the exporter restores that mode afterwards, which
    # would leave the caller's network in training mode: put the wrapper in eval first.
    if flip_tta and not hasattr(net, "forward_head"):
        raise ValueError("flip_tta needs a network with forward_features/forward_head")
    shapes = has_shapes_head(net)
    wrapped = (_WithEmbedding(net, flip_tta) if (embedding or flip_tta or shapes) and hasattr(net, "forward_head")
               else net).eval()
    outputs = ["logits", "embedding"] if wrapped is not net else ["logits"]
    if shapes:
        from vrfer.core.mouth_shapes import SHAPES

        outputs.append("shapes")
    dummy = torch.zeros(1, *spec.input_shape)
    with torch.no_grad():
        torch.onnx.export(wrapped, (dummy,), str(out), input_names=["input"], output_names=outputs,
                          dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                          opset_version=17, dynamo=False)
    model = onnx.load(str(out))
    meta = {
        "classes": ",".join(classes),
        "input_size": str(spec.size),
        "occlusion": spec.occlusion,
        "region": spec.region,
        "preprocess_version": str(spec.version),
        "name": name,
        **({"tta": "flip"} if flip_tta else {}),
        **({"shapes": ",".join(SHAPES)} if shapes else {}),
        **(extra or {}),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = META_PREFIX + key, str(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


def load_for_export(path: str | Path) -> tuple[nn.Module, PreprocessSpec, str]:
    """(network, spec, default name) of a training checkpoint or a combined-model checkpoint."""
    from vrfer.training.train import load_checkpoint, spec_of

    ckpt = read_checkpoint(path)
    if "combined" in ckpt:
        from vrfer.training.combine import load_combined

        net, cfg = load_combined(path)
        return net, spec_of(cfg), f"{cfg.name}+combined"
    net, cfg = load_checkpoint(path)
    return net, spec_of(cfg), cfg.name


def training_class_prior(path: str | Path) -> list[float] | None:
    """Class frequencies of the training set a checkpoint was trained on (FER+ only, else None).

    Recorded in the ONNX metadata so personal calibration can separate a user's class balance
    from the training set's (core.adapt's logit adjustment).
    """
    from vrfer.core.paths import ferplus_dir
    from vrfer.training.config import checkpoint_config
    from vrfer.training.train import load_data

    ckpt = read_checkpoint(path)
    if "config" not in ckpt:
        return None
    cfg = checkpoint_config(ckpt["config"], str(path))
    root = Path(cfg.data) if cfg.data else ferplus_dir()
    if cfg.dataset != "ferplus" or not (root / "FER2013Train" / "label.csv").is_file():
        return None
    train = load_data(cfg)[0]  # the same (sub)set the checkpoint was trained on
    # One pseudo-count per class keeps every class possible, even when a subset lacks it.
    counts = train.targets.sum(axis=0) + 1.0
    return [float(v) for v in counts / counts.sum()]
