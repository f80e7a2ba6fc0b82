"""Small checks shared by the readers of files that users share or edit by hand."""
from __future__ import annotations

import math
from typing import Any

# What a reader catches around json / tomllib: a value error, or a document nested so deeply
# (a few thousand "[") that the standard parsers run out of recursion.
PARSE_ERRORS: tuple[type[BaseException], ...] = (ValueError, RecursionError)


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool. An int too large for a float (JSON and TOML can spell
    one out) is not a number here: the code that uses it would overflow."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: Any, limit: int = 60) -> str:
    """``repr`` for a one-line message, cut: a hostile file may hold a 5000-digit number."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
