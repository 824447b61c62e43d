"""Look-ahead check: a backtest must not change before a cut when data after it changes.

Runs the strategy twice without any stored forecasts (everything recomputed): on the data
as given, and with every bar after the cut perturbed. Forecasts, signals and orders decided
at or before the cut must be identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kronos_trader.config import Settings

from .runner import BacktestResult, run_backtest


@dataclass
class LookaheadReport:
    cut_time: pd.Timestamp
    compared: dict[str, int]
    differences: dict[str, int]
    changed_after: int

    @property
    def passed(self) -> bool:
        return not any(self.differences.values())

    def describe(self) -> str:
        lines = [f"cut after the bar opening {self.cut_time}"]
        for key, n in self.compared.items():
            lines.append(f"  {key}: {n} before the cut compared, {self.differences[key]} differ")
        lines.append(f"  forecasts after the cut that changed (expected > 0): {self.changed_after}")
        lines.append("PASSED: nothing before the cut depends on later data" if self.passed
                     else "FAILED: decisions before the cut depend on later data")
        return "\n".join(lines)


def perturb_after(candles: pd.DataFrame, cut: int, seed: int = 1) -> pd.DataFrame:
    """Scale every bar after position `cut` by a random factor (OHLC consistent)."""
    rng = np.random.default_rng(seed)
    out = candles.copy()
    factor = np.exp(np.cumsum(rng.normal(0.0, 0.02, len(candles) - cut - 1)))
    for col in ("open", "high", "low", "close"):
        out.iloc[cut + 1:, out.columns.get_loc(col)] *= factor
    out.iloc[cut + 1:, out.columns.get_loc("volume")] *= rng.uniform(0.5, 2.0, len(candles) - cut - 1)
    if "amount" in out:
        later = out.iloc[cut + 1:]
        out.iloc[cut + 1:, out.columns.get_loc("amount")] = \
            later["volume"] * later[["open", "high", "low", "close"]].mean(axis=1)
    return out


def _before(result: BacktestResult, cut_close: pd.Timestamp):
    forecasts = {f.window_end: (f.mean.round(10).tolist(), f.p_up.tolist()) for f in result.forecasts.values()
                 if f.window_end <= cut_close}
    signals = [(s["bar_time"], round(s["target_position"], 12)) for s in result.journal.signals
               if s["bar_time"] <= cut_close]
    orders = [(o["bar_time"], o["side"], round(o["amount"], 9)) for o in result.journal.orders
              if o["bar_time"] is not None and o["bar_time"] <= cut_close]
    return {"forecasts": forecasts, "signals": signals, "orders": orders}


def check_lookahead(settings: Settings, candles: pd.DataFrame, cut_fraction: float = 0.6) -> LookaheadReport:
    if not 0 < cut_fraction < 1:
        raise ValueError(f"cut must be between 0 and 1, got {cut_fraction}")
    cut = int(len(candles) * cut_fraction)
    if cut <= settings.forecast.lookback or cut >= len(candles) - 1:
        raise ValueError(f"cut at bar {cut} leaves no forecasts before or after it: use more bars than "
                         f"{settings.forecast.lookback} (the lookback) or another cut")
    symbol, timeframe = settings.data.symbol, settings.data.timeframe
    base = run_backtest(settings, candles, symbol, timeframe, None, progress=False)
    changed = run_backtest(settings, perturb_after(candles, cut), symbol, timeframe, None, progress=False)
    interval = candles.index[cut + 1] - candles.index[cut]
    cut_close = candles.index[cut] + interval
    a, b = _before(base, cut_close), _before(changed, cut_close)
    compared = {k: len(v) for k, v in a.items()}
    differences = {"forecasts": sum(1 for k, v in a["forecasts"].items() if b["forecasts"].get(k) != v),
                   "signals": 0 if a["signals"] == b["signals"] else
                   sum(1 for x, y in zip(a["signals"], b["signals"]) if x != y) + abs(len(a["signals"]) -
                                                                                    len(b["signals"])),
                   "orders": 0 if a["orders"] == b["orders"] else max(1, abs(len(a["orders"]) - len(b["orders"])))}
    after_a = {f.window_end: f.mean.tolist() for f in base.forecasts.values() if f.window_end > cut_close}
    after_b = {f.window_end: f.mean.tolist() for f in changed.forecasts.values() if f.window_end > cut_close}
    changed_after = sum(1 for k, v in after_a.items() if after_b.get(k) != v)
    return LookaheadReport(candles.index[cut], compared, differences, changed_after)
