"""Request bodies, validated server-side with pydantic (bad fields give one-line 422s)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from kronos_trader.config import MAX_SAMPLE_COUNT, ForecastSettings

_FORECAST = ForecastSettings()  # the defaults of a forecast request: the config section's own


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoredDatasetRequest(Body):
    source: str = Field(min_length=1, max_length=100)
    symbol: str = Field(min_length=1, max_length=50)
    timeframe: str = Field(min_length=1, max_length=16)


class ForecastRequest(Body):
    dataset_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-f]+$")
    model: str = Field(min_length=1, max_length=300)
    device: str = Field("auto", max_length=20)
    lookback: int | None = Field(None, ge=8, le=8192, description="default: forecast.lookback from config")
    horizon: int | None = Field(None, ge=1, le=4096, description="default: forecast.horizon from config")
    temperature: float = Field(_FORECAST.temperature, gt=0, le=10)
    top_p: float = Field(_FORECAST.top_p, gt=0, le=1)
    top_k: int = Field(_FORECAST.top_k, ge=0, le=100_000)
    sample_count: int = Field(_FORECAST.sample_count, ge=1, le=MAX_SAMPLE_COUNT)
    seed: int = Field(_FORECAST.seed, ge=0, le=2**31 - 1)
    start: int | None = Field(None, ge=0, description="index of the window's first bar")
    start_time: str | None = Field(None, max_length=40, description="or the window's first bar time")
