"""What a decided bar leaves behind, for backtests and live trading alike: one
`SignalRecord` per pair (the decision and what it was made on) and an `OrderRecord` per
order it asked for. `PolicyStrategy` (backtests) and `live.step.decide_bar` both make them,
and the store writes them with one writer (`Store.record_decisions`), so the same decision
is the same stored row whichever engine made it.

A leaf module (pandas only): the store, the backtest and live trading all import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class SignalRecord:
    """One pair's decision at one bar (``bar_time``: the decision candle's close, the
    forecast's window end)."""

    symbol: str
    timeframe: str
    bar_time: pd.Timestamp
    target_position: float
    reason: str
    forecast_id: int | None = None
    p_up: float | None = None
    expected_return: float | None = None
    held_target: float | None = None   # the target the position is traded to after it (None: unknown)
    equity: float | None = None        # account equity at the decision
    price: float | None = None         # the decision bar's close
    market_min: tuple[float | None, float | None] | None = None  # the market's (min amount, min notional)
    dust: float | None = None          # a position below the market's minimum, decided as flat

    def details(self) -> dict[str, Any]:
        """The stored ``details`` of the signal (what is None is left out)."""
        out: dict[str, Any] = {"reason": self.reason, "p_up": self.p_up, "expected_return": self.expected_return,
                               "held_target": self.held_target, "equity": self.equity, "price": self.price}
        if self.market_min is not None:
            out["market_min"] = list(self.market_min)
        if self.dust is not None:
            out["dust"] = self.dust
        return out

    def row(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "timeframe": self.timeframe, "bar_time": self.bar_time,
                "forecast_id": self.forecast_id, "target_position": float(self.target_position),
                "details": self.details()}


@dataclass(frozen=True)
class OrderRecord:
    """An order a decision asked for: stored 'new' before a live order is sent, with its
    final status for a backtest's (which are recorded when the broker settles them).
    ``ref`` is the backtest broker's order reference (its client id is given when stored)."""

    client_order_id: str
    symbol: str
    timeframe: str
    bar_time: pd.Timestamp   # the decision candle's close
    side: str
    amount: float
    status: str              # 'new' or 'rejected' when decided; a backtest's final status
    reason: str | None
    type: str = "market"
    ref: int | None = None

    def row(self) -> dict[str, Any]:
        return {"client_order_id": self.client_order_id, "symbol": self.symbol, "timeframe": self.timeframe,
                "bar_time": self.bar_time, "side": self.side, "type": self.type, "amount": float(self.amount),
                "status": self.status, "reason": self.reason}
