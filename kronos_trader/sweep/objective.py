"""The number a sweep maximises, from a backtest's metrics and `sweep:` settings."""
from __future__ import annotations

import math


class TrialError(ValueError):
    """A trial ran but has no score (recorded on the trial; the sweep goes on)."""


def score(metrics: dict[str, float], objective: str, max_drawdown: float | None = None, min_trades: int = 0) -> float:
    """Sharpe, Sortino, Calmar (annual return / |max drawdown|), total or annual return of
    the strategy. With a drawdown cap a deeper drawdown scores -inf, and so does a trial
    with fewer than `min_trades` closed trades (its figures are noise that would win a
    search). A strategy that never held a position scores 0 on ratios (its returns have no
    spread)."""
    if min_trades and int(metrics.get("trades") or 0) < min_trades:
        return -math.inf
    drawdown = metrics["max_drawdown"]
    if max_drawdown is not None and drawdown < -max_drawdown:
        return -math.inf
    if objective == "calmar":
        value = metrics["annual_return"] / abs(drawdown) if drawdown < 0 else math.nan
    else:
        value = metrics[objective]
    if math.isnan(value):
        if metrics.get("exposure", 0.0) == 0.0:
            return 0.0
        raise TrialError(f"{objective} is undefined for this trial's equity curve")
    return float(value)
