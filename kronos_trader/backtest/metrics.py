"""Performance metrics of an equity curve, beside buy-and-hold on the same bars.

Sharpe and Sortino are annualised with the data's own bars per year (from its stamps and
calendar: about 252 a year for daily stock bars, 365 for daily crypto), not 365 days of
clock time divided by the bar interval, which overstates them for markets that close.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

YEAR = pd.Timedelta(days=365.25)


def drawdown(equity: pd.Series) -> pd.Series:
    """Fractional distance below the running peak (0 at new highs, negative below)."""
    return equity / equity.cummax() - 1.0


def performance(equity: pd.Series, bar: pd.Timedelta, per_year: float | None = None) -> dict[str, float]:
    """Return, risk and drawdown figures of an equity curve sampled once per bar;
    `per_year` bars a year (default: a 24/7 market's, a year over the bar interval)."""
    returns = equity.pct_change().dropna()
    span = (equity.index[-1] - equity.index[0]) if len(equity) > 1 else pd.Timedelta(0)
    total = float(equity.iloc[-1] / equity.iloc[0] - 1.0)
    years = span / YEAR
    annual = (1 + total) ** (1 / years) - 1 if years > 0 and total > -1 else float("nan")
    if per_year is None:
        per_year = YEAR / bar if bar > pd.Timedelta(0) else float("nan")
    std = returns.std()
    downside = np.sqrt((np.minimum(returns, 0.0) ** 2).mean()) if len(returns) else float("nan")
    sharpe = returns.mean() / std * math.sqrt(per_year) if std and std > 0 else float("nan")
    sortino = returns.mean() / downside * math.sqrt(per_year) if downside and downside > 0 else float("nan")
    return {"total_return": total, "annual_return": float(annual), "sharpe": float(sharpe),
            "sortino": float(sortino), "max_drawdown": float(drawdown(equity).min()) if len(equity) else 0.0}


def trade_stats(trades: pd.DataFrame) -> dict[str, float]:
    if trades.empty:
        return {"trades": 0, "win_rate": float("nan"), "fees": 0.0}
    return {"trades": int(len(trades)), "win_rate": float((trades["pnl"] > 0).mean()),
            "fees": float(trades["fees"].sum())}


def summarize(equity: pd.DataFrame, trades: pd.DataFrame, closes: pd.Series, fees: float,
              bar: pd.Timedelta, per_year: float | None = None) -> dict[str, dict[str, float]]:
    """Strategy metrics (with exposure and fees) and buy-and-hold on the same span."""
    strategy = performance(equity["equity"], bar, per_year)
    strategy.update(trade_stats(trades))
    strategy["fees"] = float(fees)
    strategy["exposure"] = float((equity["position_value"].abs() > 1e-12).mean())
    hold = performance(closes / closes.iloc[0], bar, per_year)
    hold.update({"trades": 1, "win_rate": float(closes.iloc[-1] > closes.iloc[0]), "fees": 0.0, "exposure": 1.0})
    return {"strategy": strategy, "buy_and_hold": hold}
