"""Live broker: real orders through ccxt, each carrying its deterministic client order id.

Every status change goes through the order state machine (``store.transition``). An order
is stored as 'new' with its decision, marked 'sent' just before ``create_order`` and moved
by the exchange's answer to open / partially_filled / filled (with its trades as fills, each
with its fee and fee currency) in one transaction with the balances read back from the
exchange. A lost answer (timeout, 5xx) is never blindly re-sent: the shared retry helper
looks the order up by client order id before each new attempt, and an order still unknown
after that is 'unknown' until a lookup settles it. "Not found" counts as lost only after
``lost_after`` lookups spread over ``not_found_grace`` and a miss in the order history too:
then it is 'expired' and the runner decides again on the current candle instead of
sending the old order late.

Positions are net of the fees charged in the base asset; balances are the exchange's, read
on start and after every fill, and checked against the opening balance plus the run's fills.
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Callable

import ccxt
import pandas as pd

from kronos_trader.exchange import (
    ExchangeAdapterError,
    ExchangeConfigError,
    ExchangeFault,
    MarketRules,
    OrderNotFoundError,
    call_with_retry,
    last_price,
)
from kronos_trader.exchange.errors import one_line
from kronos_trader.store import OrderUpdate, Store
from kronos_trader.store.models import OPEN_ORDER_STATUSES, utcnow

from .accounting import Account, Book, Position, base_of, fill_deltas
from .broker import PendingOrder, SendResult, is_dust, load_state
from .ids import PREFIX

log = logging.getLogger(__name__)

#: a missing order counts as lost after this many lookups in a row, spread over at least
NOT_FOUND_LOOKUPS = 3
NOT_FOUND_GRACE = pd.Timedelta(minutes=2)
#: relative difference tolerated between the exchange's balance and opening + fills
BALANCE_TOLERANCE = 1e-6

_STATUS = {"open": "open", "closed": "filled", "canceled": "canceled", "cancelled": "canceled",
           "expired": "expired", "rejected": "rejected"}
#: refused before the exchange processed the request: the order was certainly not placed
_REFUSED = (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.InvalidNonce)


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, _REFUSED) or "-1021" in str(exc)


class ExchangeBroker:
    kind = "live"

    def __init__(self, store: Store, run_id: str, quote: str, rules: dict[str, MarketRules], client: ccxt.Exchange, *,
                 books: list[Book] | None = None, retry: dict | None = None,
                 hook: Callable[..., None] | None = None, event: Callable[..., None] | None = None,
                 lost_after: int = NOT_FOUND_LOOKUPS, not_found_grace: pd.Timedelta = NOT_FOUND_GRACE):
        self.store, self.run_id, self.rules, self.client = store, run_id, rules, client
        self.books = list(books or [])
        self.retry = dict(retry or {"retries": 4, "backoff": 0.5})
        self.hook = hook or (lambda name, **kw: None)
        self.event = event or (lambda level, message, symbol=None: log.log(logging.INFO, message))
        self.lost_after, self.not_found_grace = lost_after, pd.Timedelta(not_found_grace)
        self.account = Account(quote)
        self.pending: dict[str, PendingOrder] = {}
        self.free: dict[str, float] = {}
        #: orders found never to have reached the exchange (the runner decides again)
        self._lost: list[PendingOrder] = []

    # ------------------------------------------------------------------ state
    def load(self) -> None:
        """Balances, positions (an adopted holding included) and open orders from the database."""
        self.account, self.pending = load_state(self.store, self.run_id, self.account.quote, self.books)

    def open(self, adopt: bool) -> None:
        """Start or resume the run on the account. Open orders with our client-id prefix
        that the database does not know (a lost database, a run that died) are never
        ignored: the start is refused, or with ``adopt`` they are canceled first. A new
        run starts from the exchange's balances: a holding of a traded base asset (above
        dust) is refused, or with ``adopt`` becomes the run's position at the current
        price."""
        self.load()
        self._foreign_orders(adopt)
        fresh = not self.account.balances  # no balance read yet: the run's first start
        balances = self._balances()
        held = self._holdings(balances) if fresh else {}
        if held and not adopt:
            what = ", ".join(f"{amount:.8g} {c} (about {amount * price:,.2f} {self.account.quote})"
                             for c, (amount, price) in held.items())
            raise ExchangeConfigError(f"the account holds {what} and this is a new run: pass --adopt to make "
                                      f"it the run's position, or move it out of the account")
        self.store.apply_order_updates(self.run_id, [], balances, opening=self._opening)
        if held:
            self.store.adopt_balances(self.run_id, held)
            for c, (amount, price) in held.items():
                self.event("warning", f"adopted {amount:.8g} {c} held on the exchange at {price:g} as the run's "
                                      f"position")
            self.load()
        self._apply_balances(balances)  # checked against the records once the orders settled (``recover``)

    def _foreign_orders(self, adopt: bool) -> None:
        known = self.store.order_ids(self.run_id)
        found = []
        for symbol in sorted({r.symbol for r in self.rules.values()}):
            orders = call_with_retry(self.client.fetch_open_orders, symbol, **self.retry)
            found += [(symbol, o) for o in orders if str(o.get("clientOrderId") or "").startswith(PREFIX)
                      and o.get("clientOrderId") not in known]
        if found and not adopt:
            ids = ", ".join(f"{o['clientOrderId']} ({symbol} {o.get('side')} {o.get('amount')})" for symbol, o in found)
            raise ExchangeConfigError(f"open orders on the exchange placed by kronos-trader are not in this "
                                      f"database: {ids}; pass --adopt to cancel them and start from the balances, "
                                      f"or wait for them to settle")
        for symbol, o in found:
            call_with_retry(self.client.cancel_order, o["id"], symbol, **self.retry)
            self.event("warning", f"canceled open order {o['clientOrderId']} ({o.get('side')} {o.get('amount')}) "
                                  f"that this database did not know", symbol)

    def _holdings(self, balances: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        """Base assets of the traded pairs held above dust: currency -> (amount, price)."""
        held = {}
        for rules in self.rules.values():
            amount = sum(balances.get(rules.base, (0.0, 0.0)))
            if not amount or rules.base in held:
                continue
            price = last_price(self.client, rules.symbol, **self.retry)
            if not is_dust(rules.min_amount, rules.min_notional, amount, price):
                held[rules.base] = (amount, price)
        return held

    def position(self, book) -> Position:
        return self.account.position(book)

    def track(self, orders) -> None:
        for o in orders:
            self.pending[o.client_order_id] = o

    @property
    def currencies(self) -> list[str]:
        return list(dict.fromkeys([self.account.quote, *(r.base for r in self.rules.values())]))

    def _balances(self) -> dict[str, tuple[float, float]]:
        raw = call_with_retry(self.client.fetch_balance, **self.retry)
        return {c: (float((raw.get(c) or {}).get("free") or 0.0), float((raw.get(c) or {}).get("used") or 0.0))
                for c in self.currencies}

    def _apply_balances(self, balances: dict[str, tuple[float, float]]) -> None:
        self.account.balances[self.account.quote] = sum(balances[self.account.quote])
        self.free = {c: free for c, (free, _) in balances.items()}

    def _opening(self, currency: str, total: float) -> float:
        """A currency's first balance read, less what the run's fills moved: what the
        account held before the run traded it."""
        moved = 0.0
        for symbol, _, side, amount, price, fee, fee_currency in self.store.account_rows(self.run_id)[1]:
            moved += fill_deltas(symbol, side, amount, price, fee, fee_currency).get(currency, 0.0)
        return total - moved

    def reconcile_balances(self, gaps: dict[str, tuple[float, float, float]] | None = None) -> list[str]:
        """Exchange balance vs opening balance + the run's fills (net of fees), per
        currency (``audit.balance_gaps``, computed unless given); a difference is an error
        event (someone else traded the account)."""
        from .audit import balance_problems

        problems = balance_problems(self.store, self.run_id, gaps)
        for problem in problems:
            self.event("error", f"balance reconciliation: {problem}")
        return problems

    # ------------------------------------------------------------------ orders
    def send(self, orders: list[PendingOrder]) -> SendResult:
        """Send 'new' orders; returns the ones the exchange refused and how many filled."""
        result = SendResult()
        refused = result.refused
        for order in orders:
            if order.status != "new":
                continue
            self._set_status(order, "sent")
            self.hook("order_in_flight", orders=[order])
            try:
                answer = self._create(order)
            except ExchangeFault as exc:
                if exc.__cause__ is not None and _refused(exc.__cause__):
                    self._set_status(order, "expired", reason=f"never reached the exchange ({one_line(exc, 160)})")
                    self._lose(order)
                else:  # unknown whether it arrived: settled by the next lookups
                    self._set_status(order, "unknown", reason=f"no answer ({one_line(exc, 160)})")
                self.event("error", f"order {order.client_order_id} not confirmed: {one_line(exc)}", order.symbol)
                continue
            except ExchangeAdapterError as exc:
                self._set_status(order, "rejected", reason=one_line(exc))
                self.pending.pop(order.client_order_id, None)
                refused.append(order.client_order_id)
                self.event("error", f"order {order.client_order_id} refused: {one_line(exc)}", order.symbol)
                continue
            self.hook("order_answered", orders=[order])
            self._finish(order, answer)
            result.fills += order.status == "filled"
        return result

    def _create(self, order: PendingOrder) -> dict:
        """create_order through the shared retry helper without duplicates: Binance refuses a
        repeated client order id only while the first order is open, so after an ambiguous
        failure (timeout, 5xx, unreadable answer) the order is looked up by client id and
        only re-sent when the exchange does not have it; after a refusal made before
        processing (429/418 rate limits, -1021 timestamps: the helper resyncs the clock) it
        is re-sent as is."""
        params = {"clientOrderId": order.client_order_id}

        def recover(exc: BaseException) -> dict | None:
            if _refused(exc):
                return None  # certainly not placed: send again
            found = self._lookup(order, retry=False)
            if found is None:  # it may still arrive: never re-send, look it up later
                raise ExchangeFault(self.client.id, "create_order", str(exc), kind=type(exc).__name__,
                                    attempts=1) from exc
            return found

        return call_with_retry(self.client.create_order, order.symbol, "market", order.side, order.amount, None,
                               params, recover=recover, **self.retry)

    def _lookup(self, order: PendingOrder, retry: bool = True) -> dict | None:
        """The exchange's view of the order by client id; None when it does not know it."""
        try:
            kwargs = self.retry if retry else {"retries": 0}
            return call_with_retry(self.client.fetch_order, None, order.symbol,
                                   {"clientOrderId": order.client_order_id}, **kwargs)
        except OrderNotFoundError:
            return None
        except ExchangeAdapterError:
            if retry:
                raise
            return None

    def _in_history(self, order: PendingOrder) -> dict | None:
        """The order in the exchange's order history (allOrders), by client id."""
        since = int(pd.Timestamp(order.created or order.bar_time).timestamp() * 1000) - 3_600_000
        found = call_with_retry(self.client.fetch_orders, order.symbol, since, None, **self.retry)
        return next((o for o in found if o.get("clientOrderId") == order.client_order_id), None)

    def _trades(self, order: PendingOrder, answer: dict) -> list[tuple]:
        """The order's executions (ts, price, amount, fee, fee currency), from its trades."""
        trades = [t for t in (answer.get("trades") or []) if t.get("amount")]
        if not trades and answer.get("id") is not None:
            trades = call_with_retry(self.client.fetch_my_trades, order.symbol, None, None,
                                     {"orderId": answer["id"]}, **self.retry)
        out = []
        for t in sorted(trades, key=lambda t: (t.get("timestamp") or 0, str(t.get("id")))):
            fee = t.get("fee") or {}
            ts = pd.Timestamp(t.get("timestamp") or answer.get("timestamp") or time.time() * 1000, unit="ms")
            out.append((ts, float(t["price"]), float(t["amount"]), float(fee.get("cost") or 0.0),
                        fee.get("currency")))
        filled = float(answer.get("filled") or 0.0)
        if not out and filled:  # no trade list: the order's own totals
            fee = answer.get("fee") or {}
            ts = pd.Timestamp(answer.get("lastTradeTimestamp") or answer.get("timestamp") or time.time() * 1000,
                              unit="ms")
            out.append((ts, float(answer.get("average") or answer.get("price") or 0.0), filled,
                        float(fee.get("cost") or 0.0), fee.get("currency")))
        return out

    def _set_status(self, order: PendingOrder, status: str, reason: str | None = None) -> None:
        self.store.apply_order_updates(self.run_id, [OrderUpdate(order.client_order_id, status, reason)])
        order.status = status
        if status not in OPEN_ORDER_STATUSES:
            self.pending.pop(order.client_order_id, None)

    def _lose(self, order: PendingOrder) -> None:
        self.pending.pop(order.client_order_id, None)
        self._lost.append(order)

    def _finish(self, order: PendingOrder, answer: dict) -> None:
        """Store the exchange's view of an order (status, fills net of fees) and the balances,
        in one transaction."""
        status = _STATUS.get(str(answer.get("status")), "open")
        filled = float(answer.get("filled") or 0.0)
        if status == "open" and filled:
            status = "partially_filled"
        fills = self._trades(order, answer) if filled else []
        balances = self._balances() if filled else None
        account = copy.deepcopy(self.account)
        base = base_of(order.symbol)
        stored = self.store.fill_count(order.client_order_id)  # already in the positions
        for ts, price, amount, fee, currency in fills[stored:]:
            account.position(order.book).update(fill_deltas(order.symbol, order.side, amount, price, fee,
                                                            currency)[base], price)
        # an order answered before 'sent' was stored (reconcile after a crash) passes through 'sent'
        updates = [OrderUpdate(order.client_order_id, "sent")] if order.status == "new" else []
        updates.append(OrderUpdate(order.client_order_id, status, fills=fills,
                                   exchange_order_id=str(answer["id"]) if answer.get("id") is not None else None))
        self.store.apply_order_updates(self.run_id, updates, balances, opening=self._opening,
                                       inside=lambda: self.hook("fill_tx", results=[order.client_order_id]))
        self.account = account
        if balances is not None:
            self._apply_balances(balances)
            self.reconcile_balances()
        order.status, order.misses = status, 0
        if status in OPEN_ORDER_STATUSES:
            self.pending[order.client_order_id] = order
        else:
            self.pending.pop(order.client_order_id, None)

    def _missing(self, order: PendingOrder) -> None:
        """One more lookup that did not find the order: lost only after several, over the
        grace period, and not in the order history either."""
        now = pd.Timestamp(utcnow())
        order.misses += 1
        if order.status in ("sent", "new"):
            self._set_status(order, "unknown")
        # the grace counts from the order's time in the database: it holds across restarts
        # (each `paper --once` is a new process)
        age = now - (order.created if order.created is not None else now)
        if order.misses < self.lost_after or age < self.not_found_grace:
            self.event("warning", f"order {order.client_order_id} not found on the exchange (lookup "
                                  f"{order.misses}/{self.lost_after}); asking again later", order.symbol)
            return
        found = self._in_history(order)
        if found is not None:
            self._finish(order, found)
            return
        self._set_status(order, "expired", reason=f"never reached the exchange (not found in {order.misses} "
                                                  f"lookups nor in the order history)")
        self._lose(order)
        self.event("warning", f"order {order.client_order_id} never reached the exchange: the position is "
                              f"decided again on the current candle", order.symbol)

    def _unsent(self, order: PendingOrder, reason: str) -> None:
        """A stored order that never left: expired (never sent late), its book decides again."""
        self._set_status(order, "expired", reason=reason)
        self._lose(order)
        self.event("warning", f"order {order.client_order_id} was never sent: decided again on the current candle",
                   order.symbol)

    def settle(self, books: list[Book], candles: dict[Book, pd.DataFrame], upto: pd.Timestamp) -> int:
        """Refresh the orders of ``books`` in flight or open on the exchange (the exchange
        fills them: ``candles`` are not read); returns how many filled."""
        return self.poll(books)

    def buying_power(self) -> dict[str, float] | None:
        return self.free

    def take_lost(self) -> list[PendingOrder]:
        lost, self._lost = self._lost, []
        return lost

    def recover(self, current_close: dict[str, pd.Timestamp] | None) -> list[str]:
        """Settle the orders stored before the last stop (``reconcile``), then check the
        balances against the records, once; returns the ones sent now."""
        sent = self.reconcile(current_close)
        self._check_holdings()
        return sent

    def _check_holdings(self) -> None:
        """The start-up balance check: every currency whose exchange balance differs from
        the records (opening + the run's fills) is an error event, and the records must
        account for what the account holds of each traded base asset, above dust: else the
        positions it would decide on are not the account's (a database restored from an
        older copy, another program on the account) and the run refuses to go on. Assets
        with an order still unsettled are left to the order's settlement."""
        from .audit import balance_gaps

        gaps = balance_gaps(self.store, self.run_id)
        self.reconcile_balances(gaps)
        busy = {base_of(o.symbol) for o in self.pending.values()}
        for rules in self.rules.values():
            if rules.base not in gaps or rules.base in busy:
                continue
            actual, opening, moved = gaps[rules.base]
            price = last_price(self.client, rules.symbol, **self.retry)
            if is_dust(rules.min_amount, rules.min_notional, actual - opening - moved, price):
                continue
            raise ExchangeConfigError(
                f"the account holds {actual:.8g} {rules.base} but run {self.run_id}'s records account for "
                f"{opening + moved:.8g} (opening {opening:.8g} + fills {moved:+.8g}): its database is not the "
                f"account's state (restored from an older copy, or another program traded it); start a new run "
                f"with --new --adopt")

    def poll(self, books: list[Book] | None = None) -> int:
        """Refresh the orders (of ``books``, else all) in flight or open on the exchange,
        each once (those of pairs no longer configured too); returns how many filled."""
        filled = 0
        for order in list(self.pending.values()):
            if books is not None and order.book not in books and order.book in self.books:
                continue
            try:
                found = self._lookup(order)
                if found is None and order.status == "new":  # a cycle failed before sending it
                    self._unsent(order, "not sent (its cycle failed); decided again")
                elif found is None:
                    self._missing(order)
                elif order.status in ("new", "sent", "unknown") or _STATUS.get(str(found.get("status"))) != "open" \
                        or float(found.get("filled") or 0.0):
                    self._finish(order, found)
                    filled += order.status == "filled"
            except ExchangeAdapterError as exc:
                self.event("warning", f"cannot refresh order {order.client_order_id}: {one_line(exc)}", order.symbol)
        return filled

    def reconcile(self, current_close: dict[str, pd.Timestamp] | pd.Timestamp | None = None) -> list[str]:
        """On start: every open order of the run is settled with the exchange's view. A 'new'
        order (stored, never sent) of the current candle is sent now; an older one would
        trade late at a stale price, so it expires and the runner decides again
        (``current_close``: the close of the last closed candle, per timeframe). Open
        exchange orders of this run the database does not know are reported. Returns the
        client ids sent now."""
        sent: list[str] = []
        for order in list(self.pending.values()):
            if order.status == "new":
                try:
                    found = self._lookup(order)
                except ExchangeAdapterError as exc:
                    self.event("error", f"reconcile {order.client_order_id}: {one_line(exc)}", order.symbol)
                    continue
                if found is not None:  # e.g. stored by an older version that sent before marking 'sent'
                    self._finish(order, found)
                elif (close := current_close.get(order.timeframe) if isinstance(current_close, dict)
                      else current_close) is not None and order.bar_time >= close:
                    self.event("warning", f"sending {order.client_order_id}, stored before the last stop but "
                                          f"never sent", order.symbol)
                    self.send([order])
                    sent.append(order.client_order_id)
                else:
                    self._unsent(order, "not sent before the last stop; decided again")
                continue
            try:
                found = self._lookup(order)
            except ExchangeAdapterError as exc:
                self.event("error", f"reconcile {order.client_order_id}: {one_line(exc)}", order.symbol)
                continue
            if found is not None:
                self._finish(order, found)
                self.event("info", f"reconciled {order.client_order_id}: {order.status}", order.symbol)
            else:
                self._missing(order)
        return sent
