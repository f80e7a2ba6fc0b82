"""core.backgrounds: the one synthetic background generator (demo, benchmarks, locator training frames)."""
from __future__ import annotations

import numpy as np
import pytest

from vrfer.core.backgrounds import COLOURS, KINDS, background


@pytest.mark.parametrize("kind", KINDS)
def test_background_is_a_writable_bgr_frame_the_same_for_a_seed(kind):
    a = background(np.random.default_rng(3), kind, (64, 48))
    b = background(np.random.default_rng(3), kind, (64, 48))
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8 and a.flags.writeable
    np.testing.assert_array_equal(a, b)


def test_background_kinds_look_like_their_names():
    rng = np.random.default_rng(0)
    plain = background(rng, "plain", (32, 24))
    assert (plain == plain[0, 0]).all() and COLOURS[0] <= plain.min() and plain.max() < COLOURS[1]
    grad = background(rng, "gradient", (32, 24))
    assert (grad == grad[:, :1]).all()  # constant along each row
    assert not np.array_equal(grad[0], grad[-1])  # and changing from top to bottom
    texture = background(rng, "texture", (32, 24))
    assert len(np.unique(texture.reshape(-1, 3), axis=0)) > 50  # detail everywhere
    blocks = background(rng, "blocks", (32, 24))
    assert len(np.unique(blocks.reshape(-1, 3), axis=0)) <= 7 * 9  # a few flat patches


def test_background_unknown_kind_is_one_line():
    with pytest.raises(ValueError) as err:
        background(np.random.default_rng(0), "stripes", (8, 8))
    assert str(err.value) == "background kind must be one of plain, gradient, texture, blocks, got 'stripes'"
