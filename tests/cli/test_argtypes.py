"""The shared argparse converters: the value, or one exact line."""
from __future__ import annotations

import argparse

import pytest

from vrfer.cli.argtypes import positive_int, positive_seconds, rate_hz, seconds, udp_port, unit_float


@pytest.mark.parametrize("convert, text, value", [
    (positive_int, "3", 3), (unit_float, "0.25", 0.25), (seconds, "0", 0.0),
    (positive_seconds, "1.5", 1.5), (rate_hz, "60", 60.0), (udp_port, "9000", 9000),
])
def test_argtypes_accept(convert, text: str, value) -> None:
    assert convert(text) == value


@pytest.mark.parametrize("convert, text, message", [
    (positive_int, "x", "expected a whole number, got 'x'"),
    (positive_int, "0", "expected a number >= 1, got 0"),
    (unit_float, "1.5", "expected a number from 0 to 1, got 1.5"),
    (seconds, "-1", "expected seconds >= 0, got -1"),
    (positive_seconds, "soon", "expected a number of seconds, got 'soon'"),
    (rate_hz, "0", "expected a rate from 1 to 1000 Hz, got 0"),
    (udp_port, "70000", "expected a UDP port from 1 to 65535, got 70000"),
    (unit_float, "nan", "expected a number from 0 to 1, got nan"),
])
def test_argtypes_refuse_with_one_line(convert, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as err:
        convert(text)
    assert str(err.value) == message
