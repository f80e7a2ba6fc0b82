"""McNemar's test for two classifiers scored on the same images (exact binomial form)."""
from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np


@dataclass(frozen=True)
class McNemar:
    b: int  # first right, second wrong
    c: int  # first wrong, second right
    p_value: float  # two-sided exact binomial p under H0: b ~ Binomial(b + c, 1/2)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact two-sided McNemar test on paired per-image correctness vectors."""
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"paired results must have the same shape, got {a.shape} and {b_.shape}")
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0)
    k = min(b, c)
    tail = sum(comb(n, i) for i in range(k + 1)) / (1 << n)  # exact ints: no overflow at n > 1023
    return McNemar(b, c, min(1.0, 2.0 * tail))
