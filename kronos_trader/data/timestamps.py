"""Turn whatever a user's time column holds into naive-UTC bar open times.

Exports carry ISO text (with or without offsets), epoch numbers (s, ms, us or ns,
told apart by magnitude; numbers that fit no unit are refused), or real datetimes of
any datetime64 unit. Kronos and the backtester need one
unambiguous clock, so everything becomes a tz-naive UTC ``DatetimeIndex``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from pandas.api.types import (
    infer_dtype,
    is_bool_dtype,
    is_datetime64_any_dtype,
    is_numeric_dtype,
)

from kronos.stamps import as_stamps, epoch_unit

from .errors import CandleDataError
from .schema import INDEX_NAME

__all__ = ["parse_timestamps", "epoch_unit", "is_missing"]

Where = Callable[[int], str]

_EXPECTED = "expected ISO 8601 text or epoch seconds/milliseconds"


def parse_timestamps(
    values: pd.Series | pd.Index,
    *,
    source: str,
    where: Where,
    column: str,
) -> pd.DatetimeIndex:
    """Parse a time column; any unreadable or missing stamp is a one-line error.

    Naive text/datetimes are taken to be UTC already; aware ones are converted.
    """
    series = pd.Series(values).reset_index(drop=True)
    fail = _Fail(source=source, where=where, column=column)

    if is_datetime64_any_dtype(series.dtype):
        parsed = series
    elif is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype):
        parsed = _from_epoch(series, fail)
    elif infer_dtype(series, skipna=True) in ("string", "empty"):
        parsed = _from_text(series, fail)
    else:
        parsed = _coerce(lambda: pd.to_datetime(series, utc=True, errors="coerce"), fail)
        _reject_unparsed(series, parsed, fail)

    fail.if_any(parsed.isna().to_numpy(), "missing timestamp")
    _reject_out_of_range(parsed, fail)
    return as_stamps(parsed).rename(INDEX_NAME)


def _reject_out_of_range(parsed: pd.Series, fail: _Fail) -> None:
    """Stamps are nanoseconds (pandas' range, 1677..2262): a year 2300 is an error at its row."""
    low, high = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
    try:
        bad = ((parsed < low) | (parsed > high)).to_numpy(dtype=bool)
    except TypeError:  # naive stamps
        bad = ((parsed < low.tz_localize(None)) | (parsed > high.tz_localize(None))).to_numpy(dtype=bool)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise fail.at(pos, f"timestamp {parsed.iloc[pos]} outside the supported range "
                           f"{low:%Y-%m-%d} .. {high:%Y-%m-%d}")


class _Fail:
    """Raises the error for the first offending position of a check."""

    def __init__(self, *, source: str, where: Where, column: str) -> None:
        self.source, self.where, self.column = source, where, column

    def at(self, pos: int | None, problem: str) -> CandleDataError:
        row = self.where(pos) if pos is not None else None
        return CandleDataError(problem, source=self.source, row=row, column=self.column)

    def if_any(self, bad: np.ndarray, problem: str) -> None:
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise self.at(pos, problem)


def is_missing(value: object) -> bool:
    """None, NaN, NaT or pd.NA (but not text, which callers judge themselves)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _from_text(series: pd.Series, fail: _Fail) -> pd.Series:
    """Text holds either epoch numbers or ISO stamps; the first value decides which."""
    stripped = series.astype(object).str.strip()
    present = (stripped.notna() & (stripped != "")).to_numpy(dtype=bool)
    if not present.any():
        raise fail.at(0, "timestamp column is empty")
    text = stripped.where(present, None)
    numeric = pd.to_numeric(text, errors="coerce")
    first = int(np.flatnonzero(present)[0])
    if not pd.isna(numeric.iloc[first]):
        bad = present & numeric.isna().to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise fail.at(pos, f"cannot read timestamp {text.iloc[pos]!r}; column holds epoch numbers")
        return _from_epoch(numeric, fail)
    parsed = _coerce(lambda: pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce"), fail)
    _reject_unparsed(text, parsed, fail)
    return parsed


def _from_epoch(numbers: pd.Series, fail: _Fail) -> pd.Series:
    """Epoch numbers in s/ms/us/ns, detected by magnitude (all rows share one unit)."""
    values = numbers.to_numpy(dtype=float, na_value=np.nan)
    fail.if_any(np.isnan(values), "missing timestamp")
    fail.if_any(np.isinf(values), "timestamp is infinite")
    try:
        unit = epoch_unit(values)
    except ValueError as exc:
        raise fail.at(None, str(exc)) from None
    raw = numbers if numbers.dtype.kind in "iu" else values
    return _coerce(lambda: pd.Series(pd.to_datetime(raw, unit=unit, utc=True)), fail)


def _reject_unparsed(original: pd.Series, parsed: pd.Series, fail: _Fail) -> None:
    bad = (parsed.isna() & original.notna()).to_numpy(dtype=bool)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise fail.at(pos, f"cannot read timestamp {original.iloc[pos]!r}; {_EXPECTED}")


def _coerce(parse: Callable[[], pd.Series], fail: _Fail) -> pd.Series:
    """Run a pandas parse, turning its whole-column failures into one line."""
    try:
        return pd.Series(parse()).reset_index(drop=True)
    except (ValueError, OverflowError, TypeError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise fail.at(None, f"cannot read timestamps ({exc}); {_EXPECTED}") from exc
