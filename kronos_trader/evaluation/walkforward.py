"""Walk-forward forecasts over held-out data, and the random-walk baselines on the same windows.

The series is cut at `1 - holdout`; forecast origins are bars p from the cut on (every
`stride` bars) whose next `horizon` bars exist. Each forecast sees only the `lookback` bars
ending at p; bars after p are used only to score it. Forecasts come from the forecast
service (its seed rule, future stamps and batching), so a window scored here has the
numbers the CLI, the web workbench and the backtest give for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .skill import rolling_vol

__all__ = ["WalkForward", "origins", "run_walk_forward", "random_walk_sigma", "holdout_start"]


@dataclass
class WalkForward:
    """Forecasts made at `origins` (bar positions of the last history bar).

    `paths` (windows, samples, horizon) close paths in price units; `realized` (windows,
    horizon) closes that followed; `last_close` (windows,) close at the origin; `aligned`
    the share of forecast stamps equal to the stamps of the bars they are scored against.
    """

    origins: np.ndarray
    times: pd.DatetimeIndex
    last_close: np.ndarray
    realized: np.ndarray
    paths: np.ndarray
    closes: pd.Series  # the whole close series (by bar position), for baselines and calibration
    cut: int
    aligned: float = 1.0

    @property
    def horizon(self) -> int:
        return self.realized.shape[1]

    def known_at(self) -> np.ndarray:
        """Bar position at which each target close is known (windows, horizon)."""
        return self.origins[:, None] + np.arange(1, self.horizon + 1)[None, :]


def holdout_start(n: int, holdout: float) -> int:
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    return n - int(round(n * holdout))


def origins(n: int, holdout: float, lookback: int, horizon: int, stride: int,
            max_windows: int | None = None) -> np.ndarray:
    """Forecast origins: the first at the last bar before the hold-out (so its targets are
    the hold-out's first bars), then every `stride` bars while `horizon` bars follow."""
    cut = holdout_start(n, holdout)
    first = max(cut - 1, lookback - 1)
    out = np.arange(first, n - horizon, max(1, stride))
    if max_windows is not None and len(out) > max_windows:
        out = out[:max_windows]
    if len(out) == 0:
        raise ValueError(f"no forecast window fits: {n} bars, hold-out {holdout:.0%} ({n - cut} bars), "
                         f"lookback {lookback}, horizon {horizon}")
    return out


def run_walk_forward(service, candles: pd.DataFrame, holdout: float = 0.2, stride: int = 24,
                     max_windows: int | None = None, symbol: str = "series", timeframe: str = "") -> WalkForward:
    """Forecast every origin through `service` (a `ForecastService`; its settings give the
    lookback, horizon, paths and seed; calibration is left to the scoring)."""
    n, s = len(candles), service.settings
    pos = origins(n, holdout, s.lookback, s.horizon, stride, max_windows)
    found = service.forecast_at(candles, [int(p) for p in pos], symbol, timeframe)
    close = candles["close"].to_numpy(dtype=np.float64)
    index = candles.index
    paths = np.stack([found[int(p)].close_paths for p in pos]).astype(np.float64)
    realized = np.stack([close[p + 1:p + 1 + s.horizon] for p in pos])
    aligned = np.mean([np.mean(found[int(p)].stamps == index[p + 1:p + 1 + s.horizon]) for p in pos])
    return WalkForward(origins=pos, times=pd.DatetimeIndex(index[pos]), last_close=close[pos], realized=realized,
                       paths=paths, closes=pd.Series(close), cut=holdout_start(n, holdout), aligned=float(aligned))


def random_walk_sigma(wf: WalkForward, vol_window: int | None) -> np.ndarray:
    """Per-window volatility of one-bar log returns known at the origin: over all bars
    before the hold-out (`vol_window` None: the static baseline) or over the last
    `vol_window` returns up to the origin (the rolling baseline)."""
    log_close = np.log(np.maximum(wf.closes.to_numpy(), 1e-12))
    returns = np.diff(log_close)  # returns[i] is from bar i to bar i + 1
    if vol_window is None:
        static = float(np.std(returns[:max(1, wf.cut - 1)]))
        return np.full(len(wf.origins), static)
    return rolling_vol(log_close, wf.origins, vol_window)
