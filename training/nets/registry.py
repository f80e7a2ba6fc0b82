"""A name -> builder registry, so configs can name networks."""
from __future__ import annotations

from typing import Callable

from vrfer.core.errors import ConfigError

_MODELS: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    _MODELS[fn.__name__] = fn
    return fn


def create_model(name: str, **kwargs):
    """Build a registered network; ``None`` kwargs keep the network's defaults."""
    _import_all()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})


def takes_pretrained(name: str) -> bool:
    """Whether the builder loads pretrained weights of its own (a ``pretrained`` argument)."""
    import inspect

    _import_all()
    return name in _MODELS and "pretrained" in inspect.signature(_MODELS[name]).parameters


def _import_all() -> None:
    import importlib
    import pkgutil

    import vrfer.training.nets as pkg
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "registry":
            importlib.import_module(f"vrfer.training.nets.{mod.name}")
