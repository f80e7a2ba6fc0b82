"""The headset locator's old home, kept only for ``training/headset/presence.py``, which another
branch edits: import from ``vrfer.core.face.headset`` (and ``vrfer.core.geometry``) instead."""
from vrfer.core.face.headset import DEFAULT_LOCATOR, HeadsetLocator, net_input, plausible, window_around
from vrfer.core.geometry import from_fraction

__all__ = ["DEFAULT_LOCATOR", "HeadsetLocator", "from_fraction", "net_input", "plausible", "window_around"]
