"""Training-only augmentations: what they change and what they leave alone."""
from __future__ import annotations

import numpy as np

from vrfer.training.augment import headset_batch, occluder_batch, photometric_batch, visor_batch, webcam_batch


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


def test_headset_batch_draws_over_the_eyes_and_leaves_the_mouth_region_mostly_bare() -> None:
    faces = _faces(64)
    out = headset_batch(faces, np.random.default_rng(4), p=1.0)
    assert out.shape == faces.shape and out.dtype == np.uint8
    changed = out != faces
    # every face gets a shell over the eye row (the template's eyes sit near row 18)
    assert changed[:, 16:20, 14:34].mean(axis=(1, 2)).min() > 0.9
    # the lips (rows 36-40, centre columns) are covered only by a hand or mic, never by the shell
    assert changed[:, 36:40, 18:30].mean() < 0.1
    # a shell may reach past the midline: the student must see that, unlike the paper's clean cut
    assert (changed[:, 26, 20:28].mean(axis=1) > 0.5).any()


def test_headset_batch_p_picks_that_fraction_and_p0_is_identity() -> None:
    faces = _faces(400)
    np.testing.assert_array_equal(headset_batch(faces, np.random.default_rng(5), 0.0), faces)
    out = headset_batch(faces, np.random.default_rng(5), 0.25)
    drawn = (out != faces).any(axis=(1, 2)).mean()
    assert 0.18 < drawn < 0.32


def test_webcam_batch_p_picks_that_fraction_and_p0_is_identity() -> None:
    faces = _faces(200)
    np.testing.assert_array_equal(webcam_batch(faces, np.random.default_rng(6), 0.0), faces)
    out = webcam_batch(faces, np.random.default_rng(6), 0.3)
    assert out.shape == faces.shape and out.dtype == np.uint8
    shot = (out != faces).any(axis=(1, 2))
    assert 0.2 < shot.mean() < 0.4  # every picked face goes through noise and JPEG, so it changes
    np.testing.assert_array_equal(out, webcam_batch(faces, np.random.default_rng(6), 0.3))  # seeded


def test_webcam_batch_keeps_the_face_recognisable_and_varies_its_light() -> None:
    # a smooth face-like gradient, so that blur and JPEG change little and light changes much
    y, x = np.mgrid[0:48, 0:48]
    face = (80 + 2 * y + x).astype(np.uint8)
    faces = np.repeat(face[None], 120, axis=0)
    out = webcam_batch(faces, np.random.default_rng(7), 1.0).astype(np.float64)
    means = out.mean(axis=(1, 2))
    assert means.max() - means.min() > 40  # low light, normal light and exposure changes all occur
    # the mouth, what the student sees, keeps its layout (a headset covers the eyes, and a backlit
    # window or a hand only sometimes reaches the mouth). From row 34: the corners sit at 37, and a
    # visor worn in front of the face, seen from a camera above it, reaches the upper lip now and then.
    mouth = (slice(34, 46), slice(12, 36))
    corr = np.array([np.corrcoef(o[mouth].ravel(), face[mouth].ravel().astype(np.float64))[0, 1] for o in out])
    assert np.median(corr) > 0.9 and (corr > 0.5).mean() > 0.85


def test_occluder_batch_p_picks_that_fraction_is_seeded_and_p0_is_identity() -> None:
    faces = _faces(300)
    np.testing.assert_array_equal(occluder_batch(faces, np.random.default_rng(8), 0.0), faces)
    out = occluder_batch(faces, np.random.default_rng(8), 0.3)
    assert out.shape == faces.shape and out.dtype == np.uint8
    assert 0.22 < (out != faces).any(axis=(1, 2)).mean() < 0.38
    np.testing.assert_array_equal(out, occluder_batch(faces, np.random.default_rng(8), 0.3))


def test_occluder_batch_covers_the_eyes_with_any_shade_and_edge_and_spares_the_chin() -> None:
    # The same draws over two flat faces: where the thing covers the face, both come out alike.
    light, dark = (np.full((200, 48, 48), v, np.uint8) for v in (128, 40))
    a = occluder_batch(light, np.random.default_rng(9), 1.0).astype(np.int16)
    b = occluder_batch(dark, np.random.default_rng(9), 1.0).astype(np.int16)
    covered = np.abs(a - b) < 30  # bare skin differs by 88, shaded skin by at least 35
    # over the eye row (a hand may cross it, and a high visor's nose notch may open its centre)
    assert (covered[:, 18:21, 20:28].mean(axis=(1, 2)) > 0.75).mean() > 0.9
    assert (np.abs(a - 128) > 2)[:, 44:, :].mean() < 0.01  # the chin stays bare (shadow tails and fingers end above it)
    shade = a[:, 19, 24]
    assert (shade < 60).mean() > 0.1 and (shade > 190).mean() > 0.1  # dark, light and any grey between
    # the lower edge in the centre column lands above the midline on some faces, well below it on others
    lowest = np.array([np.flatnonzero(c[:, 24])[-1] if c[:, 24].any() else -1 for c in covered])
    assert (lowest < 24).mean() > 0.1 and (lowest >= 30).mean() > 0.1


def test_draw_occluder_on_a_colour_frame_covers_the_placed_face_only_in_any_colour() -> None:
    from vrfer.training.augment import draw_occluder
    from vrfer.training.headset.synth import placement

    frame = np.full((240, 320, 3), 90, np.uint8)
    place = placement(120.0, 10.0, (160.0, 120.0))  # a 120 px face, turned 10 degrees
    eyes = np.round(np.array([[18.0, 19.0], [30.0, 19.0]]) @ place[:, :2].T + place[:, 2]).astype(int)
    coloured, covered = 0, 0
    for seed in range(60):
        out = draw_occluder(frame, place, np.random.default_rng(seed))
        assert out.shape == frame.shape and out.dtype == np.uint8
        changed = np.abs(out.astype(np.int16) - 90).max(axis=2) > 2
        assert not changed[:, :40].any() and not changed[:, 280:].any()  # nothing far from the face
        covered += all(changed[y, x] for x, y in eyes)
        b, _, r = out[eyes[0][1], eyes[0][0]].astype(int)
        coloured += abs(r - b) > 40
    assert covered >= 54 and 10 <= coloured <= 50  # over the eyes nearly always; neutral and coloured shells
    grey = draw_occluder(frame[..., 0], place, np.random.default_rng(0))
    assert grey.shape == frame.shape[:2]
