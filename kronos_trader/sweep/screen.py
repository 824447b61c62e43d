"""The screening pass: a vectorised replay of the Directional policy over stored forecasts,
every grid point at once, so a large grid is scored in seconds; the best points are then
re-run exactly through Backtrader (study.py) and the table shows both scores.

The replay follows the Backtrader run step by step, point by point in a loop compiled by
numba (as vectorbt does; a numpy step over all points at once ran below 100 points a second
here): orders decided at a bar's close fill at the next bar's open
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

import numba
import numpy as np
import pandas as pd

from kronos_trader.config import Settings
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

    def kind(p: dict[str, Any]) -> tuple:
        return (p.get("strategy.params.signal", params.get("signal", "p_up")),
                p.get("strategy.params.step", params.get("step")))

    # the signal each point reads at each decision bar (one row per (signal, step) pair used)
    kinds = sorted({kind(p) for p in points}, key=str)
    signal = np.full((len(kinds), len(candles)), np.nan)
    for row, (name, step) in enumerate(kinds):
        for i, f in forecasts.items():
            signal[row, i] = f.prob_up(step) if name == "p_up" else f.expected_return(step)
    long_t = _column(points, "strategy.params.long_threshold", params.get("long_threshold", 0.55))
    short_t = _column(points, "strategy.params.short_threshold", params.get("short_threshold", 0.45))
    keep_long = _column(points, "strategy.params.hold_long_above", params.get("hold_long_above"))
    keep_short = _column(points, "strategy.params.hold_short_below", params.get("hold_short_below"))
    policy = {
        "pick": np.array([kinds.index(kind(p)) for p in points]), "long": long_t, "short": short_t,
        "shorts": _column(points, "strategy.params.allow_short", params.get("allow_short", False)) > 0,
        "keep_long": np.where(np.isnan(keep_long), long_t, keep_long),
        "keep_short": np.where(np.isnan(keep_short), short_t, keep_short),
        "fraction": _column(points, "strategy.params.sizing.fraction",
                            (params.get("sizing") or {}).get("fraction", 0.95)),
        "stop": _column(points, "risk.stop_loss", settings.risk.stop_loss),
        "take": _column(points, "risk.take_profit", settings.risk.take_profit),
        "fee": _column(points, "costs.commission", settings.costs.commission),
        "slip": _column(points, "costs.slippage", settings.costs.slippage)}
    bars = candles[["open", "high", "low", "close"]].to_numpy(dtype=float)
    first = min(forecasts)
    metrics = _simulate(signal, bars, first, float(settings.backtest.cash), policy)
    span = (candles.index[-1] - candles.index[first]) / pd.Timedelta(days=365.25)
    per_year = bars_per_year(candles.index, settings.data.calendar)
    returns = len(candles) - first - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        total = metrics.pop("last") / settings.backtest.cash - 1
        mean = metrics.pop("sum_r") / returns
        std = np.sqrt(np.maximum(metrics.pop("sum_r2") - returns * mean * mean, 0) / (returns - 1))
        downside = np.sqrt(metrics.pop("sum_neg2") / returns)
        metrics.update(
            total_return=total, annual_return=np.where((span > 0) & (total > -1), (1 + total) ** (1 / span) - 1
                                                       if span > 0 else np.nan, np.nan),
            sharpe=np.where(std > 1e-15, mean / std * math.sqrt(per_year), np.nan),
            sortino=np.where(downside > 0, mean / downside * math.sqrt(per_year), np.nan),
            exposure=metrics.pop("exposed") / (returns + 1))
    scores = _scores(metrics, settings.sweep.objective, settings.sweep.max_drawdown, settings.sweep.min_trades)
    return Screen(scores, metrics, time.perf_counter() - start)


def _simulate(signal: np.ndarray, bars: np.ndarray, first: int, cash0: float,
              p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Step every point through the bars (compiled with numba: a loop per point, as
    vectorbt does); equity figures kept as running sums."""
    out = np.zeros((len(p["long"]), 7))
    _steps(signal, bars, first, cash0, p["pick"].astype(np.int64), p["long"], p["short"], p["shorts"],
           p["keep_long"], p["keep_short"], p["fraction"], np.where(np.isnan(p["stop"]), np.inf, p["stop"]),
           np.where(np.isnan(p["take"]), np.inf, p["take"]), p["fee"], p["slip"], out)
    return dict(zip(("last", "sum_r", "sum_r2", "sum_neg2", "max_drawdown", "exposed", "trades"), out.T))


@numba.njit(cache=True, nogil=True, parallel=True)
def _steps(signal, bars, first, cash0, pick, long_t, short_t, shorts, keep_long, keep_short, fraction, stop, take,
           fee, slip, out):  # pragma: no cover - compiled; pinned to Backtrader by tests/test_sweep_screen.py
    for j in numba.prange(len(long_t)):  # points are independent: one per core
        cash, units, entry, held, order = cash0, 0.0, 0.0, 0.0, 0.0
        sum_r = sum_r2 = sum_neg2 = 0.0
        peak, deepest, exposed, trades, previous = cash0, 0.0, 0.0, 0.0, cash0
        for i in range(first, bars.shape[0]):
            o, h, lo, c = bars[i, 0], bars[i, 1], bars[i, 2], bars[i, 3]
            if order != 0.0:  # the order of the last close fills at this open
                price = min(o * (1 + slip[j]), h) if order > 0 else max(o * (1 - slip[j]), lo)
                cost = order * price
                fees = abs(cost) * fee[j]
                if not (order > 0 and cost + fees > cash + 1e-9):
                    new = units + order
                    if units != 0.0 and np.sign(new) == np.sign(units):
                        if abs(new) > abs(units):
                            entry = (entry * units + price * order) / new
                    else:
                        entry = price if new != 0.0 else 0.0
                    if units != 0.0 and (new == 0.0 or np.sign(new) != np.sign(units)):
                        trades += 1
                    cash -= cost + fees
                    units = new
                order = 0.0
            value = cash + units * c
            sig = signal[pick[j], i]
            if not np.isnan(sig):
                side = np.sign(units)
                if sig > long_t[j] or (side > 0 and sig > keep_long[j]):
                    target = fraction[j]
                elif shorts[j] and (sig < short_t[j] or (side < 0 and sig < keep_short[j])):
                    target = -fraction[j]
                else:
                    target = 0.0
                if side != 0 and entry > 0:
                    move = (c / entry - 1) * side
                    if move <= -stop[j] or move >= take[j]:
                        target = 0.0
                if (target == 0.0 and units != 0.0) or abs(target - held) >= MIN_CHANGE:
                    delta = target * value / c - units
                    if delta != 0.0:
                        if not (delta > 0 and delta * c * (1 + fee[j]) > cash + 1e-9):
                            order = delta
                        held = target
            if value != previous:  # flat bars add a zero return: nothing to divide
                r = value / previous - 1
                sum_r += r
                sum_r2 += r * r
                if r < 0:
                    sum_neg2 += r * r
                if value > peak:
                    peak = value
                elif value < peak * (1 + deepest):
                    deepest = value / peak - 1
            previous = value
            if units != 0.0:
                exposed += 1
        if units != 0.0:
            trades += 1  # open at the end: listed (and counted) as an open trade
        out[j, 0], out[j, 1], out[j, 2], out[j, 3] = previous, sum_r, sum_r2, sum_neg2
        out[j, 4], out[j, 5], out[j, 6] = deepest, exposed, trades


def _scores(metrics: dict[str, np.ndarray], objective: str, cap: float | None, min_trades: int = 0) -> np.ndarray:
    """objective.score for every point (NaN where a trial would fail)."""
    drawdown = metrics["max_drawdown"]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (np.where(drawdown < 0, metrics["annual_return"] / np.abs(drawdown), np.nan) if objective == "calmar"
                 else metrics[objective].astype(float))
    value = np.where(np.isnan(value) & (metrics["exposure"] == 0), 0.0, value)
    if cap is not None:
        value = np.where(drawdown < -cap, -np.inf, value)
    if min_trades:
        value = np.where(metrics["trades"] < min_trades, -np.inf, value)
    return value


def best(points: list[dict[str, Any]], screen: Screen, k: int) -> list[dict[str, Any]]:
    """The `k` best points by screening score (undefined scores last), best first."""
    order = np.argsort(-np.nan_to_num(screen.scores, nan=-np.inf), kind="stable")
    return [points[i] for i in order[:k]]
