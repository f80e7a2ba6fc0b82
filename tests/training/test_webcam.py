"""training.headset.webcam: the broadened training family draws what it says it draws."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from vrfer.core.preprocess import CANONICAL_SIZE
from vrfer.training.headset.synth import Headset, draw_headset, placed_square, placement
from vrfer.training.headset.webcam import (SIDE_RANGE, cutout, draw_webcam, shoot, skin_tint, webcam_headset,
                                           webcam_pair)


def _face(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    face = rng.integers(90, 170, (CANONICAL_SIZE, CANONICAL_SIZE), dtype=np.uint8)
    face[30:34, 14:34] = 40  # a mouth
    return face


def test_pairs_are_colour_jpeg_frames_of_every_size_and_repeat_from_a_seed() -> None:
    sides, colour = [], []
    for i in range(40):
        pair = webcam_pair(_face(i), np.random.default_rng(i))
        assert pair.clean.shape == pair.headset.shape == (480, 640, 3)
        sides.append(placed_square(pair.placement)[1])
        centre = pair.placement @ np.array([(CANONICAL_SIZE - 1) / 2] * 2 + [1.0])
        x, y = np.round(centre).astype(int)
        patch = pair.clean[y - 5:y + 5, x - 5:x + 5].astype(np.float64)
        colour.append(np.abs(patch[..., 2] - patch[..., 0]).mean())  # skin: red above blue
        assert not np.array_equal(pair.clean, pair.headset)
    assert SIDE_RANGE[0] <= min(sides) < 130 and 250 < max(sides) <= SIDE_RANGE[1]
    assert np.median(colour) > 8  # colour frames, not grey ones
    again = webcam_pair(_face(3), np.random.default_rng(3))
    assert np.array_equal(again.clean, webcam_pair(_face(3), np.random.default_rng(3)).clean)


def test_skin_tints_keep_the_grey_level_near_the_lightness_and_differ_in_colour() -> None:
    tints = np.array([skin_tint(np.random.default_rng(i)) for i in range(200)])
    grey = tints @ np.array([0.114, 0.587, 0.299])  # what cv2.COLOR_BGR2GRAY makes of the tinted face
    assert 0.7 <= grey.min() and grey.max() <= 1.2
    assert (tints[:, 2] > tints[:, 0]).all()  # red over blue: skin


def test_cutout_has_no_square_border() -> None:
    for i in range(20):
        m = cutout(np.random.default_rng(i))
        border = np.concatenate([m[0], m[-1], m[:, 0], m[:, -1]])
        assert border.max() == 0 and m[24, 24] == 255


def test_backlight_window_stays_behind_the_head() -> None:
    img = np.full((480, 640, 3), 90, np.uint8)
    front = np.zeros((480, 640), np.float32)
    front[180:300, 260:380] = 1.0  # the head
    cam = dataclasses.replace(draw_webcam(np.random.default_rng(0)), light="back", exposure=0.6, window=(0.0, -0.4),
                              blur="", sharpen=0.0, chroma=0.0, quality=95, white_balance=(1.0, 1.0, 1.0))
    out = shoot(img, cam, ((320.0, 240.0), 120.0), front).astype(np.float64)
    assert out[200:290, 280:360].mean() < 120  # the face, backlit: darker than the room was, not the window
    assert out[100:150, 300:340].mean() > 200  # the window above it
    without = shoot(img, cam, ((320.0, 240.0), 120.0)).astype(np.float64)
    assert without[200:290, 280:360].mean() > 200  # with nothing in front, the window covers that spot


def test_light_headsets_get_a_rim_and_hands_reach_over_the_visor() -> None:
    hs = [webcam_headset(np.random.default_rng(i)) for i in range(100)]
    light = [h for h in hs if h.rim is not None]
    assert 30 < len(light) < 70 and all(min(h.shell) >= 180 for h in light)
    assert all(min(h.rim) >= min(h.shell) for h in light)
    assert 15 < sum(h.extra == "grip" for h in hs) < 45
    place = placement(240.0, 0.0, (320.0, 240.0))
    inv = cv2.invertAffineTransform(place)
    plain = Headset(shell=(230, 230, 230), width=54, height=22, dx=0, dy=0, tilt=0, roundness=4, straps=False,
                    top_strap=False, glare=False, extra="")
    dark = np.zeros((480, 640, 3), np.uint8)
    without = draw_headset(dark, inv, plain, np.random.default_rng(0))
    rimmed = draw_headset(dark, inv, dataclasses.replace(plain, shell=(120, 120, 120), rim=(250, 250, 250)),
                          np.random.default_rng(0))
    assert (rimmed == 250).all(axis=2).sum() > 100  # a bright edge round the grey shell
    grip = draw_headset(dark, inv, dataclasses.replace(plain, extra="grip"), np.random.default_rng(0))
    skin = (grip[..., 2].astype(int) - grip[..., 0].astype(int)) > 30
    assert skin.sum() > 200 and not ((without[..., 2].astype(int) - without[..., 0].astype(int)) > 30).any()


def test_a_worn_visor_moves_away_from_the_camera_and_shades_the_face_under_it() -> None:
    """``wear``: the same headset drawn flat and worn on a plain grey face. The visor stands in front
    of the face, so it sits lower on the face seen from above, higher seen from below, and towards
    the far side seen from one side; the face under its lower edge is darker (its shadow), and the
    mouth stays visible."""
    from vrfer.training.headset.webcam import wear

    side, n = 240, CANONICAL_SIZE
    unit = side / n
    img = np.full((side, side, 3), 128, np.uint8)
    place = np.array([[unit, 0.0, 0.0], [0.0, unit, 0.0]])
    hs = dataclasses.replace(webcam_headset(np.random.default_rng(1)), extra="", straps=False, top_strap=False,
                             tilt=0.0, dx=0.0, width=36.0)  # narrower than the frame: its sides show

    def covered(out: np.ndarray) -> np.ndarray:
        return np.abs(out.astype(int) - 128).max(axis=2) > 30

    def bottom(out: np.ndarray) -> int:  # the visor's lower edge at the centre columns
        return int(np.flatnonzero(covered(out)[:, side // 2 - 5: side // 2 + 5].any(axis=1)).max())

    def centre_x(out: np.ndarray) -> float:
        return float(np.flatnonzero(covered(out)[int(18 * unit)]).mean())

    flat = draw_headset(img, cv2.invertAffineTransform(place), hs, np.random.default_rng(5))
    above = wear(img, place, np.random.default_rng(5), hs, camera=(20.0, 0.0))
    below = wear(img, place, np.random.default_rng(5), hs, camera=(-20.0, 0.0))
    right = wear(img, place, np.random.default_rng(5), hs, camera=(0.0, 25.0))
    assert bottom(above) > bottom(flat) + 2 * unit and bottom(below) < bottom(flat) - 2 * unit
    assert centre_x(right) < centre_x(flat) - 2 * unit
    # The shadow: just under the visor's lower edge the face is darker than elsewhere.
    b = bottom(above)
    assert worn_mean(above, b + 2, b + 2 + int(2 * unit)) < 124
    assert abs(worn_mean(above, int(40 * unit), int(44 * unit)) - 128) < 3  # the mouth's rows untouched
    drawn = [wear(img, place, np.random.default_rng(seed)) for seed in range(12)]  # drawn cameras vary
    assert len({bottom(d) for d in drawn}) > 4


def worn_mean(out: np.ndarray, top: int, stop: int) -> float:
    return float(out[top:stop, out.shape[1] // 2 - 5: out.shape[1] // 2 + 5].mean())


def test_a_tilted_card_keeps_its_centre_and_shows_the_nearer_edge_larger() -> None:
    """``card_tilt``: straight on it changes nothing; a webcam low on a desk (pitch > 0) sees the
    lower edge wider than the upper one and the card shorter; yaw > 0 makes the image-right edge taller."""
    from vrfer.training.headset.synth import card_tilt

    c = (320.0, 240.0)
    assert np.allclose(card_tilt(c, 0.0, 0.0, 600.0), np.eye(3))

    def at(h: np.ndarray, x: float, y: float) -> np.ndarray:
        p = h @ np.array([x, y, 1.0])
        return p[:2] / p[2]

    low = card_tilt(c, 25.0, 0.0, 600.0)
    assert np.allclose(at(low, *c), c)
    top = at(low, 420, 140)[0] - at(low, 220, 140)[0]
    base = at(low, 420, 340)[0] - at(low, 220, 340)[0]
    assert base > top * 1.1
    assert at(low, 320, 340)[1] - at(low, 320, 140)[1] < 200 * 0.95  # foreshortened
    side = card_tilt(c, 0.0, 25.0, 600.0)
    right = at(side, 420, 340)[1] - at(side, 420, 140)[1]
    left = at(side, 220, 340)[1] - at(side, 220, 140)[1]
    assert right > left * 1.1


def test_webcams_at_an_angle_are_drawn_in_most_frames_within_their_ranges() -> None:
    from vrfer.training.headset.webcam import draw_tilt, webcam_batch

    drawn = [draw_tilt(np.random.default_rng(i), 0.7) for i in range(400)]
    tilted = [t for t in drawn if t is not None]
    assert abs(len(tilted) / len(drawn) - 0.7) < 0.08
    pitch, yaw, focal = np.array(tilted).T
    assert -10 <= pitch.min() and pitch.max() <= 30 and (pitch > 15).mean() > 0.3  # mostly from below
    assert yaw.min() < -25 and yaw.max() > 25 and 450 <= focal.min() and focal.max() <= 900
    # Share 0 draws nothing from the generator: old recipes draw the frames they always drew.
    rng = np.random.default_rng(5)
    assert draw_tilt(rng, 0.0) is None and rng.random() == np.random.default_rng(5).random()
    faces = np.stack([_face(i) for i in range(6)])
    flat = webcam_batch(faces, np.random.default_rng(2), 1.0)
    assert np.array_equal(flat, webcam_batch(faces, np.random.default_rng(2), 1.0, 0.0))
    assert not np.array_equal(flat, webcam_batch(faces, np.random.default_rng(2), 1.0, 1.0))


def test_a_tilted_face_is_pasted_round_the_same_centre_as_its_placement() -> None:
    """``compose(tilt=...)``: the face is drawn through the homography, its centre where the
    placement puts it, and narrower at the top than at the bottom when seen from below."""
    from vrfer.training.headset.synth import compose

    face = np.full((CANONICAL_SIZE, CANONICAL_SIZE), 200, np.uint8)
    flat, place = compose(face, np.random.default_rng(2), (240, 240), 0.0, tint=np.ones(3))
    tilted, place2 = compose(face, np.random.default_rng(2), (240, 240), 0.0, tint=np.ones(3), tilt=(28.0, 0.0, 500.0))
    assert np.array_equal(place, place2) and not np.array_equal(flat, tilted)
    (cx, cy), side = placed_square(place)
    x, y = int(round(cx)), int(round(cy))
    assert (tilted[y, x] > 190).all()

    def width(img: np.ndarray, row: int) -> int:  # face pixels in the row, near the face only
        near = img[row, int(cx - 0.75 * side):int(cx + 0.75 * side)].astype(int)
        return int(((np.abs(near - 200) <= 2).all(axis=1)).sum())

    top, bottom = int(cy - 0.4 * side), int(cy + 0.4 * side)
    assert abs(width(flat, top) - width(flat, bottom)) <= 2
    assert width(tilted, bottom) > width(tilted, top) + 10
