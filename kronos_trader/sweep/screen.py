"""The screening pass: a vectorised replay of the Directional policy over stored forecasts,
every grid point at once, so a large grid is scored in seconds; the best points are then
re-run exactly through Backtrader (study.py) and the table shows both scores.

The replay follows the Backtrader run step by step, for all points together (arrays over
the points, one step per bar): orders decided at a bar's close fill at the next bar's open
(with `costs.slippage`, capped at the bar's high/low as Backtrader's slip_match does), fees
are `costs.commission` of the traded value, a buy the cash cannot pay at the decision
close is refused (Backtrader's submit check), the stop-loss and take-profit are checked
against the average entry price at the decision close, and a target closer than
`min_change` to the one held is not traded. What it does not model (a buy refused at the
fill because the open gapped past the cash; Backtrader's float rounding) is why its scores
are pinned to Backtrader's within a tolerance (tests/test_sweep_screen.py), not exactly.

Screenable: `strategies.directional:Directional` with fixed sizing, no skill gate and no
Backtrader sizer, on one symbol; parameters among SCREENABLE.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kronos_trader.config import Settings
from kronos_trader.data import infer_bar_interval
from kronos_trader.data.calendar import bars_per_year
from kronos_trader.forecasting.service import ForecastService

from .space import SearchSpace

POLICY = "strategies.directional:Directional"
PARAMS = ("long_threshold", "short_threshold", "allow_short", "hold_long_above", "hold_short_below", "signal",
          "step")
SCREENABLE = (*(f"strategy.params.{p}" for p in PARAMS), "strategy.params.sizing.fraction", "risk.stop_loss",
              "risk.take_profit", "costs.commission", "costs.slippage")
MIN_CHANGE = 0.02  # PolicyStrategy's default min_change


def unscreenable(settings: Settings, space: SearchSpace, symbols: int) -> str | None:
    """Why this sweep cannot be screened (None when it can)."""
    params = settings.strategy.params
    if settings.strategy.name != POLICY:
        return f"the screening pass replays {POLICY} only (not {settings.strategy.name})"
    if settings.strategy.gate is not None:
        return "the screening pass does not model the skill gate"
    if (params.get("sizing") or {}).get("kind", "fixed") != "fixed":
        return "the screening pass models fixed sizing only"
    if symbols != 1:
        return "the screening pass replays one symbol"
    if space.grid is None:
        return "the screening pass scores a grid (sampler: grid)"
    other = [n for n in space.names if n not in SCREENABLE]
    if other:
        return f"the screening pass cannot vary {', '.join(other)} (it varies {', '.join(SCREENABLE)})"
    return None


@dataclass
class Screen:
    """Scores of every point (NaN: undefined, as a failed trial), and the replay's speed."""

    scores: np.ndarray
    metrics: dict[str, np.ndarray]
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.scores) / self.seconds if self.seconds > 0 else math.inf


def _column(points: list[dict[str, Any]], name: str, default: Any) -> np.ndarray:
    values = [p.get(name, default) for p in points]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def replay(settings: Settings, candles: pd.DataFrame, service: ForecastService, symbol: str, timeframe: str,
           points: list[dict[str, Any]]) -> Screen:
    """Score `points` (dotted names, as a grid's) on `candles` with the stored forecasts."""
    start = time.perf_counter()
    forecasts = service.forecast_series(candles, symbol, timeframe)
    params = settings.strategy.params
    n, bars = len(points), len(candles)
    first = min(forecasts)
    # the signal each point reads at each decision bar (one row per (signal, step) pair used)
    kinds = sorted({(p.get("strategy.params.signal", params.get("signal", "p_up")),
                     p.get("strategy.params.step", params.get("step"))) for p in points}, key=str)
    signal = np.full((len(kinds), bars), np.nan)
    for row, (kind, step) in enumerate(kinds):
        for i, f in forecasts.items():
            signal[row, i] = f.prob_up(step) if kind == "p_up" else f.expected_return(step)
    pick = np.array([kinds.index((p.get("strategy.params.signal", params.get("signal", "p_up")),
                                  p.get("strategy.params.step", params.get("step")))) for p in points])
    long_t = _column(points, "strategy.params.long_threshold", params.get("long_threshold", 0.55))
    short_t = _column(points, "strategy.params.short_threshold", params.get("short_threshold", 0.45))
    shorts = _column(points, "strategy.params.allow_short", params.get("allow_short", False)) > 0
    keep_long = _column(points, "strategy.params.hold_long_above", params.get("hold_long_above"))
    keep_long = np.where(np.isnan(keep_long), long_t, keep_long)
    keep_short = _column(points, "strategy.params.hold_short_below", params.get("hold_short_below"))
    keep_short = np.where(np.isnan(keep_short), short_t, keep_short)
    fraction = _column(points, "strategy.params.sizing.fraction", (params.get("sizing") or {}).get("fraction", 0.95))
    stop = _column(points, "risk.stop_loss", settings.risk.stop_loss)
    take = _column(points, "risk.take_profit", settings.risk.take_profit)
    fee = _column(points, "costs.commission", settings.costs.commission)
    slip = _column(points, "costs.slippage", settings.costs.slippage)

    o, h, lo, c = (candles[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close"))
    cash = np.full(n, float(settings.backtest.cash))
    units, entry, held, order = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    equity = np.empty((bars - first, n))
    exposed = np.zeros(n)
    trades = np.zeros(n)
    for i in range(first, bars):
        if i > first:  # the orders of the last close fill at this open
            buy = order > 0
            price = np.where(buy, np.minimum(o[i] * (1 + slip), h[i]), np.maximum(o[i] * (1 - slip), lo[i]))
            price = np.where(order != 0, price, o[i])
            cost = order * price
            fees = np.abs(cost) * fee
            ok = (order != 0) & ~(buy & (cost + fees > cash + 1e-9))
            new = np.where(ok, units + order, units)
            same = (np.sign(new) == np.sign(units)) & (units != 0)
            growing = same & (np.abs(new) > np.abs(units))
            entry = np.where(ok & growing, (entry * units + price * order) / np.where(new == 0, 1, new), entry)
            entry = np.where(ok & ~same, np.where(new != 0, price, 0.0), entry)
            trades += ok & (units != 0) & ((new == 0) | (np.sign(new) != np.sign(units)))
            cash = np.where(ok, cash - cost - fees, cash)
            units = new
            order = np.zeros(n)
        value = cash + units * c[i]
        if not np.isnan(signal[0, i]):
            sig = signal[pick, i]
            side = np.sign(units)
            long_ = (sig > long_t) | ((side > 0) & (sig > keep_long))
            short_ = shorts & ((sig < short_t) | ((side < 0) & (sig < keep_short)))
            target = np.where(long_, fraction, np.where(short_, -fraction, 0.0))
            move = np.where(entry > 0, c[i] / np.where(entry > 0, entry, 1) - 1, 0.0) * side
            exit_ = (units != 0) & (entry > 0) & (((~np.isnan(stop)) & (move <= -np.nan_to_num(stop)))
                                                 | ((~np.isnan(take)) & (move >= np.nan_to_num(take, nan=np.inf))))
            target = np.where(exit_, 0.0, target)
            closing = (target == 0) & (units != 0)
            trade = closing | (np.abs(target - held) >= MIN_CHANGE)
            delta = np.where(trade, target * value / c[i] - units, 0.0)
            submit = trade & (delta != 0)
            affordable = ~((delta > 0) & (delta * c[i] * (1 + fee) > cash + 1e-9))
            order = np.where(submit & affordable, delta, 0.0)
            held = np.where(submit, target, held)
        equity[i - first] = value
        exposed += np.abs(units * c[i]) > 1e-12
    trades += units != 0  # open at the end: listed (and counted) as open trades
    interval = infer_bar_interval(candles.index)
    stamps = candles.index[first:] + interval
    metrics = _performance(equity, stamps, bars_per_year(candles.index, settings.data.calendar))
    metrics.update(exposure=exposed / len(equity), trades=trades)
    scores = _scores(metrics, settings.sweep.objective, settings.sweep.max_drawdown)
    return Screen(scores, metrics, time.perf_counter() - start)


def _performance(equity: np.ndarray, stamps: pd.DatetimeIndex, per_year: float) -> dict[str, np.ndarray]:
    """metrics.performance for many equity curves at once (columns)."""
    returns = equity[1:] / equity[:-1] - 1
    total = equity[-1] / equity[0] - 1
    years = (stamps[-1] - stamps[0]) / pd.Timedelta(days=365.25)
    with np.errstate(invalid="ignore", divide="ignore"):
        annual = np.where((years > 0) & (total > -1), (1 + total) ** (1 / years) - 1 if years > 0 else np.nan, np.nan)
        std = returns.std(axis=0, ddof=1)
        mean = returns.mean(axis=0)
        downside = np.sqrt((np.minimum(returns, 0) ** 2).mean(axis=0))
        sharpe = np.where(std > 0, mean / std * math.sqrt(per_year), np.nan)
        sortino = np.where(downside > 0, mean / downside * math.sqrt(per_year), np.nan)
    drawdown = (equity / np.maximum.accumulate(equity, axis=0) - 1).min(axis=0)
    return {"total_return": total, "annual_return": annual, "sharpe": sharpe, "sortino": sortino,
            "max_drawdown": drawdown}


def _scores(metrics: dict[str, np.ndarray], objective: str, cap: float | None) -> np.ndarray:
    """objective.score for every point (NaN where a trial would fail)."""
    drawdown = metrics["max_drawdown"]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (np.where(drawdown < 0, metrics["annual_return"] / np.abs(drawdown), np.nan) if objective == "calmar"
                 else metrics[objective].astype(float))
    value = np.where(np.isnan(value) & (metrics["exposure"] == 0), 0.0, value)
    if cap is not None:
        value = np.where(drawdown < -cap, -np.inf, value)
    return value


def best(points: list[dict[str, Any]], screen: Screen, k: int) -> list[dict[str, Any]]:
    """The `k` best points by screening score (undefined scores last), best first."""
    order = np.argsort(-np.nan_to_num(screen.scores, nan=-np.inf), kind="stable")
    return [points[i] for i in order[:k]]
