"""Read helpers: runs and a run's records as DataFrames."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import DateTime, Table, func, select

from .base import StoreBase
from .models import (
    OPEN_ORDER_STATUSES,
    Balance,
    EquitySnapshot,
    Event,
    Fill,
    Order,
    Run,
    Signal,
    Trade,
)


class ReportsMixin(StoreBase):
    def get_run(self, run_id: str) -> Run | None:
        with self.session(readonly=True) as s:
            return s.get(Run, run_id)

    def list_runs(self, kind: str | None = None, *, limit: int | None = None) -> list[Run]:
        """Runs, newest first, optionally of one kind."""
        q = select(Run).order_by(Run.started_at.desc(), Run.id)
        if kind is not None:
            q = q.where(Run.kind == kind)
        if limit is not None:
            q = q.limit(limit)
        with self.session(readonly=True) as s:
            return list(s.scalars(q))

    def open_orders(self, run_id: str) -> list[Order]:
        """Orders still 'new', 'sent' or 'partially_filled', oldest first."""
        q = (select(Order)
             .where(Order.run_id == run_id, Order.status.in_(OPEN_ORDER_STATUSES))
             .order_by(Order.created_at, Order.id))
        with self.session(readonly=True) as s:
            return list(s.scalars(q))

    def last_errors(self, run_id: str | None = None) -> dict[str | None, Event]:
        """The latest 'error' event per symbol (None = not tied to a symbol)."""
        rank = func.row_number().over(
            partition_by=Event.symbol, order_by=(Event.ts.desc(), Event.id.desc())
        ).label("rank")
        inner = select(Event.id, rank).where(Event.level == "error")
        if run_id is not None:
            inner = inner.where(Event.run_id == run_id)
        inner = inner.subquery()
        q = select(Event).join(inner, Event.id == inner.c.id).where(inner.c.rank == 1)
        with self.session(readonly=True) as s:
            return {e.symbol: e for e in s.scalars(q)}

    # ------------------------------------------------------------------ DataFrames
    def _frame(self, table: Table, run_id: str, order_by: tuple[str, ...]) -> pd.DataFrame:
        q = (select(table).where(table.c.run_id == run_id)
             .order_by(*(table.c[c] for c in order_by)))
        with self.session(readonly=True) as s:
            rows = s.execute(q).all()
        frame = pd.DataFrame.from_records(rows, columns=[c.name for c in table.columns])
        for col in table.columns:
            if isinstance(col.type, DateTime):
                frame[col.name] = pd.to_datetime(frame[col.name])
        return frame

    def load_signals(self, run_id: str) -> pd.DataFrame:
        return self._frame(Signal.__table__, run_id, ("bar_time", "symbol", "id"))

    def load_orders(self, run_id: str) -> pd.DataFrame:
        return self._frame(Order.__table__, run_id, ("created_at", "id"))

    def load_fills(self, run_id: str) -> pd.DataFrame:
        return self._frame(Fill.__table__, run_id, ("ts", "id"))

    def load_trades(self, run_id: str) -> pd.DataFrame:
        return self._frame(Trade.__table__, run_id, ("entry_time", "symbol"))

    def load_balances(self, run_id: str) -> pd.DataFrame:
        return self._frame(Balance.__table__, run_id, ("currency",))

    def load_equity(self, run_id: str) -> pd.DataFrame:
        """Equity curve indexed by naive-UTC ``ts``: equity, cash, position_value, details."""
        frame = self._frame(EquitySnapshot.__table__, run_id, ("ts",))
        frame = frame.drop(columns=["id", "run_id"]).set_index("ts")
        frame.index = pd.DatetimeIndex(frame.index, name="ts")
        return frame
