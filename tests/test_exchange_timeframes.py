import pandas as pd
import pytest

from kronos_trader.exchange import (
    ExchangeConfigError,
    candle_close_time,
    floor_to_timeframe,
    last_closed_candle_open,
    shift_open,
    timeframe_to_ms,
    timeframe_to_timedelta,
    to_utc_timestamp,
)

def ts(text):
    return pd.Timestamp(text)


@pytest.mark.parametrize(
    "tf, expected",
    [("1s", pd.Timedelta(seconds=1)), ("1m", pd.Timedelta(minutes=1)), ("15m", pd.Timedelta(minutes=15)),
     ("4h", pd.Timedelta(hours=4)), ("1d", pd.Timedelta(days=1)), ("3d", pd.Timedelta(days=3)),
     ("1w", pd.Timedelta(weeks=1))],
)
def test_timeframe_to_timedelta(tf, expected):
    assert timeframe_to_timedelta(tf) == expected
    assert timeframe_to_ms(tf) == int(expected / pd.Timedelta(milliseconds=1))


@pytest.mark.parametrize("bad", ["", "m", "0m", "1x", "1.5h", "-1h", "1 hour"])
def test_timeframe_invalid(bad):
    with pytest.raises(ExchangeConfigError) as err:
        timeframe_to_timedelta(bad)
    assert "\n" not in str(err.value)


def test_month_has_no_fixed_length():
    with pytest.raises(ExchangeConfigError, match="no fixed length"):
        timeframe_to_timedelta("1M")


@pytest.mark.parametrize(
    "now, tf, expected",
    [
        ("2024-01-01 12:00:00", "1h", "2024-01-01 11:00"),  # exactly on the boundary: 11:00 just closed
        ("2024-01-01 11:59:59.999", "1h", "2024-01-01 10:00"),  # 1 ms earlier: 11:00 still forming
        ("2024-01-01 12:59:59", "1h", "2024-01-01 11:00"),  # late run still sees only "now"
        ("2024-01-01 12:00:30", "1m", "2024-01-01 11:59"),
        ("2024-01-01 12:07:00", "5m", "2024-01-01 12:00"),
        ("2024-01-01 12:10:00", "5m", "2024-01-01 12:05"),
        ("2024-01-02 03:00:00", "4h", "2024-01-01 20:00"),
        ("2024-01-02 00:00:00", "1d", "2024-01-01"),
        ("2024-01-03 12:00:00", "1w", "2023-12-25"),  # weeks open on Monday (2024-01-01 was one)
        ("2024-01-08 00:00:00", "1w", "2024-01-01"),
        ("2024-03-15 08:00:00", "1M", "2024-02-01"),
        ("2024-01-01 00:00:00", "1M", "2023-12-01"),
    ],
)
def test_last_closed_candle_open(now, tf, expected):
    assert last_closed_candle_open(ts(now), tf) == ts(expected)


def test_three_day_candles_are_epoch_aligned():
    # Binance aligns 3d candles to the Unix epoch
    open_ = floor_to_timeframe(ts("2024-01-01 05:00"), "3d")
    assert (open_ - ts("1970-01-01")) % pd.Timedelta(days=3) == pd.Timedelta(0)
    assert open_ <= ts("2024-01-01 05:00") < open_ + pd.Timedelta(days=3)


def test_results_are_naive_utc_and_aware_inputs_are_converted():
    out = last_closed_candle_open(pd.Timestamp("2024-01-01 12:00:30"), "1m")
    assert out == ts("2024-01-01 11:59") and out.tz is None and out.unit == "ns"
    other_tz = pd.Timestamp("2024-01-01 13:00:30", tz="Europe/Berlin")
    assert last_closed_candle_open(other_tz, "1m") == ts("2024-01-01 11:59")
    assert last_closed_candle_open(pd.Timestamp("2024-01-01 12:00:30", tz="UTC"), "1m") == ts("2024-01-01 11:59")
    assert to_utc_timestamp(1704110400000) == ts("2024-01-01 12:00")
    assert last_closed_candle_open(ts("2024-03-15"), "1M").tz is None
    with pytest.raises(ExchangeConfigError):
        to_utc_timestamp("not a time")


def test_shift_and_close_time():
    assert shift_open(ts("2024-01-31"), "1M", 1) == ts("2024-02-29")
    assert candle_close_time(ts("2024-02-01"), "1M") == ts("2024-03-01")
    assert candle_close_time(ts("2024-01-01 11:00"), "1h") == ts("2024-01-01 12:00")
    assert shift_open(ts("2024-01-01 11:00"), "15m", -4) == ts("2024-01-01 10:00")
