"""What the live loop writes, all through the store's repository: the decisions of a bar
(signals, orders stored BEFORE they are sent, the equity at the bar's close, one
transaction) and the run's events."""
from __future__ import annotations

import logging

import pandas as pd

from kronos_trader.exchange.errors import one_line
from kronos_trader.store import Store

from .accounting import Account, Book
from .step import StepResult

log = logging.getLogger(__name__)


class Persister:
    def __init__(self, store: Store, run_id: str | None = None):
        self.store, self.run_id = store, run_id

    def event(self, level: str, message: str, symbol: str | None = None, run_id: str | None = None) -> None:
        """Log and store an event; storing it never stops trading."""
        getattr(log, level)("%s%s", f"{symbol}: " if symbol else "", message)
        try:
            self.store.record_event(run_id or self.run_id, level, one_line(message, 1000), symbol=symbol)
        except Exception as exc:
            log.error("could not record event: %s", exc)

    def decided(self, close_time: pd.Timestamp) -> set[Book]:
        return self.store.decided(self.run_id, close_time)

    def record(self, step: StepResult, close_time: pd.Timestamp, account: Account,
               prices: dict[Book, float]) -> set[str]:
        """Store one bar's decisions; returns the client ids of the orders stored now."""
        equity = account.equity(prices)
        snapshot = {"ts": close_time, "equity": equity, "cash": account.cash, "position_value": equity - account.cash,
                    "details": {"prices": {f"{k[0]} {k[1]}": v for k, v in prices.items()}}}
        return self.store.record_decisions(self.run_id, step.signals, step.orders, equity=snapshot)
