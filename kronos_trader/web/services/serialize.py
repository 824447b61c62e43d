"""JSON-safe conversions: NaN/inf become null, timestamps become 'YYYY-MM-DD HH:MM:SS'."""
from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def stamps(index) -> list[str]:
    return list(pd.DatetimeIndex(index).strftime(TIME_FORMAT))


def stamp(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return pd.Timestamp(value).strftime(TIME_FORMAT)


def floats(values, digits: int | None = None) -> list[float | None]:
    arr = np.asarray(values, dtype=float)
    if digits is not None:
        arr = np.round(arr, digits)
    return [v if math.isfinite(v) else None for v in arr.tolist()]


def clean(value: Any) -> Any:
    """Recursively make a value JSON-safe (no NaN, numpy scalars, timestamps)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return stamp(value)
    if isinstance(value, pd.Timedelta):
        return value.total_seconds()
    return value


def records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict]:
    """Rows of a frame as JSON-safe dicts (datetime columns formatted)."""
    if frame is None or frame.empty:
        return []
    frame = frame[columns] if columns else frame
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime(TIME_FORMAT)
    return [clean(r) for r in out.to_dict("records")]


def format_interval(interval: pd.Timedelta) -> str:
    """'1h', '15m', '1d', '1w' or the Timedelta's own text."""
    seconds = int(interval.total_seconds())
    if seconds <= 0 or interval != pd.Timedelta(seconds=seconds):
        return str(interval)
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(interval)
