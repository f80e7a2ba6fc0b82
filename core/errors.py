"""The error family that entry points catch; every message is one readable line."""
from __future__ import annotations


class VrferError(Exception):
    """Base class: ``str(err)`` is a single line naming the problem."""

    def __str__(self) -> str:  # never let a newline through to the user
        return " ".join(super().__str__().split())


class ConfigError(VrferError):
    """A config, settings or table file is malformed."""


class ModelError(VrferError):
    """A model file is missing, unreadable or tagged with metadata we cannot honour."""


class SourceError(VrferError):
    """A frame source cannot be opened or has failed for good."""


class DatasetError(VrferError):
    """A dataset folder or CSV is missing or malformed."""


class SinkError(VrferError):
    """An avatar sink cannot be set up."""
