"""Live broker: real orders through ccxt, each carrying its deterministic client order id.

An order is stored as 'new' before ``create_order`` is called; the exchange's answer moves
it to 'sent' (resting) or 'filled' with its fills, in one transaction with the balances
read back from the exchange. A lost answer (timeout) is never blindly retried: the order
is looked up by client order id first, so a retry cannot place it twice. On start,
``reconcile`` settles every open order of the run with what the exchange knows.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable

import ccxt
import pandas as pd
from sqlalchemy import select

from kronos_trader.exchange import (
    ExchangeAdapterError,
    ExchangeFault,
    OrderNotFoundError,
    call_with_retry,
    is_retryable,
)
from kronos_trader.exchange.errors import one_line
from kronos_trader.exchange.retry import to_adapter_error
from kronos_trader.store import Balance, Fill, Order, Store
from kronos_trader.store.models import OPEN_ORDER_STATUSES, utcnow

from .accounting import Account, Position
from .ids import belongs_to_run
from .paper_broker import PaperBroker, PendingOrder

log = logging.getLogger(__name__)

#: an unconfirmed 'new' order the exchange does not know is given up after this long
NOT_FOUND_GRACE = pd.Timedelta(minutes=2)

_STATUS = {"open": "sent", "closed": "filled", "canceled": "canceled", "cancelled": "canceled",
           "expired": "canceled", "rejected": "rejected"}


class ExchangeBroker:
    kind = "live"

    def __init__(self, store: Store, run_id: str, quote: str, rules: dict, client: Any, *,
                 retry: dict | None = None, hook: Callable[..., None] | None = None,
                 event: Callable[..., None] | None = None):
        self.store, self.run_id, self.rules, self.client = store, run_id, rules, client
        self.retry = dict(retry or {"retries": 4, "backoff": 0.5})
        self.hook = hook or (lambda name, **kw: None)
        self.event = event or (lambda level, message, symbol=None: log.log(logging.INFO, message))
        self._paper = PaperBroker(store, run_id, quote, rules, commission=0.0, slippage=0.0)  # for load()
        self.account = Account(quote)
        self.pending: dict[str, PendingOrder] = {}

    # ------------------------------------------------------------------ state
    def load(self) -> None:
        self._paper.load()
        self.account, self.pending = self._paper.account, self._paper.pending

    def position(self, book) -> Position:
        return self.account.position(book)

    def track(self, orders) -> None:
        for o in orders:
            self.pending[o.client_order_id] = o

    def _balances(self) -> dict[str, tuple[float, float]]:
        raw = call_with_retry(self.client.fetch_balance, **self.retry)
        wanted = {self.account.quote, *(r.base for r in self.rules.values())}
        return {c: (float((raw.get(c) or {}).get("free") or 0.0), float((raw.get(c) or {}).get("used") or 0.0))
                for c in wanted}

    def sync_balances(self) -> None:
        """Exchange balances of the quote and base currencies into the database."""
        balances = self._balances()
        with self.store.session() as s:
            self._write_balances(s, balances)
        self.account.balances[self.account.quote] = sum(balances[self.account.quote])

    def _write_balances(self, s, balances: dict[str, tuple[float, float]]) -> None:
        now = utcnow()
        rows = {b.currency: b for b in s.scalars(select(Balance).where(Balance.run_id == self.run_id))}
        for currency, (free, used) in balances.items():
            row = rows.get(currency)
            if row is None:
                s.add(Balance(run_id=self.run_id, currency=currency, free=free, used=used, updated_at=now))
            else:
                row.free, row.used, row.updated_at = free, used, now

    # ------------------------------------------------------------------ orders
    def send(self, orders: list[PendingOrder]) -> None:
        for order in orders:
            if order.status != "new":
                continue
            try:
                answer = self._create(order)
            except ExchangeFault as exc:  # unknown whether it arrived: stays 'new', settled by poll/reconcile
                self.event("error", f"order {order.client_order_id} not confirmed: {one_line(exc)}", order.symbol)
                continue
            except ExchangeAdapterError as exc:
                self._finish(order, {"status": "rejected"}, reason=one_line(exc))
                self.event("error", f"order {order.client_order_id} refused: {one_line(exc)}", order.symbol)
                continue
            self._finish(order, answer)

    def _create(self, order: PendingOrder) -> dict:
        """create_order without duplicates. Binance refuses a repeated client order id only
        while the first order is open, so a filled market order could be placed twice: after
        a refusal made before processing (429/418 rate limits, timestamp errors) the order is
        sent again; after an ambiguous failure (timeout, 5xx, unreadable answer) it is only
        looked up by client id, and if not found raises ExchangeFault: the order stays 'new'
        and the next poll (or reconcile) settles it."""
        params = {"clientOrderId": order.client_order_id}
        attempts = int(self.retry.get("retries", 4)) + 1
        backoff = float(self.retry.get("backoff", 0.5))
        for attempt in range(1, attempts + 1):
            try:
                return self.client.create_order(order.symbol, "market", order.side, order.amount, None, params)
            except ccxt.BaseError as exc:
                if not is_retryable(exc):
                    raise to_adapter_error(exc, self.client.id, "create_order") from exc
                refused = isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.InvalidNonce)) or \
                    "-1021" in str(exc)
                self.event("warning", f"create_order {order.client_order_id} attempt {attempt} failed "
                                      f"({type(exc).__name__}){'' if refused else '; looking it up'}", order.symbol)
                if not refused:
                    for k in range(attempts):
                        found = self._lookup(order)
                        if found is not None:
                            return found
                        time.sleep(min(30.0, backoff * 2 ** k))
                    raise ExchangeFault(self.client.id, "create_order", str(exc), kind=type(exc).__name__,
                                        attempts=attempt) from exc
                if attempt == attempts:
                    raise ExchangeFault(self.client.id, "create_order", str(exc), kind=type(exc).__name__,
                                        attempts=attempt) from exc
                time.sleep(min(30.0, backoff * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _lookup(self, order: PendingOrder) -> dict | None:
        try:
            return call_with_retry(self.client.fetch_order, None, order.symbol,
                                   {"clientOrderId": order.client_order_id}, **self.retry)
        except OrderNotFoundError:
            return None

    def _finish(self, order: PendingOrder, answer: dict, reason: str | None = None) -> None:
        """Store the exchange's view of an order (status, fills) and the balances, in one transaction."""
        status = _STATUS.get(str(answer.get("status")), "sent")
        filled = float(answer.get("filled") or 0.0)
        if status == "sent" and filled:
            status = "partially_filled"
        fills = []
        if filled:
            price = float(answer.get("average") or answer.get("price") or 0.0)
            fee = answer.get("fee") or {}
            ts = pd.Timestamp(answer.get("lastTradeTimestamp") or answer.get("timestamp") or time.time() * 1000,
                              unit="ms")
            fills.append((ts, price, filled, float(fee.get("cost") or 0.0), fee.get("currency")))
        balances = self._balances() if filled else None
        account = copy.deepcopy(self.account)
        with self.store.session() as s:
            row = s.scalars(select(Order).where(Order.client_order_id == order.client_order_id)
                            .with_for_update()).one()
            have = {f.seq for f in s.scalars(select(Fill).where(Fill.order_id == row.id))}
            row.status, row.updated_at = status, utcnow()
            row.exchange_order_id = str(answer.get("id")) if answer.get("id") is not None else row.exchange_order_id
            if reason:
                row.reason = f"{row.reason}; {reason}" if row.reason else reason
            for seq, (ts, price, amount, fee, currency) in enumerate(fills):
                if seq in have:
                    continue
                s.add(Fill(order_id=row.id, run_id=self.run_id, seq=seq, ts=ts.to_pydatetime(), price=price,
                           amount=amount, fee=fee, fee_currency=currency))
                account.position(order.book).update(amount if order.side == "buy" else -amount, price)
            if balances is not None:
                self._write_balances(s, balances)
                account.balances[account.quote] = sum(balances[account.quote])
            s.flush()
            self.hook("fill_tx", results=[order.client_order_id])
        self.account = account
        order.status = status
        if status in OPEN_ORDER_STATUSES:
            self.pending[order.client_order_id] = order
        else:
            self.pending.pop(order.client_order_id, None)

    def poll(self) -> int:
        """Refresh orders still open on the exchange; returns how many filled."""
        filled = 0
        for order in list(self.pending.values()):
            try:
                found = self._lookup(order)
            except ExchangeAdapterError as exc:
                self.event("warning", f"cannot refresh order {order.client_order_id}: {one_line(exc)}", order.symbol)
                continue
            if found is None and order.status == "new":  # sending failed; a late arrival is still possible
                created = order.created if order.created is not None else pd.Timestamp(utcnow())
                if pd.Timestamp(utcnow()) - created > NOT_FOUND_GRACE:
                    self._finish(order, {"status": "canceled"}, reason="never reached the exchange")
            elif found is not None and (order.status == "new" or _STATUS.get(str(found.get("status"))) != "sent"):
                self._finish(order, found)
                filled += order.status == "filled"
        return filled

    def reconcile(self) -> None:
        """On start: every open order of the run is settled with the exchange's view; a 'new'
        order the exchange never saw is sent now. Open exchange orders of this run the
        database does not know are reported."""
        for order in list(self.pending.values()):
            try:
                found = self._lookup(order)
            except ExchangeAdapterError as exc:
                self.event("error", f"reconcile {order.client_order_id}: {one_line(exc)}", order.symbol)
                continue
            if found is not None:
                self._finish(order, found)
                self.event("info", f"reconciled {order.client_order_id}: {order.status}", order.symbol)
            elif order.status == "new":
                self.event("warning", f"sending {order.client_order_id}, stored before the last stop but never "
                                      f"received by the exchange", order.symbol)
                self.send([order])
            else:
                self._finish(order, {"status": "rejected"}, reason="unknown to the exchange at reconcile")
        symbols = sorted({r.symbol for r in self.rules.values()})
        for symbol in symbols:
            try:
                open_orders = call_with_retry(self.client.fetch_open_orders, symbol, **self.retry)
            except ExchangeAdapterError as exc:
                self.event("warning", f"cannot list open orders: {one_line(exc)}", symbol)
                continue
            with self.store.session(readonly=True) as s:
                known = set(s.scalars(select(Order.client_order_id).where(Order.run_id == self.run_id)))
            for o in open_orders:
                cid = o.get("clientOrderId")
                if belongs_to_run(cid, self.run_id) and cid not in known:
                    self.event("error", f"open exchange order {cid} is not in the database", symbol)
