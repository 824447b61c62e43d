"""Degenerate input to the plain Python API: a flat close gives the neutral forecast (ties
never read as "up"), and values beyond float32 are a one-line error, never NaN."""
import numpy as np
import pandas as pd
import pytest

from kronos import KronosPredictor


@pytest.fixture(scope="module")
def predictor():
    return KronosPredictor.from_pretrained("kronos-nano")


def frame(close):
    idx = pd.date_range("2024-01-01", periods=len(close), freq="h")
    close = np.asarray(close, dtype=float)
    return pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": 1.0}, index=idx)


def test_flat_close_is_the_neutral_forecast(predictor):
    fc = predictor.forecast(frame(np.full(64, 100.0)), pred_len=4, sample_count=8, seed=1)
    assert np.all(fc.p_up.to_numpy() == 0.5)
    assert np.all(fc.paths[:, :, 3] == 100.0) and np.all(fc.mean["close"].to_numpy() == 100.0)


def test_a_value_beyond_float32_is_a_one_line_error(predictor):
    df = frame(np.linspace(1.0, 2.0, 64))
    df.iloc[10, df.columns.get_loc("close")] = 1e300
    with pytest.raises(ValueError, match=r"column 'close' has a value too large .* row 10") as info:
        predictor.forecast(df, pred_len=4)
    assert "\n" not in str(info.value)


def test_ordinary_series_keep_their_direction(predictor):
    fc = predictor.forecast(frame(np.linspace(100.0, 120.0, 64)), pred_len=4, sample_count=8, seed=1)
    assert np.all(np.isfinite(fc.paths)) and set(np.unique(fc.p_up.to_numpy() * 16)) <= set(range(17))


# --- issue 25: a history longer than the model's context ------------------------------------

@pytest.fixture(scope="module")
def year():
    """All 17,520 hourly bars of the bundled sample."""
    from kronos_trader.data import SAMPLE_DATA_PATH, load_candles

    return load_candles(SAMPLE_DATA_PATH)


def test_long_history_uses_the_last_context_rows_and_says_so(predictor, year):
    """17,520 rows used to be normalised over every row: a step-1 band of 37,956-57,967 around
    47,803. By default the call now forecasts from the last max_context rows, and warns."""
    from kronos.predictor import LongHistoryWarning

    n = predictor.max_context
    with pytest.warns(LongHistoryWarning, match=rf"17520 rows, .* context of {n}: forecasting from the last {n}"):
        long = predictor.forecast(year, pred_len=4, sample_count=8, seed=1)
    last = predictor.forecast(year.iloc[-n:], pred_len=4, sample_count=8, seed=1)
    np.testing.assert_array_equal(long.paths, last.paths)
    band = long.quantiles[0.95]["close"].iloc[0] - long.quantiles[0.05]["close"].iloc[0]
    assert band < 0.1 * year["close"].iloc[-1]  # 1,803 (all rows normalised: 20,011)


def test_published_long_history_stays_available(predictor, year):
    """`long_history='all'` keeps the published arithmetic (every row normalised; the model
    sees the last max_context tokens), for parity with the published code."""
    import warnings as w

    published = KronosPredictor(predictor.model, predictor.tokenizer, max_context=predictor.max_context,
                                long_history="all")
    df = year.iloc[-(predictor.max_context + 100):]
    with w.catch_warnings():
        w.simplefilter("error")
        a = published.forecast(df, pred_len=4, sample_count=4, seed=1)
    b = predictor.forecast(df.iloc[-predictor.max_context:], pred_len=4, sample_count=4, seed=1)
    assert not np.array_equal(a.paths, b.paths)
    with pytest.raises(ValueError, match="long_history must be 'last' or 'all'"):
        KronosPredictor(predictor.model, predictor.tokenizer, long_history="first")


def test_lookback_far_from_the_trained_window_warns(predictor, sample_candles):
    from kronos.predictor import TrainedWindowWarning

    assert predictor.trained_window == (256, 32)
    with pytest.warns(TrainedWindowWarning, match="lookback 64 is far from the 256 bars"):
        predictor.forecast(sample_candles.iloc[-64:], pred_len=4, sample_count=2, seed=1)
    with pytest.warns(TrainedWindowWarning, match="horizon 80 is far beyond the 32 bars"):
        predictor.forecast(sample_candles.iloc[-256:], pred_len=80, sample_count=1, seed=1)


# --- issue 21: forecasts must not depend on the unit the price is quoted in -----------------

@pytest.mark.parametrize("unit", [1e-6, 1e-8, 1e-11])
def test_forecast_does_not_depend_on_the_price_unit(predictor, sample_candles, unit):
    """The published normalisation divides by std + 1e-5; at ADA/BTC prices (std ~2e-7) the
    1e-5 swamps the spread (P(up) fell from 0.6 to 0.1 at 1e-8). Columns whose spread the
    term would swamp are normalised as if quoted in a unit where it does not."""
    from kronos.predictor import PriceScaleWarning

    df = sample_candles.iloc[-256:]
    base = predictor.forecast(df, pred_len=8, sample_count=16, seed=1)
    small = df.copy()
    small[["open", "high", "low", "close"]] *= unit
    with pytest.warns(PriceScaleWarning, match="open, high, low, close vary by less than"):
        scaled = predictor.forecast(small, pred_len=8, sample_count=16, seed=1)
    assert scaled.rescaled == ("open", "high", "low", "close") and base.rescaled == ()
    np.testing.assert_allclose(scaled.prob_up, base.prob_up, atol=1 / 16)
    np.testing.assert_allclose(scaled.paths[:, :, :4] / unit, base.paths[:, :, :4], rtol=2e-3)
    assert (scaled.paths[:, :, :4] > 0).all()


def test_ordinary_prices_keep_the_published_arithmetic(predictor, sample_candles):
    import warnings as w

    with w.catch_warnings():
        w.simplefilter("error")
        f = predictor.forecast(sample_candles.iloc[-256:], pred_len=4, sample_count=2, seed=1)
    assert f.rescaled == ()
