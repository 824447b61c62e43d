"""Forecasts for programs: the versioned web API and the MCP server answer through here.

One forecast is the forecast service's (`ForecastService.forecast_latest`) on the posted
or stored candles with the config's settings (a request may override the sampling), as
plain data: bar stamps, the mean path, close quantiles, P(up) per step and, on request,
the skill of the model's recent forecasts on the same series (scored against random-walk
baselines on bars that came after each, never before).
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd

from kronos_trader.config import Settings
from kronos_trader.data import CandleDataError, validate_candles
from kronos_trader.data.display import round_significant

COLUMNS = ("open", "high", "low", "close", "volume", "amount")
SAMPLING = ("lookback", "horizon", "sample_count", "seed", "temperature", "top_p", "top_k")
MAX_SKILL_WINDOWS = 200


def candles_from_columns(timestamps: Sequence[Any], columns: dict[str, Sequence[Any] | None],
                         source: str = "request") -> pd.DataFrame:
    """Validated candles from column lists (open/high/low/close required; volume, amount
    optional). Raises CandleDataError naming the column and row of a bad value (NaN...)."""
    lengths = {name: len(values) for name, values in columns.items() if values is not None}
    if any(n != len(timestamps) for n in lengths.values()):
        bad = next(name for name, n in lengths.items() if n != len(timestamps))
        raise CandleDataError(f"{bad} has {lengths[bad]} values for {len(timestamps)} timestamps", source=source)
    try:
        index = pd.DatetimeIndex(pd.to_datetime(list(timestamps), utc=True)).tz_localize(None)
    except (ValueError, TypeError) as exc:
        raise CandleDataError(f"timestamps: {str(exc).splitlines()[0]}", source=source) from None
    frame = pd.DataFrame({name: pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(float)
                          for name, values in columns.items() if values is not None}, index=index)
    frame.index.name = "timestamp"
    return validate_candles(frame, source)


def forecast_summary(settings: Settings, model, candles: pd.DataFrame, symbol: str, timeframe: str,
                     skill_windows: int = 0, **sampling: Any) -> dict:
    """The forecast after the last bar, as JSON-safe data (see the module docstring).
    Raises ValueError (or CandleDataError) with a one-line reason for bad input."""
    from kronos_trader.forecasting.service import ForecastService

    unknown = set(sampling) - set(SAMPLING)
    if unknown:
        raise ValueError(f"unknown setting {sorted(unknown)[0]!r}; allowed: {', '.join(SAMPLING)}")
    if not 0 <= skill_windows <= MAX_SKILL_WINDOWS:
        raise ValueError(f"skill_windows must be 0..{MAX_SKILL_WINDOWS}, got {skill_windows}")
    overrides = {k: v for k, v in sampling.items() if v is not None}
    service = ForecastService.from_settings(settings, None, False, model, **overrides)
    f = service.settings
    result = service.forecast_latest(candles, symbol, timeframe)
    out = {"symbol": symbol, "timeframe": timeframe, "model": model.name, "model_id": model.model_id,
           "window_end": str(result.window_end), "last_bar": str(candles.index[-1]), "last_close": result.last_close,
           "lookback": f.lookback, "horizon": f.horizon, "sample_count": f.sample_count, "seed": f.seed,
           "stamps": [str(s) for s in result.stamps],
           "mean": {c: round_significant(result.mean[:, i]).tolist() for i, c in enumerate(COLUMNS)},
           "quantiles": {f"{q:g}": round_significant(v).tolist() for q, v in sorted(result.quantiles.items())},
           "p_up": [round(float(p), 6) for p in result.p_up], "warnings": list(service.warnings),
           "skill": recent_skill(service, candles, symbol, timeframe, skill_windows) if skill_windows else None}
    return out


def recent_skill(service, candles: pd.DataFrame, symbol: str, timeframe: str, windows: int) -> dict:
    """Skill of the last `windows` forecasts whose horizon ended within `candles` (each
    from its own past window), against a random walk with static and rolling-vol bands."""
    from kronos_trader.evaluation.skill import score_run

    f = service.settings
    resolvable = [p for p in service.decision_positions(len(candles)) if p + f.horizon < len(candles)]
    if not resolvable:
        raise ValueError(f"skill_windows needs at least lookback + horizon + 1 = {f.lookback + f.horizon + 1} "
                         f"bars, got {len(candles)}")
    forecasts = service.forecast_at(candles, resolvable[-windows:], symbol, timeframe)
    report = score_run(forecasts.values(), candles)
    return {**report.to_dict(), "verdict": report.verdict()}
