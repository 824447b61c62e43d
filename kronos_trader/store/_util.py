"""Small helpers: UTC-naive time coercion, chunking, NaN handling."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")


def to_utc_naive(value: Any) -> datetime:
    """datetime / pandas Timestamp / numpy datetime64 / ISO string -> naive UTC datetime.

    Aware values are converted to UTC; naive values are taken to be UTC already.
    """
    if isinstance(value, datetime) and not isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            return value
        return pd.Timestamp(value).tz_convert("UTC").tz_localize(None).to_pydatetime()
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"not a timestamp: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.floor("us").to_pydatetime()


def opt_utc_naive(value: Any) -> datetime | None:
    return None if value is None else to_utc_naive(value)


def index_to_utc_naive(values: Any) -> list[datetime]:
    """Vectorised :func:`to_utc_naive` for an index/array of timestamps."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.hasnans:
        raise ValueError("timestamps contain NaT")
    return list(idx.floor("us").to_pydatetime())


def float_list(values: Any, *, nullable: bool) -> list[float | None]:
    arr = np.asarray(values, dtype=float)
    nan = np.isnan(arr)
    out: list[Any] = arr.tolist()
    if nan.any():
        if not nullable:
            raise ValueError(f"{int(nan.sum())} NaN value(s) in a non-nullable column")
        out = [None if m else x for x, m in zip(out, nan.tolist())]
    return out


def opt_float(value: Any) -> float | None:
    if value is None:
        return None
    f = float(value)
    return None if math.isnan(f) else f


def chunks(rows: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def dedupe(rows: Iterable[dict[str, Any]], keys: Sequence[str], *, keep: str) -> list[dict[str, Any]]:
    """Drop rows repeating a unique key (an upsert may not touch a row twice)."""
    seen: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in keys)
        if keep == "last" or k not in seen:
            seen[k] = row
    return list(seen.values())


def records(rows: Any) -> list[dict[str, Any]]:
    """A DataFrame (index kept as columns when named) or iterable of mappings -> list of dicts."""
    if isinstance(rows, pd.DataFrame):
        frame = rows.reset_index() if rows.index.name is not None else rows
        return frame.to_dict("records")
    return [dict(r) for r in rows]
