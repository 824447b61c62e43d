"""What the live loop needs from a broker, and the account state both brokers share.

``Broker`` is the one interface of the loop: the paper broker (simulated fills, the
backtest's rule) and the exchange broker (real orders through ccxt) implement it, so the loop
never asks which one it has. Both load the run's account the same way (``load_state``: the
balances, the positions from the fills in order, net of fees in the base asset, plus a
holding adopted at the start of a live run, and the open orders) through the store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from kronos_trader.exchange import MarketRules
from kronos_trader.store import Order, Store

from .accounting import Account, Book, base_of, fill_deltas


@dataclass
class PendingOrder:
    """An order the broker holds until it settles (mirror of an open 'orders' row)."""

    client_order_id: str
    symbol: str
    timeframe: str
    bar_time: pd.Timestamp  # decision candle's close = the fill candle's open
    side: str
    amount: float
    status: str = "new"
    created: pd.Timestamp | None = None  # when it was stored (naive UTC; the grace of lookups counts from it)
    misses: int = 0                      # live: lookups that did not find it in a row (this process)

    @property
    def book(self) -> Book:
        return (self.symbol, self.timeframe)

    @property
    def signed(self) -> float:
        return self.amount if self.side == "buy" else -self.amount

    @classmethod
    def from_row(cls, row: Order) -> "PendingOrder":
        return cls(row.client_order_id, row.symbol, row.timeframe, pd.Timestamp(row.bar_time), row.side,
                   float(row.amount), row.status, pd.Timestamp(row.created_at))


@dataclass
class SendResult:
    """What handing orders to a broker did."""

    refused: list[str] = field(default_factory=list)  # client ids refused (stored 'rejected')
    fills: int = 0                                     # orders filled at once


def order_problem(rules: MarketRules, amount: float, price: float) -> str | None:
    """Why an (already rounded) amount cannot be sent at about ``price``; None when fine."""
    if amount <= 0:
        return f"amount rounds to 0 at the market step {rules.amount_step}"
    if rules.min_amount is not None and amount < rules.min_amount:
        return f"amount {amount:g} below the market minimum {rules.min_amount:g}"
    if rules.max_amount is not None and amount > rules.max_amount:
        return f"amount {amount:g} above the market maximum {rules.max_amount:g}"
    if not rules.notional_ok(amount, price):
        return f"notional {amount * price:.8g} below the market minimum {rules.min_notional:g}"
    return None


def is_dust(min_amount: float | None, min_notional: float | None, size: float, price: float | None) -> bool:
    """A non-zero position too small to trade (below the market's minimum amount or
    notional): flat for decisions."""
    if not size:
        return False
    if min_amount is not None and abs(size) < min_amount:
        return True
    return min_notional is not None and price is not None and abs(size) * price < min_notional


def load_state(store: Store, run_id: str, quote: str,
               books: list[Book] | None = None) -> tuple[Account, dict[str, PendingOrder]]:
    """The run's account from the database: balances, positions (an adopted holding first,
    on the first of ``books`` with its base, then every fill in order, net of fees in the
    base asset) and the open orders."""
    balances, fills, open_rows = store.account_rows(run_id)
    account = Account(quote, {b.currency: float(b.free) + float(b.used) for b in balances})
    for b in balances:
        book = next((k for k in books or [] if base_of(k[0]) == b.currency), None)
        if b.adopted and book is not None:
            account.position(book).update(float(b.adopted), float(b.adopted_price or 0.0))
    for symbol, timeframe, side, amount, price, fee, fee_currency in fills:
        net = fill_deltas(symbol, side, amount, price, fee, fee_currency)[base_of(symbol)]
        account.position((symbol, timeframe)).update(net, price)
    return account, {o.client_order_id: PendingOrder.from_row(o) for o in open_rows}


class Broker(Protocol):
    """The loop's broker (see the module docstring)."""

    kind: str
    account: Account
    pending: dict[str, PendingOrder]

    def load(self) -> None:
        """(Re)load the account and open orders from the database."""

    def track(self, orders: list[PendingOrder]) -> None:
        """Orders just stored as 'new' (the broker sends and settles them)."""

    def send(self, orders: list[PendingOrder]) -> SendResult:
        """Hand 'new' orders on (each marked 'sent' before it leaves)."""

    def settle(self, books: list[Book], candles: dict[Book, pd.DataFrame], upto: pd.Timestamp) -> int:
        """Settle what is due for ``books`` up to the candle opening at ``upto`` (``candles``:
        each book's closed candles, read by the paper broker only); returns the number of
        orders filled."""

    def recover(self, current_close: dict[str, pd.Timestamp] | None) -> list[str]:
        """After a stop: settle the orders stored before it; returns the client ids sent now."""

    def buying_power(self) -> dict[str, float] | None:
        """Free balance per currency that orders may use (None: the account's cash rules)."""

    def take_lost(self) -> list[PendingOrder]:
        """The orders found never to have reached the exchange since the last call (their
        books decide again)."""
