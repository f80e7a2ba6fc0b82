"""McNemar's exact test against hand-computed binomial tails."""
from __future__ import annotations

import numpy as np
import pytest

from vrfer.training.stats import mcnemar


def _pairs(b: int, c: int, both: int = 5) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([True] * b + [False] * c + [True] * both)
    d = np.array([False] * b + [True] * c + [True] * both)
    return a, d


def test_mcnemar_exact_two_sided_p_value() -> None:
    # b = 8, c = 1: n = 9, P(X <= 1) = (1 + 9) / 512, two-sided = 20 / 512
    m = mcnemar(*_pairs(8, 1))
    assert (m.b, m.c) == (8, 1)
    assert m.p_value == pytest.approx(20 / 512)


def test_mcnemar_balanced_disagreement_is_not_significant() -> None:
    # b = 3, c = 2: P(X <= 2) = (1 + 5 + 10) / 32 = .5, doubled = 1
    assert mcnemar(*_pairs(3, 2)).p_value == pytest.approx(1.0)
    assert mcnemar(*_pairs(0, 0)).p_value == 1.0


def test_mcnemar_large_counts_do_not_overflow() -> None:
    m = mcnemar(*_pairs(700, 600))
    assert 0.0 < m.p_value < 0.05  # 700 vs 600 of 1300 disagreements: z about 2.8


def test_mcnemar_rejects_unpaired_results() -> None:
    with pytest.raises(ValueError, match="same shape"):
        mcnemar(np.ones(3, bool), np.ones(4, bool))
