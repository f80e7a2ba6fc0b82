import numpy as np
import pytest

from vrfer.core.errors import ConfigError
from vrfer.core.smoothing import LabelHysteresis, Smoother, SmoothingConfig

F = 1.0 / 30.0  # one frame at the reference rate


def test_smoother_first_update_returns_input():
    s = Smoother(SmoothingConfig("ema", strength=0.9))
    np.testing.assert_allclose(s.update(np.array([0.2, 0.8]), 0.0), [0.2, 0.8])


def test_smoother_ema_keeps_strength_share_per_reference_frame():
    s = Smoother(SmoothingConfig("ema", strength=0.5))
    s.update(np.array([1.0, 0.0]), 0.0)
    # 0.5 * [1, 0] + 0.5 * [0, 1]
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0]), F), [0.5, 0.5])
    # 0.5 * [0.5, 0.5] + 0.5 * [0, 1]
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0]), 2 * F), [0.25, 0.75])


def test_smoother_ema_is_time_based_not_frame_based():
    s = Smoother(SmoothingConfig("ema", strength=0.5))
    s.update(np.array([1.0, 0.0]), 0.0)
    # two reference frames elapsed: retain 0.5 ** 2 = 0.25
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0]), 2 * F), [0.25, 0.75])


def test_smoother_strength_zero_passes_through():
    s = Smoother(SmoothingConfig("ema", strength=0.0))
    s.update(np.array([1.0, 0.0]), 0.0)
    np.testing.assert_allclose(s.update(np.array([0.3, 0.7]), F), [0.3, 0.7])


def test_smoother_strength_one_is_capped_and_still_moves():
    s = Smoother(SmoothingConfig("ema", strength=1.0))
    s.update(np.array([1.0, 0.0]), 0.0)
    # retain is capped at 0.98 per reference frame
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0]), F), [0.98, 0.02])


def test_smoother_reset_forgets_history():
    s = Smoother(SmoothingConfig("ema", strength=0.5))
    s.update(np.array([1.0, 0.0]), 0.0)
    s.reset()
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0]), F), [0.0, 1.0])


def test_smoother_one_euro_without_beta_is_a_fixed_cutoff_lowpass():
    s = Smoother(SmoothingConfig("one_euro", strength=0.5, beta=0.0))  # min cutoff 1 Hz
    s.update(np.array([1.0, 0.0]), 0.0)
    # tau = 1 / (2 pi 1 Hz) = 0.159155; alpha = 1 / (1 + tau / 0.1 s) = 0.385870
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0]), 0.1), [0.614130, 0.385870], atol=1e-6)


def test_smoother_one_euro_opens_cutoff_with_speed():
    s = Smoother(SmoothingConfig("one_euro", strength=0.5, beta=0.5, d_cutoff=1.0))
    s.update(np.array([1.0, 0.0]), 0.0)
    # speed [-10, 10]/s, filtered with alpha 0.385870 -> |3.858695|;
    # cutoff 1 + 0.5 * 3.858695 = 2.929348 Hz; alpha = 1 / (1 + 1/(2 pi 2.929348 * 0.1)) = 0.647957
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0]), 0.1), [0.352043, 0.647957], atol=1e-6)


def test_smoother_one_euro_output_sums_to_one():
    s = Smoother(SmoothingConfig("one_euro", strength=0.7, beta=2.0))
    s.update(np.array([0.7, 0.2, 0.1]), 0.0)
    out = s.update(np.array([0.1, 0.1, 0.8]), 0.05)
    assert out.sum() == pytest.approx(1.0)
    assert out[2] > 0.1 and out[0] < 0.7


def test_smoother_strength_from_min_cutoff_scale():
    assert SmoothingConfig(strength=0.5).min_cutoff == pytest.approx(1.0)
    assert SmoothingConfig(strength=1.0).min_cutoff == pytest.approx(0.1)
    assert SmoothingConfig(strength=0.0).min_cutoff == pytest.approx(10.0)


def test_hysteresis_first_label_is_argmax():
    h = LabelHysteresis(margin=0.1)
    assert h.update(np.array([0.2, 0.7, 0.1])) == 1


def test_hysteresis_keeps_label_within_margin():
    h = LabelHysteresis(margin=0.1)
    h.update(np.array([0.6, 0.4]))
    assert h.update(np.array([0.47, 0.53])) == 0  # leads by 0.06 < 0.1
    assert h.update(np.array([0.3, 0.7])) == 1  # leads by 0.4


def test_hysteresis_needs_consecutive_frames():
    h = LabelHysteresis(margin=0.1, min_hold_frames=3)
    h.update(np.array([0.9, 0.1]))
    assert h.update(np.array([0.2, 0.8])) == 0
    assert h.update(np.array([0.2, 0.8])) == 0
    assert h.update(np.array([0.6, 0.4])) == 0  # streak broken
    assert h.update(np.array([0.2, 0.8])) == 0
    assert h.update(np.array([0.2, 0.8])) == 0
    assert h.update(np.array([0.2, 0.8])) == 1


def test_hysteresis_streak_restarts_for_a_new_challenger():
    h = LabelHysteresis(margin=0.1, min_hold_frames=2)
    h.update(np.array([0.8, 0.1, 0.1]))
    assert h.update(np.array([0.1, 0.8, 0.1])) == 0
    assert h.update(np.array([0.1, 0.1, 0.8])) == 0  # class 2 is a different challenger
    assert h.update(np.array([0.1, 0.1, 0.8])) == 2


def test_hysteresis_reset_takes_next_argmax():
    h = LabelHysteresis(margin=0.5)
    h.update(np.array([0.6, 0.4]))
    h.reset()
    assert h.update(np.array([0.4, 0.6])) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "kalman"}, "smoothing.method must be one of ema, one_euro, got 'kalman'"),
    ({"strength": 1.5}, "smoothing.strength must be a number from 0 to 1, got 1.5"),
    ({"strength": "fast"}, "smoothing.strength must be a number from 0 to 1, got 'fast'"),
    ({"margin": -0.1}, "smoothing.margin must be a number from 0 to 1, got -0.1"),
    ({"min_hold_frames": 0}, "smoothing.min_hold_frames must be an integer >= 1, got 0"),
    ({"beta": -1}, "smoothing.beta must be a number >= 0, got -1"),
])
def test_smoothing_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ConfigError) as info:
        SmoothingConfig(**kwargs)
    assert str(info.value) == message


def test_shapes_are_one_euro_smoothed_not_renormalised_and_reset_with_probabilities():
    from vrfer.core.smoothing import Smoother, SmoothingConfig

    s = Smoother(SmoothingConfig(method="ema", strength=0.8))
    first = s.update_shapes(np.array([0.2, 0.9, 0.0]), 0.0)
    np.testing.assert_allclose(first, [0.2, 0.9, 0.0])  # the first value passes; its sum is not 1
    jump = np.array([0.8, 0.9, 0.5])
    slow = s.update_shapes(jump, 1 / 30)
    assert 0.2 < slow[0] < 0.8 and slow[1] == pytest.approx(0.9)
    # One Euro opens up with speed: a fast jump is followed more closely than an EMA at 0.8 would
    ema = 0.8 * 0.2 + 0.2 * 0.8
    assert slow[0] > ema
    s.reset()  # a face lost: shapes start afresh too
    np.testing.assert_allclose(s.update_shapes(jump, 2.0), jump)
