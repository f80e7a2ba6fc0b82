"""Shared pieces of the fuzz tests: a hang guard and JSON-like values."""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from hypothesis import strategies as st


class Hung(Exception):
    """The code under test ran past its time bound: a hang, as far as a fuzz test is concerned."""


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Raise Hung if the block runs longer than ``seconds`` (SIGALRM: main thread only)."""
    def expire(signum, frame):
        raise Hung(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-10**400, max_value=10**400),
                    st.floats(), st.text(max_size=20))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                      st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                    max_leaves=10)


def deep(depth: int) -> str:
    """A JSON/TOML array nested ``depth`` levels: parsers written as recursion fall over on it."""
    return "[" * depth + "]" * depth
