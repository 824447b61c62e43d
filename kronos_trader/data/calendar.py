"""Trading calendars: when the bars after a window will be stamped.

`future_stamps` is the one function every forecast (service, CLI, web, evaluation,
backtest, live) gets its future stamps from. `data.calendar` chooses the rule:

* ``auto`` (default): sessions inferred from the window itself (the weekdays and times of
  day that occur; see :mod:`kronos.stamps`), so 24/7 crypto stays continuous, FX skips
  its weekend and an A-share session keeps its lunch break;
* ``24/7``: every bar interval, no closures;
* an exchange code such as ``XNYS``, ``XLON`` or ``XSHG``: that exchange's sessions,
  holidays and breaks from the `exchange-calendars` package (bar stamps must be UTC
  bar open times, which is what the data loader produces).
"""
from __future__ import annotations

from functools import lru_cache

import pandas as pd

from kronos.stamps import Sessions, as_stamps, bar_interval
from kronos.stamps import future_stamps as inferred_future_stamps

from .errors import CandleDataError

__all__ = ["AUTO", "CONTINUOUS", "check_calendar", "future_stamps", "bars_per_year", "session_gaps"]

AUTO, CONTINUOUS = "auto", "24/7"
DAY = pd.Timedelta(days=1)


def check_calendar(name: str) -> str:
    """`name` if it is auto, 24/7 or an exchange-calendars code; else a one-line error."""
    if name in (AUTO, CONTINUOUS):
        return name
    names = _exchange_names()
    if name not in names:
        raise ValueError(f"unknown calendar {name!r}: use auto, 24/7 or an exchange code such as XNYS, XLON, "
                         f"XSHG ({len(names)} known to exchange-calendars)")
    return name


def future_stamps(history, steps: int, calendar: str = AUTO, interval: pd.Timedelta | None = None
                  ) -> pd.DatetimeIndex:
    """Stamps (tz-naive UTC, ns) of the `steps` bars after `history` under `calendar`."""
    index = as_stamps(history)
    step = bar_interval(index) if interval is None else pd.Timedelta(interval)
    if calendar == AUTO:
        return inferred_future_stamps(index, steps, step)
    if calendar == CONTINUOUS:
        return pd.DatetimeIndex(index[-1] + step * pd.RangeIndex(1, steps + 1)).as_unit("ns")
    return _exchange_future(check_calendar(calendar), index[-1], step, steps)


def bars_per_year(stamps, calendar: str = AUTO) -> float:
    """Bars in a year of this series, for annualising: about 252 a year for daily stock
    bars, 365 for daily crypto, 52 x 120 for hourly FX. `auto` counts the bars the series
    has per year of its span; an exchange counts its sessions times the bars per session."""
    index = as_stamps(stamps)
    step = bar_interval(index)
    year, week = pd.Timedelta(days=365.25), pd.Timedelta(days=7)
    if calendar == CONTINUOUS or len(index) < 3 or (calendar == AUTO and Sessions.infer(index, step).continuous):
        return year / step
    span = index[-1] - index[0] + step
    if step < week and span >= 2 * week:
        span = week * round(span / week)  # whole weeks: a trailing weekend is part of the span
    years = span / year
    if calendar == AUTO:
        return len(index) / years
    days = pd.DatetimeIndex(index.normalize().unique())
    cal = _exchange(check_calendar(calendar), days[0].year - 1, days[-1].year + 1)
    sessions = len(cal.sessions_in_range(days[0], days[-1]))
    per_session = len(index) / len(days) if step < DAY else 1 / max(1, round(step / DAY))
    return sessions * per_session / years


def session_gaps(candles, interval: pd.Timedelta | None = None) -> dict[str, int]:
    """Holes in a series, its market's closures left out: {"gaps", "missing_bars",
    "closures"}. The sessions are inferred from the series (as `auto` does), so an FX
    weekend or a stock's night is a closure, and only bars those sessions expected are missing.
    Under two weeks of bars every hole counts as a gap."""
    from .bars import find_gaps

    index = as_stamps(candles.index if hasattr(candles, "index") else candles)
    step = bar_interval(index) if interval is None else pd.Timedelta(interval)
    holes = find_gaps(pd.DataFrame(index=index), step)
    # under two weeks a hole cannot be told from a closure (no second week shows the slot
    # trading): every hole is a gap then
    spans_two_weeks = len(index) > 1 and index[-1] - index[0] >= 2 * pd.Timedelta(days=7)
    sessions = Sessions.infer(index, step) if spans_two_weeks else Sessions(step, None)
    gaps = missing = closures = 0
    for row in holes.itertuples(index=False):
        expected = int((sessions.after(row.after, int(row.missing_bars) + 1) < row.before).sum())
        if expected:
            gaps, missing = gaps + 1, missing + expected
        else:
            closures += 1
    return {"gaps": gaps, "missing_bars": missing, "closures": closures}


# --- exchange calendars ---------------------------------------------------------------
@lru_cache(maxsize=1)
def _exchange_names() -> frozenset[str]:
    import exchange_calendars as xc

    return frozenset(xc.get_calendar_names(include_aliases=True))


@lru_cache(maxsize=32)
def _exchange(name: str, first_year: int, last_year: int):
    import exchange_calendars as xc

    try:
        return xc.get_calendar(name, start=f"{first_year}-01-01", end=f"{last_year}-12-31")
    except ValueError as exc:  # e.g. a start before the exchange's first session
        raise CandleDataError(f"calendar {name}: {str(exc).splitlines()[0]}") from None


def _exchange_future(name: str, last: pd.Timestamp, step: pd.Timedelta, steps: int) -> pd.DatetimeIndex:
    """The next `steps` bar open times of `name`'s sessions after `last`."""
    utc = pd.Timestamp(last).tz_localize("UTC")
    reach = max(pd.Timedelta(days=30), step * steps * 5)  # sessions are sparser than the clock
    while True:
        cal = _exchange(name, utc.year - 1, (utc + reach).year + 1)
        if step >= DAY:
            if not cal.is_session(utc.normalize().tz_localize(None)):
                raise _outside(name, last, "is not one of its sessions")
            sessions = cal.sessions_in_range(utc.normalize().tz_localize(None) + DAY,
                                             (utc + reach).normalize().tz_localize(None))
            stride = max(1, round(step / DAY))
            stamps = sessions[stride - 1::stride] + (utc.tz_localize(None) - utc.tz_localize(None).normalize())
        else:
            if not cal.is_trading_minute(utc):
                raise _outside(name, last, "falls outside its trading hours")
            start = cal.minute_to_session(utc, direction="previous")
            end = cal.minute_to_session(utc + reach, direction="previous")
            grid = cal.trading_index(start, end, step, intervals=False)
            stamps = grid[grid > utc].tz_convert("UTC").tz_localize(None)
        if len(stamps) >= steps:
            return pd.DatetimeIndex(stamps[:steps]).as_unit("ns")
        reach *= 2


def _outside(name: str, last: pd.Timestamp, what: str) -> CandleDataError:
    return CandleDataError(f"calendar {name}: the last bar {last} (UTC) {what}; check data.calendar and that the "
                           f"timestamps are UTC bar open times")
