"""Bar spacing: infer the interval, find missing bars, and resample.

Kronos forecasts the *next* bars, so the data must be evenly spaced; a silent
hole (exchange outage, partial export) shifts every later bar. These helpers
make the spacing explicit and reportable.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pandas as pd

from kronos.stamps import bar_interval

from .errors import CandleDataError
from .schema import CANONICAL_COLUMNS, INDEX_NAME
from .validation import validate_candles

__all__ = ["infer_bar_interval", "find_gaps", "assert_no_gaps", "resample_candles", "parse_interval"]

IntervalLike: TypeAlias = str | pd.Timedelta


def infer_bar_interval(index: pd.DatetimeIndex | pd.DataFrame) -> pd.Timedelta:
    """The most common spacing between bars (weekends, gaps and odd bars do not move it;
    any datetime64 unit)."""
    if isinstance(index, pd.DataFrame):
        index = index.index
    try:
        return bar_interval(index)
    except ValueError as exc:
        raise CandleDataError(str(exc)) from None


def find_gaps(df: pd.DataFrame, interval: IntervalLike | None = None) -> pd.DataFrame:
    """One row per run of missing bars: first/last missing open time and the count.

    ``interval`` defaults to :func:`infer_bar_interval`. A spacing that is not a
    whole multiple of the interval counts the bars that would fit.
    """
    step = parse_interval(interval) if interval is not None else infer_bar_interval(df.index)
    stamps = pd.DatetimeIndex(df.index).as_unit("ns")
    diffs = np.diff(stamps.asi8)
    at = np.flatnonzero(diffs > step.value)
    missing = np.ceil(diffs[at] / step.value).astype(np.int64) - 1
    starts = stamps[at] + step
    return pd.DataFrame(
        {
            "gap_start": starts,
            "gap_end": starts + pd.to_timedelta((missing - 1) * step.value, unit="ns"),
            "missing_bars": missing,
            "after": stamps[at],
            "before": stamps[at + 1],
        }
    )


def assert_no_gaps(df: pd.DataFrame, interval: IntervalLike | None = None, source: str = "<frame>") -> None:
    """Raise a one-line error naming the first gap (and how many there are)."""
    step = parse_interval(interval) if interval is not None else infer_bar_interval(df.index)
    gaps = find_gaps(df, step)
    if gaps.empty:
        return
    first = gaps.iloc[0]
    more = f"; {len(gaps)} gaps in total" if len(gaps) > 1 else ""
    raise CandleDataError(
        f"{int(first.missing_bars)} missing {_label(step)} bar(s) from {first.gap_start} to "
        f"{first.gap_end} (between {first.after} and {first.before}){more}",
        source=source,
        column=INDEX_NAME,
    )


def resample_candles(df: pd.DataFrame, rule: IntervalLike) -> pd.DataFrame:
    """Aggregate to a coarser bar (labelled by open time); empty bars are dropped."""
    frame = validate_candles(df)
    try:
        grouped = frame.resample(rule, label="left", closed="left")
    except (ValueError, TypeError) as exc:
        raise CandleDataError(f"invalid resample rule {rule!r} ({exc})") from exc
    out = grouped.agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "amount": "sum"}
    )
    out = out[grouped.size().to_numpy() > 0]
    out.index = pd.DatetimeIndex(out.index).as_unit("ns").rename(INDEX_NAME)
    return out[list(CANONICAL_COLUMNS)].astype(np.float64)


def parse_interval(interval: IntervalLike) -> pd.Timedelta:
    """Accept '1h', '15min', '1D' or a Timedelta; it must be a positive fixed length."""
    try:
        step = pd.Timedelta(interval)
    except (ValueError, TypeError):
        try:
            step = pd.Timedelta(pd.tseries.frequencies.to_offset(interval))
        except (ValueError, TypeError) as exc:
            raise CandleDataError(f"invalid bar interval {interval!r}; use e.g. '1h', '15min', '1D'") from exc
    if step <= pd.Timedelta(0):
        raise CandleDataError(f"bar interval must be positive, got {interval!r}")
    return step


def _label(step: pd.Timedelta) -> str:
    """Compact interval text such as '1h' or '15min' for messages."""
    for unit, size in (
        ("D", pd.Timedelta(days=1)),
        ("h", pd.Timedelta(hours=1)),
        ("min", pd.Timedelta(minutes=1)),
    ):
        if step % size == pd.Timedelta(0):
            return f"{step // size}{unit}"
    return str(step)
