"""algorithm.loss_trend: a training loss that keeps growing is told apart from noise and slow drift."""

from __future__ import annotations

import numpy as np

from algorithm.loss_trend import RisingLoss


def _first_diverging(losses) -> int | None:
    trend = RisingLoss()
    return next((epoch for epoch, loss in enumerate(losses) if trend.update(float(loss))), None)


def test_three_rises_well_above_the_lowest_loss_are_divergence() -> None:
    # SGD, positive_class_weight=20: falls, then climbs (weighted log loss per row)
    assert _first_diverging([1.6, 1.3, 1.18, 2.7, 13.9, 17.4, 29.0]) == 5
    trend = RisingLoss()
    for loss in (0.5, 0.3, 0.4, 0.5, 0.6):
        trend.update(loss)
    assert trend.diverging and trend.lowest == 0.3 and trend.lowest_epoch == 1


def test_noise_slow_drift_and_a_falling_loss_are_not() -> None:
    rng = np.random.default_rng(0)
    noisy = 0.4 + 0.02 * rng.standard_normal(500)  # a converged loss jittering around its level
    assert _first_diverging(noisy) is None
    assert _first_diverging([0.5, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45]) is None  # rising, but not far above 0.4
    assert _first_diverging([0.7, 0.6, 0.5, 0.45, 0.42, 0.41]) is None
    assert _first_diverging([0.6, 0.3, 1.0, 0.9, 1.2, 1.3]) is None  # far above, but not rising 3 times in a row


def test_a_near_zero_loss_rising_below_the_constant_prediction_is_not() -> None:
    # digits, "is it a 0": a fitted classifier's log loss jitters around 0.015, far below the base rate's 0.33
    jitter = [0.0117, 0.0157, 0.0163, 0.0160, 0.0153, 0.0160, 0.0175, 0.0192]
    trend = RisingLoss(baseline=0.33)
    assert not any(trend.update(loss) for loss in jitter)
    assert _first_diverging(jitter) == 7  # without the baseline, the same jitter would look like divergence
