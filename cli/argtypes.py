"""argparse ``type=`` converters whose errors read as one line: ``expected …, got …``."""
from __future__ import annotations

import argparse
from typing import Callable, TypeVar

T = TypeVar("T", int, float)


def bounded(cast: Callable[[str], T], noun: str, ok: Callable[[T], bool], in_range: str) -> Callable[[str], T]:
    """A converter: ``cast(text)`` must succeed (else "expected NOUN") and satisfy ``ok`` (else "expected IN_RANGE")."""
    def parse(text: str) -> T:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {in_range}, got {text}")
        return value
    return parse


positive_int = bounded(int, "a whole number", lambda v: v >= 1, "a number >= 1")
non_negative_int = bounded(int, "a whole number", lambda v: v >= 0, "a number >= 0")
non_negative_float = bounded(float, "a number", lambda v: v >= 0.0, "a number >= 0")
unit_float = bounded(float, "a number from 0 to 1", lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")
seconds = bounded(float, "seconds", lambda v: v >= 0, "seconds >= 0")
positive_seconds = bounded(float, "a number of seconds", lambda v: v > 0, "a number of seconds > 0")
rate_hz = bounded(float, "a rate in Hz", lambda v: 1.0 <= v <= 1000.0, "a rate from 1 to 1000 Hz")
degrees_0_90 = bounded(float, "an angle in degrees", lambda v: 0.0 < v <= 90.0, "an angle from 0 to 90 degrees")
udp_port = bounded(int, "a UDP port number", lambda v: 0 < v < 65536, "a UDP port from 1 to 65535")
