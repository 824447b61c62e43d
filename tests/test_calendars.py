"""Timestamps and trading calendars on data made here: any datetime unit, epochs by
magnitude, robust bar intervals, FX weekends, a lunch break, exchange calendars, file
names, annualisation and printed digits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from factories import make_candles
from kronos.stamps import Sessions, as_stamps, bar_interval, epoch_unit
from kronos.stamps import future_stamps as inferred_stamps
from kronos_trader.data import CandleDataError, infer_bar_interval, load_candles, validate_candles
from kronos_trader.data.calendar import bars_per_year, check_calendar, future_stamps
from kronos_trader.data.display import format_significant, price_digits
from kronos_trader.data.naming import names_from_filename, series_names


def fx_hours(start: str = "2024-01-07 22:00", end: str = "2024-03-01 21:00") -> pd.DatetimeIndex:
    """Hourly FX bar open times: Sunday 22:00 to Friday 21:00 UTC, closed at the weekend."""
    idx = pd.date_range(start, end, freq="h")
    wd, hr = idx.day_of_week, idx.hour
    closed = (wd == 5) | ((wd == 4) & (hr >= 22)) | ((wd == 6) & (hr < 22))
    return idx[~closed]


def a_share_5min(days: int = 12, start: str = "2024-01-02") -> pd.DatetimeIndex:
    """5-minute A-share bars in UTC: 09:30-11:30 and 13:00-15:00 Shanghai (UTC+8)."""
    out = []
    for d in pd.bdate_range(start, periods=days):
        out += list(pd.date_range(d + pd.Timedelta("01:30:00"), d + pd.Timedelta("03:25:00"), freq="5min"))
        out += list(pd.date_range(d + pd.Timedelta("05:00:00"), d + pd.Timedelta("06:55:00"), freq="5min"))
    return pd.DatetimeIndex(out)


# --- units ------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_every_datetime_unit_gives_the_ns_future_stamps(unit):
    history = pd.date_range("2024-01-01", periods=300, freq="h")
    expected = pd.date_range("2024-01-13 12:00", periods=5, freq="h").as_unit("ns")
    stamps = history.as_unit(unit)
    assert list(inferred_stamps(stamps, 5)) == list(expected)  # not 3.6 s apart for [us]
    assert list(future_stamps(stamps, 5)) == list(expected)
    assert bar_interval(stamps) == pd.Timedelta("1h") and infer_bar_interval(stamps) == pd.Timedelta("1h")


def test_tz_aware_stamps_are_the_same_instants_in_utc():
    naive = pd.date_range("2024-01-01", periods=50, freq="h")
    aware = naive.tz_localize("UTC").tz_convert("America/New_York").as_unit("us")
    assert list(as_stamps(aware)) == list(naive.as_unit("ns"))
    assert list(future_stamps(aware, 3)) == list(future_stamps(naive, 3))


def test_predictor_forecast_is_unit_independent(tiny_model_dir):
    from kronos import KronosPredictor

    predictor = KronosPredictor.from_pretrained(tiny_model_dir, device="cpu")
    frame = make_candles(64, seed=3)
    results = {}
    for unit in ("s", "ms", "us", "ns"):
        df = frame.set_axis(frame.index.as_unit(unit))
        results[unit] = predictor.predict(df, pred_len=4, sample_count=2, verbose=False, seed=1)
    for unit in ("s", "ms", "us"):
        assert list(results[unit].index) == list(results["ns"].index)
        np.testing.assert_array_equal(results[unit].to_numpy(), results["ns"].to_numpy())
    assert results["ns"].index[1] - results["ns"].index[0] == pd.Timedelta("1h")


def test_read_csv_with_parse_dates_gives_hourly_future_stamps(tmp_path):
    frame = make_candles(80)
    frame.to_csv(tmp_path / "x.csv", index_label="timestamp")
    df = pd.read_csv(tmp_path / "x.csv", parse_dates=["timestamp"]).set_index("timestamp")  # [us] in pandas 3
    stamps = future_stamps(df.index, 3)
    assert (np.diff(stamps.asi8) == 3600 * 10**9).all()


# --- epochs -----------------------------------------------------------------------------
@pytest.mark.parametrize("unit, scale", [("s", 1), ("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_epoch_numbers_by_magnitude(tmp_path, unit, scale):
    stamps = pd.date_range("2018-03-01", periods=48, freq="h")
    seconds = stamps.as_unit("s").asi8
    frame = make_candles(48).reset_index(drop=True)
    frame.insert(0, "timestamp", seconds * scale)
    frame.to_csv(tmp_path / "epochs.csv", index=False)
    loaded = load_candles(tmp_path / "epochs.csv")
    assert loaded.index[0] == pd.Timestamp("2018-03-01") and infer_bar_interval(loaded) == pd.Timedelta("1h")
    assert epoch_unit(seconds * scale) == unit
    assert validate_candles(frame).index[0] == pd.Timestamp("2018-03-01")


def test_ambiguous_epoch_numbers_are_a_one_line_error(tmp_path):
    frame = make_candles(10).reset_index(drop=True)
    frame.insert(0, "timestamp", np.arange(10))  # bar numbers, not times
    frame.to_csv(tmp_path / "numbers.csv", index=False)
    with pytest.raises(CandleDataError, match="ambiguous") as err:
        load_candles(tmp_path / "numbers.csv")
    assert "\n" not in str(err.value) and "numbers.csv" in str(err.value)


# --- bar interval -----------------------------------------------------------------------
def test_bar_interval_is_the_most_common_spacing():
    fx = fx_hours()
    assert bar_interval(fx) == pd.Timedelta("1h")
    daily = pd.bdate_range("2024-01-01", periods=40)  # 1 day x 4, then 3 days over each weekend
    assert bar_interval(daily) == pd.Timedelta("1D")
    odd = pd.DatetimeIndex([pd.Timestamp("2024-01-01 00:00:30"), *pd.date_range("2024-01-01 01:00", periods=20,
                                                                                  freq="h")])
    assert bar_interval(odd) == pd.Timedelta("1h")  # not the first spacing


# --- inferred sessions -------------------------------------------------------------------
def test_fx_forecast_on_friday_skips_the_weekend():
    fx = fx_hours()
    friday = fx[fx <= pd.Timestamp("2024-02-16 12:00")]
    stamps = future_stamps(friday[-256:], 120)
    real = fx[fx > friday[-1]][:120]
    assert list(stamps) == list(real)  # none of the 120 fall on the weekend
    assert not ((stamps.day_of_week == 5).any())


def test_a_share_session_keeps_its_lunch_break():
    bars = a_share_5min()
    history = bars[:-40][-256:]
    stamps = future_stamps(history, 60)
    assert list(stamps) == list(bars[len(bars) - 40:][:40]) + list(stamps[40:])
    local = (stamps + pd.Timedelta("8h")).time
    assert all(not (pd.Timestamp("11:30").time() <= t < pd.Timestamp("13:00").time()) for t in local)
    assert list(future_stamps(history, 60, "XSHG")) == list(stamps)


def test_crypto_stays_continuous_and_daily_stocks_skip_weekends():
    crypto = pd.date_range("2024-01-01", periods=500, freq="h")
    assert Sessions.infer(crypto).continuous
    assert list(future_stamps(crypto, 3)) == list(pd.date_range(crypto[-1] + pd.Timedelta("1h"), periods=3,
                                                                 freq="h"))
    stocks = pd.bdate_range("2024-01-01", "2024-06-28")  # ends on a Friday
    assert list(future_stamps(stocks, 2)) == [pd.Timestamp("2024-07-01"), pd.Timestamp("2024-07-02")]
    assert list(future_stamps(stocks, 2, "24/7")) == [pd.Timestamp("2024-06-29"), pd.Timestamp("2024-06-30")]


def test_exchange_calendar_knows_holidays():
    history = pd.bdate_range("2024-11-01", "2024-12-24")
    stamps = future_stamps(history, 3, "XNYS")  # 25 Dec is a NYSE holiday
    assert list(stamps) == [pd.Timestamp("2024-12-26"), pd.Timestamp("2024-12-27"), pd.Timestamp("2024-12-30")]
    with pytest.raises(CandleDataError, match="outside its trading hours"):
        future_stamps(pd.date_range("2024-01-06", periods=5, freq="h"), 3, "XNYS")  # a Saturday
    with pytest.raises(ValueError, match="unknown calendar"):
        check_calendar("NOPE")


def test_config_names_the_calendar():
    from kronos_trader.config import ConfigError, parse_settings

    assert parse_settings({"data": {"calendar": "XSHG"}}).data.calendar == "XSHG"
    assert parse_settings({}).data.calendar == "auto"
    with pytest.raises(ConfigError, match="data.calendar: unknown calendar"):
        parse_settings({"data": {"calendar": "XXXX"}})


# --- names, annualisation, digits ---------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("BTC_USDT-1h.csv", ("BTC/USDT", "1h")), ("BTCUSDT-1h.csv", ("BTC/USDT", "1h")),
    ("ETH-USD_5m.parquet", ("ETH/USD", "5m")), ("EURUSD_15min.csv", ("EUR/USD", "15m")),
    ("AAPL-1d.csv", ("AAPL", "1d")), ("prices.csv", None)])
def test_symbol_and_timeframe_from_file_names(name, expected):
    assert names_from_filename(name) == expected


def test_unnamed_file_gets_a_neutral_name_and_its_interval():
    frame = make_candles(50, freq="5min")
    assert series_names("data/prices.csv", frame) == ("prices", "5m")
    assert series_names("data/prices.csv", frame, "EUR/USD", "1h") == ("EUR/USD", "1h")


def test_bars_per_year_follow_the_calendar():
    assert bars_per_year(pd.bdate_range("2020-01-01", "2023-12-29")) == pytest.approx(261, abs=1)
    assert bars_per_year(pd.bdate_range("2020-01-02", "2023-12-29"), "XNYS") == pytest.approx(252, abs=1)
    assert bars_per_year(pd.date_range("2020-01-01", "2023-12-31")) == pytest.approx(365.25, abs=0.5)
    assert bars_per_year(fx_hours()) == pytest.approx(120 * 52.18, rel=0.02)


def test_sharpe_uses_the_datas_bars_per_year():
    from kronos_trader.backtest.metrics import performance

    days = pd.bdate_range("2021-01-01", periods=500)
    equity = pd.Series(np.exp(np.cumsum(np.random.default_rng(0).normal(0.0005, 0.01, 500))), index=days)
    clock = performance(equity, pd.Timedelta("1D"))["sharpe"]
    sessions = performance(equity, pd.Timedelta("1D"), bars_per_year(days))["sharpe"]
    assert clock / sessions == pytest.approx(np.sqrt(365.25 / bars_per_year(days)))


def test_prices_and_errors_keep_their_digits():
    assert price_digits([1.23456]) == 5 and price_digits([65000.0]) == 2 and price_digits([0.000123]) >= 8
    assert format_significant(0.00042137) == "0.0004214" and format_significant(523.456) == "523.5"
    assert f"{1.23456:,.{price_digits([1.23456])}f}" == "1.23456"
