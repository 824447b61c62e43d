"""KronosIndicator: Kronos forecasts as Backtrader lines.

The value at bar t comes from the window of `lookback` bars ending at t (its close is known
when `next` runs for t), never from later bars. When the whole series is known up front
(preloaded data, `runonce` or `next` mode) every window is forecast in one batched,
stored call; otherwise (live, resampled) each closed bar is forecast as it arrives. With
replayed data the forming bar is delivered many times: the indicator then shows the
forecast of the last closed bar and computes it once per bar.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from kronos_trader.config import ForecastSettings
from kronos_trader.data import infer_bar_interval
from kronos_trader.forecasting.service import ForecastService, WindowForecast

from .compat import bt, num2timestamps
from .services import service_for


class KronosIndicator(bt.Indicator):
    lines = ("pred_close", "pred_return", "lower", "upper", "p_up")
    params = (
        ("service", None),        # a ForecastService; built from the params below when None
        ("model", "kronos-nano"),
        ("lookback", 256),
        ("horizon", 24),
        ("sample_count", 8),
        ("temperature", 1.0),
        ("top_k", 0),
        ("top_p", 0.9),
        ("seed", 42),
        ("every", 1),
        ("db", None),             # SQLAlchemy URL to store/reuse forecasts
        ("step", None),           # horizon step shown on the lines (default: the last)
        ("lower_q", 0.05),
        ("upper_q", 0.95),
        ("symbol", None),         # default: the data feed's name
        ("timeframe", None),      # default: derived from the bar interval
    )
    plotinfo = dict(subplot=True, plotname="Kronos")
    plotlines = dict(pred_close=dict(_plotskip=True), pred_return=dict(_plotskip=True),
                     lower=dict(_plotskip=True), upper=dict(_plotskip=True),
                     p_up=dict(color="purple", _fill_gt=(0.5, "green"), _fill_lt=(0.5, "red")))

    def __init__(self):
        self.service: ForecastService = self.p.service or service_for(
            self.p.model, ForecastSettings(lookback=self.p.lookback, horizon=self.p.horizon,
                                           sample_count=self.p.sample_count, temperature=self.p.temperature,
                                           top_k=self.p.top_k, top_p=self.p.top_p, seed=self.p.seed,
                                           every=self.p.every), self.p.db)
        self.lookback = self.service.settings.lookback
        self.addminperiod(self.lookback + (1 if self.data.replaying else 0))
        self.symbol = self.p.symbol or getattr(self.data, "_name", None) or "data"
        self.forecasts: dict[pd.Timestamp, WindowForecast] = {}  # by bar open time
        self.forecast: WindowForecast | None = None  # latest shown
        self._precomputed = False
        self._last_closed = -1

    # --- helpers --------------------------------------------------------------------------
    def current(self) -> WindowForecast | None:
        """The forecast made at the close of the current bar (of the last closed bar when
        replaying); None between forecast bars when `every` > 1."""
        if self.data.replaying:
            return self.forecast
        return self.forecasts.get(num2timestamps([self.data.datetime[0]])[0])

    def _frame(self, start: int, end: int) -> pd.DataFrame:
        """Bars [start, end) of the data's buffers as a candle frame."""
        d = self.data
        cols = {name: np.asarray(getattr(d, name).array[start:end], dtype=np.float64)
                for name in ("open", "high", "low", "close", "volume")}
        return self._with_amount(pd.DataFrame(cols, index=num2timestamps(d.datetime.array[start:end])))

    def _with_amount(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Add the traded amount from a pandas feed's source frame, when it has one (feeds
        carry only OHLCV; without it the amount is estimated as volume x mean price)."""
        source = getattr(self.data.p, "dataname", None)
        if isinstance(source, pd.DataFrame) and "amount" in source.columns and not (
                self.data.replaying or self.data.resampling):
            amount = source["amount"].reindex(frame.index)
            if amount.notna().all():
                frame["amount"] = amount.to_numpy(dtype=np.float64)
        return frame

    def _timeframe(self, frame: pd.DataFrame) -> str:
        if self.p.timeframe:
            return self.p.timeframe
        step = infer_bar_interval(frame.index[-50:]) if len(frame) > 1 else pd.Timedelta(0)
        return _label(step)

    def _show(self, index: int, forecast: WindowForecast | None) -> None:
        """Write one forecast onto the lines at buffer position `index`."""
        self.forecast = forecast or self.forecast
        if forecast is None:
            return
        step = self.p.step
        values = (forecast.close(step), forecast.expected_return(step), forecast.quantile(self.p.lower_q, step),
                  forecast.quantile(self.p.upper_q, step), forecast.prob_up(step))
        for name, value in zip(self.lines.getlinealiases(), values):
            getattr(self.lines, name).array[index] = value

    def _forecast_frame(self, frame: pd.DataFrame, positions: list[int]) -> dict[int, WindowForecast]:
        due = [p for p in positions if (p - (self.lookback - 1)) % self.service.settings.every == 0]
        found = self.service.forecast_at(frame, due, self.symbol, self._timeframe(frame))
        for f in found.values():
            self.forecasts[f.bar_open] = f
        return found

    # --- runonce mode ---------------------------------------------------------------------
    def once(self, start: int, end: int) -> None:
        frame = self._frame(0, end)
        found = self._forecast_frame(frame, list(range(max(start, self.lookback - 1), end)))
        for i in range(max(start, self.lookback - 1), end):
            self._show(i, found.get(i))

    # --- next mode ------------------------------------------------------------------------
    def next(self) -> None:
        if self.data.replaying:
            self._next_replay()
            return
        position = len(self.data) - 1
        total = self.data.close.buflen()
        if not self._precomputed and total > len(self.data):
            # preloaded: the full series is known, forecast every window in one batch
            # (each window still ends at its own bar)
            self._forecast_frame(self._frame(0, total), list(range(self.lookback - 1, total)))
            self._precomputed = True
        stamp = num2timestamps([self.data.datetime[0]])[0]
        if stamp not in self.forecasts and not self._precomputed:
            frame = self._frame_recent(0)
            self._forecast_frame(frame, [len(frame) - 1] if self._due(position) else [])
        self._show_now(self.forecasts.get(stamp))

    def _due(self, position: int) -> bool:
        return (position - (self.lookback - 1)) % self.service.settings.every == 0

    def _frame_recent(self, ago: int) -> pd.DataFrame:
        """The last `lookback` bars ending `ago` bars back, from the line buffers."""
        d, n = self.data, self.lookback
        cols = {name: np.asarray(getattr(d, name).get(ago=ago, size=n), dtype=np.float64)
                for name in ("open", "high", "low", "close", "volume")}
        return self._with_amount(pd.DataFrame(cols, index=num2timestamps(d.datetime.get(ago=ago, size=n))))

    def _show_now(self, forecast: WindowForecast | None) -> None:
        self.forecast = forecast or self.forecast
        if forecast is not None:
            step = self.p.step
            self.lines.pred_close[0] = forecast.close(step)
            self.lines.pred_return[0] = forecast.expected_return(step)
            self.lines.lower[0] = forecast.quantile(self.p.lower_q, step)
            self.lines.upper[0] = forecast.quantile(self.p.upper_q, step)
            self.lines.p_up[0] = forecast.prob_up(step)

    def _next_replay(self) -> None:
        closed = len(self.data) - 2  # the bar at [0] is still forming
        if closed != self._last_closed:
            self._last_closed = closed
            if closed >= self.lookback - 1 and self._due(closed):
                frame = self._frame_recent(-1)
                self._forecast_frame(frame, [len(frame) - 1])
                self.forecast = self.forecasts.get(frame.index[-1], self.forecast)
        self._show_now(self.forecast)


def _label(step: pd.Timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
