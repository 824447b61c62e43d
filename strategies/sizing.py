"""Position sizing from the forecast's distribution (shared by backtest and live).

Each sizer turns a forecast into the size of a position as a fraction of equity; the
policy chooses the direction.
"""
from __future__ import annotations

from dataclasses import dataclass

from kronos_trader.forecasting.values import WindowForecast

Z90 = 1.6448536269514722  # standard normal 95th percentile: the 5-95% band spans 2*Z90 sigma


def forecast_volatility(forecast: WindowForecast, step: int | None = None) -> float:
    """Return volatility over the horizon implied by the 5-95% band of the close."""
    spread = forecast.quantile(0.95, step) - forecast.quantile(0.05, step)
    return max(spread / (2 * Z90 * forecast.last_close), 1e-9)


@dataclass(frozen=True)
class FixedFraction:
    """Always the same fraction of equity."""

    fraction: float = 1.0

    def size(self, forecast: WindowForecast, step: int | None = None) -> float:
        return self.fraction


@dataclass(frozen=True)
class VolatilityTarget:
    """Scale exposure so the forecast's horizon volatility hits `target_vol`, capped."""

    target_vol: float = 0.02
    max_fraction: float = 1.0

    def size(self, forecast: WindowForecast, step: int | None = None) -> float:
        return min(self.max_fraction, self.target_vol / forecast_volatility(forecast, step))


@dataclass(frozen=True)
class CappedKelly:
    """Kelly fraction mu / sigma^2 from the forecast, scaled by `kelly_scale` and capped."""

    kelly_scale: float = 0.5
    max_fraction: float = 1.0

    def size(self, forecast: WindowForecast, step: int | None = None) -> float:
        sigma = forecast_volatility(forecast, step)
        kelly = abs(forecast.expected_return(step)) / (sigma * sigma)
        return min(self.max_fraction, self.kelly_scale * kelly)


SIZERS = {"fixed": FixedFraction, "vol_target": VolatilityTarget, "kelly": CappedKelly}


def make_sizer(kind: str = "fixed", **params):
    """A sizer; one-line error for an unknown kind or a size that is not positive (a
    negative fraction would flip the policy's side)."""
    if kind not in SIZERS:
        raise ValueError(f"unknown sizing '{kind}': use one of {', '.join(SIZERS)}")
    for name, value in params.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ValueError(f"sizing.{name} must be a positive number, got {value!r}")
    return SIZERS[kind](**params)
