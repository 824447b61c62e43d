"""Paper broker: simulated fills persisted atomically.

Fill price (``fill="next_open"``, the default, the backtest's rule): an order decided at the
close of bar t fills at the OPEN of bar t+1, moved against the trader by ``slippage`` and
capped to that bar's high/low (Backtrader's ``set_slippage_perc(slippage, slip_open=True,
slip_match=True)``), then rounded to the market's tick. The fill is made when bar t+1 has
closed (the next cycle), because the cap needs its high/low; the fill is stamped with bar
t+1's open time. ``fill="ticker"`` fills at once at the latest ticker price plus slippage
instead (no parity with the backtest).

Fees are ``commission`` x notional in the quote currency. Amounts are truncated to the
market's step and checked against its min/max amount and min notional before an order is
sent; refused orders are stored as 'rejected' with the reason. Balances are kept per
currency (quote and each base; a short is a negative base balance). Every state change (an
order's status, its fill and the balances it moves) is written in ONE transaction.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import ccxt
import pandas as pd
from kronos_trader.exchange import ExchangeAdapterError, MarketRules, last_price
from kronos_trader.exchange.errors import one_line
from kronos_trader.store import OrderUpdate, Store

from .accounting import Account, Book, Position
from .broker import PendingOrder, SendResult, load_state

log = logging.getLogger(__name__)

FILL_MODES = ("next_open", "ticker")


@dataclass
class FillResult:
    client_order_id: str
    status: str            # filled / canceled / rejected
    ts: pd.Timestamp | None = None
    price: float = 0.0
    amount: float = 0.0    # executed (unsigned)
    fee: float = 0.0
    reason: str | None = None


def slipped_open(side: str, open_: float, high: float, low: float, slippage: float) -> float:
    """Backtrader's market fill at the open with percentage slippage and slip_match."""
    if not slippage:
        return open_
    if side == "buy":
        return min(open_ * (1 + slippage), high)
    return max(open_ * (1 - slippage), low)


class PaperBroker:
    """Simulated exchange account for one run (see the module docstring)."""

    kind = "paper"

    def __init__(self, store: Store, run_id: str, quote: str, rules: dict[str, MarketRules], *,
                 commission: float, slippage: float, fill: str = "next_open",
                 hook: Callable[..., None] | None = None, event: Callable[..., None] | None = None,
                 ticker: Callable[[str], tuple[pd.Timestamp, float]] | None = None):
        if fill not in FILL_MODES:
            raise ValueError(f"fill must be one of {', '.join(FILL_MODES)}, got {fill!r}")
        self.store, self.run_id, self.rules = store, run_id, rules
        self.commission, self.slippage, self.fill_mode = commission, slippage, fill
        self.account = Account(quote)
        self.pending: dict[str, PendingOrder] = {}
        self.hook = hook or (lambda name, **kw: None)
        self.event = event or (lambda level, message, symbol=None: log.log(logging.INFO, message))
        #: ticker mode: (time, last price) of a symbol (``ticker_source``)
        self.ticker = ticker

    # ------------------------------------------------------------------ state
    def initialize(self, quote_balance: float, currencies: Iterable[str]) -> None:
        """Opening balances of a new run (once; existing balances are kept)."""
        self.store.open_balances(self.run_id, {c: (float(quote_balance) if c == self.account.quote else 0.0, 0.0)
                                               for c in dict.fromkeys([self.account.quote, *currencies])})

    def load(self) -> None:
        """Balances, positions and open orders from the database (``load_state``)."""
        self.account, self.pending = load_state(self.store, self.run_id, self.account.quote)

    def recover(self, current_close: dict[str, pd.Timestamp] | None = None) -> list[str]:
        """Orders stored but not sent before the last stop are sent now (they fill at their
        fill candle's open, the backtest's rule)."""
        new = [o for o in self.pending.values() if o.status == "new"]
        if new:
            self.send(new)
            self.event("warning", f"recovered {len(new)} order(s) stored but not sent before the last stop: "
                                  f"{', '.join(o.client_order_id for o in new)}")
        return [o.client_order_id for o in new]

    def buying_power(self) -> dict[str, float] | None:
        return None  # Backtrader's cash check at submission

    def take_lost(self) -> list[PendingOrder]:
        return []  # a simulated exchange loses nothing

    def position(self, book: Book) -> Position:
        return self.account.position(book)

    # ------------------------------------------------------------------ orders
    def track(self, orders: Iterable[PendingOrder]) -> None:
        """Orders just stored as 'new' (the broker will send and fill them)."""
        for o in orders:
            self.pending[o.client_order_id] = o

    def send(self, orders: list[PendingOrder]) -> SendResult:
        """Hand 'new' orders to the simulated exchange: they become 'sent' (one transaction);
        in ticker mode they fill at once. None is refused here (the simulated exchange
        refuses at fill time)."""
        todo = [o for o in orders if o.status == "new"]
        if todo:
            self.store.apply_order_updates(self.run_id, [OrderUpdate(o.client_order_id, "sent") for o in todo])
        for o in todo:
            o.status = "sent"
        result = SendResult()
        if self.fill_mode == "ticker":
            for order in todo:
                try:
                    stamp, last = self.ticker(order.symbol)
                except (ExchangeAdapterError, ValueError) as exc:
                    self.event("error", f"order {order.client_order_id} stays pending: no ticker ({one_line(exc)})",
                               order.symbol)
                    continue
                result.fills += 1 if self.fill_at(order, stamp, last).amount else 0
        return result

    def due(self, book: Book, upto: pd.Timestamp) -> list[PendingOrder]:
        """Pending orders of ``book`` whose fill candle (opening at ``bar_time``) is ``<= upto``."""
        return sorted((o for o in self.pending.values() if o.book == book and o.bar_time <= upto),
                      key=lambda o: o.bar_time)

    def settle(self, books: list[Book], candles: dict[Book, pd.DataFrame], upto: pd.Timestamp) -> int:
        """Fill the due orders of ``books`` at their fill candle's open, from the candles
        closed by ``upto`` (in ticker mode only orders left pending, e.g. for want of a
        ticker); a book without candles this cycle waits. Returns how many filled."""
        filled = 0
        for book in books:
            if not any(o.book == book for o in self.pending.values()):
                continue
            frame = candles.get(book)
            if frame is None:
                continue
            results = self.fill_due(book, frame.loc[:upto], upto)
            for r in results:
                if r.status != "filled":
                    self.event("warning", f"order {r.client_order_id} {r.status}: {r.reason}", book[0])
            filled += sum(1 for r in results if r.amount)
        return filled

    def fill_due(self, book: Book, candles: pd.DataFrame, upto: pd.Timestamp) -> list[FillResult]:
        """Fill the due orders of ``book`` at their fill candle's open (next_open mode)."""
        results = []
        for order in self.due(book, upto):
            at = candles.index.searchsorted(order.bar_time)
            if at >= len(candles):
                continue  # fill candle not known yet
            ts = candles.index[at]
            bar = candles.iloc[at]
            raw = slipped_open(order.side, float(bar["open"]), float(bar["high"]), float(bar["low"]), self.slippage)
            results.append(self._execute(order, ts, raw, cap=(float(bar["low"]), float(bar["high"]))))
        self.commit(results)
        return results

    def fill_at(self, order: PendingOrder, ts: pd.Timestamp, last_price: float) -> FillResult:
        """Ticker mode: fill at once at ``last_price`` moved by the slippage."""
        raw = last_price * (1 + self.slippage if order.side == "buy" else 1 - self.slippage)
        result = self._execute(order, ts, raw)
        self.commit([result])
        return result

    def _execute(self, order: PendingOrder, ts: pd.Timestamp, raw_price: float,
                 cap: tuple[float, float] | None = None) -> FillResult:
        rules = self.rules.get(order.symbol)
        price = rules.round_price(raw_price) if rules is not None else raw_price
        if cap is not None:
            price = min(max(price, cap[0]), cap[1])
        position = self.account.position(order.book)
        closing, opening = position.split(order.signed)
        cash = self.account.cash - closing * price - abs(closing) * price * self.commission
        if opening and cash - opening * price - abs(opening) * price * self.commission < 0:
            reason = f"insufficient {self.account.quote} at fill ({cash:.8g} for {abs(opening):g} at {price:g})"
            if not closing:
                return FillResult(order.client_order_id, "rejected", reason=reason)
            # Backtrader executes the closing part and refuses the rest
            return FillResult(order.client_order_id, "canceled", ts, price, abs(closing),
                              abs(closing) * price * self.commission, reason + "; closing part filled")
        return FillResult(order.client_order_id, "filled", ts, price, order.amount,
                          order.amount * price * self.commission)

    # ------------------------------------------------------------------ persistence
    def commit(self, results: list[FillResult]) -> None:
        """Write fills, order statuses and balances in one transaction, then apply them."""
        results = [r for r in results if r.client_order_id in self.pending]
        if not results:
            return
        account = copy.deepcopy(self.account)
        changed: set[str] = set()
        for r in results:
            order = self.pending[r.client_order_id]
            if r.amount:
                signed = r.amount if order.side == "buy" else -r.amount
                base = self.rules[order.symbol].base if order.symbol in self.rules else order.symbol.split("/")[0]
                account.balances[account.quote] = account.cash - signed * r.price - r.fee
                account.balances[base] = account.balances.get(base, 0.0) + signed
                account.position(order.book).update(signed, r.price)
                changed.update((account.quote, base))
        updates = [OrderUpdate(r.client_order_id, r.status, r.reason,
                               fills=[(r.ts, r.price, r.amount, r.fee, account.quote)] if r.amount else [])
                   for r in results]
        self.store.apply_order_updates(self.run_id, updates,
                                       {c: (float(account.balances[c]), 0.0) for c in sorted(changed)},
                                       inside=lambda: self.hook("fill_tx", results=results))
        self.account = account
        for r in results:
            self.pending.pop(r.client_order_id, None)
            log.info("paper %s %s %g @ %g (%s)", r.status, r.client_order_id, r.amount, r.price, r.reason or "ok")


def ticker_source(client: ccxt.Exchange, retry: dict, now: Callable[[], pd.Timestamp],
                  on_retry: Callable[[str, str], Any]) -> Callable[[str], tuple[pd.Timestamp, float]]:
    """Ticker mode's price: the exchange's last price, stamped with the run's clock."""

    def ticker(symbol: str) -> tuple[pd.Timestamp, float]:
        return now(), last_price(client, symbol, on_retry=on_retry(symbol, "fetch_ticker"), **retry)

    return ticker
