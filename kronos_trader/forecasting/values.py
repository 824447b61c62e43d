"""The forecast value types: what a forecast of one window is, independent of how it was
computed, batched, cached or stored (that is `service.py`).

`WindowForecast` summarises the sample paths of one window (mean path, close quantiles,
P(up) per step) and round-trips through its stored payload; `WindowRequest` names one
window of a series to forecast. `prob_up` is the one P(up) rule (a path ending exactly at
the last close counts half), `neutral_forecast` the documented forecast of a flat window
(P(up) 0.5, expected return 0) and `window_seed` the one sampling-seed rule, so a stored
forecast equals a recomputed one whatever batch it was computed in.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Hashable

import numpy as np
import pandas as pd

from kronos import QUANTILES
from kronos_trader.data.display import round_significant

COLUMNS = ("open", "high", "low", "close", "volume", "amount")
CLOSE = COLUMNS.index("close")


@dataclass(frozen=True)
class WindowForecast:
    """Summary of the sample paths for one window (what strategies decide on).

    `mean` is (horizon x 6) in price units; `quantiles[q]` and `p_up` are per step of the
    close. `window_end` is the close time of the window's last bar: the decision time.
    """

    window_end: pd.Timestamp
    bar_open: pd.Timestamp
    last_close: float
    mean: np.ndarray
    quantiles: dict[float, np.ndarray]
    p_up: np.ndarray
    forecast_id: int | None = None
    close_paths: np.ndarray | None = None  # (samples, horizon): what calibration rescales
    stamps: pd.DatetimeIndex | None = None  # open times of the forecast bars (the calendar's)

    @property
    def horizon(self) -> int:
        return len(self.p_up)

    def close(self, step: int | None = None) -> float:
        """Mean predicted close at `step` (1-based; default: the last step)."""
        return float(self.mean[(step or self.horizon) - 1, 3])

    def expected_return(self, step: int | None = None) -> float:
        return self.close(step) / self.last_close - 1.0

    def quantile(self, q: float, step: int | None = None) -> float:
        return float(self.quantiles[q][(step or self.horizon) - 1])

    def prob_up(self, step: int | None = None) -> float:
        return float(self.p_up[(step or self.horizon) - 1])

    def to_payload(self) -> dict:
        return {"bar_open": self.bar_open.isoformat(), "last_close": self.last_close,
                "mean": round_significant(self.mean).tolist(),
                "quantiles": {f"{q:g}": round_significant(v).tolist() for q, v in self.quantiles.items()},
                "p_up": np.round(self.p_up, 6).tolist(),
                "close_paths": None if self.close_paths is None else round_significant(self.close_paths).tolist(),
                "stamps": None if self.stamps is None else [t.isoformat() for t in self.stamps]}

    @classmethod
    def from_payload(cls, window_end, payload: dict, forecast_id: int | None = None) -> "WindowForecast":
        return cls(window_end=pd.Timestamp(window_end), bar_open=pd.Timestamp(payload["bar_open"]),
                   last_close=float(payload["last_close"]), mean=np.asarray(payload["mean"], dtype=float),
                   quantiles={float(q): np.asarray(v, dtype=float) for q, v in payload["quantiles"].items()},
                   p_up=np.asarray(payload["p_up"], dtype=float), forecast_id=forecast_id,
                   close_paths=None if payload.get("close_paths") is None
                   else np.asarray(payload["close_paths"], dtype=float),
                   stamps=None if payload.get("stamps") is None else pd.DatetimeIndex(payload["stamps"]).as_unit("ns"))

    def with_close_paths(self, paths: np.ndarray) -> "WindowForecast":
        """The same forecast with its close distribution replaced by `paths` (e.g. after
        calibration): mean close, quantiles and P(up) are recomputed from them."""
        mean = self.mean.copy()
        mean[:, 3] = paths.mean(axis=0)
        levels = sorted(self.quantiles)
        quantiles = dict(zip(levels, np.quantile(paths, levels, axis=0)))
        return replace(self, mean=mean, quantiles=quantiles, p_up=prob_up(paths, self.last_close), close_paths=paths)


@dataclass(frozen=True)
class WindowRequest:
    """One window to forecast: the `lookback` bars of `candles` ending at row `position`."""

    key: Hashable
    candles: pd.DataFrame
    position: int
    symbol: str
    timeframe: str
    interval: pd.Timedelta


def window_seed(seed: int, window_end: pd.Timestamp) -> list[int]:
    """The one seed rule: (global seed, window end in epoch seconds). Independent of
    batching and of the stamps' datetime unit (`Timestamp.value` is always nanoseconds)."""
    end = pd.Timestamp(window_end)
    end = end.tz_convert("UTC").tz_localize(None) if end.tzinfo is not None else end
    return [int(seed), int(end.as_unit("ns").value // 1_000_000_000)]


def prob_up(close_paths: np.ndarray, last_close) -> np.ndarray:
    """P(close > last close) per step; a path ending exactly at the last close counts half,
    so a flat forecast reads 0.5, never "up". Paths (m, H) of one window, or (n, m, H) of n
    windows with their last closes shaped (n, 1, 1)."""
    paths = np.asarray(close_paths, dtype=float)
    return (paths > last_close).mean(axis=-2) + 0.5 * (paths == last_close).mean(axis=-2)


def neutral_forecast(window: pd.DataFrame, interval: pd.Timedelta, stamps: pd.DatetimeIndex,
                     samples: int) -> WindowForecast:
    """The documented forecast of a flat window: every path stays at the last bar, so the
    expected return is 0 and P(up) 0.5."""
    last = window.iloc[-1].to_numpy(dtype=float)
    horizon = len(stamps)
    paths = np.full((samples, horizon), last[CLOSE])
    return WindowForecast(window_end=window.index[-1] + interval, bar_open=window.index[-1], last_close=last[CLOSE],
                          mean=np.repeat(last[None, :], horizon, axis=0),
                          quantiles={q: np.full(horizon, last[CLOSE]) for q in QUANTILES},
                          p_up=prob_up(paths, last[CLOSE]), close_paths=paths, stamps=stamps)
