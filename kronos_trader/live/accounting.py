"""Account bookkeeping shared by the paper and live brokers, with Backtrader's semantics.

Positions keep Backtrader's average entry price (``Position.update``): it moves only when
a position grows, resets on a reversal and is 0 when flat. A position's size is what the
account holds: net of fees charged in the base asset (``fill_deltas``). Cash follows Backtrader's
stock-like broker with ``shortcash``: buying costs ``amount * price``, selling (also
short) returns it, the percentage fee is always paid in the quote currency, and equity is
``cash + sum(size * close)``. An order whose opening part would make the cash negative is
refused (Backtrader's "margin" status).
"""
from __future__ import annotations

from dataclasses import dataclass, field

EPS = 1e-12


@dataclass
class Position:
    size: float = 0.0
    price: float = 0.0  # average entry, 0.0 when flat

    def update(self, size: float, price: float) -> None:
        """Backtrader's Position.update for a signed fill."""
        old = self.size
        new = old + size
        if abs(new) < EPS:
            new, self.price = 0.0, 0.0
        elif abs(old) < EPS:
            self.price = price
        elif old > 0:
            if size > 0:
                self.price = (self.price * old + size * price) / new
            elif new < 0:
                self.price = price
        else:
            if size < 0:
                self.price = (self.price * old + size * price) / new
            elif new > 0:
                self.price = price
        self.size = new

    def split(self, size: float) -> tuple[float, float]:
        """(closing part, opening part) of a signed fill, as Backtrader splits it."""
        old = self.size
        if abs(old) < EPS or (old > 0) == (size > 0):
            return 0.0, size
        if abs(size) <= abs(old) + EPS:
            return size, 0.0
        return -old, size + old


Book = tuple[str, str]  # (symbol, timeframe): one strategy position


def base_of(symbol: str) -> str:
    return symbol.split("/")[0]


def quote_of(symbol: str) -> str:
    return symbol.split("/")[1].split(":")[0] if "/" in symbol else ""


def fill_deltas(symbol: str, side: str, amount: float, price: float, fee: float,
                fee_currency: str | None) -> dict[str, float]:
    """What a fill moves per currency, net of its fee in the asset it was charged in
    (Binance takes a buy's fee from the base received, a sell's from the quote)."""
    base, quote = base_of(symbol), quote_of(symbol)
    signed = amount if side == "buy" else -amount
    deltas = {base: signed, quote: -signed * price}
    currency = fee_currency or quote
    deltas[currency] = deltas.get(currency, 0.0) - (fee or 0.0)
    return deltas


@dataclass
class Account:
    """Balances per currency and one position per (symbol, timeframe) book."""

    quote: str
    balances: dict[str, float] = field(default_factory=dict)
    positions: dict[Book, Position] = field(default_factory=dict)

    @property
    def cash(self) -> float:
        return self.balances.get(self.quote, 0.0)

    def position(self, book: Book) -> Position:
        return self.positions.setdefault(book, Position())

    def equity(self, prices: dict[Book, float]) -> float:
        """Cash plus every position at its price (a position without a price counts at entry)."""
        value = self.cash
        for book, pos in self.positions.items():
            if pos.size:
                value += pos.size * prices.get(book, pos.price)
        return value

    def cash_after(self, book: Book, signed: float, price: float, commission: float,
                   cash: float | None = None) -> float:
        """Cash left after executing all of ``signed`` at ``price`` (Backtrader's pseudo
        execution at submission)."""
        cash = self.cash if cash is None else cash
        return cash - signed * price - abs(signed) * price * commission
