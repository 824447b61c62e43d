"""Synthetic candle frames in the canonical layout (open-time index, UTC)."""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_candles", "drop_bars"]


def make_candles(
    start: str | pd.Timestamp = "2024-01-01",
    periods: int = 3000,
    freq: str = "1min",
    *,
    seed: int = 0,
    price: float = 40_000.0,
    with_amount: bool = True,
) -> pd.DataFrame:
    """Random-walk OHLCV frame in the canonical layout: tz-naive UTC
    DatetimeIndex[ns] of bar OPEN times named ``timestamp``, float columns
    open, high, low, close, volume(, amount).  Prices are rounded to cents and
    volumes to 1e-5 so that they survive Binance's 8-decimal strings."""
    rng = np.random.default_rng(seed)
    first = pd.Timestamp(start)
    if first.tzinfo is not None:
        first = first.tz_convert("UTC").tz_localize(None)
    index = pd.date_range(first, periods=periods, freq=freq, name="timestamp").as_unit("ns")
    close = price * np.exp(np.cumsum(rng.normal(0, 0.001, periods)))
    open_ = np.r_[price, close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.0008, periods))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.0008, periods))
    volume = rng.uniform(0.5, 20.0, periods)
    frame = pd.DataFrame(
        {
            "open": np.round(open_, 2),
            "high": np.round(high, 2),
            "low": np.round(low, 2),
            "close": np.round(close, 2),
            "volume": np.round(volume, 5),
        },
        index=index,
    )
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    if with_amount:
        frame["amount"] = np.round(frame["volume"] * frame[["open", "high", "low", "close"]].mean(axis=1), 6)
    return frame


def drop_bars(frame: pd.DataFrame, *spans: tuple[str | pd.Timestamp, str | pd.Timestamp]) -> pd.DataFrame:
    """Remove the bars whose open time falls in each inclusive ``(start, end)``
    span, simulating exchange downtime."""
    keep = np.ones(len(frame), dtype=bool)
    aware = frame.index.tz is not None
    for start, end in spans:
        s, e = pd.Timestamp(start), pd.Timestamp(end)
        if aware:
            s = s.tz_localize("UTC") if s.tzinfo is None else s
            e = e.tz_localize("UTC") if e.tzinfo is None else e
        keep &= ~((frame.index >= s) & (frame.index <= e))
    return frame[keep]
