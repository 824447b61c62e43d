"""Check any candle table and turn it into the canonical candle frame.

The same rules apply to files and to DataFrames users hand in, so a bad bar is
caught before it silently skews a forecast or a backtest. Each failure names
the first offending row so it can be fixed in the source.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from .errors import CandleDataError
from .schema import (
    CANONICAL_COLUMNS,
    INDEX_NAME,
    PRICE_COLUMNS,
    TIME_ALIASES,
    map_columns,
    normalise_name,
)
from .timestamps import is_missing, parse_timestamps

__all__ = ["validate_candles", "check_frame"]

# Cell text that means "no value" rather than "not a number".
_NAN_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})


def validate_candles(df: pd.DataFrame, source: str = "<frame>") -> pd.DataFrame:
    """Validate a user frame and return the canonical candle frame.

    Canonical: tz-naive UTC ``DatetimeIndex`` named ``timestamp`` (bar open
    time), float64 columns ``open, high, low, close, volume, amount``. Rows are
    reported 1-based by position. Missing volume becomes 0 volume and 0 amount;
    missing amount becomes ``volume * mean(open, high, low, close)`` (the
    Kronos convention).
    """
    return check_frame(df, source=source)


def check_frame(
    df: pd.DataFrame,
    *,
    source: str,
    line_numbers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """:func:`validate_candles` with file line numbers for error locations."""
    if not isinstance(df, pd.DataFrame):
        raise CandleDataError(f"expected a pandas DataFrame, got {type(df).__name__}", source=source)
    if len(df) == 0:
        raise CandleDataError("no data rows", source=source)

    def where(pos: int) -> str:
        return f"line {line_numbers[pos]}" if line_numbers is not None else f"row {pos + 1}"

    mapping = map_columns(df.columns, source)
    time_values, time_label = _time_source(df, mapping, source)
    labels = {canonical: label for label, canonical in mapping.items() if canonical != INDEX_NAME}
    missing = [name for name in PRICE_COLUMNS if name not in labels]
    if missing:
        found = ", ".join(str(c) for c in df.columns) or "none"
        raise CandleDataError(
            f"missing required column(s) {', '.join(missing)}; found columns: {found}", source=source
        )

    index = parse_timestamps(time_values, source=source, where=where, column=time_label)

    def where_at(pos: int) -> str:
        return f"{where(pos)} ({index[pos]})"

    report = _Reporter(source, where_at, labels)
    values = report.numeric({name: df[label] for name, label in labels.items()})
    report.values(values)
    _check_order(index, source, where, time_label)
    return _assemble(index, values)


def _time_source(
    df: pd.DataFrame, mapping: dict[Hashable, str], source: str
) -> tuple[pd.Series | pd.Index, str]:
    """A DatetimeIndex (or an index named like a time column) wins over columns."""
    index_name = df.index.name
    if isinstance(df.index, pd.DatetimeIndex) or (
        index_name is not None and normalise_name(index_name) in TIME_ALIASES
    ):
        return df.index, str(index_name if index_name is not None else "index")
    for label, canonical in mapping.items():
        if canonical == INDEX_NAME:
            return df[label], str(label)
    found = ", ".join(str(c) for c in df.columns) or "none"
    raise CandleDataError(
        f"no timestamp column (looked for {', '.join(sorted(TIME_ALIASES))} or a DatetimeIndex); "
        f"found columns: {found}",
        source=source,
    )


class _Reporter:
    """Runs the per-value checks and raises on the earliest offending row."""

    def __init__(self, source: str, where: Callable[[int], str], labels: dict[str, Hashable]):
        self.source, self.where, self.labels = source, where, labels

    def fail(self, bad: dict[str, np.ndarray], problem: Callable[[str, int], str]) -> None:
        """Raise for the smallest row position flagged in any column."""
        firsts = [(int(np.flatnonzero(mask)[0]), name) for name, mask in bad.items() if mask.any()]
        if not firsts:
            return
        pos, name = min(firsts, key=lambda item: (item[0], CANONICAL_COLUMNS.index(item[1])))
        raise CandleDataError(
            problem(name, pos), source=self.source, row=self.where(pos), column=str(self.labels[name])
        )

    def numeric(self, columns: dict[str, pd.Series]) -> dict[str, np.ndarray]:
        """Columns as float64; text that is not a number is an error."""
        numbers: dict[str, np.ndarray] = {}
        bad: dict[str, np.ndarray] = {}
        cells: dict[str, pd.Series] = {}
        for name, column in columns.items():
            if is_bool_dtype(column.dtype):
                raise CandleDataError(
                    "holds true/false values, expected numbers",
                    source=self.source,
                    column=str(self.labels[name]),
                )
            if is_numeric_dtype(column.dtype):
                numbers[name] = column.to_numpy(dtype=np.float64, na_value=np.nan)
                continue
            try:  # fast path: every cell is a number (float() ignores surrounding spaces)
                numbers[name] = column.to_numpy(dtype=object).astype(np.float64)
                continue
            except (TypeError, ValueError):
                pass
            text = column.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
            blank = text.map(lambda v: is_missing(v) or (isinstance(v, str) and v.lower() in _NAN_TOKENS))
            blank_mask = blank.to_numpy(dtype=bool)
            parsed = _parse_floats(np.where(blank_mask, np.nan, text.to_numpy(dtype=object)))
            numbers[name], cells[name] = parsed, text
            bad[name] = np.isnan(parsed) & ~blank_mask
        self.fail(bad, lambda n, pos: f"not a number: {cells[n].iloc[pos]!r}")
        return numbers

    def values(self, values: dict[str, np.ndarray]) -> None:
        """Finite, positive prices, consistent OHLC, non-negative volume/amount."""
        self.fail({n: np.isnan(v) for n, v in values.items()}, lambda n, p: "missing value (empty or NaN)")
        self.fail(
            {n: np.isinf(v) for n, v in values.items()}, lambda n, p: f"infinite value {_num(values[n][p])}"
        )
        prices = {n: values[n] for n in PRICE_COLUMNS}
        self.fail(
            {n: v <= 0 for n, v in prices.items()},
            lambda n, p: f"price must be positive, got {_num(values[n][p])}",
        )
        o, h, low, c = (values[n] for n in PRICE_COLUMNS)
        self.fail({"high": h < low}, lambda n, p: f"high {_num(h[p])} is below low {_num(low[p])}")
        body_top, body_bottom = np.maximum(o, c), np.minimum(o, c)
        self.fail(
            {"high": h < body_top},
            lambda n, p: f"high {_num(h[p])} is below max(open, close) {_num(body_top[p])}",
        )
        self.fail(
            {"low": low > body_bottom},
            lambda n, p: f"low {_num(low[p])} is above min(open, close) {_num(body_bottom[p])}",
        )
        self.fail(
            {n: values[n] < 0 for n in ("volume", "amount") if n in values},
            lambda n, p: f"{n} must not be negative, got {_num(values[n][p])}",
        )


def _check_order(index: pd.DatetimeIndex, source: str, where: Callable[[int], str], column: str) -> None:
    """Timestamps must be unique and ascending; report whichever breaks first."""
    stamps = index.asi8
    dup = np.flatnonzero(index.duplicated(keep="first"))
    back = np.flatnonzero(np.diff(stamps) < 0) + 1
    dup_pos = int(dup[0]) if dup.size else len(stamps)
    back_pos = int(back[0]) if back.size else len(stamps)
    if dup_pos == back_pos == len(stamps):
        return
    if dup_pos <= back_pos:
        first = int(np.flatnonzero(stamps == stamps[dup_pos])[0])
        raise CandleDataError(
            f"duplicate timestamp {index[dup_pos]} (already on {where(first)})",
            source=source,
            row=where(dup_pos),
            column=column,
        )
    raise CandleDataError(
        f"timestamps out of order: {index[back_pos]} comes after {index[back_pos - 1]} "
        f"({where(back_pos - 1)}); sort the rows by time",
        source=source,
        row=where(back_pos),
        column=column,
    )


def _assemble(index: pd.DatetimeIndex, values: dict[str, np.ndarray]) -> pd.DataFrame:
    """Build the canonical frame, deriving volume/amount when absent."""
    if "volume" not in values:
        zeros = np.zeros(len(index))
        values = {**values, "volume": zeros, "amount": zeros.copy()}
    elif "amount" not in values:
        typical = np.mean([values[n] for n in PRICE_COLUMNS], axis=0)
        values = {**values, "amount": values["volume"] * typical}
    frame = pd.DataFrame(
        {name: np.asarray(values[name], dtype=np.float64) for name in CANONICAL_COLUMNS},
        index=pd.DatetimeIndex(index, name=INDEX_NAME),
    )
    return frame


def _parse_floats(cells: np.ndarray) -> np.ndarray:
    """Exact text-to-float (Python's parser; pandas' fast one can be off by an ulp).

    Unparseable cells become NaN, so callers can tell them from blanks.
    """
    try:
        return cells.astype(np.float64)
    except (TypeError, ValueError):
        return np.array([_float_or_nan(cell) for cell in cells], dtype=np.float64)


def _float_or_nan(cell: object) -> float:
    try:
        return float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


def _num(value: float) -> str:
    """Plain number text (numpy 2 reprs would read 'np.float64(...)')."""
    return f"{float(value):.10g}"
