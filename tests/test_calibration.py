"""Spread calibration: widens too-narrow bands to the nominal coverage, never sees the future."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kronos_trader.evaluation.metrics import central_interval, coverage
from kronos_trader.forecasting.calibration import (RollingCalibrator, apply_spread_scale, conformal_quantile,
                                                   conformity_scores, fit_spread_scale)


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
    mean = closes.mean(axis=0)
    np.testing.assert_allclose(out[:, :2, 3] - mean[:2], (closes[:, :2] - mean[:2]) * [0.5, 1], atol=1e-9)
    np.testing.assert_allclose(out[..., 3].mean(axis=0), mean)  # the centre stays, even where a factor is lowered
    assert out[..., 3].min(axis=0)[4] == pytest.approx(0.01 * mean[4])  # factor 50 lowered: prices stay positive
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


def fx_walk_forward(n_windows: int = 120, samples: int = 32, steps: int = 3, seed: int = 5):
    """EURUSD-like forecasts: price ~1.08, moves of ~5e-4 per bar, and paths quantised the way
    the tokenizer quantises them (most paths share the median close at step 1, a few sit one
    tick away on one side): skewed, often one-sided sample bands."""
    from kronos_trader.evaluation.walkforward import WalkForward

    rng = np.random.default_rng(seed)
    n = n_windows + steps + 1
    close = 1.08 * np.exp(np.cumsum(rng.standard_normal(n) * 5e-4))
    origins = np.arange(n_windows)
    tick = 1e-4
    paths = np.empty((n_windows, samples, steps))
    for i, o in enumerate(origins):
        moves = np.round(rng.standard_normal((samples, steps)) * 0.6) * tick * np.sqrt(np.arange(1, steps + 1))
        moves[:, 0] = np.where(rng.random(samples) < 0.85, 0.0, tick * (1 + rng.integers(0, 3, samples)))
        paths[i] = close[o] + moves
    realized = np.stack([close[o + 1:o + 1 + steps] for o in origins])
    return WalkForward(origins=origins, times=pd.date_range("2024-01-01", periods=n_windows, freq="h"),
                       last_close=close[origins], realized=realized, paths=paths, closes=pd.Series(close), cut=0)


def test_calibration_keeps_the_centre_fx_mae_is_unchanged():
    """issue 25: on EURUSD, calibrated MAE at step 1 was 0.006728 against 0.000776 raw: the
    spread scaling moved the mean close. Calibration changes the spread, never the centre."""
    from kronos_trader.evaluation.report import ScoreSettings, score_walk_forward

    wf = fx_walk_forward()
    ev = score_walk_forward(wf, ScoreSettings(horizons=(1, 2, 3), min_history=10))
    for h in (1, 2, 3):
        raw, cal = ev.metrics["kronos"][h], ev.metrics["kronos_calibrated"][h]
        assert cal["mae"] == pytest.approx(raw["mae"], rel=1e-9), (h, raw["mae"], cal["mae"])
        assert cal["rmse"] == pytest.approx(raw["rmse"], rel=1e-9)
    np.testing.assert_allclose(ev.calibrated_paths.mean(axis=1), wf.paths.mean(axis=1), rtol=1e-12)


def test_zero_width_bands_do_not_force_the_widest_factor():
    """Forecasts whose paths all agree (a zero-width band) have no spread to scale: outcomes
    off them are left out of the fit instead of giving every later forecast the widest factor."""
    rng = np.random.default_rng(7)
    paths, y = narrow_forecasts(300, 3, 32, rng, spread=1.0)  # well calibrated
    flat = np.full((100, 32, 3), 100.0)
    factors = fit_spread_scale(list(paths) + list(flat), list(y) + list(y[:100]), 0.9)
    assert np.all(np.abs(factors - 1) < 0.25), factors
    assert np.isnan(conformity_scores(flat[0], y[0])).all()
    assert conformity_scores(flat[0], np.full(3, 100.0)).tolist() == [0.0, 0.0, 0.0]


def test_scaling_keeps_mean_and_scales_bands_around_it():
    rng = np.random.default_rng(6)
    closes = 100 * np.exp(rng.standard_normal((16, 3)) * 0.01) + np.array([0.0, 0.0, 3.0]) * (rng.random((16, 1)) < 0.2)
    out = apply_spread_scale(closes, np.array([0.5, 2.0, 4.0]))
    np.testing.assert_allclose(out.mean(axis=0), closes.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), closes.std(axis=0) * [0.5, 2.0, 4.0], rtol=1e-9)
