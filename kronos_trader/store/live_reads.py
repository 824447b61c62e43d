"""Reads of paper/live runs for `status`, the audit and the skill gate's replay: the live
package reads the database only through these (no SQL outside the store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .base import StoreBase
from .models import Balance, Candle, EquitySnapshot, Event, Fill, Forecast, Order, Run, Signal


@dataclass
class RunRows:
    """Everything the audit of a run looks at."""

    run: Run
    orders: list[Order]
    fills: list[Fill]
    signals: list[Signal]
    balances: list[Balance]


class LiveReadsMixin(StoreBase):
    def run_rows(self, run_id: str) -> RunRows | None:
        with self.session(readonly=True) as s:
            run = s.get(Run, run_id)
            if run is None:
                return None
            return RunRows(run, list(s.scalars(select(Order).where(Order.run_id == run_id))),
                           list(s.scalars(select(Fill).where(Fill.run_id == run_id))),
                           list(s.scalars(select(Signal).where(Signal.run_id == run_id))),
                           list(s.scalars(select(Balance).where(Balance.run_id == run_id))))

    def latest_equity(self, run_id: str) -> EquitySnapshot | None:
        with self.session(readonly=True) as s:
            return s.scalars(select(EquitySnapshot).where(EquitySnapshot.run_id == run_id)
                             .order_by(EquitySnapshot.ts.desc()).limit(1)).one_or_none()

    def latest_candle(self, source: str, symbol: str, timeframe: str) -> Candle | None:
        with self.session(readonly=True) as s:
            return s.scalars(select(Candle).where(Candle.source == source, Candle.symbol == symbol,
                                                  Candle.timeframe == timeframe)
                             .order_by(Candle.ts.desc()).limit(1)).one_or_none()

    def latest_signal(self, run_id: str, symbol: str, timeframe: str) -> tuple[Signal | None, Forecast | None]:
        """The run's last decision for a pair and its forecast (else the pair's latest forecast)."""
        with self.session(readonly=True) as s:
            signal = s.scalars(select(Signal).where(Signal.run_id == run_id, Signal.symbol == symbol,
                                                    Signal.timeframe == timeframe)
                               .order_by(Signal.bar_time.desc()).limit(1)).one_or_none()
            forecast = s.get(Forecast, signal.forecast_id) if signal is not None and signal.forecast_id else None
            if forecast is None:
                forecast = s.scalars(select(Forecast).where(Forecast.symbol == symbol, Forecast.timeframe == timeframe)
                                     .order_by(Forecast.window_end.desc()).limit(1)).one_or_none()
            return signal, forecast

    def decided_forecasts(self, run_id: str) -> list[tuple[str, str, Any, Any, dict]]:
        """(symbol, timeframe, bar_time, window_end, payload) of the run's decisions that had a
        forecast, in time order."""
        with self.session(readonly=True) as s:
            return [tuple(r) for r in s.execute(
                select(Signal.symbol, Signal.timeframe, Signal.bar_time, Forecast.window_end, Forecast.payload)
                .join(Forecast, Forecast.id == Signal.forecast_id)
                .where(Signal.run_id == run_id).order_by(Signal.bar_time, Signal.id)).all()]

    def events_like(self, run_id: str, prefix: str) -> list[Event]:
        """The run's events whose message starts with ``prefix``, oldest first."""
        with self.session(readonly=True) as s:
            return list(s.scalars(select(Event).where(Event.run_id == run_id, Event.message.like(f"{prefix}%"))
                                  .order_by(Event.ts, Event.id)))
