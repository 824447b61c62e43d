"""The SYNTHETIC market generator and the bundled (synthetic) sample file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_trader.data import (
    CANONICAL_COLUMNS,
    SAMPLE_DATA_PATH,
    assert_no_gaps,
    generate_market,
    infer_bar_interval,
    load_candles,
    validate_candles,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    """About a year of hourly bars: enough for stable stylised-fact statistics."""
    return generate_market(24 * 365, interval="1h", seed=11)


@pytest.fixture(scope="module")
def log_returns(hourly) -> pd.Series:
    return np.log(hourly["close"]).diff().dropna()


def test_same_seed_same_frame_other_seed_differs():
    a = generate_market(500, seed=5)
    pd.testing.assert_frame_equal(a, generate_market(500, seed=5))
    assert not np.allclose(a["close"], generate_market(500, seed=6)["close"])


def test_start_and_start_price():
    frame = generate_market(3, start="2024-03-01 12:00", start_price=123.0)
    assert frame.index[0] == pd.Timestamp("2024-03-01 12:00")
    assert frame["open"].iloc[0] == 123.0
    aware = generate_market(2, start=pd.Timestamp("2024-03-01 13:00", tz="Europe/Berlin"))
    assert aware.index[0] == pd.Timestamp("2024-03-01 12:00")


@pytest.mark.parametrize("interval", ["1min", "5min", "15min", "1h", "4h", "1D"])
def test_canonical_and_ohlc_consistent(interval):
    frame = generate_market(2000, interval=interval, seed=1)
    assert list(frame.columns) == list(CANONICAL_COLUMNS)
    assert frame.index.name == "timestamp" and frame.index.tz is None
    assert infer_bar_interval(frame) == pd.Timedelta(interval)
    assert_no_gaps(frame, interval)
    o, h, low, c = (frame[col].to_numpy() for col in ("open", "high", "low", "close"))
    assert (low > 0).all()
    assert (h >= np.maximum(o, c)).all() and (low <= np.minimum(o, c)).all()
    assert (o[1:] == c[:-1]).all()
    assert (frame["volume"] > 0).all()
    typical = frame[["open", "high", "low", "close"]].mean(axis=1)
    np.testing.assert_allclose(frame["amount"], frame["volume"] * typical, rtol=1e-12)
    pd.testing.assert_frame_equal(validate_candles(frame), frame)


def test_hourly_volatility_is_crypto_like(log_returns):
    assert 0.005 <= log_returns.std() <= 0.01


def test_volatility_clustering(log_returns):
    squared = log_returns**2
    lags = [squared.autocorr(lag) for lag in range(1, 11)]
    assert lags[0] > 0.1
    assert np.mean(lags) > 0.05
    shuffled = pd.Series(np.random.default_rng(0).permutation(squared.to_numpy()))
    assert abs(shuffled.autocorr(1)) < 0.05  # the structure is in the ordering


def test_fat_tails(log_returns):
    assert log_returns.kurt() > 1  # pandas kurt() is excess kurtosis


def test_volume_seasonality_by_hour_and_weekday(hourly):
    by_hour = hourly["volume"].groupby(hourly.index.hour).mean()
    assert by_hour.loc[13:17].mean() > 1.5 * by_hour.loc[2:6].mean()
    by_day = hourly["volume"].groupby(hourly.index.day_of_week).mean()
    assert by_day.loc[5:6].mean() < 0.9 * by_day.loc[0:4].mean()


def test_volume_follows_shock_size(hourly, log_returns):
    assert np.corrcoef(hourly["volume"].iloc[1:], log_returns.abs())[0, 1] > 0.2


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_bars"):
        generate_market(0)
    with pytest.raises(ValueError, match="interval"):
        generate_market(10, interval="soon")
    with pytest.raises(ValueError, match="GARCH"):
        generate_market(10, garch_alpha=0.5, garch_beta=0.6)


# --------------------------------------------------------------------------- bundled sample


def test_sample_file_loads_and_validates():
    assert SAMPLE_DATA_PATH.is_file()
    assert (
        SAMPLE_DATA_PATH.read_text(encoding="utf-8").splitlines()[0]
        == "timestamp,open,high,low,close,volume,amount"
    )
    frame = load_candles(SAMPLE_DATA_PATH)
    assert len(frame) == 17_520
    assert infer_bar_interval(frame) == pd.Timedelta("1h")
    assert_no_gaps(frame, "1h", str(SAMPLE_DATA_PATH))
    assert frame.index[0] == pd.Timestamp("2023-01-01")


def test_sample_file_matches_generator_script():
    spec = importlib.util.spec_from_file_location(
        "make_sample_data", REPO / "scripts" / "make_sample_data.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.build_sample()
    pd.testing.assert_frame_equal(load_candles(SAMPLE_DATA_PATH), expected, rtol=1e-6)
