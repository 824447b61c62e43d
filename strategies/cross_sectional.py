"""Cross-sectional policy: hold the top-k symbols by predicted return or P(up).

At each rebalance every symbol's forecast (all made at the same bar close) is ranked; the
k best that also clear `min_signal` get an equal share of `gross` exposure, the rest go
flat. This is the portfolio test of the Kronos paper. Rebalances fall on bars whose close
time is a multiple of `every` bars since the epoch, so a backtest and a live run started
at different bars rebalance at the same times.

From config: `strategy.name: strategies.cross_sectional:TopK` with `data.symbols`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kronos_trader.decision import Decision, PositionState
from kronos_trader.forecasting.values import WindowForecast


@dataclass
class TopK:
    k: int = 1
    signal: Literal["return", "p_up"] = "return"
    every: int = 24               # bars between rebalances
    min_signal: float | None = None  # default: 0 for "return", 0.5 for "p_up" (never buy a predicted loser)
    gross: float = 0.95           # total exposure, split equally among the holdings
    allow_short: bool = False     # also short the k worst (below the mirrored threshold)
    step: int | None = None       # horizon step to read (default: the last)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.every < 1:
            raise ValueError(f"every must be at least 1 bar, got {self.every}")
        if self.signal not in ("return", "p_up"):
            raise ValueError(f"signal must be 'return' or 'p_up', got {self.signal!r}")
        if not 0 < self.gross <= 1:
            raise ValueError(f"gross must be in (0, 1], got {self.gross}")

    @property
    def neutral(self) -> float:
        return 0.0 if self.signal == "return" else 0.5

    def value(self, forecast: WindowForecast) -> float:
        return forecast.expected_return(self.step) if self.signal == "return" else forecast.prob_up(self.step)

    def due(self, forecast: WindowForecast) -> bool:
        """A rebalance bar: its close is a whole multiple of `every` bars since the epoch."""
        interval = forecast.window_end - forecast.bar_open
        bars = forecast.window_end.value // interval.value if interval.value > 0 else 0
        return bars % self.every == 0

    def allocate(self, forecasts: dict[str, WindowForecast],
                 positions: dict[str, PositionState]) -> dict[str, Decision] | None:
        if not forecasts or not self.due(next(iter(forecasts.values()))):
            return None
        floor = self.neutral if self.min_signal is None else self.min_signal
        scores = {symbol: self.value(f) for symbol, f in forecasts.items()}
        ranked = sorted(scores, key=lambda s: (-scores[s], s))
        longs = [s for s in ranked[:self.k] if scores[s] > floor]
        shorts = ([s for s in reversed(ranked) if scores[s] < 2 * self.neutral - floor][:self.k]
                  if self.allow_short else [])
        shorts = [s for s in shorts if s not in longs]
        held = len(longs) + len(shorts)
        share = self.gross / held if held else 0.0
        out = {}
        for symbol in forecasts:
            rank = ranked.index(symbol) + 1
            side = 1 if symbol in longs else -1 if symbol in shorts else 0
            label = {1: "long", -1: "short", 0: "flat"}[side]
            out[symbol] = Decision(side * share, f"{label}: rank {rank}/{len(ranked)} {self.signal}="
                                                 f"{scores[symbol]:.4f}")
        return out
