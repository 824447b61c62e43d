"""Forecast service: batch-independent seeds, stored reuse, conformal calibration without look-ahead."""
from __future__ import annotations

import numpy as np

from kronos_trader.backtest.lookahead import perturb_after
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import open_store


def _service(settings, store=None, **forecast):
    return ForecastService(load_model(settings.model.name), settings.forecast.model_copy(update=forecast), store,
                           progress=False)


def test_forecasts_do_not_depend_on_their_batch(fast_settings, sample_candles):
    positions = list(range(40, 90))
    big = _service(fast_settings, batch_windows=64).forecast_at(sample_candles, positions, "X", "1h")
    small = _service(fast_settings, batch_windows=7).forecast_at(sample_candles, positions, "X", "1h")
    alone = _service(fast_settings).forecast_at(sample_candles, [77], "X", "1h")[77]
    for p in positions:
        np.testing.assert_allclose(big[p].mean, small[p].mean, rtol=1e-6)
        np.testing.assert_array_equal(big[p].p_up, small[p].p_up)
    np.testing.assert_allclose(alone.mean, big[77].mean, rtol=1e-6)


def test_stored_forecasts_are_reused_and_equal(fast_settings, sample_candles):
    store = open_store(fast_settings.database.url)
    first = _service(fast_settings, store)
    computed = first.forecast_at(sample_candles, range(31, 80), "X", "1h")
    again = _service(fast_settings, store)
    read = again.forecast_at(sample_candles, range(31, 80), "X", "1h")
    assert first.computed == 49 and again.computed == 0 and again.reused == 49
    for p in computed:
        assert read[p].to_payload() == computed[p].to_payload()
        assert read[p].forecast_id is not None


def test_conformal_calibration_restores_coverage_without_look_ahead(fast_settings, sample_candles):
    raw = _service(fast_settings, sample_count=8).forecast_series(sample_candles, "X", "1h")
    calibrated_service = _service(fast_settings, sample_count=8, calibration="conformal", calibration_window=60)
    calibrated = calibrated_service.forecast_series(sample_candles, "X", "1h")

    def coverage(forecasts):
        hits = [f.quantile(0.05) <= sample_candles["close"].iloc[p + 4] <= f.quantile(0.95)
                for p, f in forecasts.items() if 150 <= p < len(sample_candles) - 4]
        return float(np.mean(hits))

    assert coverage(raw) < 0.5, "the random model's bands are far too narrow"
    assert 0.75 <= coverage(calibrated) <= 1.0
    # a single live-style request equals the walk-forward value
    p = 300
    single = calibrated_service.forecast_at(sample_candles, [p], "X", "1h")[p]
    np.testing.assert_allclose(single.quantiles[0.05], calibrated[p].quantiles[0.05])
    # changing data after bar p leaves its calibrated forecast unchanged
    changed = _service(fast_settings, sample_count=8, calibration="conformal", calibration_window=60) \
        .forecast_at(perturb_after(sample_candles, p), [p], "X", "1h")[p]
    np.testing.assert_allclose(changed.quantiles[0.95], calibrated[p].quantiles[0.95])
    assert changed.prob_up() == calibrated[p].prob_up()
