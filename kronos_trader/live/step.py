"""The decision step of the live loop: forecasts and positions in, orders out. Pure (no
clock, no I/O), and the same ``decide`` + ``rebalance`` as the backtest.

``policy`` is any object with ``decide(forecast, position) -> Decision`` (the configured
strategy, or a wrapper around it such as a gate that vetoes trades): the seam where the
loop's decisions can be changed by configuration without touching the loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


from kronos_trader.exchange import MarketRules
from kronos_trader.decision import Policy, PositionState, RiskLimits, decide, rebalance, series_policy
from kronos_trader.forecasting.values import WindowForecast
from kronos_trader.records import OrderRecord, SignalRecord

from .accounting import Account, Book, base_of
from .ids import client_order_id
from .broker import is_dust, order_problem


@dataclass(frozen=True)
class BookInput:
    """One pair at the decision bar."""

    key: Book
    rules: MarketRules
    held_target: float                  # the target the position was last traded to (NaN: unknown)
    forecast: WindowForecast | None     # None: not a forecast bar (forecast.every)


@dataclass(frozen=True)
class Costs:
    commission: float
    slippage: float


@dataclass
class StepResult:
    signals: list[SignalRecord] = field(default_factory=list)
    orders: list[OrderRecord] = field(default_factory=list)
    held: dict[Book, float | None] = field(default_factory=dict)  # None: no decision (not a forecast bar)


def decide_bar(policy: Policy, risk: RiskLimits, books: list[BookInput], account: Account,
               prices: dict[Book, float], *, run_id: str, costs: Costs, min_change: float,
               free: dict[str, float] | None = None) -> StepResult:
    """Decisions of every pair at one bar. ``account`` holds positions net of fees; with
    ``free`` balances (a real account) orders are capped to them (a buy by the quote it can
    pay at the decision price plus costs, a sell by the base held), so the exchange never
    refuses them for funds; without (paper) orders get Backtrader's cash check at
    submission. A position below the market's minimum amount or notional (the fee's dust)
    is flat for the decision; a closing order too small for the market is no order."""
    live = free is not None
    out = StepResult()
    equity = account.equity(prices)
    cash = account.cash
    free = dict(free or {})
    for book in books:
        forecast = book.forecast
        if forecast is None:
            out.held[book.key] = None
            continue
        symbol, timeframe = book.key
        position = account.position(book.key)
        price = forecast.last_close
        rules = book.rules
        dust = is_dust(rules.min_amount, rules.min_notional, position.size, price)
        size = 0.0 if dust else position.size
        state = PositionState(size=size, entry_price=(position.price or None) if size else None, equity=equity,
                              price=price)
        decision = decide(series_policy(policy, book.key), forecast, state, risk)
        units = rebalance(decision, book.held_target, state, min_change)
        unknown = isinstance(book.held_target, float) and math.isnan(book.held_target)
        held = decision.target if units or unknown else book.held_target
        reason = decision.reason
        bar_time = forecast.window_end
        order = None
        if units:
            side = "buy" if units > 0 else "sell"
            amount = book.rules.round_amount(abs(units))
            if live:
                if side == "buy":
                    quote = free.get(account.quote, cash)
                    amount = min(amount, book.rules.round_amount(max(0.0, quote) / (price * (
                        1 + costs.commission + costs.slippage))))
                else:
                    amount = min(amount, book.rules.round_amount(max(0.0, free.get(base_of(symbol), amount))))
            problem = order_problem(book.rules, amount, price)
            if problem is not None and decision.target == 0:
                reason = f"{reason}; residual {position.size:g} too small to trade ({problem})"
            else:
                if problem is None and not live:
                    after = account.cash_after(book.key, amount if side == "buy" else -amount, price,
                                               costs.commission, cash)
                    if after < 0:
                        problem = f"insufficient {account.quote} at submission ({cash:.8g})"
                    else:
                        cash = after
                if problem is None and live:
                    signed = amount if side == "buy" else -amount
                    free[account.quote] = free.get(account.quote, cash) - signed * price * (1 + costs.commission)
                    free[base_of(symbol)] = free.get(base_of(symbol), 0.0) + signed
                order = OrderRecord(client_order_id(run_id, symbol, bar_time, side), symbol, timeframe, bar_time,
                                    side, amount, "rejected" if problem else "new",
                                    f"{decision.reason}; rejected: {problem}" if problem else decision.reason)
        minimum = (rules.min_amount, rules.min_notional)
        out.signals.append(SignalRecord(
            symbol, timeframe, bar_time, float(decision.target), reason, forecast.forecast_id, forecast.prob_up(),
            forecast.expected_return(), None if held != held else float(held), equity, price,
            minimum if any(m is not None for m in minimum) else None, position.size if dust else None))
        out.held[book.key] = held
        if order is not None:
            out.orders.append(order)
    return out
