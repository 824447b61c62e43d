"""Candle datasets the workbench can forecast on: uploads, the bundled sample, the database.

Each dataset is validated into the canonical candle frame once and kept in memory (a
small LRU) under an opaque id; the browser only ever refers to that id.
"""
from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kronos_trader.data import SAMPLE_DATA_PATH, CandleDataError, infer_bar_interval
from kronos_trader.data.calendar import session_gaps
from kronos_trader.data.fileio import read_table
from kronos_trader.data.schema import INDEX_NAME, map_columns
from kronos_trader.data.validation import check_frame

from ..errors import WebError
from .serialize import format_interval, records, stamp

MIN_BARS = 16
SYNTHETIC_START = "2000-01-01"


@dataclass
class Dataset:
    id: str
    name: str
    source: str  # upload | sample | database
    candles: pd.DataFrame
    columns: list[str]
    notes: list[str] = field(default_factory=list)
    interval: pd.Timedelta = field(init=False)

    def __post_init__(self) -> None:
        self.interval = infer_bar_interval(self.candles.index)

    def info(self) -> dict:
        c = self.candles
        gaps = session_gaps(c, self.interval)  # a market's closures (FX weekends) are not gaps
        preview_cols = ["open", "high", "low", "close", "volume", "amount"]
        head = c.head(5).reset_index().rename(columns={c.index.name or "index": "timestamp"})
        tail = c.tail(5).reset_index().rename(columns={c.index.name or "index": "timestamp"})
        return {
            "id": self.id, "name": self.name, "source": self.source, "rows": len(c),
            "columns": self.columns, "start": stamp(c.index[0]), "end": stamp(c.index[-1]),
            "interval": format_interval(self.interval), "interval_seconds": self.interval.total_seconds(),
            "gaps": gaps["gaps"], "missing_bars": gaps["missing_bars"], "closures": gaps["closures"],
            "notes": self.notes,
            "preview": {"head": records(head, ["timestamp", *preview_cols]),
                        "tail": records(tail, ["timestamp", *preview_cols])},
        }


class DatasetRegistry:
    """Thread-safe LRU of datasets by id."""

    def __init__(self, capacity: int = 16):
        self.capacity = capacity
        self._items: OrderedDict[str, Dataset] = OrderedDict()
        self._lock = threading.Lock()
        self._sample: Dataset | None = None

    def add(self, name: str, source: str, candles: pd.DataFrame, columns: list[str],
            notes: list[str] | None = None) -> Dataset:
        if len(candles) < MIN_BARS:
            raise WebError(422, f"{name}: only {len(candles)} bars; at least {MIN_BARS} are needed to forecast")
        dataset = Dataset(uuid.uuid4().hex, name, source, candles, columns, notes or [])
        with self._lock:
            self._items[dataset.id] = dataset
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return dataset

    def get(self, dataset_id: str) -> Dataset:
        with self._lock:
            dataset = self._items.get(dataset_id)
            if dataset is None:
                raise WebError(404, f"unknown dataset '{dataset_id}': load or upload the data again")
            self._items.move_to_end(dataset_id)
            return dataset

    def sample(self) -> Dataset:
        """The bundled synthetic sample (loaded once)."""
        from kronos_trader.data import load_candles

        if self._sample is None or self._sample.id not in self._items:
            candles = load_candles(SAMPLE_DATA_PATH)
            self._sample = self.add(f"{SAMPLE_DATA_PATH.name} (bundled synthetic sample)", "sample", candles,
                                    ["timestamp", *candles.columns],
                                    ["synthetic data generated for demos, not real market prices"])
        return self._sample


def parse_file(path: Path, name: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Validated candles, the file's columns and notes; CandleDataError names `name`, never `path`."""
    try:
        frame, lines = read_table(path)
        columns = [str(c) for c in frame.columns]
        notes: list[str] = []
        mapping = map_columns(frame.columns, name)
        if INDEX_NAME not in mapping.values() and not isinstance(frame.index, pd.DatetimeIndex):
            frame = frame.copy()
            frame.insert(0, "__timestamp", pd.date_range(SYNTHETIC_START, periods=len(frame), freq="h"))
            frame = frame.rename(columns={"__timestamp": "timestamp"})
            notes.append(f"no timestamp column: bars numbered hourly from {SYNTHETIC_START} "
                         f"(the model's calendar features are then synthetic)")
        candles = check_frame(frame, source=name, line_numbers=lines)
    except CandleDataError as exc:
        raise WebError(422, str(CandleDataError(exc.problem, source=name, row=exc.row, column=exc.column))) from None
    present = set(mapping.values())
    if "volume" not in present:
        notes.append("no volume column: volume and amount set to 0")
    elif "amount" not in present:
        notes.append("no amount column: amount = volume x mean(open, high, low, close)")
    return candles, columns, notes


def stored_series(store) -> list[dict]:
    """(source, symbol, timeframe) series in the candles table with bar counts and range."""
    from sqlalchemy import func, select

    from kronos_trader.store import Candle

    q = (select(Candle.source, Candle.symbol, Candle.timeframe, func.count(), func.min(Candle.ts),
                func.max(Candle.ts))
         .group_by(Candle.source, Candle.symbol, Candle.timeframe)
         .order_by(Candle.source, Candle.symbol, Candle.timeframe))
    with store.session(readonly=True) as s:
        rows = s.execute(q).all()
    return [{"source": r[0], "symbol": r[1], "timeframe": r[2], "rows": int(r[3]), "start": stamp(r[4]),
             "end": stamp(r[5])} for r in rows]


def load_stored(store, source: str, symbol: str, timeframe: str) -> pd.DataFrame:
    candles = store.load_candles(source, symbol, timeframe)
    label = f"database {source} {symbol} {timeframe}"
    if candles.empty:
        raise WebError(404, f"{label}: no stored candles (run `kronos-trader fetch` first)")
    candles.index.name = "timestamp"
    # exchanges without quote volume store NULL amounts: let validation derive them
    candles = candles.drop(columns=[c for c in ("amount", "volume") if candles[c].isna().all()])
    if "volume" not in candles:
        candles = candles.drop(columns=["amount"], errors="ignore")
    try:
        from kronos_trader.data import validate_candles

        return validate_candles(candles, label)
    except CandleDataError as exc:
        raise WebError(422, str(exc)) from None
