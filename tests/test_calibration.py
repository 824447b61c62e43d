"""Spread calibration: widens too-narrow bands to the nominal coverage, never sees the future."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos_trader.evaluation.metrics import central_interval, coverage
from kronos_trader.forecasting.calibration import (RollingCalibrator, apply_spread_scale, conformal_quantile,
                                                   fit_spread_scale)


def narrow_forecasts(n: int, steps: int, samples: int, rng, spread: float = 0.3, price: float = 100.0):
    """Forecasts whose sample spread is `spread` times the true one (too narrow): outcomes
    are log-normal around `price` with sd 0.01*sqrt(h), samples with spread * that sd."""
    sd = 0.01 * np.sqrt(np.arange(1, steps + 1))
    outcomes = price * np.exp(rng.standard_normal((n, steps)) * sd)
    paths = price * np.exp(rng.standard_normal((n, samples, steps)) * sd * spread)
    return paths, outcomes


def full_paths(closes: np.ndarray) -> np.ndarray:
    """(samples, steps) closes -> (samples, steps, 6) bars around them."""
    return np.stack([closes * 0.999, closes * 1.01, closes * 0.98, closes, np.full_like(closes, 5.0),
                     closes * 5.0], axis=-1)


def test_fit_widens_too_narrow_bands_to_nominal_coverage():
    rng = np.random.default_rng(0)
    steps, level = 6, 0.9
    past_paths, past_y = narrow_forecasts(400, steps, 32, rng)
    scale = fit_spread_scale(list(past_paths), list(past_y), level=level)
    assert scale.shape == (steps,) and (scale > 2.0).all()  # spread was ~0.3 of the truth
    new_paths, new_y = narrow_forecasts(2000, steps, 32, rng)
    before = np.mean([coverage(*central_interval(new_paths[:, :, h], level), new_y[:, h]) for h in range(steps)])
    calibrated = np.stack([apply_spread_scale(p, scale) for p in new_paths])
    after = [coverage(*central_interval(calibrated[:, :, h], level), new_y[:, h]) for h in range(steps)]
    assert before < 0.5
    assert all(abs(c - level) < 0.04 for c in after), after


def test_too_wide_bands_are_narrowed():
    rng = np.random.default_rng(1)
    paths, y = narrow_forecasts(300, 3, 32, rng, spread=3.0)
    assert (fit_spread_scale(list(paths), list(y), 0.9) < 0.6).all()


def test_apply_keeps_prices_positive_bars_consistent_and_volume():
    rng = np.random.default_rng(2)
    closes = 100 * np.exp(rng.standard_normal((16, 5)) * 0.5)
    paths = full_paths(closes)
    factors = np.array([0.5, 1.0, 3.0, 10.0, 50.0])
    out = apply_spread_scale(paths, factors)
    assert (out[..., :4] > 0).all()
    assert (out[..., 1] >= np.maximum(out[..., 0], out[..., 3])).all()
    assert (out[..., 2] <= np.minimum(out[..., 0], out[..., 3])).all()
    np.testing.assert_array_equal(out[..., 4], paths[..., 4])
    np.testing.assert_allclose(out[:, 1], paths[:, 1])  # factor 1 changes nothing
    med = np.median(np.log(closes), axis=0)
    np.testing.assert_allclose(np.log(out[..., 3]) - med, (np.log(closes) - med) * [0.5, 1, 3, 10, 50], atol=1e-9)
    np.testing.assert_allclose(apply_spread_scale(closes, factors), out[..., 3])  # closes-only input agrees
    np.testing.assert_allclose(out[..., 5] / paths[..., 5], out[..., 3] / paths[..., 3])  # amount follows price


def test_few_samples_are_handled():
    rng = np.random.default_rng(3)
    paths, y = narrow_forecasts(3, 4, 8, rng)
    scale = fit_spread_scale(list(paths), list(y), 0.9)
    assert np.isfinite(scale).all() and (scale > 0).all()
    assert conformal_quantile(np.array([0.5, 2.0, 1.0]), 0.9) == 2.0  # too few: the largest score
    assert conformal_quantile(np.array([]), 0.9) == 1.0
    assert fit_spread_scale(list(paths), list(y), 0.9, min_count=5).tolist() == [1.0] * 4
    y_partial = y.copy()
    y_partial[:, 2:] = np.nan  # not yet known
    part = fit_spread_scale(list(paths), list(y_partial), 0.9)
    assert part[2:].tolist() == [1.0, 1.0] and np.allclose(part[:2], scale[:2])
    flat = np.full((8, 2), 100.0)  # zero-width bands
    assert np.isfinite(fit_spread_scale([flat], [np.array([100.0, 101.0])], 0.9)).all()
    with pytest.raises(ValueError):
        fit_spread_scale(list(paths), list(y)[:2])


def _stream(n: int, steps: int, stride: int, seed: int = 4):
    """A price series and narrow forecasts every `stride` bars (known_at = origin + h)."""
    rng = np.random.default_rng(seed)
    closes = pd.Series(100 * np.exp(np.cumsum(rng.standard_normal(n) * 0.01)))
    origins = np.arange(10, n - steps, stride)
    sd = 0.01 * np.sqrt(np.arange(1, steps + 1))
    paths = [full_paths(closes[o] * np.exp(rng.standard_normal((16, steps)) * sd * 0.3)) for o in origins]
    known = [o + np.arange(1, steps + 1) for o in origins]
    return closes, origins, paths, known


def test_rolling_calibrator_improves_coverage_and_never_uses_future_targets():
    steps = 4
    closes, origins, paths, known = _stream(2000, steps, stride=2)  # stride < horizon: overlapping targets
    calibrated, factors = RollingCalibrator(level=0.9, min_history=20).run(origins, paths, known, closes)
    assert (factors[0] == 1).all() and (factors[-1] > 1.5).all()
    late = slice(len(origins) // 2, None)
    real = np.stack([closes.to_numpy()[k] for k in known])[late]

    def cov(ps):
        return np.mean([coverage(*central_interval(np.stack(ps)[late][:, :, h, 3], 0.9), real[:, h])
                        for h in range(steps)])

    assert cov(paths) < 0.5 and abs(cov(calibrated) - 0.9) < 0.06

    # changing every close after forecast k's origin changes nothing about forecasts 0..k
    k = 200
    future = closes.copy()
    future.iloc[origins[k] + 1:] *= 1.5
    calibrated2, factors2 = RollingCalibrator(level=0.9, min_history=20).run(origins, paths, known, future)
    np.testing.assert_array_equal(factors2[:k + 1], factors[:k + 1])
    assert not np.array_equal(factors2[k + 1:], factors[k + 1:])

    # a step whose target is not yet known is not used, even if `closes` already holds it
    cal = RollingCalibrator(level=0.9, min_history=1)
    cal.add(10, paths[0], [11, 12, 13, 14])
    factors_now = cal.scale(12, closes, steps=4)
    assert factors_now[2:].tolist() == [1.0, 1.0] and factors_now[0] != 1.0
    with pytest.raises(ValueError, match="time order"):
        cal.add(5, paths[0], [6, 7, 8, 9])


def test_rolling_calibrator_with_timestamps():
    closes, origins, paths, known = _stream(400, 3, stride=3)
    stamps = pd.date_range("2024-01-01", periods=len(closes), freq="h")
    series = pd.Series(closes.to_numpy(), index=stamps)
    out, factors = RollingCalibrator(min_history=5).run(stamps[origins], paths, [stamps[k] for k in known], series)
    _, factors_int = RollingCalibrator(min_history=5).run(origins, paths, known, closes)
    np.testing.assert_allclose(factors, factors_int)
