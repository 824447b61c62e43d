"""Performance metrics of an equity curve, beside buy-and-hold on the same bars.

Sharpe and Sortino are annualised with the data's own bars per year (from its stamps and
calendar: about 252 a year for daily stock bars, 365 for daily crypto), not 365 days of
clock time divided by the bar interval, which overstates them for markets that close.

Calmar and the monthly returns come from empyrical-reloaded (kept, small, pure functions on
a returns series; quantstats would add its plotting/HTML stack for two numbers). Trade-level
figures (profit factor, expectancy, average win/loss, holding time, losing streak) work on
round trips, which neither library models, so they are computed here.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

YEAR = pd.Timedelta(days=365.25)
# Below this span annualised figures (annual return, Sharpe, Sortino, Calmar) extrapolate a
# few weeks to a year (a 10-day run showed -100% / +28,541% a year): reports mark them and
# show the period's own figures beside them.
ANNUALISE_MIN_DAYS = 90
ANNUALISED = ("annual_return", "sharpe", "sortino", "calmar")


def format_metric(value: float | None, kind: str) -> str:
    """A metric as the reports show it (kind: pct, share, int, money or num)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "pct":
        return f"{value:+.2%}"
    if kind == "share":  # a proportion: no sign
        return f"{value:.2%}"
    if kind == "int":
        return f"{int(value)}"
    return f"{value:,.2f}"


def drawdown(equity: pd.Series) -> pd.Series:
    """Fractional distance below the running peak (0 at new highs, negative below)."""
    return equity / equity.cummax() - 1.0


def performance(equity: pd.Series, bar: pd.Timedelta, per_year: float | None = None) -> dict[str, float]:
    """Return, risk and drawdown figures of an equity curve sampled once per bar;
    `per_year` bars a year (default: a 24/7 market's, a year over the bar interval).
    `period_sharpe` is the Sharpe of the whole span (mean over std of the bar returns times
    the square root of their count), not scaled to a year; `annualised_reliable` is False
    below ANNUALISE_MIN_DAYS days."""
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
    period_sharpe = returns.mean() / std * math.sqrt(len(returns)) if std and std > 0 else float("nan")
    return {"total_return": total, "annual_return": float(annual), "sharpe": float(sharpe),
            "sortino": float(sortino), "max_drawdown": float(drawdown(equity).min()) if len(equity) else 0.0,
            "calmar": _calmar(returns, per_year), "period_sharpe": float(period_sharpe),
            "span_days": float(span / pd.Timedelta(days=1)), "annualised_reliable": bool(span >= pd.Timedelta(
                days=ANNUALISE_MIN_DAYS))}


def _calmar(returns: pd.Series, per_year: float) -> float:
    import empyrical

    if len(returns) < 2 or not np.isfinite(per_year):
        return float("nan")
    value = empyrical.calmar_ratio(returns, annualization=per_year)
    return float(value) if value is not None and np.isfinite(value) else float("nan")


def monthly_returns(equity: pd.Series) -> pd.DataFrame:
    """Compounded return of each calendar month: rows years, columns months 1..12 (empyrical)."""
    import empyrical

    returns = equity.pct_change().dropna()
    if returns.empty:
        return pd.DataFrame(columns=range(1, 13), dtype=float)
    monthly = empyrical.aggregate_returns(returns, "monthly")
    return monthly.unstack().reindex(columns=range(1, 13))


def trade_stats(trades: pd.DataFrame) -> dict[str, float]:
    """Round-trip figures: win rate, profit factor (gross wins / gross losses), expectancy
    (mean PnL per trade), average win and loss, average holding time (hours), longest run
    of losing trades."""
    nan = float("nan")
    if trades.empty:
        return {"trades": 0, "win_rate": nan, "fees": 0.0, "profit_factor": nan, "expectancy": nan, "avg_win": nan,
                "avg_loss": nan, "avg_holding_hours": nan, "longest_losing_streak": 0}
    pnl = trades["pnl"].astype(float)
    wins, losses = pnl[pnl > 0], pnl[pnl <= 0]
    losing, streak = 0, 0
    for value in pnl:
        streak = streak + 1 if value <= 0 else 0
        losing = max(losing, streak)
    held = (pd.to_datetime(trades["exit_time"]) - pd.to_datetime(trades["entry_time"])).dt.total_seconds() / 3600
    return {"trades": int(len(trades)), "win_rate": float((pnl > 0).mean()), "fees": float(trades["fees"].sum()),
            "profit_factor": float(wins.sum() / -losses.sum()) if losses.sum() < 0 else nan,
            "expectancy": float(pnl.mean()), "avg_win": float(wins.mean()) if len(wins) else nan,
            "avg_loss": float(losses.mean()) if len(losses) else nan, "avg_holding_hours": float(held.mean()),
            "longest_losing_streak": int(losing)}


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
