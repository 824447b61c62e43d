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
