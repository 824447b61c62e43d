"""KronosIndicator: Kronos forecasts as Backtrader lines.

The value at bar t comes from the window of `lookback` bars ending at t (its close is known
when `next` runs for t), never from later bars. Forecasts are computed in batches whenever
the feed's bars are known before they are delivered: preloaded data (`runonce` or `next`
mode), and resampled or replayed feeds over files or DataFrames, whose bars are read ahead
from a copy of the feed (see `history`). Each delivered bar is checked against the bars
read ahead, so a forecast is only used for the window it was made from; live feeds are
forecast bar by bar as each bar closes. With replayed data the forming bar is delivered
many times: the indicator shows the forecast of the last closed bar, computed once.

The forecast service (model, database engine) is created on first use in each process,
so the indicator pickles for Backtrader's `optstrategy` on several processes.
"""
from __future__ import annotations

import logging
from typing import Iterable

import numpy as np
import pandas as pd

from kronos_trader.config import DataSettings, ForecastSettings, ModelSettings, forecast_settings
from kronos_trader.data import infer_bar_interval
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.forecasting.values import WindowForecast

from .compat import bt, num2timestamps
from .history import FIELDS, check_overlap, known_history
from .services import computing_lock, service_for

log = logging.getLogger(__name__)
# the forecast settings settable on the indicator (and on PolicyStrategy, swept by optstrategy);
# their defaults are ForecastSettings' own, and they are checked once, by ForecastSettings
FORECAST_PARAMS = ("lookback", "horizon", "sample_count", "temperature", "top_k", "top_p", "seed", "every",
                   "p_up")


def _default(section, name: str):
    return section.model_fields[name].default


class KronosIndicator(bt.Indicator):
    """Lines: pred_close (mean close at `step`), pred_return, lower/upper (quantiles of the
    close), p_up (P(close at `step` > last close)); p_even is the constant 0.5 the plot
    shades P(up) against (green above, red below)."""

    lines = ("pred_close", "pred_return", "lower", "upper", "p_up", "p_even")
    params = (
        ("service", None),        # a ForecastService; built from the params below when None
        ("model", _default(ModelSettings, "name")),
        ("device", _default(ModelSettings, "device")),
        ("precision", _default(ModelSettings, "precision")),  # or "bf16" (model.precision)
        ("calendar", _default(DataSettings, "calendar")),     # future bar stamps: auto, 24/7, XNYS, ...
        *((name, _default(ForecastSettings, name)) for name in FORECAST_PARAMS),  # lookback .. p_up
        ("db", None),             # SQLAlchemy URL to store/reuse forecasts (shared across processes)
        ("step", None),           # horizon step shown on the lines (default: the last)
        ("lower_q", 0.05),
        ("upper_q", 0.95),
        ("symbol", None),         # default: the data feed's name
        ("timeframe", None),      # default: derived from the bar interval
    )
    plotinfo = dict(subplot=True, plotname="Kronos P(up)", plotyticks=[0.0, 0.5, 1.0], plothlines=[0.5],
                    plotymargin=0.05)
    plotlines = dict(pred_close=dict(_plotskip=True), pred_return=dict(_plotskip=True),
                     lower=dict(_plotskip=True), upper=dict(_plotskip=True), p_even=dict(_plotskip=True),
                     p_up=dict(color="purple", _fill_gt=("p_even", ("green", 0.25)),
                               _fill_lt=("p_even", ("red", 0.25))))

    def __init__(self):
        self._service: ForecastService | None = self.p.service
        self.settings: ForecastSettings = self._service.settings if self._service is not None else \
            forecast_settings({name: getattr(self.p, name) for name in FORECAST_PARAMS}, type(self).__name__)
        self.lookback = self.settings.lookback
        self.addminperiod(self.lookback + (1 if self.data.replaying else 0))
        self.symbol = self.p.symbol or getattr(self.data, "_name", None) or "data"
        self.forecasts: dict[pd.Timestamp, WindowForecast] = {}  # by bar open time
        self.forecast: WindowForecast | None = None  # latest shown
        self.computed = 0  # windows this indicator had the model compute (the rest came from the store)
        self.reused = 0
        self._given: dict[pd.Timestamp, WindowForecast] = {}  # handed in by the caller (`use_forecasts`)
        self._history: pd.DataFrame | None = None  # bars read ahead, checked as they are delivered
        self._history_values: np.ndarray | None = None
        self._prepared = False
        self._checked = 0     # leading bars compared with the read-ahead history
        self._last_closed = -1

    def _plotlabel(self) -> list:
        s = self.settings
        return [f"lookback {s.lookback}, step {self.p.step or s.horizon}, {s.sample_count} paths {s.p_up}"]

    # --- the service, created where it is used ----------------------------------------------
    @property
    def service(self) -> ForecastService:
        if self._service is None:
            self._service = service_for(self.p.model, self.settings, self.p.db, self.p.device,
                                        calendar=self.p.calendar, precision=self.p.precision)
        return self._service

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.p.service is None:
            state["_service"] = None  # rebuilt from the params on first use in the receiving process
        return state

    # --- reading ----------------------------------------------------------------------------
    def current(self) -> WindowForecast | None:
        """The forecast made at the close of the current bar (of the last closed bar when
        replaying); None between forecast bars when `every` > 1 and before the lookback."""
        if self.data.replaying:
            return self.forecast
        if not len(self.data):
            return None
        return self.forecasts.get(num2timestamps([self.data.datetime[0]])[0])

    def due(self, position: int) -> bool:
        """Whether a forecast is made at the close of bar `position` (0-based)."""
        return position >= self.lookback - 1 and (position - (self.lookback - 1)) % self.settings.every == 0

    # --- batched forecasts --------------------------------------------------------------------
    def use_forecasts(self, forecasts: Iterable[WindowForecast], candles: pd.DataFrame) -> None:
        """Use forecasts computed before the run from `candles` (a backtest's batched pass) for
        the bars they were made at, instead of asking the service for them again. A window any
        of whose bars differs from those candles (or a forecast of another horizon) is
        forecast as usual."""
        horizon = self.settings.horizon
        self._given = {f.bar_open: f for f in forecasts if f.horizon == horizon}
        self._given_bars = candles[list(FIELDS)]

    def _given_for(self, frame: pd.DataFrame, positions: list[int]) -> dict[int, WindowForecast]:
        """The handed forecasts whose whole window in `frame` equals the candles they were made from."""
        source = self._given_bars.reindex(frame.index).to_numpy(dtype=np.float64)
        differs = ~(source == frame[list(FIELDS)].to_numpy(dtype=np.float64)).all(axis=1)
        before = np.concatenate([[0], np.cumsum(differs)])  # differing rows before each row
        found = {}
        for p in positions:
            start, given = p - self.lookback + 1, self._given.get(frame.index[p])
            if given is not None and start >= 0 and before[p + 1] == before[start]:
                found[p] = given
        return found

    def _forecast(self, frame: pd.DataFrame, positions: list[int]) -> dict[int, WindowForecast]:
        """Forecasts for windows ending at rows `positions` of `frame`, stored and kept."""
        found = self._given_for(frame, positions) if self._given else {}
        positions = [p for p in positions if p not in found]
        if positions:
            service = self.service
            computed, reused = service.computed, service.reused
            key = f"{self.symbol}|{frame.index[0]}|{frame.index[-1]}|{len(frame)}|{positions[0]}|{len(positions)}"
            with computing_lock(service, key):
                found.update(service.forecast_at(frame, positions, self.symbol, self._timeframe(frame)))
            self.computed += service.computed - computed
            self.reused += service.reused - reused
        for f in found.values():
            self.forecasts[f.bar_open] = f
        return found

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

    def _show(self, index: int, forecast: WindowForecast) -> None:
        """Write one forecast onto the lines at buffer position `index`."""
        step = self.p.step
        values = (forecast.close(step), forecast.expected_return(step), forecast.quantile(self.p.lower_q, step),
                  forecast.quantile(self.p.upper_q, step), forecast.prob_up(step), 0.5)
        for line, value in zip(self.lines, values):
            line.array[index] = value

    def _before_first_forecast(self) -> None:
        """Fail fast on feeds that cannot run together, before anything is computed."""
        owner = getattr(self, "_owner", None)
        check_overlap(getattr(owner, "datas", None) or [self.data])

    # --- runonce mode -------------------------------------------------------------------------
    def once(self, start: int, end: int) -> None:
        self._before_first_forecast()
        frame = self._with_amount(_bars(self.data, 0, end))
        found = self._forecast(frame, [i for i in range(start, end) if self.due(i)])
        for i, forecast in found.items():
            self._show(i, forecast)
        self.forecast = found[max(found)] if found else self.forecast

    # --- next mode ----------------------------------------------------------------------------
    def prenext(self) -> None:
        self._prepare()
        self._check_delivered()

    def next(self) -> None:
        self._prepare()
        self._check_delivered()
        closed = len(self.data) - (2 if self.data.replaying else 1)
        if self.data.replaying and closed == self._last_closed:
            self._show_now(self.forecast)  # another tick of the forming bar
            return
        self._last_closed = closed
        if self.due(closed):
            stamp = num2timestamps([self.data.datetime.array[closed]])[0]
            forecast = self.forecasts.get(stamp) if self._history is not None else None
            if forecast is None:
                forecast = self._forecast_closed(closed)
            self.forecast = forecast
            if not self.data.replaying:
                self._show_now(forecast)
                return
        if self.data.replaying:
            self._show_now(self.forecast)

    def _prepare(self) -> None:
        """Once: read the bars ahead where they are known and forecast all of them in batches."""
        if self._prepared:
            return
        self._prepared = True
        self._before_first_forecast()
        history = known_history(self.data)
        if history is None or len(history) < self.lookback:
            return
        self._history = history
        self._history_values = history[list(FIELDS)].to_numpy()
        last = len(history) - (1 if self.data.replaying else 0)  # a replayed last bar is never shown closed
        self._forecast(self._with_amount(history.copy()), [i for i in range(last) if self.due(i)])

    def _check_delivered(self) -> None:
        """Compare each newly closed bar with the bar read ahead; on any difference stop
        using the read-ahead forecasts (the rest are computed bar by bar)."""
        if self._history is None:
            return
        newest = len(self.data) - (2 if self.data.replaying else 1)
        d = self.data
        while self._checked <= newest:
            i, ago = self._checked, newest - self._checked + (1 if self.data.replaying else 0)
            row = np.asarray([getattr(d, name)[-ago] for name in FIELDS], dtype=np.float64)
            stamp = num2timestamps([d.datetime[-ago]])[0]
            if not (i < len(self._history) and stamp == self._history.index[i]
                    and np.array_equal(row, self._history_values[i], equal_nan=True)):
                log.warning("%s: bar %d (%s) differs from the bars read ahead; forecasting bar by bar from here",
                            self.symbol, i, stamp)
                self._history = None
                self.forecasts = {k: v for k, v in self.forecasts.items() if k < stamp}
                return
            self._checked += 1

    def _forecast_closed(self, closed: int) -> WindowForecast:
        """Forecast one closed bar from the bars delivered so far (with the history that
        calibration needs)."""
        s = self.settings
        size = self.lookback + (s.every * s.calibration_window if s.calibration != "none" else 0)
        start = max(0, closed + 1 - size)
        frame = self._with_amount(_bars(self.data, start, closed + 1))
        return self._forecast(frame, [len(frame) - 1])[len(frame) - 1]

    def _show_now(self, forecast: WindowForecast | None) -> None:
        if forecast is None:
            return
        step = self.p.step
        self.lines.pred_close[0] = forecast.close(step)
        self.lines.pred_return[0] = forecast.expected_return(step)
        self.lines.lower[0] = forecast.quantile(self.p.lower_q, step)
        self.lines.upper[0] = forecast.quantile(self.p.upper_q, step)
        self.lines.p_up[0] = forecast.prob_up(step)
        self.lines.p_even[0] = 0.5


def _bars(data, start: int, end: int) -> pd.DataFrame:
    """Bars [start, end) of a feed's buffers as a candle frame."""
    cols = {name: np.asarray(getattr(data, name).array[start:end], dtype=np.float64) for name in FIELDS}
    return pd.DataFrame(cols, index=num2timestamps(data.datetime.array[start:end]))


def _label(step: pd.Timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
