"""Forecasts for many pairs (and bars) in one batched model pass.

``ForecastService.forecast_at`` forecasts windows of ONE series; the live runner needs the
newest window of every pair in one batch. This mirrors ``forecast_at`` across series: the
same window hashes, store lookups, per-window seeds (so a window's forecast does not
depend on its batch) and stored form, hence the same forecasts as a backtest.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable

import pandas as pd

from kronos_trader.data import data_hash, validate_candles
from kronos_trader.forecasting.service import ForecastService, WindowForecast


@dataclass(frozen=True)
class WindowRequest:
    key: Hashable
    candles: pd.DataFrame   # gap-free candles of one pair (open-time index)
    position: int           # the window ends at this row (the decision bar)
    symbol: str
    timeframe: str
    interval: pd.Timedelta


def forecast_windows(service: ForecastService, requests: list[WindowRequest]) -> dict[Hashable, WindowForecast]:
    """Forecast every requested window, reusing stored ones; one model pass per interval
    (split into ``forecast.batch_windows`` chunks by the service)."""
    lookback = service.settings.lookback
    windows, hashes = {}, {}
    valid: dict[int, pd.DataFrame] = {}  # each series validated once (as forecast_at does)
    for r in requests:
        if r.position < lookback - 1 or r.position >= len(r.candles):
            raise ValueError(f"{r.symbol} {r.timeframe}: bar {r.position} has fewer than {lookback} bars of "
                             f"history (series has {len(r.candles)} bars)")
        if id(r.candles) not in valid:
            valid[id(r.candles)] = validate_candles(r.candles, f"{r.symbol} {r.timeframe}")
        windows[r.key] = valid[id(r.candles)].iloc[r.position - lookback + 1:r.position + 1]
        hashes[r.key] = data_hash(windows[r.key])
    memory = service._memory
    unknown = [h for h in hashes.values() if h not in memory]
    store = service.store
    if store is not None and unknown:
        for h, row in store.get_forecasts(service.model.model_id, service.settings_hash, unknown).items():
            memory[h] = WindowForecast.from_payload(row.window_end, row.payload, row.id)
    out: dict[Hashable, WindowForecast] = {}
    missing: dict[pd.Timedelta, list[WindowRequest]] = defaultdict(list)
    for r in requests:
        if hashes[r.key] in memory:
            out[r.key] = memory[hashes[r.key]]
        else:
            missing[r.interval].append(r)
    service.reused += len(out)
    for interval, group in missing.items():
        # the same window twice (two keys) is computed once
        unique: dict[str, WindowRequest] = {}
        for r in group:
            unique.setdefault(hashes[r.key], r)
        todo = list(unique.values())
        computed = service._compute([windows[r.key] for r in todo], interval)
        service.computed += len(todo)
        ids: dict = {}
        if store is not None:
            store.add_forecasts([service._row(f, hashes[r.key], r.symbol, r.timeframe) for r, f in zip(todo, computed)])
            ids = store.get_forecasts(service.model.model_id, service.settings_hash, [hashes[r.key] for r in todo])
        for r, f in zip(todo, computed):
            h = hashes[r.key]
            memory[h] = WindowForecast.from_payload(f.window_end, f.to_payload(), ids[h].id if h in ids else None)
    for r in requests:
        out.setdefault(r.key, memory[hashes[r.key]])
    return out
