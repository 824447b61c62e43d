"""The one line a backtest prints before it starts, and the one it prints when stopped.

Before: the data and its span, the model, how many windows will be forecast (and with what
lookback, horizon and paths), and when the time estimate comes (the progress shows it after
the first batch). After Ctrl-C: how many forecasts were computed and kept in the database,
so a rerun resumes from them.
"""
from __future__ import annotations

import pandas as pd

from kronos_trader.data import titled

__all__ = ["run_preamble", "interrupted_line"]


def run_preamble(settings, candles: pd.DataFrame | dict[str, pd.DataFrame], symbol: str, timeframe: str,
                 model_name: str, windows: int) -> str:
    panel = candles if isinstance(candles, dict) else {symbol: candles}
    first = next(iter(panel.values()))
    bars = sum(len(c) for c in panel.values())
    f = settings.forecast
    what = titled(f"{symbol} {timeframe}", first)
    return (f"backtest {what}: {bars} bars {first.index[0]} .. {first.index[-1]}, model {model_name}, "
            f"{windows} windows to forecast or reuse (lookback {f.lookback}, horizon {f.horizon}, "
            f"{f.sample_count} paths, batches of {f.batch_windows}); the time left shows after the first batch")


def decision_windows(service, candles: pd.DataFrame | dict[str, pd.DataFrame]) -> int:
    frames = candles.values() if isinstance(candles, dict) else [candles]
    return sum(len(service.decision_positions(len(c))) for c in frames)


def interrupted_line(computed: int, store_url: str | None) -> str:
    where = f"kept in {store_url}" if store_url else "not kept (no database)"
    return (f"interrupted: {computed} forecasts computed in this run, {where}; the same command resumes from "
            f"them" if store_url else f"interrupted: {computed} forecasts computed in this run, {where}")
