"""Checkpoint files: tensors plus plain data (dicts, lists, strings, numbers), read without pickle code.

Every checkpoint vrfer reads goes through ``read_checkpoint``, which uses ``torch.load(...,
weights_only=True)``: a file carrying any other Python object (a class instance, a
``__reduce__`` payload) is refused in one line before anything in it runs. A checkpoint from
an older vrfer or another tool that holds numpy values or paths can be rewritten once, by
someone who trusts where it came from, with ``vrfer checkpoint convert --trust OLD NEW``
(``convert_trusted``). Even that never unpickles freely: it allows numpy's and pathlib's
constructors and nothing else, so a file carrying code is refused there too.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vrfer.core.errors import ConfigError

CONVERT_COMMAND = "vrfer checkpoint convert --trust"
# What older writers stored besides tensors and plain data: numpy scalars and arrays, and paths.
_CONVERTIBLE = [np.core.multiarray.scalar, np.core.multiarray._reconstruct, np.ndarray, np.dtype,
                *{type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}, pathlib.PosixPath, pathlib.PurePosixPath]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # torch's refusal is a page of advice; the line naming the global is the one that matters
    named = [line for line in lines if any(k in line for k in ("Unsupported global", "Unsupported operand",
                                                                 "Can only build"))]
    text = (named or lines or [type(exc).__name__])[0]
    return text.split(" was not an allowed global")[0].removeprefix("WeightsUnpickler error: ")[:160]


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict a vrfer checkpoint holds; a missing, unreadable or code-carrying file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refused a global: the file wants to build Python objects (or run code).
        raise ConfigError(
            f"{path}: refused, the checkpoint holds Python objects besides tensors and plain data "
            f"({_first_line(exc)}); if you trust its origin, rewrite it once with "
            f"'{CONVERT_COMMAND} {path} NEW.pt'") from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, UnicodeDecodeError, MemoryError) as exc:  # torch's zip and pickle readers on a bad file
        raise ConfigError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{path}: not a vrfer checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    return ckpt


def write_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Save ``state`` as tensors plus plain data, so that ``read_checkpoint`` accepts it."""
    torch.save(plain(state), path)


def plain(value: Any) -> Any:
    """``value`` as tensors and plain data only: what ``weights_only=True`` loads.

    numpy arrays become tensors, numpy scalars Python numbers, paths strings, dataclasses dicts,
    tuples lists. Anything else is a ConfigError naming its type.
    """
    if isinstance(value, np.generic):  # before the exact types: np.float64 subclasses float
        return value.item()
    if value is None or type(value) in (bool, int, float, str, bytes) or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    raise ConfigError(f"cannot store a {type(value).__module__}.{type(value).__qualname__} in a checkpoint "
                      "(only tensors, numbers, strings, lists and dicts)")


def convert_trusted(old: str | Path, new: str | Path) -> Path:
    """Rewrite a checkpoint you trust as tensors plus plain data; numpy values and paths in it
    are rebuilt (``_CONVERTIBLE``), any other object is refused and nothing in it runs."""
    old, new = Path(old), Path(new)
    if not old.is_file():
        raise ConfigError(f"{old}: checkpoint not found")
    if new.resolve() == old.resolve():
        raise ConfigError(f"{new}: write the converted checkpoint to a new file, not over {old}")
    try:
        with torch.serialization.safe_globals(_CONVERTIBLE):
            ckpt = torch.load(old, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(f"{old}: cannot be converted, it holds more than tensors, plain data, numpy values and "
                          f"paths ({_first_line(exc)}); nothing in it was run") from None
    except Exception as exc:  # an old file can fail in any of torch's and zip's ways
        raise ConfigError(f"{old}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise ConfigError(f"{old}: not a vrfer checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    new.parent.mkdir(parents=True, exist_ok=True)
    tmp = new.with_name(new.name + ".tmp")
    write_checkpoint(ckpt, tmp)
    read_checkpoint(tmp)  # proves the result loads under the safe rule
    os.replace(tmp, new)
    return new


def average_checkpoints(a: str | Path, b: str | Path, alpha: float, new: str | Path, name: str = "") -> Path:
    """``(1 - alpha) * A + alpha * B``, weight by weight, of two checkpoints of one network: the
    weight-space ensemble of a model and its fine-tune (WiSE-FT, Wortsman et al. 2022), which keeps
    more of A's accuracy where the fine-tune traded it for robustness. Each side's best weights
    (``best_source``); integer buffers (batch counts) come from B. The result is B's config
    (renamed to ``name`` if given) with the averaged weights, for ``vrfer export``; not resumable."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha}")
    from vrfer.training.config import checkpoint_config

    new = Path(new)
    ca, cb = read_checkpoint(a), read_checkpoint(b)
    weights, configs = [], []
    for path, ckpt in ((a, ca), (b, cb)):
        which = ckpt.get("best_source", "ema")
        state = ckpt.get(which)
        if "config" not in ckpt or not isinstance(state, dict) \
                or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ConfigError(f"{path}: not a vrfer training checkpoint (no {which!r} weights)")
        weights.append(state)
        configs.append(checkpoint_config(ckpt["config"], str(path)))
    wa, wb = weights
    ka, kb = ((c.model, c.size, c.occlusion, c.region, c.preprocess_version) for c in configs)
    if ka != kb or set(wa) != set(wb) or any(wa[k].shape != wb[k].shape for k in wb):
        raise ConfigError(f"{a} and {b} hold different networks or inputs (model, size, occlusion, region, "
                          "preprocessing): only two checkpoints of one network average")
    mixed = {k: (wa[k] * (1 - alpha) + wb[k] * alpha).to(wb[k].dtype) if wb[k].is_floating_point() else wb[k].clone()
             for k in wb}
    config = dict(cb["config"])
    if name:
        config["name"] = name
    state = {"model": mixed, "ema": mixed, "best_source": "model", "config": config, "epoch": -1, "best": -1.0,
             "history": [], "averaged": {"a": str(a), "b": str(b), "alpha": alpha}}
    new.parent.mkdir(parents=True, exist_ok=True)
    tmp = new.with_name(new.name + ".tmp")
    write_checkpoint(state, tmp)
    os.replace(tmp, new)  # a crash never leaves a torn file, even over A or B
    return new
