"""One trial: the backtest of one parameter point, through the same `run_backtest` as the
`backtest` command, on forecasts that are already stored (read, never recomputed)."""
from __future__ import annotations

import json
import math
import os
import socket
import warnings
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kronos_trader.backtest.runner import run_backtest
from kronos_trader.config import Settings, parse_settings
from kronos_trader.forecasting.probability import PUpResolutionWarning
from kronos_trader.forecasting.service import ForecastService

from .objective import score
from .space import with_params

EQUITY_POINTS = 400  # equity curve kept per trial, for the plots of the best trials


@dataclass(frozen=True)
class SweepData:
    """The candles every trial replays: one frame per symbol, and where the out-of-sample
    span starts (a bar position) when walking forward."""

    panel: dict[str, pd.DataFrame]
    timeframe: str
    split: int | None = None

    def span(self, part: str, lookback: int) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """The in-sample ("train") or out-of-sample ("test") candles; the test span keeps the
        `lookback` bars before its first decision as history."""
        cut = {"all": slice(None), "train": slice(None, self.split),
               "test": slice(None if self.split is None else self.split - lookback + 1, None)}[part]
        frames = {s: c.iloc[cut] for s, c in self.panel.items()}
        return next(iter(frames.values())) if len(frames) == 1 else frames


@dataclass
class TrialJob:
    """Everything a trial needs besides its parameters (sent once to Ray workers)."""

    settings: dict[str, Any]  # base settings, JSON form
    data: SweepData
    model: Any = None  # the model's identity (executors.ModelIdentity): Ray workers read, never load
    folds: dict | None = None  # walk-forward fine-tuning on Ray: each fold's model and report (driver-trained)

    @property
    def base(self) -> Settings:
        return parse_settings(self.settings, "sweep")


@dataclass
class TrialOutcome:
    value: float | None
    attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    lost: str | None = None  # the infrastructure lost the trial (a dead worker): run it again, never score it


def _equity_points(equity: pd.Series) -> list[list]:
    step = max(1, -(-len(equity) // EQUITY_POINTS))
    picked = equity.iloc[::step]
    if len(equity) and picked.index[-1] != equity.index[-1]:
        picked = pd.concat([picked, equity.iloc[-1:]])
    return [[ts.isoformat(), round(float(v), 4)] for ts, v in picked.items()]


def _clean(metrics: dict[str, float]) -> dict[str, float | None]:
    """JSON-safe metrics (NaN becomes null)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def trial_warnings(caught) -> list[str]:
    """A trial's warnings, kept on the trial instead of printed (one per trial flooded the
    console); the P(up) resolution ones are left out: the sweep says that once for its space."""
    return sorted({str(w.message).splitlines()[0] for w in caught
                   if issubclass(w.category, UserWarning) and not issubclass(w.category, PUpResolutionWarning)})


def run_trial(job: TrialJob, params: dict[str, Any], service: ForecastService) -> TrialOutcome:
    """Backtest one point; any failure is caught and becomes the trial's error."""
    attrs: dict[str, Any] = {"worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        settings = with_params(job.base, params)
        sweep, lookback = settings.sweep, settings.forecast.lookback
        parts = ("train", "test") if job.data.split is not None else ("all",)
        value = None
        for part in parts:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = run_backtest(settings, job.data.span(part, lookback), next(iter(job.data.panel)),
                                      job.data.timeframe, None, progress=False, service=service)
            attrs["warnings"] = sorted({*attrs.get("warnings", []), *trial_warnings(caught)})  # both spans'
            metrics = result.metrics["strategy"]
            prefix = "oos_" if part == "test" else ""
            attrs[f"{prefix}metrics"] = _clean(metrics)
            attrs[f"{prefix}equity"] = _equity_points(result.equity["equity"])
            attrs[f"{prefix}value"] = score(metrics, sweep.objective, sweep.max_drawdown, sweep.min_trades)
            if part != "test":
                value = attrs["value"]
        json.dumps(attrs)  # stored as JSON: fail here, on the trial, if something is not
        return TrialOutcome(value, attrs)
    except Exception as exc:  # noqa: BLE001 - a failing trial is recorded and the sweep goes on
        message = (str(exc).strip().splitlines() or [""])[0]
        return TrialOutcome(None, attrs, f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
