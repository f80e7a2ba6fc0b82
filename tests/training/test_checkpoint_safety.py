"""Checkpoints from strangers never run code: a pickle payload in a .pt file is refused, in one
line, by every command and function that reads checkpoints; old files convert once, on trust."""
from __future__ import annotations

import io
import pathlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vrfer.cli.main import main
from vrfer.core.errors import ConfigError
from vrfer.training.checkpoint import read_checkpoint
from vrfer.training.combine import load_combined, train_combined
from vrfer.training.config import TrainConfig
from vrfer.training.train import build_net, load_checkpoint, train


class Payload:
    """Unpickling this writes ``marker``: the stand-in for arbitrary code in a shared file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (pathlib.Path(self.marker), "code ran")


def _cfg(tmp_path: Path, **kw) -> TrainConfig:
    base = dict(name="tiny", model="tinyres_s", data=str(tmp_path / "no-data"), epochs=1, batch_size=16,
                num_threads=1, out=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def _state(cfg: TrainConfig) -> dict:
    sd = build_net(cfg).state_dict()
    return {"model": sd, "ema": sd, "config": cfg.to_dict(), "best_source": "ema", "best": 0.5, "epoch": 0,
            "history": [], "torch_rng": torch.get_rng_state()}


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """(a checkpoint that looks like a training one but carries a payload, the payload's marker)."""
    marker = tmp_path / "marker"
    # The payload comes first in the pickle stream, so it would run before any tensor is rebuilt.
    state = {"history": [Payload(marker)], **{k: v for k, v in _state(_cfg(tmp_path)).items() if k != "history"}}
    state["combined"] = {"a": Payload(marker)}
    path = tmp_path / "evil.pt"
    torch.save(state, path)
    return path, marker


def _one_refusal(capsys, path: Path) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(path) in err and "refused" in err and "vrfer checkpoint convert --trust" in err
    return err


def test_payload_is_real_under_pickle(evil) -> None:
    """The fixture is not inert: plain pickle, as the old ``torch.load`` used, runs the payload."""
    path, marker = evil

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, pid):  # the first tensor storage: the payload has run by then
            raise EOFError

    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("data.pkl"))
        with pytest.raises(EOFError):
            Unpickler(io.BytesIO(z.read(name))).load()
    assert marker.read_text() == "code ran"


def test_trusted_convert_still_refuses_the_payload(evil, tmp_path: Path, capsys) -> None:
    path, marker = evil
    assert main(["checkpoint", "convert", "--trust", str(path), str(tmp_path / "new.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be converted" in err and "nothing in it was run" in err
    assert not marker.exists() and not (tmp_path / "new.pt").exists()


def test_export_refuses_the_payload_in_one_line(evil, tmp_path: Path, capsys) -> None:
    path, marker = evil
    assert main(["export", str(path), "-o", str(tmp_path / "out.onnx")]) == 2
    _one_refusal(capsys, path)
    assert not marker.exists() and not (tmp_path / "out.onnx").exists()


def test_resume_refuses_the_payload(evil, tiny_ferplus: Path, tmp_path: Path) -> None:
    path, marker = evil
    cfg = _cfg(tmp_path, data=str(tiny_ferplus))
    Path(cfg.out).mkdir(parents=True)
    (Path(cfg.out) / "last.pt").write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match="refused.*vrfer checkpoint convert --trust"):
        train(cfg, resume=True, progress=False)
    assert not marker.exists()


def test_combine_init_and_teacher_refuse_the_payload(evil, tmp_path: Path) -> None:
    path, marker = evil
    with pytest.raises(ConfigError, match="refused"):
        train_combined(path, path, tmp_path / "combined")
    with pytest.raises(ConfigError, match="refused"):
        load_combined(path)
    with pytest.raises(ConfigError, match="refused"):  # kd.teacher and init both load through here
        load_checkpoint(path)
    assert not marker.exists()


def test_trusted_convert_rewrites_an_old_checkpoint_that_then_exports(tmp_path: Path, capsys) -> None:
    cfg = _cfg(tmp_path)
    old_state = _state(cfg)
    # An older writer's plain-looking values that are still pickled objects.
    old_state |= {"best": np.float64(0.5), "history": [{"valid_acc": np.float32(0.25)}],
                  "class_counts": np.arange(8), "out": Path(cfg.out)}
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    torch.save(old_state, old)
    assert main(["export", str(old), "-o", str(tmp_path / "a.onnx")]) == 2
    _one_refusal(capsys, old)
    assert main(["checkpoint", "convert", str(old), str(new)]) == 2  # no --trust: nothing runs
    assert "--trust" in capsys.readouterr().err and not new.exists()
    assert main(["checkpoint", "convert", "--trust", str(old), str(new)]) == 0
    ckpt = read_checkpoint(new)
    assert ckpt["best"] == 0.5 and isinstance(ckpt["best"], float)
    assert ckpt["history"][0]["valid_acc"] == 0.25 and ckpt["out"] == cfg.out
    assert torch.equal(ckpt["class_counts"], torch.arange(8))
    assert main(["export", str(new), "-o", str(tmp_path / "b.onnx")]) == 0
    assert (tmp_path / "b.onnx").stat().st_size > 0


def test_unreadable_and_foreign_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        read_checkpoint(junk)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(ConfigError, match="not a vrfer checkpoint"):
        read_checkpoint(listed)
    odd = tmp_path / "odd.pt"
    state = _state(_cfg(tmp_path))
    torch.save(state | {"best_source": "config"}, odd)
    with pytest.raises(ConfigError, match="no 'config' weights"):
        load_checkpoint(odd)
    torch.save(state | {"config": [1]}, odd)
    with pytest.raises(ConfigError, match="not a table"):
        load_checkpoint(odd)


def test_average_mixes_two_checkpoints_of_one_network_and_refuses_others(evil, tmp_path: Path, capsys) -> None:
    cfg = _cfg(tmp_path)
    a, b = _state(cfg), _state(cfg)  # two inits of one network: different weights, same shapes
    a["best_source"], b["best_source"] = "model", "ema"
    b["model"] = {k: torch.zeros_like(v) for k, v in b["model"].items()}  # not B's best: must not be read
    b["ema"] = {k: v if v.is_floating_point() else torch.full_like(v, 7) for k, v in b["ema"].items()}
    pa, pb = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(a, pa)
    torch.save(b, pb)
    out = {}
    for alpha in (0.0, 0.25, 1.0):
        path = tmp_path / f"mix{alpha}.pt"
        assert main(["checkpoint", "average", str(pa), str(pb), str(path), "--alpha", str(alpha), "--name", "mix"]) == 0
        out[alpha] = read_checkpoint(path)
    wa, wb = a["model"], b["ema"]
    for k, v in wb.items():
        if v.is_floating_point():
            torch.testing.assert_close(out[0.0]["model"][k], wa[k])
            torch.testing.assert_close(out[1.0]["model"][k], v)
            torch.testing.assert_close(out[0.25]["model"][k], 0.75 * wa[k] + 0.25 * v)
        else:
            assert int(out[0.25]["model"][k]) == 7 and not torch.equal(out[0.25]["model"][k], wa[k])  # batch counts are B's
    assert out[0.25]["config"]["name"] == "mix" and out[0.25]["averaged"]["alpha"] == 0.25
    net, loaded = load_checkpoint(tmp_path / "mix0.25.pt")  # what vrfer export reads
    assert loaded.name == "mix"
    assert main(["export", str(tmp_path / "mix0.25.pt"), "-o", str(tmp_path / "mix.onnx")]) == 0
    # Another network, a payload, an alpha outside [0, 1]: one line each, nothing written.
    other = _state(_cfg(tmp_path, model="tinyres"))
    torch.save(other, tmp_path / "other.pt")
    capsys.readouterr()
    assert main(["checkpoint", "average", str(pa), str(tmp_path / "other.pt"), str(tmp_path / "x.pt")]) == 2
    assert "hold different networks or inputs" in capsys.readouterr().err
    torch.save(_state(_cfg(tmp_path, region="full")), tmp_path / "full.pt")  # the same weights' shapes, another input
    assert main(["checkpoint", "average", str(pa), str(tmp_path / "full.pt"), str(tmp_path / "x.pt")]) == 2
    assert "hold different networks or inputs" in capsys.readouterr().err
    path, marker = evil
    assert main(["checkpoint", "average", str(pa), str(path), str(tmp_path / "x.pt")]) == 2
    _one_refusal(capsys, path)
    assert not marker.exists()
    assert main(["checkpoint", "average", str(pa), str(pb), str(tmp_path / "x.pt"), "--alpha", "1.5"]) == 2
    assert "--alpha" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
