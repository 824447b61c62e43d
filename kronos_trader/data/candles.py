"""Canonical candle frames: load, validate, save, inspect spacing, hash.

This is the one import the rest of the bot needs for market data. The work is
split over small modules (file I/O, validation, bar spacing, hashing); this
module ties file I/O to validation and re-exports the rest.

Canonical frame: ``DatetimeIndex`` named ``timestamp`` (tz-naive UTC, bar open
time) and float64 columns ``open, high, low, close, volume, amount``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .bars import assert_no_gaps, find_gaps, infer_bar_interval, resample_candles
from .fileio import read_table, write_table
from .hashing import data_hash, frame_hash
from .sample import is_sample_path, mark_synthetic
from .schema import CANONICAL_COLUMNS, INDEX_NAME
from .validation import check_frame, validate_candles

__all__ = [
    "CANONICAL_COLUMNS",
    "INDEX_NAME",
    "load_candles",
    "save_candles",
    "validate_candles",
    "infer_bar_interval",
    "find_gaps",
    "assert_no_gaps",
    "resample_candles",
    "data_hash",
    "frame_hash",
]


def load_candles(path: str | Path) -> pd.DataFrame:
    """Read a CSV/Parquet/Feather file and return the validated canonical frame.

    Errors are :class:`CandleDataError` naming the file and, for CSV, the line.
    """
    frame, lines = read_table(path)
    frame = check_frame(frame, source=str(path), line_numbers=lines)
    return mark_synthetic(frame) if is_sample_path(path) else frame


def save_candles(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate ``df`` and write it in the format given by the suffix; returns the path.

    The result loads back with :func:`load_candles` to an identical frame.
    """
    return write_table(validate_candles(df), path)
