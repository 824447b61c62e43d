"""Robustness checks beside the backtest: look-ahead, and lookback sensitivity.

Look-ahead: runs the strategy twice without any stored forecasts (everything recomputed):
on the data as given, and with every bar after the cut perturbed. Forecasts, signals (target
and reason, so the skill gate's state is compared too) and orders decided at or before the
cut must be identical. With walk-forward fine-tuning each run trains its fold models afresh
(no stored fold is read) and every fold model refitted by the cut must have the same weights.

Lookback sensitivity (freqtrade's "recursive analysis"): a sample of decision bars is
forecast again with a shorter and a longer lookback; the report says how often the
policy's decision (its target exposure, from a flat position) changes. A decision that
flips with the amount of history is fragile.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kronos_trader.config import Settings
from kronos_trader.data import infer_bar_interval
from kronos_trader.decision import PositionState, load_policy
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.progress import stage
from kronos_trader.forecasting.service import ForecastService

from .engine import BacktestResult
from .runner import run_backtest


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


def _forecasts(result: BacktestResult) -> dict:
    """Every symbol's forecasts by (symbol, window end)."""
    return {(symbol, f.window_end): f for symbol, forecasts in result.symbol_forecasts.items()
            for f in forecasts.values()}


def _before(result: BacktestResult, cut_close: pd.Timestamp, forecasts: dict):
    forecasts = {k: (f.mean.round(10).tolist(), f.p_up.tolist()) for k, f in forecasts.items()
                 if f.window_end <= cut_close}
    signals = [(s.symbol, s.bar_time, round(s.target_position, 12), s.reason)
               for s in result.journal.signals if s.bar_time <= cut_close]
    orders = [(o.symbol, o.bar_time, o.side, round(o.amount, 9)) for o in result.journal.orders
              if o.bar_time is not None and o.bar_time <= cut_close]
    return {"forecasts": forecasts, "signals": signals, "orders": orders}


def _fresh_folds(settings: Settings, folder: Path) -> Settings:
    """The settings with fold models trained into `folder` (none read from earlier runs)."""
    return settings.model_copy(update={"finetune": settings.finetune.model_copy(update={"cache_dir": folder})})


def _folds_by(result: BacktestResult, cut_close: pd.Timestamp) -> dict[str, str]:
    """Weights id of each fold refitted by the cut (its training bars all closed by then)."""
    return {f["start"]: f["model_id"] for f in result.finetune.folds if pd.Timestamp(f["start"]) < cut_close}


def _perturb_panel(panel: dict[str, pd.DataFrame], cut_time: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Each symbol's bars after `cut_time` perturbed (each with its own random factors)."""
    out = {}
    for k, (symbol, frame) in enumerate(panel.items()):
        cut = int(frame.index.searchsorted(cut_time, side="right")) - 1
        out[symbol] = perturb_after(frame, cut, seed=1 + k) if cut < len(frame) - 1 else frame
    return out


def check_lookahead(settings: Settings, candles: pd.DataFrame | dict[str, pd.DataFrame], cut_fraction: float = 0.6,
                    progress: bool = False) -> LookaheadReport:
    """`candles` is one series, or a portfolio's by symbol (cut at the same time in each)."""
    if not 0 < cut_fraction < 1:
        raise ValueError(f"cut must be between 0 and 1, got {cut_fraction}")
    panel = candles if isinstance(candles, dict) else None
    clock = next(iter(panel.values())).index if panel else candles.index
    cut = int(len(clock) * cut_fraction)
    if cut <= settings.forecast.lookback or cut >= len(clock) - 1:
        raise ValueError(f"cut at bar {cut} leaves no forecasts before or after it: use more bars than "
                         f"{settings.forecast.lookback} (the lookback) or another cut")
    symbol, timeframe = settings.data.symbol, settings.data.timeframe
    changed_candles = _perturb_panel(panel, clock[cut]) if panel else perturb_after(candles, cut)
    runs = []
    with tempfile.TemporaryDirectory(prefix="kt-lookahead-") as folds:
        for k, (label, frames, what) in enumerate((("as-given", candles, "as given"),
                                                   ("perturbed", changed_candles, f"with the bars after {clock[cut]} "
                                                                                  f"perturbed"))):
            stage(progress, f"look-ahead {k + 1}/2: backtest on {len(clock)} bars {what}")
            result = run_backtest(_fresh_folds(settings, Path(folds) / label), frames, symbol, timeframe, None,
                                  progress=progress)
            runs.append((result, _forecasts(result)))
    (base, base_forecasts), (changed, changed_forecasts) = runs
    interval = infer_bar_interval(clock)
    cut_close = clock[cut] + interval
    a, b = _before(base, cut_close, base_forecasts), _before(changed, cut_close, changed_forecasts)
    if base.finetune is not None:
        a["fold models"], b["fold models"] = (_folds_by(r, cut_close) for r in (base, changed))
    compared = {k: len(v) for k, v in a.items()}
    differences = {"fold models": sum(1 for k, v in a.get("fold models", {}).items() if b["fold models"].get(k) != v),
                   "forecasts": sum(1 for k, v in a["forecasts"].items() if b["forecasts"].get(k) != v),
                   "signals": 0 if a["signals"] == b["signals"] else
                   sum(1 for x, y in zip(a["signals"], b["signals"]) if x != y) + abs(len(a["signals"]) -
                                                                                    len(b["signals"])),
                   "orders": 0 if a["orders"] == b["orders"] else max(1, abs(len(a["orders"]) - len(b["orders"])))}
    after_a = {k: f.mean.tolist() for k, f in base_forecasts.items() if f.window_end > cut_close}
    after_b = {k: f.mean.tolist() for k, f in changed_forecasts.items() if f.window_end > cut_close}
    changed_after = sum(1 for k, v in after_a.items() if after_b.get(k) != v)
    return LookaheadReport(clock[cut], compared, differences, changed_after)


@dataclass
class SensitivityReport:
    lookback: int
    bars: int                       # decision bars sampled
    changed: dict[int, int]         # other lookback -> decisions that differ

    def describe(self) -> str:
        lines = [f"lookback sensitivity: {self.bars} decision bars forecast again with other lookbacks "
                 f"(configured {self.lookback})"]
        for lookback, n in self.changed.items():
            share = n / self.bars if self.bars else float("nan")
            lines.append(f"  lookback {lookback}: decision changes at {n} of {self.bars} bars ({share:.0%})")
        return "\n".join(lines)


def check_lookback_sensitivity(settings: Settings, candles: pd.DataFrame, bars: int = 40,
                               lookbacks: tuple[int, ...] | None = None, progress: bool = False,
                               seed: int = 0) -> SensitivityReport:
    """Forecast `bars` randomly chosen decision bars with each of `lookbacks` (default: half
    and double the configured one, within the model's context) and count the decisions of
    the (ungated) policy that differ from those with the configured lookback."""
    f = settings.forecast
    model = load_model(settings.model.name, settings.model.device, settings.model.max_context,
                       settings.model.precision)
    policy = load_policy(settings.strategy.name, settings.strategy.params)  # the gate needs history: not here
    if lookbacks is None:
        lookbacks = tuple(sorted({max(8, f.lookback // 2), min(2 * f.lookback, model.max_context)} - {f.lookback}))
    longest = max((f.lookback, *lookbacks))
    positions = np.arange(longest - 1, len(candles))
    if len(positions) == 0:
        raise ValueError(f"lookback sensitivity needs more than {longest} bars (got {len(candles)})")
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(positions, size=min(bars, len(positions)), replace=False).tolist())
    symbol, timeframe = settings.data.symbol, settings.data.timeframe

    def targets(lookback: int) -> list[float]:
        service = ForecastService.from_settings(settings, None, progress, model, lookback=lookback)
        forecasts = service.forecast_at(candles, sample, symbol, timeframe)
        return [policy.decide(forecasts[p], PositionState(0.0, None, settings.backtest.cash,
                                                          forecasts[p].last_close)).target for p in sample]

    runs = (f.lookback, *lookbacks)
    stage(progress, f"lookback sensitivity 1/{len(runs)}: {len(sample)} bars with lookback {f.lookback}")
    base = targets(f.lookback)
    changed = {}
    for k, lookback in enumerate(lookbacks, start=2):
        stage(progress, f"lookback sensitivity {k}/{len(runs)}: lookback {lookback}")
        other = targets(lookback)
        changed[lookback] = sum(1 for a, b in zip(base, other) if abs(a - b) > 1e-12)
    return SensitivityReport(f.lookback, len(sample), changed)
