"""The camera shift (benchmark and training augmentation) and one benchmark draw, without torch."""
from __future__ import annotations

import numpy as np

from vrfer.core.adapt import ModelFingerprint
from vrfer.training.adapt_bench import (
    BENCH_SHIFT, NO_SHIFT, apply_shift, camera_shift_batch, mean_ci, one_draw, shifted_set,
)


def test_apply_shift_changes_the_face_and_keeps_its_format():
    face = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))
    out = apply_shift(face, BENCH_SHIFT, np.random.default_rng(0))
    assert out.shape == (48, 48) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - face).mean() > 10
    np.testing.assert_array_equal(apply_shift(face, NO_SHIFT, np.random.default_rng(0)), face)


def test_shifted_set_is_fixed_per_image():
    faces = np.random.default_rng(1).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    np.testing.assert_array_equal(shifted_set(faces, BENCH_SHIFT, seed=4), shifted_set(faces, BENCH_SHIFT, seed=4))
    assert shifted_set(faces, NO_SHIFT) is faces


def test_camera_shift_batch_probability():
    faces = np.random.default_rng(2).integers(0, 255, (200, 48, 48), dtype=np.uint8)
    assert camera_shift_batch(faces, np.random.default_rng(0), 0.0) is faces
    changed = (camera_shift_batch(faces, np.random.default_rng(0), 0.5) != faces).any(axis=(1, 2)).mean()
    assert 0.3 < changed < 0.6  # a drawn camera may be the identity for some faces


def test_one_draw_skips_rare_classes_and_scores_held_out_faces():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [40, 40, 8])  # class 2 has fewer than k + 5 faces
    emb = rng.normal(size=(len(labels), 4)) + np.eye(4)[labels] * 3
    logits = emb[:, :3] * 0.2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    fp = ModelFingerprint("0" * 64, ("neutral", "happiness", "surprise"), 4)
    r = one_draw(probs, emb, labels, fp, k=5, rng=rng, l2=1.0)
    assert r.adapted == ("neutral", "happiness") and r.held_out == len(labels) - 10
    assert r.after >= r.before
    assert mean_ci([0.5, 0.7])[0] == 0.6
