"""Bar timestamps: one clock, the bar interval, the sessions a series trades in, and the
stamps of the bars that come next.

The model reads calendar features (minute, hour, weekday, day, month) of every bar, so the
future bars must carry the stamps the market will really give them: not 3.6 s apart because
a datetime64[us] index was read as nanoseconds, and not on a Saturday for a series that
never trades on Saturdays.

Every stamp is normalised once to tz-naive UTC nanoseconds (aware stamps are converted to
UTC). Sessions are inferred from the history alone (which weekdays and times of day occur),
so the same window always gets the same future stamps, whatever data surrounds it:

* all spacings equal the bar interval: continuous (24/7 crypto, or too little history to
  see a closure);
* otherwise a weekly grid of bar slots (weekday x time of day; daily bars: weekdays, at the
  last bar's time of day). A slot the history's span passed through is open when a bar
  occurred in it (FX: Sunday 22:00 to Friday 21:00 UTC); a slot it never reached is open
  when its weekday and its time of day both occur (a session with a lunch break keeps the
  break, whatever day the window starts);
* weekly and longer bars: pandas' inferred calendar offset (month starts, ...) or the
  interval itself.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["as_stamps", "epoch_unit", "bar_interval", "Sessions", "future_stamps"]

DAY = 86_400 * 10**9  # nanoseconds
WEEK = 7 * DAY
_MONDAY = pd.Timestamp("1970-01-05").value  # a Monday 00:00, the origin of week offsets


# Epoch numbers are read in the one unit that puts every value between these dates.
PLAUSIBLE = (pd.Timestamp("1971-01-01"), pd.Timestamp("2200-01-01"))
_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def epoch_unit(values) -> str:
    """The unit (s, ms, us, ns) of epoch numbers, from their magnitude: the one that puts
    all of them between 1971 and 2200 (the ranges of the units do not overlap). Numbers
    that fit no unit are ambiguous (bar numbers, a mix of units): a one-line error."""
    numbers = np.asarray(values, dtype=np.float64)
    if numbers.size == 0:
        return "s"
    low, high = float(np.nanmin(numbers)), float(np.nanmax(numbers))
    lo_ns, hi_ns = (float(t.value) for t in PLAUSIBLE)
    for unit, scale in _UNITS.items():
        if lo_ns <= low * scale and high * scale < hi_ns:
            return unit
    raise ValueError(f"epoch timestamps from {low:.12g} to {high:.12g} are ambiguous: no unit (s, ms, us, ns) "
                     f"puts them all between {PLAUSIBLE[0].year} and {PLAUSIBLE[1].year}; give ISO 8601 text")


def as_stamps(stamps) -> pd.DatetimeIndex:
    """Any datetime input (any datetime64 unit, tz-aware or naive; integer epochs by
    magnitude) as tz-naive UTC datetime64[ns]: the one internal clock."""
    values = getattr(stamps, "dtype", None)
    if values is not None and values.kind in "iuf":
        numbers = np.asarray(stamps)
        stamps = pd.to_datetime(numbers, unit=epoch_unit(numbers))
    index = pd.DatetimeIndex(stamps)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ns")


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    return as_stamps(index).asi8


def bar_interval(stamps) -> pd.Timedelta:
    """The most common spacing between consecutive bars (robust to gaps, weekends and a
    few odd bars; the smallest one on a tie)."""
    ns = _ns(stamps)
    if len(ns) < 2:
        raise ValueError(f"need at least 2 bars to infer the bar interval, got {len(ns)}")
    steps = np.diff(ns)
    if (steps <= 0).any():
        raise ValueError("cannot infer the bar interval: timestamps are not strictly increasing")
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")


class Sessions:
    """When a series trades: bar slots within a week (ns offsets from Monday 00:00), or
    continuous. `after(last, steps)` gives the next `steps` bar stamps."""

    def __init__(self, interval: pd.Timedelta, slots: np.ndarray | None, time_of_day: int | None = None):
        self.interval = pd.Timedelta(interval)
        self.slots = None if slots is None else np.unique(np.asarray(slots, dtype=np.int64))
        self.time_of_day = time_of_day  # daily bars: slots are weekdays, stamped at this time

    @property
    def continuous(self) -> bool:
        return self.slots is None

    @classmethod
    def infer(cls, history, interval: pd.Timedelta | None = None) -> "Sessions":
        ns = _ns(history)
        step = int((bar_interval(history) if interval is None else pd.Timedelta(interval)).value)
        interval = pd.Timedelta(step, unit="ns")
        if len(ns) < 3 or step >= WEEK or (np.diff(ns) == step).all():
            return cls(interval, None)
        offset = (ns - _MONDAY) % WEEK
        daily = step >= DAY
        tod = np.zeros(1, dtype=np.int64) if daily else np.unique(offset % DAY)
        seen = np.unique(offset - offset % DAY) if daily else np.unique(offset)
        weekdays = np.unique(offset // DAY)
        # every slot of the week at an observed time of day; a slot the history's span passed
        # through is open when a bar occurred in it, one it never reached when its weekday
        # and time of day both occur
        slots = (np.arange(7, dtype=np.int64)[:, None] * DAY + tod[None, :]).ravel()
        covered = (slots - offset[0]) % WEEK <= ns[-1] - ns[0]
        open_ = np.where(covered, np.isin(slots, seen), np.isin(slots // DAY, weekdays))
        per_day = 1 if daily else (DAY // step if DAY % step == 0 else 0)
        if open_.all() and len(tod) == per_day and len(np.unique(tod % min(step, DAY))) == 1:
            return cls(interval, None)  # every slot of the week trades: 24/7
        return cls(interval, slots[open_], int(offset[-1] % DAY) if daily else None)

    def after(self, last: pd.Timestamp, steps: int) -> pd.DatetimeIndex:
        last_ns = int(as_stamps([last]).asi8[0])
        step = int(self.interval.value)
        if self.continuous:
            return pd.DatetimeIndex(last_ns + step * np.arange(1, steps + 1, dtype=np.int64)).as_unit("ns")
        slots = self.slots if self.time_of_day is None else self.slots + self.time_of_day
        week_start = last_ns - (last_ns - _MONDAY) % WEEK
        weeks = steps // len(slots) + 2
        grid = (week_start + WEEK * np.arange(weeks, dtype=np.int64)[:, None] + slots[None, :]).ravel()
        grid = grid[grid > last_ns][:steps]
        return pd.DatetimeIndex(grid).as_unit("ns")


def future_stamps(history, steps: int, interval: pd.Timedelta | None = None) -> pd.DatetimeIndex:
    """Stamps of the next `steps` bars after `history`, following its inferred sessions
    (see the module docstring). `interval` defaults to the most common spacing."""
    index = as_stamps(history)
    if len(index) < 2:
        raise ValueError("y_timestamp is needed when the history has fewer than 2 stamps")
    step = bar_interval(index) if interval is None else pd.Timedelta(interval)
    if step >= pd.Timedelta(days=7) and len(index) >= 3:
        offset = pd.DatetimeIndex(index[-min(len(index), 200):], freq="infer").freq
        if offset is not None:
            return pd.date_range(index[-1] + offset, periods=steps, freq=offset).as_unit("ns")
    return Sessions.infer(index, step).after(index[-1], steps)
