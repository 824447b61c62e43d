"""Your own decision policy: name it in config.yaml as

    strategy:
      name: strategies.my_strategy:MyStrategy
      params: {threshold: 0.6}

A policy gets each forecast (P(up) per step, quantiles, the mean path) and the position
held, and returns the target exposure as a fraction of equity (negative = short) with a
reason. The same object decides in backtests and in paper/live trading.
"""
from __future__ import annotations

from dataclasses import dataclass

from kronos_trader.decision import Decision, PositionState
from kronos_trader.forecasting.values import WindowForecast


@dataclass
class MyStrategy:
    threshold: float = 0.6  # go long when P(up at the horizon's last step) is above this
    fraction: float = 0.95  # of equity

    def decide(self, forecast: WindowForecast, position: PositionState) -> Decision:
        p_up = forecast.prob_up()
        if p_up > self.threshold:
            return Decision(self.fraction, f"long: p_up={p_up:.3f}")
        return Decision(0.0, f"flat: p_up={p_up:.3f}")
