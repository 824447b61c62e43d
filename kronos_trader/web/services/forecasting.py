"""One workbench forecast: pick the window, sample paths, compare with what came next.

The window is `lookback` bars starting at `start`; the model forecasts the `horizon` bars
after it. Where the data continue past the window, those bars are the actuals the error
metrics (MAE, RMSE, direction hit rate, band coverage) are computed against, step by step.
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

from ..errors import WebError
from ..schemas import ForecastRequest
from .datasets import Dataset
from .serialize import floats, format_interval, stamp, stamps

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
                 report: Callable[[str, float], None], model_label: str | None = None) -> dict:
    """Forecast one window; returns the JSON-safe result the UI draws and downloads."""
    candles = dataset.candles
    history = candles.iloc[window.start:window.end]
    interval = dataset.interval
    future = pd.DatetimeIndex([history.index[-1] + interval * (k + 1) for k in range(window.horizon)],
                              name="timestamp")
    actual = candles.iloc[window.end:window.end + window.horizon]
    report("sampling", 0.0)
    steps = _StepCounter(model.predictor, window.horizon, report)
    try:
        result = model.predictor.forecast(history, x_timestamp=history.index, y_timestamp=future,
                                          pred_len=window.horizon, T=req.temperature, top_k=req.top_k,
                                          top_p=req.top_p, sample_count=req.sample_count, verbose=False,
                                          seed=req.seed)
    except ValueError as exc:
        raise WebError(422, f"forecast failed: {exc}") from None
    finally:
        steps.close()
    report("scoring", 1.0)
    q = result.quantiles
    close = result.mean["close"].to_numpy()
    metrics = error_metrics(actual["close"].to_numpy(), close, q[0.05]["close"].to_numpy(),
                            q[0.95]["close"].to_numpy(), q[0.25]["close"].to_numpy(), q[0.75]["close"].to_numpy(),
                            result.last_close)
    return {
        "meta": {
            "dataset": dataset.name, "dataset_source": dataset.source, "model": model_label or model.name,
            "model_id": model.model_id, "device": device, "interval": format_interval(interval),
            "window_start": window.start, "window_end": window.end - 1,
            "window_start_time": stamp(history.index[0]), "window_end_time": stamp(history.index[-1]),
            "lookback": window.lookback, "horizon": window.horizon, "temperature": req.temperature,
            "top_p": req.top_p, "top_k": req.top_k, "sample_count": req.sample_count, "seed": req.seed,
            "last_close": result.last_close,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "history": _ohlcv(history),
        "forecast": {
            "timestamps": stamps(future),
            "mean": {c: floats(result.mean[c], 8) for c in COLUMNS},
            "quantiles": {f"{lvl:g}": {c: floats(q[lvl][c], 8) for c in COLUMNS} for lvl in QUANTILES},
            "p_up": floats(result.p_up, 6),
        },
        "actual": _ohlcv(actual),
        "metrics": metrics,
    }


def _ohlcv(frame: pd.DataFrame) -> dict:
    return {"timestamps": stamps(frame.index), **{c: floats(frame[c], 8) for c in COLUMNS}}


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
