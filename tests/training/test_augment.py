"""Training-only augmentations: what they change and what they leave alone."""
from __future__ import annotations

import numpy as np

from training.train import photometric_batch, visor_batch


def _faces(n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).integers(60, 200, (n, 48, 48), dtype=np.uint8)


def test_visor_batch_covers_from_the_top_to_just_below_the_midline() -> None:
    faces = _faces()
    out = visor_batch(faces, np.random.default_rng(1), p=1.0)
    assert out.shape == faces.shape and out.dtype == np.uint8
    for f, o in zip(faces, out):
        dark = o != f
        assert dark[:24].all()  # the upper half is always covered
        assert not dark[40:].any()  # the mouth and chin never are
        assert o[:24].max() < 40  # a dark shell


def test_visor_batch_p0_and_photometric_p0_are_identity() -> None:
    faces = _faces()
    rng = np.random.default_rng(2)
    np.testing.assert_array_equal(visor_batch(faces, rng, 0.0), faces)
    np.testing.assert_array_equal(photometric_batch(faces, rng, 0.0), faces)


def test_photometric_batch_changes_light_but_keeps_the_face() -> None:
    faces = _faces()
    out = photometric_batch(faces, np.random.default_rng(3), p=1.0)
    assert out.dtype == np.uint8 and not np.array_equal(out, faces)
    for f, o in zip(faces.astype(float), out.astype(float)):
        assert np.corrcoef(f.ravel(), o.ravel())[0, 1] > 0.5  # same picture, other exposure
