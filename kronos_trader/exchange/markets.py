"""Market metadata: symbol validation and trading rules (precision, limits)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

import ccxt

from .errors import UnknownSymbolError
from .retry import call_with_retry

__all__ = [
    "MarketRules",
    "ensure_markets",
    "resolve_symbol",
    "market_rules",
    "round_amount",
    "round_price",
    "check_min_notional",
]


def ensure_markets(client: ccxt.Exchange, **retry_kwargs: Any) -> dict:
    """``client.load_markets()`` once (with retries); returns ``client.markets``."""
    if not client.markets:
        call_with_retry(client.load_markets, **retry_kwargs)
    return client.markets


def resolve_symbol(client: ccxt.Exchange, symbol: str, **retry_kwargs: Any) -> str:
    """Return the unified symbol for ``symbol`` (unified like ``BTC/USDT`` or an
    exchange id like ``BTCUSDT``).  Unknown -> one-line UnknownSymbolError with
    close matches."""
    markets = ensure_markets(client, **retry_kwargs)
    if symbol in markets:
        return symbol
    by_id = getattr(client, "markets_by_id", None) or {}
    hit = by_id.get(symbol) or by_id.get(str(symbol).upper())
    if hit:
        entries = hit if isinstance(hit, list) else [hit]
        spot = [m for m in entries if m.get("spot")] or entries
        return spot[0]["symbol"]
    upper = str(symbol).upper()
    if upper in markets:
        return upper
    candidates = list(markets.keys())
    suggestions = difflib.get_close_matches(upper, candidates, n=3, cutoff=0.5)
    if not suggestions:
        compact = upper.replace("/", "").replace("-", "").replace("_", "")
        ids = {str(m.get("id", "")).upper(): s for s, m in markets.items()}
        suggestions = [ids[i] for i in difflib.get_close_matches(compact, list(ids), n=3, cutoff=0.5)]
    hint = f"; close matches: {', '.join(suggestions)}" if suggestions else "; no close matches"
    raise UnknownSymbolError(
        f"unknown symbol {symbol!r} on {client.id} ({len(markets)} markets loaded){hint}",
        symbol=str(symbol),
        suggestions=suggestions,
    )


def _decimals(step: float | None) -> int | None:
    if step is None:
        return None
    exponent = Decimal(repr(float(step))).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


@dataclass(frozen=True)
class MarketRules:
    """Trading rules of one market, normalised across ccxt precision modes.

    ``price_tick`` / ``amount_step`` are increments (e.g. 0.01 / 0.00001);
    ``price_decimals`` / ``amount_decimals`` the number of decimals they imply.
    Any field the exchange does not report is ``None``.
    """

    symbol: str
    base: str
    quote: str
    price_tick: float | None
    amount_step: float | None
    price_decimals: int | None
    amount_decimals: int | None
    min_amount: float | None
    max_amount: float | None
    min_price: float | None
    max_price: float | None
    min_notional: float | None
    max_notional: float | None
    active: bool | None = None

    def round_amount(self, amount: float) -> float:
        """Truncate to the amount step (same as ccxt ``amount_to_precision``)."""
        if self.amount_step is None or not self.amount_step:
            return float(amount)
        step = _dec(self.amount_step)
        return float((_dec(amount) / step).to_integral_value(ROUND_DOWN) * step)

    def round_price(self, price: float) -> float:
        """Round half-up to the price tick (same as ccxt ``price_to_precision``)."""
        if self.price_tick is None or not self.price_tick:
            return float(price)
        tick = _dec(self.price_tick)
        return float((_dec(price) / tick).to_integral_value(ROUND_HALF_UP) * tick)

    def notional_ok(self, amount: float, price: float) -> bool:
        return check_min_notional(self, amount, price)


def market_rules(client: ccxt.Exchange, symbol: str, **retry_kwargs: Any) -> MarketRules:
    """Build :class:`MarketRules` from ``client.markets[symbol]``."""
    unified = resolve_symbol(client, symbol, **retry_kwargs)
    market = client.markets[unified]
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}

    def step_of(value):
        if value is None:
            return None
        if client.precisionMode == ccxt.DECIMAL_PLACES:
            return float(Decimal(1).scaleb(-int(value)))
        if client.precisionMode == ccxt.TICK_SIZE:
            return float(value)
        return None  # SIGNIFICANT_DIGITS: no fixed step

    def lim(group, key):
        value = (limits.get(group) or {}).get(key)
        return None if value is None else float(value)

    price_tick = step_of(precision.get("price"))
    amount_step = step_of(precision.get("amount"))
    return MarketRules(
        symbol=unified,
        base=market.get("base"),
        quote=market.get("quote"),
        price_tick=price_tick,
        amount_step=amount_step,
        price_decimals=_decimals(price_tick),
        amount_decimals=_decimals(amount_step),
        min_amount=lim("amount", "min"),
        max_amount=lim("amount", "max"),
        min_price=lim("price", "min"),
        max_price=lim("price", "max"),
        min_notional=lim("cost", "min"),
        max_notional=lim("cost", "max"),
        active=market.get("active"),
    )


def round_amount(client: ccxt.Exchange, symbol: str, amount: float) -> float:
    """Amount truncated to the market's precision via ccxt ``amount_to_precision``;
    0.0 when the amount is below one step."""
    unified = resolve_symbol(client, symbol)
    try:
        return float(client.amount_to_precision(unified, amount))
    except ccxt.InvalidOrder:
        return 0.0


def round_price(client: ccxt.Exchange, symbol: str, price: float) -> float:
    """Price rounded to the market's tick via ccxt ``price_to_precision``."""
    unified = resolve_symbol(client, symbol)
    try:
        return float(client.price_to_precision(unified, price))
    except ccxt.InvalidOrder:
        return 0.0


def check_min_notional(rules: MarketRules, amount: float, price: float) -> bool:
    """True when ``amount * price`` meets the market's minimum notional
    (markets without one always pass).  Amount limits are not checked here."""
    if rules.min_notional is None:
        return True
    return _dec(amount) * _dec(price) >= _dec(rules.min_notional)
