"""Backtest reports API."""
from __future__ import annotations

from fastapi import APIRouter, Request

from ..context import ctx
from ..services import backtests as bt

router = APIRouter(prefix="/api/backtests")


@router.get("")
def list_backtests(request: Request):
    return {"runs": [bt.run_row(r) for r in ctx(request).store().list_runs("backtest")]}


@router.get("/{run_id}")
def backtest(request: Request, run_id: str):
    return bt.backtest_detail(ctx(request).store(), run_id)


@router.get("/{run_id}/overlay")
def backtest_overlay(request: Request, run_id: str):
    return bt.overlay(ctx(request).store(), run_id)


@router.get("/{run_id}/forecasts/{forecast_id}")
def backtest_forecast(request: Request, run_id: str, forecast_id: int):
    return bt.forecast_detail(ctx(request).store(), run_id, forecast_id)
