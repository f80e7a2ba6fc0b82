"""vrfer.core.preprocess against hand-built images whose right answer is known exactly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vrfer.core.preprocess import PreprocessSpec, crop_face, normalise, occlude, preprocess, to_display


def _texture(size: int, sigma: float, seed: int = 0) -> np.ndarray:
    """Smooth random grey texture: detail at ``sigma`` px, full 0..255 range."""
    noise = np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def test_crop_face_without_transform_returns_a_canonical_face_unchanged() -> None:
    face = np.random.default_rng(1).integers(0, 256, (48, 48), dtype=np.uint8)
    out = crop_face(face, None)
    assert out.dtype == np.uint8 and out.shape == (48, 48)
    np.testing.assert_array_equal(out, face)
    bgr = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(crop_face(bgr, None), face)


def test_crop_face_without_transform_resizes_other_sizes() -> None:
    face = _texture(96, 4)
    np.testing.assert_array_equal(crop_face(face, None), cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA))


def test_crop_face_translation_moves_a_square_exactly() -> None:
    image = np.zeros((200, 200), np.uint8)
    image[90:100, 60:70] = 255  # rows 90..99, columns 60..69
    out = crop_face(image, np.array([[1.0, 0, -50], [0, 1.0, -80]]))
    expected = np.zeros((48, 48), np.uint8)
    expected[10:20, 10:20] = 255
    np.testing.assert_array_equal(out, expected)


def test_crop_face_scale_halves_a_square_where_expected() -> None:
    image = np.zeros((200, 200), np.uint8)
    image[100:120, 60:80] = 255  # a 20 px square: pixel edges at 59.5..79.5 and 99.5..119.5
    # canonical = 0.5 * frame + t puts those edges at 9.5..19.5: canonical pixels 10..19, exactly.
    transform = np.array([[0.5, 0, 9.5 - 0.5 * 59.5], [0, 0.5, 9.5 - 0.5 * 99.5]])
    out = crop_face(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), transform)
    expected = np.zeros((48, 48), np.uint8)
    expected[10:20, 10:20] = 255
    np.testing.assert_array_equal(out, expected)


def _stripes(size: int, period: int) -> np.ndarray:
    xx, yy = np.mgrid[:size, :size]
    return (((xx + yy) if period == 1 else yy // period) % 2 * 255).astype(np.uint8)


@pytest.mark.parametrize("name, face, max_err, min_bare_err", [
    # A 1 px checkerboard averages to flat grey; a bare bilinear warp aliases it into a pattern.
    ("checkerboard", _stripes(300, 1), 1.0, 20.0),
    ("3 px stripes", _stripes(300, 3), 8.0, 50.0),
    # Face-like detail (~4 px): the pyramid's Gaussian and INTER_AREA's box differ a little.
    ("smooth texture", _texture(300, 4.0), 4.0, 0.0),
])
def test_crop_face_large_downscale_matches_area_resize(name: str, face: np.ndarray, max_err: float,
                                                      min_bare_err: float) -> None:
    # A 300 px face is 6.25x down: crop_face goes through pyrDown first. Measured mean errors
    # against INTER_AREA: 0.5, 6.1 and 3.4 grey levels; the bare warp: 32, 115 and 3.3.
    frame = np.full((480, 640), 128, np.uint8)
    frame[100:400, 200:500] = face
    s = 48 / 300
    # Pixel-centre convention: frame pixel edge 199.5 -> canonical -0.5, edge 499.5 -> 47.5.
    transform = np.array([[s, 0, -0.5 - s * 199.5], [0, s, -0.5 - s * 99.5]])
    out = crop_face(frame, transform).astype(float)
    area = cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA).astype(float)
    bare = cv2.warpAffine(frame, transform, (48, 48), flags=cv2.INTER_LINEAR).astype(float)
    err = np.abs(out - area).mean()
    assert err <= max_err, err
    assert np.abs(bare - area).mean() >= min_bare_err  # the case really does alias without pyrDown
    if area.std() > 10:
        assert np.corrcoef(out.ravel(), area.ravel())[0, 1] > 0.99


V1 = {"version": 1}


def test_preprocess_v1_vr_occlusion_blacks_out_the_upper_half() -> None:
    face = _texture(48, 2.0)
    spec = PreprocessSpec(occlusion="vr", region="full", **V1)
    out = preprocess(face, None, spec)
    assert out.shape == spec.input_shape == (1, 48, 48) and out.dtype == np.float32
    assert np.all(out[0, :24] == -1.0)
    np.testing.assert_allclose(out[0, 24:], face[24:] / 127.5 - 1.0, atol=1e-6)


def test_preprocess_v1_without_occlusion_keeps_the_whole_face() -> None:
    face = _texture(48, 2.0)
    out = preprocess(face, None, PreprocessSpec(occlusion="none", region="full", **V1))
    np.testing.assert_allclose(out[0], face / 127.5 - 1.0, atol=1e-6)


def test_preprocess_v1_lower_region_is_the_lower_rows() -> None:
    face = _texture(48, 2.0)
    spec = PreprocessSpec(occlusion="vr", region="lower", **V1)
    out = preprocess(face, None, spec)
    assert out.shape == spec.input_shape == (1, 24, 48)
    np.testing.assert_allclose(out[0], face[24:] / 127.5 - 1.0, atol=1e-6)


def test_occlude_does_not_touch_its_input() -> None:
    face = _texture(48, 2.0)
    before = face.copy()
    occlude(face, PreprocessSpec(occlusion="vr", region="full"))[...] = 7
    occlude(face, PreprocessSpec(region="lower"))[...] = 7
    np.testing.assert_array_equal(face, before)


def test_normalise_v1_maps_the_uint8_range_onto_minus_one_to_one() -> None:
    out = normalise(np.array([[0, 255, 128]], np.uint8), PreprocessSpec(**V1))
    assert out.shape == (1, 1, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [-1.0, 1.0, 128 / 127.5 - 1.0], atol=1e-6)


def _v2(rows: np.ndarray, stats: np.ndarray) -> np.ndarray:
    q25, q50, q75 = np.percentile(stats.astype(np.float64), (25, 50, 75))
    return (rows.astype(np.float64) - q50) * 1.349 / (q75 - q25)


def test_preprocess_v2_lower_region_is_the_lower_rows_scaled_by_the_mouth_rows() -> None:
    face = _texture(48, 2.0)
    out = preprocess(face, None, PreprocessSpec(occlusion="vr", region="lower", version=2))
    np.testing.assert_allclose(out[0], _v2(face[24:], face[30:]), atol=1e-4)


def test_preprocess_v2_a_visor_edge_below_the_midline_leaves_the_mouth_unchanged() -> None:
    # A dark or white headset edge over rows 24-29 must not re-light the rest of the face.
    face = _texture(48, 2.0)
    spec = PreprocessSpec(occlusion="vr", region="lower", version=2)
    clean = preprocess(face, None, spec)
    for shell in (20, 235):
        covered = face.copy()
        covered[:30] = shell
        np.testing.assert_allclose(preprocess(covered, None, spec)[0, 6:], clean[0, 6:], atol=1e-6)


def test_preprocess_v2_cancels_exposure_and_contrast() -> None:
    # What a webcam's auto-exposure does to a face: the v2 input does not change, v1's does.
    face = _texture(48, 2.0).astype(np.float64) * 0.5 + 40  # 40..168: the change below does not clip
    lit = np.clip(face * 1.3 + 30, 0, 255)
    for spec, same in ((PreprocessSpec(version=2), True), (PreprocessSpec(**V1), False)):
        a, b = (preprocess(np.rint(f).astype(np.uint8), None, spec) for f in (face, lit))
        assert (np.abs(a - b).max() < 0.15) == same  # uint8 rounding moves the quartiles a little


def test_preprocess_v2_vr_occlusion_ignores_and_zeroes_the_hidden_rows() -> None:
    face = _texture(48, 2.0)
    other = face.copy()
    other[:24] = 255 - other[:24]  # a different upper face: must not change anything
    spec = PreprocessSpec(occlusion="vr", region="full", version=2)
    a, b = preprocess(face, None, spec), preprocess(other, None, spec)
    np.testing.assert_array_equal(a, b)
    assert np.all(a[0, :24] == 0.0)
    np.testing.assert_allclose(a[0, 24:], _v2(face[24:], face[30:]), atol=1e-4)


def test_normalise_v2_does_not_blow_a_flat_crop_up_into_noise() -> None:
    flat = np.full((24, 48), 90, np.uint8)
    flat[0, 0] = 91  # std 0.02 grey levels
    out = normalise(flat, PreprocessSpec(version=2))
    assert np.isfinite(out).all() and np.abs(out).max() < 0.5  # one grey level, not one sigma


@pytest.mark.parametrize("version", [1, 2])
def test_to_display_shows_what_the_model_saw(version: int) -> None:
    face = _texture(48, 2.0)[24:]
    spec = PreprocessSpec(version=version)
    shown = to_display(normalise(face, spec), spec)
    assert shown.dtype == np.uint8 and shown.shape == face.shape
    if version == 1:
        np.testing.assert_array_equal(shown, face)  # exact inverse
    else:
        assert np.corrcoef(shown.ravel(), face.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("kwargs, message", [
    ({"occlusion": "hmd"}, "occlusion must be one of ('none', 'vr'), got 'hmd'"),
    ({"region": "upper"}, "region must be one of ('full', 'lower'), got 'upper'"),
    ({"size": 47}, "size must be an even number >= 8, got 47"),
    ({"size": 6}, "size must be an even number >= 8, got 6"),
    ({"version": 3}, "preprocess version must be one of (1, 2), got 3"),
])
def test_preprocess_spec_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        PreprocessSpec(**kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("size", [32, 64, 96])
def test_crop_face_other_sizes_scale_like_resize(size: int) -> None:
    # The transform is in 48 px canonical coordinates; another output size must sample the same
    # face as cv2.resize of the 48 px crop would (pixel centres kept), or a model trained on
    # resized dataset crops sees live crops shifted by (size/48 - 1)/2 px.
    face = _texture(48, 2.0)
    out = crop_face(face, np.array([[1.0, 0, 0], [0, 1.0, 0]]), size=size).astype(int)
    ref = cv2.resize(face, (size, size), interpolation=cv2.INTER_LINEAR).astype(int)
    assert np.abs(out - ref).max() <= 1


def test_quartiles_match_numpy_percentile() -> None:
    from vrfer.core.preprocess import _quartiles

    for seed in range(50):
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (int(rng.integers(1, 30)), 48)).astype(np.float32)
        np.testing.assert_allclose(_quartiles(x), np.percentile(x, (25, 50, 75)), atol=1e-4)
