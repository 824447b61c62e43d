"""Market data: candles and the forecast cache."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import select

from ._util import chunks, dedupe, float_list, index_to_utc_naive, opt_utc_naive, to_utc_naive
from .base import StoreBase
from .models import Candle, Forecast, utcnow

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume", "amount")
_CANDLE_KEY = ("source", "symbol", "timeframe", "ts")
_FORECAST_KEY = ("model_id", "data_hash", "settings_hash")
_FORECAST_REQUIRED = (
    "model_id", "data_hash", "settings_hash", "symbol", "timeframe",
    "window_end", "horizon", "sample_count", "payload",
)


def _candle_times(df: pd.DataFrame) -> list[datetime]:
    if isinstance(df.index, pd.DatetimeIndex):
        return index_to_utc_naive(df.index)
    for col in ("ts", "timestamp", "timestamps"):
        if col in df.columns:
            return index_to_utc_naive(df[col])
    raise ValueError("candles need a DatetimeIndex (bar open time) or a 'ts' column")


class MarketDataMixin(StoreBase):
    # ------------------------------------------------------------------ candles
    def upsert_candles(self, source: str, symbol: str, timeframe: str, df: pd.DataFrame) -> int:
        """Insert or update bars keyed by (source, symbol, timeframe, bar open time).

        ``df`` has a DatetimeIndex (aware -> converted to UTC, naive = UTC) and
        columns open, high, low, close and optionally volume, amount (NaN ->
        NULL).  Duplicate timestamps keep the last row.  Returns the number of
        distinct bars written.
        """
        if df is None or len(df) == 0:
            return 0
        missing = [c for c in CANDLE_COLUMNS[:4] if c not in df.columns]
        if missing:
            raise ValueError(f"candles are missing column(s): {', '.join(missing)}")
        n = len(df)
        times = _candle_times(df)
        cols = {
            c: float_list(df[c].to_numpy(), nullable=c in ("volume", "amount"))
            if c in df.columns
            else [None] * n
            for c in CANDLE_COLUMNS
        }
        rows = [
            {"source": source, "symbol": symbol, "timeframe": timeframe, "ts": t,
             "open": o, "high": h, "low": lo, "close": c, "volume": v, "amount": a}
            for t, o, h, lo, c, v, a in zip(times, *(cols[k] for k in CANDLE_COLUMNS))
        ]
        rows = dedupe(rows, ("ts",), keep="last")
        with self.session() as s:
            self._write(s, Candle.__table__, rows, _CANDLE_KEY, update=CANDLE_COLUMNS)
        return len(rows)

    def load_candles(
        self,
        source: str,
        symbol: str,
        timeframe: str,
        start: Any = None,
        end: Any = None,
    ) -> pd.DataFrame:
        """Bars with ``start <= ts <= end`` (both optional, inclusive), oldest first.

        Returns a DataFrame indexed by naive-UTC bar open time (index name
        ``ts``) with float columns open, high, low, close, volume, amount.
        """
        cols = [getattr(Candle, c) for c in CANDLE_COLUMNS]
        q = select(Candle.ts, *cols).where(
            Candle.source == source, Candle.symbol == symbol, Candle.timeframe == timeframe
        )
        if start is not None:
            q = q.where(Candle.ts >= to_utc_naive(start))
        if end is not None:
            q = q.where(Candle.ts <= to_utc_naive(end))
        with self.session(readonly=True) as s:
            rows = s.execute(q.order_by(Candle.ts)).all()
        frame = pd.DataFrame.from_records(rows, columns=["ts", *CANDLE_COLUMNS])
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("ts")), name="ts")
        return frame.astype(float)

    # ------------------------------------------------------------------ forecasts
    def add_forecasts(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Store forecasts; rows whose (model_id, data_hash, settings_hash) exist are ignored.

        Each row needs model_id, data_hash, settings_hash, symbol, timeframe,
        window_end, horizon, sample_count, payload; seed and created_at are optional.
        """
        prepared = []
        for r in rows:
            missing = [k for k in _FORECAST_REQUIRED if k not in r]
            if missing:
                raise ValueError(f"forecast row is missing: {', '.join(missing)}")
            d = {k: r[k] for k in _FORECAST_REQUIRED}
            d["window_end"] = to_utc_naive(d["window_end"])
            d["horizon"] = int(d["horizon"])
            d["sample_count"] = int(d["sample_count"])
            d["seed"] = None if r.get("seed") is None else int(r["seed"])
            d["created_at"] = opt_utc_naive(r.get("created_at")) or utcnow()
            prepared.append(d)
        prepared = dedupe(prepared, _FORECAST_KEY, keep="first")
        with self.session() as s:
            self._write(s, Forecast.__table__, prepared, _FORECAST_KEY)

    def get_forecasts(
        self, model_id: str, settings_hash: str, data_hashes: Iterable[str]
    ) -> dict[str, Forecast]:
        """Cached forecasts for these input windows, keyed by data_hash (misses are absent)."""
        wanted = list(dict.fromkeys(data_hashes))
        found: dict[str, Forecast] = {}
        with self.session(readonly=True) as s:
            for part in chunks(wanted, 500):
                q = select(Forecast).where(
                    Forecast.model_id == model_id,
                    Forecast.settings_hash == settings_hash,
                    Forecast.data_hash.in_(list(part)),
                )
                found.update((f.data_hash, f) for f in s.scalars(q))
        return found

    def load_forecasts(
        self,
        symbol: str,
        timeframe: str,
        start: Any = None,
        end: Any = None,
        *,
        model_id: str | None = None,
    ) -> list[Forecast]:
        """Forecasts by window end (inclusive bounds), oldest first."""
        q = select(Forecast).where(Forecast.symbol == symbol, Forecast.timeframe == timeframe)
        if start is not None:
            q = q.where(Forecast.window_end >= to_utc_naive(start))
        if end is not None:
            q = q.where(Forecast.window_end <= to_utc_naive(end))
        if model_id is not None:
            q = q.where(Forecast.model_id == model_id)
        with self.session(readonly=True) as s:
            return list(s.scalars(q.order_by(Forecast.window_end, Forecast.id)))
