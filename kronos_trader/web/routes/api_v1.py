"""The versioned JSON API for programs (`/api/v1`, documented at /docs and /openapi.json).

Forecast a posted window or a stored series with the service's settings; list models,
backtests, paper/live runs and sweeps. Every error is `{"error": "<one line>"}` with a
4xx/5xx status. With `web.api_key_env` set, requests need `Authorization: Bearer <key>`.
"""
from __future__ import annotations

import threading
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from kronos_trader.config import MAX_SAMPLE_COUNT
from kronos_trader.data import CandleDataError, infer_bar_interval

from ..context import ctx
from ..errors import WebError
from ..services import backtests as bt
from ..services import datasets as ds
from ..services import paper, sweeps
from ..services.models import device_choices, find_choice, load_error_message, model_choices
from ..services.serialize import format_interval

router = APIRouter(prefix="/api/v1", tags=["v1"])
_forecasting = threading.Lock()  # one forecast at a time: each uses every core
MAX_BARS = 20_000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candles(Body):
    """Column lists of equal length; bar open times (ISO text or epoch seconds), oldest first."""

    timestamps: list[str | float] = Field(min_length=1, max_length=MAX_BARS)
    open: list[float | None]
    high: list[float | None]
    low: list[float | None]
    close: list[float | None]
    volume: list[float | None] | None = None
    amount: list[float | None] | None = None


class ForecastBody(Body):
    candles: Candles | None = Field(None, description="the window (and history) to forecast after")
    source: str | None = Field(None, max_length=100, description="or a stored series: exchange id")
    symbol: str | None = Field(None, max_length=50, description="the stored series' symbol, or a label")
    timeframe: str | None = Field(None, max_length=16, description="its bar size (default: from the bars)")
    model: str | None = Field(None, max_length=300, description="a model id from /api/v1/models "
                                                                 "(default: the config's model)")
    lookback: int | None = Field(None, ge=8, le=8192)
    horizon: int | None = Field(None, ge=1, le=4096)
    sample_count: int | None = Field(None, ge=1, le=MAX_SAMPLE_COUNT)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    temperature: float | None = Field(None, gt=0, le=10)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=100_000)
    skill_windows: int = Field(0, ge=0, le=200, description="also score this many recent forecasts of the "
                                                             "series against random-walk baselines")


class ForecastOut(BaseModel):
    symbol: str
    timeframe: str
    model: str
    model_id: str
    window_end: str = Field(description="close time of the window's last bar: the decision time")
    last_bar: str
    last_close: float
    lookback: int
    horizon: int
    sample_count: int
    seed: int
    stamps: list[str] = Field(description="open times of the forecast bars")
    mean: dict[str, list[float]] = Field(description="mean path per column (open..amount)")
    quantiles: dict[str, list[float]] = Field(description="close quantiles per level ('0.05'..'0.95')")
    p_up: list[float] = Field(description="P(close above the last close) per step")
    warnings: list[str]
    skill: dict[str, Any] | None = Field(description="recent forecasts' skill (skill_windows > 0)")


class ErrorOut(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorOut} for status in (401, 404, 410, 422, 503)}


def _candles(request: Request, body: ForecastBody):
    if (body.candles is None) == (body.source is None):
        raise WebError(422, "send either candles, or source + symbol + timeframe of a stored series")
    if body.candles is not None:
        from kronos_trader.serve import candles_from_columns

        cols = body.candles.model_dump(exclude={"timestamps"})
        try:
            candles = candles_from_columns(body.candles.timestamps, cols)
        except CandleDataError as exc:
            raise WebError(422, str(exc)) from None
        timeframe = body.timeframe or format_interval(infer_bar_interval(candles.index))
        return candles, body.symbol or "request", timeframe
    if not (body.symbol and body.timeframe):
        raise WebError(422, "a stored series needs source, symbol and timeframe")
    candles = ds.load_stored(ctx(request).store(), body.source, body.symbol, body.timeframe)
    return candles, body.symbol, body.timeframe


def _model(request: Request, name: str | None):
    c = ctx(request)
    settings = c.settings
    if name is None:
        load_name, label = settings.model.name, settings.model.name
    else:
        choice = find_choice(model_choices(list(settings.web.model_dirs), settings.model.name), name)
        load_name, label = choice.load_name, choice
    device = settings.model.device if settings.model.device in device_choices() else "auto"
    try:
        return c.loader(load_name, device)
    except Exception as exc:  # any loader failure is one clear line
        if isinstance(label, str):
            raise WebError(422, f"model '{label}' could not be loaded: {' '.join(str(exc).split())[:300]}") from None
        raise WebError(422, load_error_message(label, exc)) from None


@router.post("/forecast", response_model=ForecastOut, responses=ERRORS, summary="Forecast after the last bar")
def forecast(request: Request, body: ForecastBody) -> dict:
    """The forecast service's forecast from the window ending at the last posted (or stored)
    bar: stamps, mean path, close quantiles, P(up) per step, and optionally the skill of
    the model's recent forecasts on the same series."""
    from kronos_trader.serve import forecast_summary

    candles, symbol, timeframe = _candles(request, body)
    model = _model(request, body.model)
    sampling = body.model_dump(include={"lookback", "horizon", "sample_count", "seed", "temperature", "top_p",
                                        "top_k"})
    with _forecasting:
        try:
            return forecast_summary(ctx(request).settings, model, candles, symbol, timeframe, body.skill_windows,
                                    **sampling)
        except (ValueError, CandleDataError) as exc:
            raise WebError(422, str(exc)) from None


@router.get("/models", responses=ERRORS, summary="Models a forecast may name")
def models(request: Request) -> dict:
    c = ctx(request)
    return {"default": c.settings.model.name,
            "models": [m.public() for m in model_choices(list(c.settings.web.model_dirs), c.settings.model.name)]}


@router.get("/backtests", responses=ERRORS, summary="Stored backtest runs, newest first")
def backtests(request: Request) -> dict:
    return {"runs": [bt.run_row(r) for r in ctx(request).store().list_runs("backtest")]}


@router.get("/backtests/{run_id}", responses=ERRORS, summary="One backtest: metrics, skill, equity, trades")
def backtest(request: Request, run_id: str) -> dict:
    return bt.backtest_detail(ctx(request).store(), run_id)


@router.get("/runs", responses=ERRORS, summary="Paper and live runs")
def runs(request: Request, kind: Literal["paper", "live", "all"] = Query("all")) -> dict:
    rows = paper.list_runs(ctx(request).store())
    return {"runs": [r for r in rows if kind == "all" or r.get("kind") == kind]}


@router.get("/runs/{run_id}/status", responses=ERRORS, summary="A paper/live run's positions, equity, gate")
def run_status(request: Request, run_id: str) -> dict:
    from kronos_trader.live.gate_state import gate_status
    from kronos_trader.live.status import find_run, run_status as status_of, status_dict

    store = ctx(request).store()
    run = find_run(store, run_id)
    if run is None or run.kind not in ("paper", "live"):
        raise WebError(404, f"no paper or live run '{run_id}'")
    return status_dict(status_of(store, run), gate_status(store, run.id))


@router.get("/sweeps", responses=ERRORS, summary="Parameter sweeps")
def sweep_list(request: Request) -> dict:
    ctx(request).store()  # opens (and migrates) the database first
    return {"sweeps": sweeps.list_sweeps(ctx(request).settings.database.url)}


@router.get("/sweeps/{name}", responses=ERRORS, summary="One sweep's trials and best parameters")
def sweep(request: Request, name: str) -> dict:
    ctx(request).store()
    return sweeps.sweep_detail(ctx(request).settings.database.url, name)
