"""Content hash of a candle frame, used as the key for cached forecasts.

A forecast is only reusable for exactly the same bars, so the key must change
with any value or timestamp and must not depend on dtype quirks, column order,
pandas version or platform byte order.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from .schema import CANONICAL_COLUMNS
from .validation import validate_candles

__all__ = ["data_hash", "frame_hash"]

_VERSION = b"kronos-trader/candles/v1\n"


def data_hash(df: pd.DataFrame) -> str:
    """Hex sha256 of the canonical frame (index in ns + float64 values, little-endian)."""
    frame = validate_candles(df)
    return frame_hash(frame.index.as_unit("ns").asi8, frame.to_numpy(dtype=np.float64))


def frame_hash(stamps_ns: np.ndarray, values: np.ndarray) -> str:
    """`data_hash` of an already canonical frame given as arrays: nanosecond stamps and the
    (rows x 6) float64 values. Lets callers hash many windows of one validated series."""
    digest = hashlib.sha256(_VERSION)
    digest.update(",".join(CANONICAL_COLUMNS).encode() + b"\n")
    digest.update(np.int64(len(stamps_ns)).astype("<i8").tobytes())
    digest.update(np.ascontiguousarray(stamps_ns, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(values + 0.0, dtype="<f8").tobytes())  # + 0.0 folds -0.0 into 0.0
    return digest.hexdigest()
