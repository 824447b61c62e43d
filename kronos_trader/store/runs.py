"""Run-scoped writes: runs, signals, orders, fills, equity, balances, trades, events."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from sqlalchemy import select, update

from kronos_trader.records import OrderRecord, SignalRecord

from ._util import chunks, dedupe, opt_float, opt_utc_naive, records, to_utc_naive
from .base import StoreBase
from .errors import StoreError
from .order_state import transition
from .models import (
    EVENT_LEVELS,
    ORDER_SIDES,
    ORDER_STATUSES,
    ORDER_TYPES,
    RUN_KINDS,
    RUN_STATUSES,
    Balance,
    EquitySnapshot,
    Event,
    Fill,
    Order,
    Run,
    Signal,
    Trade,
    new_run_id,
    utcnow,
)

_TRADE_FIELDS = (
    "symbol", "entry_time", "exit_time", "side", "size",
    "entry_price", "exit_price", "pnl", "pnl_pct",
)
_TRADE_UPDATE = ("exit_time", "side", "size", "entry_price", "exit_price", "pnl", "pnl_pct", "fees")
_EQUITY_UPDATE = ("equity", "cash", "position_value", "details")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


class RunsMixin(StoreBase):
    # ------------------------------------------------------------------ runs
    def create_run(
        self,
        kind: str,
        name: str,
        config: Mapping[str, Any] | None = None,
        code_version: str | None = None,
        *,
        run_id: str | None = None,
        started_at: Any = None,
    ) -> str:
        """Register a run (status 'running') and return its id (uuid4 hex).

        Passing an existing ``run_id`` (e.g. resuming a paper run) is a no-op.
        """
        _check("kind", kind, RUN_KINDS)
        rid = run_id or new_run_id()
        row = {
            "id": rid, "kind": kind, "name": name,
            "config": dict(config) if config is not None else None,
            "code_version": code_version,
            "started_at": opt_utc_naive(started_at) or utcnow(),
            "status": "running", "finished_at": None, "summary": None,
        }
        with self.session() as s:
            self._write(s, Run.__table__, [row], ("id",))
        return rid

    def finish_run(
        self, run_id: str, status: str = "finished", summary: Mapping[str, Any] | None = None
    ) -> None:
        """Mark a run finished/failed (finished_at = now); ``summary=None`` keeps the old one."""
        _check("status", status, RUN_STATUSES)
        values: dict[str, Any] = {"status": status, "finished_at": utcnow()}
        if summary is not None:
            values["summary"] = dict(summary)
        with self.session() as s:
            res = s.execute(update(Run).where(Run.id == run_id).values(**values))
            if res.rowcount == 0:
                raise StoreError(f"unknown run {run_id!r}")

    # ------------------------------------------------------------------ signals
    def record_signal(
        self,
        run_id: str,
        symbol: str,
        timeframe: str,
        bar_time: Any,
        target_position: float,
        *,
        forecast_id: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Signal:
        """Record one decision with free-form ``details`` (tooling and tests; the backtest
        and the live loop write ``SignalRecord`` s through ``record_decisions``, the same
        writer); an existing one for that bar is kept and returned."""
        self._store_decisions(run_id, [{"symbol": symbol, "timeframe": timeframe, "bar_time": bar_time,
                                        "forecast_id": forecast_id, "target_position": target_position,
                                        "details": details}], [])
        key = {"run_id": run_id, "symbol": symbol, "timeframe": timeframe, "bar_time": to_utc_naive(bar_time)}
        with self.session(readonly=True) as s:
            return s.scalars(select(Signal).filter_by(**key)).one()

    # ------------------------------------------------------------------ orders
    def record_order(
        self,
        run_id: str,
        client_order_id: str,
        symbol: str,
        timeframe: str,
        bar_time: Any,
        side: str,
        amount: float,
        *,
        type: str = "market",
        price: float | None = None,
        status: str = "new",
        reason: str | None = None,
        exchange_order_id: str | None = None,
    ) -> Order:
        """Record one order (any type; through ``record_decisions``' writer); if
        ``client_order_id`` exists nothing changes. Returns the stored row."""
        self._store_decisions(run_id, [], [{
            "client_order_id": client_order_id, "symbol": symbol, "timeframe": timeframe, "bar_time": bar_time,
            "side": side, "type": type, "amount": amount, "price": price, "status": status, "reason": reason,
            "exchange_order_id": exchange_order_id}])
        with self.session(readonly=True) as s:
            return s.scalars(select(Order).where(Order.client_order_id == client_order_id)).one()

    def update_order_status(
        self,
        client_order_id: str,
        status: str,
        *,
        exchange_order_id: str | None = None,
        reason: str | None = None,
    ) -> Order:
        """Move an order to ``status`` through the order state machine (an illegal move
        raises :class:`IllegalTransition`); sets the exchange id / reason when given."""
        _check("status", status, ORDER_STATUSES)
        with self.session() as s:
            order = s.scalars(
                select(Order).where(Order.client_order_id == client_order_id).with_for_update()
            ).one_or_none()
            if order is None:
                raise StoreError(f"unknown order {client_order_id!r}")
            order.status = transition(order.status, status).value
            if exchange_order_id is not None:
                order.exchange_order_id = exchange_order_id
            if reason is not None:
                order.reason = reason
            order.updated_at = utcnow()
            return order

    def record_fill(
        self,
        order_id: int,
        seq: int,
        ts: Any,
        price: float,
        amount: float,
        *,
        fee: float = 0.0,
        fee_currency: str | None = None,
    ) -> Fill:
        """Record fill number ``seq`` of an order (idempotent on (order_id, seq))."""
        with self.session() as s:
            run_id = s.scalar(select(Order.run_id).where(Order.id == order_id))
            if run_id is None:
                raise StoreError(f"unknown order id {order_id!r}")
            row = {"order_id": order_id, "run_id": run_id, "seq": int(seq),
                   "ts": to_utc_naive(ts), "price": float(price), "amount": float(amount),
                   "fee": float(fee or 0.0), "fee_currency": fee_currency}
            self._write(s, Fill.__table__, [row], ("order_id", "seq"))
            return s.scalars(select(Fill).filter_by(order_id=order_id, seq=int(seq))).one()

    def record_decisions(
        self,
        run_id: str,
        signals: Iterable[SignalRecord],
        orders: Iterable[OrderRecord] = (),
        *,
        equity: Mapping[str, Any] | None = None,
        fills: Iterable[Mapping[str, Any]] = (),
    ) -> set[str]:
        """The one writer of decided bars, for backtests and live trading: the signals,
        their orders (a live run's stored 'new' before they are sent) and, in the same
        transaction, the equity snapshot at the bar's close (live) or the orders' fills (a
        backtest's, naming their order by client_order_id with seq, ts, price, amount, fee).
        Idempotent (a decision, order or fill already stored is kept); returns the client
        ids of the orders added now."""
        return self._store_decisions(run_id, [r.row() for r in signals], [o.row() for o in orders], equity, fills)

    def _store_decisions(self, run_id: str, signals: list[dict[str, Any]], orders: list[dict[str, Any]],
                         equity: Mapping[str, Any] | None = None, fills: Iterable[Mapping[str, Any]] = ()) -> set[str]:
        now = utcnow()
        sig_rows = dedupe([{**r, "run_id": run_id, "bar_time": to_utc_naive(r["bar_time"]),
                            "target_position": float(r["target_position"]), "details": _opt_dict(r.get("details")),
                            "created_at": now} for r in signals], ("symbol", "timeframe", "bar_time"), keep="first")
        order_rows = []
        for o in orders:
            _check("side", o["side"], ORDER_SIDES)
            _check("type", o.get("type", "market"), ORDER_TYPES)
            _check("status", o["status"], ORDER_STATUSES)
            order_rows.append({"type": "market", "exchange_order_id": None, **o, "run_id": run_id,
                               "bar_time": to_utc_naive(o["bar_time"]), "amount": float(o["amount"]),
                               "price": opt_float(o.get("price")), "created_at": now, "updated_at": now})
        order_rows = dedupe(order_rows, ("client_order_id",), keep="first")
        fill_rows = list(fills)
        with self.session() as s:
            self._write(s, Signal.__table__, sig_rows, ("run_id", "symbol", "timeframe", "bar_time"))
            # what this INSERT stored, not a look-up before it: a concurrent writer can store
            # the same order in between (PostgreSQL, READ COMMITTED), and only one may send it
            added = set(self._write(s, Order.__table__, order_rows, ("client_order_id",),
                                    returning="client_order_id"))
            if fill_rows:
                ids = _order_ids(s, list({r["client_order_id"] for r in fill_rows}))
                prepared = dedupe([
                    {"order_id": ids[r["client_order_id"]], "run_id": run_id, "seq": int(r.get("seq", 0)),
                     "ts": to_utc_naive(r["ts"]), "price": float(r["price"]), "amount": float(r["amount"]),
                     "fee": float(r.get("fee") or 0.0), "fee_currency": r.get("fee_currency")}
                    for r in fill_rows], ("order_id", "seq"), keep="first")
                self._write(s, Fill.__table__, prepared, ("order_id", "seq"))
            if equity is not None:
                row = {"run_id": run_id, "ts": to_utc_naive(equity["ts"]), "equity": float(equity["equity"]),
                       "cash": float(equity["cash"]), "position_value": float(equity["position_value"]),
                       "details": _opt_dict(equity.get("details"))}
                self._write(s, EquitySnapshot.__table__, [row], ("run_id", "ts"), _EQUITY_UPDATE)
        return added

    def decided(self, run_id: str, bar_time: Any) -> set[tuple[str, str]]:
        """(symbol, timeframe) of the decisions stored for the bar closing at ``bar_time``."""
        with self.session(readonly=True) as s:
            return set(s.execute(select(Signal.symbol, Signal.timeframe).where(
                Signal.run_id == run_id, Signal.bar_time == to_utc_naive(bar_time))).all())

    def troubled_orders(self, run_id: str, since: Any) -> list[str]:
        """Client ids of the run's orders that are 'unknown', or 'expired' since ``since``."""
        from sqlalchemy import and_, or_

        with self.session(readonly=True) as s:
            return list(s.scalars(select(Order.client_order_id).where(
                Order.run_id == run_id,
                or_(Order.status == "unknown",
                    and_(Order.status == "expired", Order.updated_at >= to_utc_naive(since)))).order_by(Order.id)))

    def decision_span(self, run_id: str) -> dict[tuple[str, str], tuple[Any, Any, dict | None]]:
        """Per (symbol, timeframe): first and last decision bar (close times) and the last
        decision's details (what a resumed run continues from)."""
        from sqlalchemy import func

        out = {}
        with self.session(readonly=True) as s:
            rows = s.execute(select(Signal.symbol, Signal.timeframe, func.min(Signal.bar_time),
                                    func.max(Signal.bar_time))
                             .where(Signal.run_id == run_id).group_by(Signal.symbol, Signal.timeframe)).all()
            for symbol, timeframe, first, last in rows:
                details = s.scalar(select(Signal.details).where(
                    Signal.run_id == run_id, Signal.symbol == symbol, Signal.timeframe == timeframe,
                    Signal.bar_time == last))
                out[(symbol, timeframe)] = (first, last, details)
        return out

    # ------------------------------------------------------------------ equity / balances
    def record_equity(
        self,
        run_id: str,
        ts: Any,
        equity: float,
        cash: float,
        position_value: float,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Upsert the equity snapshot at ``ts``."""
        self.record_equity_many(
            run_id,
            [{"ts": ts, "equity": equity, "cash": cash, "position_value": position_value,
              "details": details}],
        )

    def record_equity_many(
        self, run_id: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]
    ) -> int:
        """Bulk upsert of snapshots (DataFrame indexed by ``ts`` or rows with a ``ts`` key)."""
        prepared = [
            {"run_id": run_id, "ts": to_utc_naive(r["ts"]), "equity": float(r["equity"]),
             "cash": float(r["cash"]), "position_value": float(r["position_value"]),
             "details": _opt_dict(r.get("details"))}
            for r in records(rows)
        ]
        prepared = dedupe(prepared, ("ts",), keep="last")
        with self.session() as s:
            self._write(s, EquitySnapshot.__table__, prepared, ("run_id", "ts"), _EQUITY_UPDATE)
        return len(prepared)

    def set_balance(
        self, run_id: str, currency: str, free: float, used: float, *, updated_at: Any = None
    ) -> None:
        """Upsert the balance of ``currency`` for a run."""
        row = {"run_id": run_id, "currency": currency, "free": float(free),
               "used": float(used), "updated_at": opt_utc_naive(updated_at) or utcnow()}
        with self.session() as s:
            self._write(s, Balance.__table__, [row], ("run_id", "currency"),
                        ("free", "used", "updated_at"))

    # ------------------------------------------------------------------ trades / events
    def record_trades(self, run_id: str, rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> int:
        """Upsert closed round trips keyed by (run_id, symbol, entry_time); returns row count."""
        prepared = []
        for r in records(rows):
            missing = [k for k in _TRADE_FIELDS if k not in r]
            if missing:
                raise ValueError(f"trade row is missing: {', '.join(missing)}")
            prepared.append({
                "run_id": run_id, "symbol": r["symbol"], "side": str(r["side"]),
                "entry_time": to_utc_naive(r["entry_time"]),
                "exit_time": to_utc_naive(r["exit_time"]),
                **{k: float(r[k]) for k in ("size", "entry_price", "exit_price", "pnl", "pnl_pct")},
                "fees": float(r.get("fees") or 0.0),
            })
        prepared = dedupe(prepared, ("symbol", "entry_time"), keep="last")
        with self.session() as s:
            self._write(s, Trade.__table__, prepared, ("run_id", "symbol", "entry_time"),
                        _TRADE_UPDATE)
        return len(prepared)

    def record_event(
        self,
        run_id: str | None,
        level: str,
        message: str,
        *,
        symbol: str | None = None,
        ts: Any = None,
    ) -> None:
        """Append a log event (not deduplicated: events are a log)."""
        _check("level", level, EVENT_LEVELS)
        with self.session() as s:
            s.add(Event(run_id=run_id, level=level, message=str(message), symbol=symbol,
                        ts=opt_utc_naive(ts) or utcnow()))


def _order_ids(s: Any, client_ids: list[str]) -> dict[str, int]:
    """Stored orders' ids by client id, looked up in parts (a backtest names thousands)."""
    out: dict[str, int] = {}
    for part in chunks(client_ids, 500):
        out.update(s.execute(select(Order.client_order_id, Order.id).where(Order.client_order_id.in_(part))).all())
    return out


def _opt_dict(value: Any) -> dict[str, Any] | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return dict(value)
