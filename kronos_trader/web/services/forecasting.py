"""One workbench forecast: pick the window, sample paths, compare with what came next.

The window is `lookback` bars starting at `start`; the model forecasts the `horizon` bars
after it, stamped by the calendar (`data.calendar`), so the band lines up with the actual
bars that follow. Where the data continue past the window, those bars are the actuals the
error metrics (MAE, RMSE, direction hit rate, band coverage) are computed against, step by
step; `meta.stamps_aligned` counts the steps whose stamp equals the actual bar's.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from kronos import QUANTILES
from kronos_trader.config import Settings
from kronos_trader.data import CandleDataError
from kronos_trader.data.display import round_significant

from ..errors import WebError
from ..schemas import ForecastRequest
from .datasets import Dataset
from .serialize import clean, floats, format_interval, stamp, stamps

OHLC = ("open", "high", "low", "close")
COLUMNS = ("open", "high", "low", "close", "volume", "amount")


@dataclass(frozen=True)
class Window:
    start: int
    lookback: int
    horizon: int

    @property
    def end(self) -> int:  # exclusive
        return self.start + self.lookback


def resolve_start(dataset: Dataset, req: ForecastRequest) -> int:
    n = len(dataset.candles)
    if req.start_time:
        try:
            t = pd.Timestamp(req.start_time)
        except (ValueError, TypeError):
            raise WebError(422, f"start_time '{req.start_time}' is not a date/time") from None
        if t.tzinfo is not None:
            t = t.tz_convert("UTC").tz_localize(None)
        return int(min(dataset.candles.index.searchsorted(t), n - 1))
    if req.start is not None:
        return req.start
    # default: the latest window that still leaves `horizon` actual bars to compare with
    return max(0, n - req.lookback - req.horizon) if n >= req.lookback + req.horizon else max(0, n - req.lookback)


def check_window(dataset: Dataset, req: ForecastRequest, max_context: int) -> Window:
    n = len(dataset.candles)
    if req.lookback > max_context:
        raise WebError(422, f"lookback {req.lookback} exceeds the model's context of {max_context} bars")
    if req.horizon > max_context:
        raise WebError(422, f"horizon {req.horizon} exceeds the model's context of {max_context} bars")
    if req.lookback > n:
        raise WebError(422, f"lookback {req.lookback} is more than the {n} bars in {dataset.name}")
    start = resolve_start(dataset, req)
    if start + req.lookback > n:
        raise WebError(422, f"a window of {req.lookback} bars starting at bar {start} runs past the end of the "
                            f"data ({n} bars); the last possible start is {n - req.lookback}")
    return Window(start, req.lookback, req.horizon)


def error_metrics(actual: np.ndarray, mean: np.ndarray, lo90: np.ndarray, hi90: np.ndarray, lo50: np.ndarray,
                  hi50: np.ndarray, last_close: float) -> dict:
    """Close-price errors over the steps that have an actual bar."""
    k = len(actual)
    if k == 0:
        return {"steps": 0}
    m = mean[:k]
    err = m - actual
    pred_dir, real_dir = np.sign(m - last_close), np.sign(actual - last_close)
    return {
        "steps": int(k),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(math.sqrt(np.mean(err ** 2))),
        "mape": float(np.mean(np.abs(err) / np.abs(actual))),
        "direction_hit_rate": float(np.mean(pred_dir == real_dir)),
        "coverage_90": float(np.mean((actual >= lo90[:k]) & (actual <= hi90[:k]))),
        "coverage_50": float(np.mean((actual >= lo50[:k]) & (actual <= hi50[:k]))),
        "final_error": float(err[-1]),
    }


def run_forecast(dataset: Dataset, req: ForecastRequest, model, window: Window, device: str,
                 report: Callable[[str, float], None], model_label: str | None = None,
                 settings: Settings | None = None) -> dict:
    """Forecast one window through the forecast service (the CLI's and the backtest's
    numbers for the same window and settings); returns the JSON-safe result the UI draws."""
    from kronos_trader.forecasting.service import ForecastService

    candles = dataset.candles
    history = candles.iloc[window.start:window.end]
    interval = dataset.interval
    actual = candles.iloc[window.end:window.end + window.horizon]
    report("sampling", 0.0)
    steps = _StepCounter(model.predictor, window.horizon, report)
    try:
        service = ForecastService.from_settings(
            settings or Settings(), None, False, model, lookback=window.lookback, horizon=window.horizon,
            temperature=req.temperature, top_k=req.top_k, top_p=req.top_p, sample_count=req.sample_count,
            seed=req.seed)
        position = window.end - 1
        result = service.forecast_at(candles, [position], dataset.name, format_interval(interval), interval)[position]
    except (ValueError, CandleDataError) as exc:
        raise WebError(422, f"forecast failed: {exc}") from None
    finally:
        steps.close()
    report("scoring", 1.0)
    q, close = result.quantiles, result.mean[:, 3]
    future = pd.DatetimeIndex(result.stamps, name="timestamp")
    metrics = error_metrics(actual["close"].to_numpy(), close, q[0.05], q[0.95], q[0.25], q[0.75], result.last_close)
    return {
        "meta": {
            "dataset": dataset.name, "dataset_source": dataset.source, "model": model_label or model.name,
            "model_id": model.model_id, "device": device, "interval": format_interval(interval),
            "window_start": window.start, "window_end": window.end - 1,
            "window_start_time": stamp(history.index[0]), "window_end_time": stamp(history.index[-1]),
            "lookback": window.lookback, "horizon": window.horizon, "temperature": req.temperature,
            "top_p": req.top_p, "top_k": req.top_k, "sample_count": req.sample_count, "seed": req.seed,
            "calendar": service.calendar, "stamps_aligned": int(np.sum(future[:len(actual)] == actual.index)),
            "last_close": result.last_close, "warnings": service.warnings,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "history": _ohlcv(history),
        "forecast": {
            "timestamps": stamps(future),
            "mean": {c: floats(round_significant(result.mean[:, i])) for i, c in enumerate(COLUMNS)},
            "quantiles": {f"{lvl:g}": {"close": floats(round_significant(q[lvl]))} for lvl in QUANTILES},
            "p_up": floats(result.p_up, 6),
        },
        "actual": _ohlcv(actual),
        "metrics": clean(metrics),
    }


def _ohlcv(frame: pd.DataFrame) -> dict:
    return {"timestamps": stamps(frame.index), **{c: floats(round_significant(frame[c])) for c in COLUMNS}}


def result_csv(result: dict) -> str:
    """One row per forecast step: mean OHLCV, close quantiles, P(up) and the actual bar."""
    f = result["forecast"]
    out = pd.DataFrame({"timestamp": f["timestamps"]})
    for c in COLUMNS:
        out[f"mean_{c}"] = f["mean"][c]
    for lvl, cols in f["quantiles"].items():
        out[f"close_q{round(float(lvl) * 100):02d}"] = cols["close"]
    out["p_up"] = f["p_up"]
    a = result["actual"]
    k = len(a["timestamps"])
    for c in ("timestamp", *OHLC):
        key = "timestamps" if c == "timestamp" else c
        values = list(a[key]) + [None] * (len(out) - k)
        out[f"actual_{c}"] = values
    buf = io.StringIO()
    out.to_csv(buf, index=False, float_format="%.8g")
    return buf.getvalue()


class _StepCounter:
    """Counts decode steps through a forward hook on the model's time embedding, which
    runs once per generated step, so the job can report real progress."""

    def __init__(self, predictor, horizon: int, report: Callable[[str, float], None]):
        self.calls, self.horizon, self.report = 0, max(horizon, 1), report
        self.handle = None
        module = getattr(getattr(predictor, "model", None), "time_emb", None)
        if module is not None and hasattr(module, "register_forward_hook"):
            self.handle = module.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1
        self.report("sampling", min(self.calls / self.horizon, 0.99))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.remove()
