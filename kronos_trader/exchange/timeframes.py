"""Candle boundary math shared by the fetcher and the live scheduler.

All timestamps are UTC.  Inputs may be naive (taken as UTC) or tz-aware
(converted); results are tz-naive UTC ``pd.Timestamp`` values, the project's
convention (see ``kronos_trader.data``).  Candles are identified by their OPEN
time.
Alignment follows Binance (and most ccxt exchanges): intraday and day frames are
aligned to the Unix epoch, weekly frames to Monday 00:00 UTC, monthly frames to
the first day of a calendar month.
"""
from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pandas as pd

from .errors import ExchangeConfigError

__all__ = [
    "parse_timeframe",
    "timeframe_to_timedelta",
    "timeframe_to_ms",
    "to_utc_timestamp",
    "to_ms",
    "from_ms",
    "floor_to_timeframe",
    "shift_open",
    "candle_close_time",
    "last_closed_candle_open",
]

_TF_RE = re.compile(r"^\s*(\d+)\s*([smhdwM])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# 1970-01-05 00:00 UTC was a Monday: weekly candles open on Mondays.
_WEEK_ORIGIN_MS = 4 * 86400 * 1000


def parse_timeframe(tf: str) -> tuple[int, str]:
    """``'15m'`` -> ``(15, 'm')``.  Units: s, m, h, d, w, M (month)."""
    match = _TF_RE.match(str(tf))
    if not match or int(match.group(1)) <= 0:
        raise ExchangeConfigError(
            f"invalid timeframe {tf!r}: expected <count><unit> with unit one of s, m, h, d, w, M (e.g. '1m', '4h', '1d')"
        )
    return int(match.group(1)), match.group(2)


def timeframe_to_timedelta(tf: str) -> pd.Timedelta:
    """Fixed length of a timeframe.  Monthly timeframes have no fixed length and
    raise ``ExchangeConfigError``."""
    count, unit = parse_timeframe(tf)
    if unit == "M":
        raise ExchangeConfigError(f"timeframe {tf!r} has no fixed length (months vary); use shift_open()/candle_close_time()")
    return pd.Timedelta(seconds=count * _UNIT_SECONDS[unit])


def timeframe_to_ms(tf: str) -> int:
    return int(timeframe_to_timedelta(tf) / pd.Timedelta(milliseconds=1))


_EPOCH = pd.Timestamp(0)


def to_utc_timestamp(value: pd.Timestamp | datetime | str | int | float) -> pd.Timestamp:
    """Coerce to a tz-naive UTC ``pd.Timestamp`` (ns).  Naive input is taken as
    UTC, aware input is converted; ints/floats are epoch milliseconds."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (_EPOCH + pd.Timedelta(milliseconds=int(value))).as_unit("ns")
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ExchangeConfigError(f"invalid timestamp {value!r}") from exc
    if ts is pd.NaT:
        raise ExchangeConfigError(f"invalid timestamp {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.as_unit("ns")


def to_ms(value: pd.Timestamp | datetime | str | int | float) -> int:
    """Epoch milliseconds of ``value`` (see :func:`to_utc_timestamp`)."""
    return int((to_utc_timestamp(value) - _EPOCH) // pd.Timedelta(milliseconds=1))


def from_ms(ms: int) -> pd.Timestamp:
    """Epoch milliseconds -> tz-naive UTC timestamp."""
    return to_utc_timestamp(int(ms))


def floor_to_timeframe(ts, tf: str) -> pd.Timestamp:
    """Open time of the candle that contains ``ts``."""
    count, unit = parse_timeframe(tf)
    t = to_utc_timestamp(ts)
    if unit == "M":
        months = (t.year - 1970) * 12 + (t.month - 1)
        months -= months % count
        return pd.Timestamp(year=1970 + months // 12, month=months % 12 + 1, day=1).as_unit("ns")
    step = count * _UNIT_SECONDS[unit] * 1000
    origin = _WEEK_ORIGIN_MS if unit == "w" else 0
    ms = to_ms(t)
    return from_ms(ms - (ms - origin) % step)


def shift_open(open_time, tf: str, n: int) -> pd.Timestamp:
    """Open time ``n`` candles after (``n`` < 0: before) ``open_time``."""
    count, unit = parse_timeframe(tf)
    t = to_utc_timestamp(open_time)
    if unit == "M":
        return (t + pd.DateOffset(months=count * n)).as_unit("ns")
    return t + timeframe_to_timedelta(tf) * n


def candle_close_time(open_time, tf: str) -> pd.Timestamp:
    """Instant at which the candle opened at ``open_time`` is complete."""
    return shift_open(open_time, tf, 1)


def last_closed_candle_open(now, tf: str) -> pd.Timestamp:
    """Open time of the most recent candle that is complete at ``now``.

    A candle is complete once ``open + tf <= now``; so at exactly 12:00 the
    11:00 hourly candle is the last closed one, and at 12:59:59 it still is.
    A scheduler that wakes up late only needs ``now``.
    """
    return shift_open(floor_to_timeframe(now, tf), tf, -1)
