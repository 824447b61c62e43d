"""Directional policy: long, short or flat by thresholds on P(up) or the expected return.

Use it as it is from config (`strategy.name: strategies.directional:Directional`), pass it
to `PolicyStrategy` in your own Cerebro, or subclass and override `direction`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kronos_trader.decision import Decision, PositionState
from kronos_trader.forecasting.values import WindowForecast

from .sizing import make_sizer


@dataclass
class Directional:
    """Go long when the signal is above `long_threshold`, short (if allowed) below
    `short_threshold`, flat in between; size with the configured sizer.

    signal "p_up" reads P(close at `step` > last close); "return" reads the mean path's
    expected return at `step` (thresholds are then returns, e.g. 0.002 and -0.002).
    `hold_long_above` / `hold_short_below` add hysteresis: an open long is kept while the
    signal stays above the first (an open short while below the second), which avoids
    paying fees for every flicker around a threshold.
    """

    signal: Literal["p_up", "return"] = "p_up"
    long_threshold: float = 0.55
    short_threshold: float = 0.45
    allow_short: bool = False
    step: int | None = None  # horizon step to read (default: the last)
    hold_long_above: float | None = None   # default: long_threshold (no hysteresis)
    hold_short_below: float | None = None  # default: short_threshold
    sizing: dict[str, Any] = field(default_factory=lambda: {"kind": "fixed", "fraction": 0.95})

    def __post_init__(self) -> None:
        if self.signal not in ("p_up", "return"):
            raise ValueError(f"signal must be 'p_up' or 'return', got {self.signal!r}")
        if self.short_threshold > self.long_threshold:
            raise ValueError("short_threshold must not exceed long_threshold")
        params = dict(self.sizing)
        self._sizer = make_sizer(params.pop("kind", "fixed"), **params)

    def p_up_thresholds(self) -> dict[str, float]:
        """The thresholds compared with P(up), by name (for resolution warnings)."""
        if self.signal != "p_up":
            return {}
        named = {"long_threshold": self.long_threshold, "hold_long_above": self.hold_long_above}
        if self.allow_short:
            named.update(short_threshold=self.short_threshold, hold_short_below=self.hold_short_below)
        return {name: value for name, value in named.items() if value is not None}

    def value(self, forecast: WindowForecast) -> float:
        return forecast.prob_up(self.step) if self.signal == "p_up" else forecast.expected_return(self.step)

    def direction(self, forecast: WindowForecast, held: int = 0) -> int:
        """+1 long, -1 short, 0 flat, given the side currently held."""
        value = self.value(forecast)
        keep_long = self.long_threshold if self.hold_long_above is None else self.hold_long_above
        keep_short = self.short_threshold if self.hold_short_below is None else self.hold_short_below
        if value > self.long_threshold or (held > 0 and value > keep_long):
            return 1
        if self.allow_short and (value < self.short_threshold or (held < 0 and value < keep_short)):
            return -1
        return 0

    def decide(self, forecast: WindowForecast, position: PositionState) -> Decision:
        side = self.direction(forecast, (position.size > 0) - (position.size < 0))
        label = {1: "long", -1: "short", 0: "flat"}[side]
        size = self._sizer.size(forecast, self.step) if side else 0.0
        return Decision(side * size, f"{label}: {self.signal}={self.value(forecast):.4f}")
