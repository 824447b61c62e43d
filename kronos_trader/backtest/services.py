"""Shared forecast services, so several indicators on one model load it once."""
from __future__ import annotations

from functools import lru_cache

from kronos_trader.config import ForecastSettings
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import open_store


@lru_cache(maxsize=8)
def _store(url: str):
    return open_store(url)


def service_for(model: str, settings: ForecastSettings, db_url: str | None = None, device: str = "auto",
                progress: bool = False, calendar: str = "auto") -> ForecastService:
    """A ForecastService for a model name and settings, storing forecasts in `db_url` if given."""
    return ForecastService(load_model(model, device), settings, _store(db_url) if db_url else None, progress,
                           calendar)
