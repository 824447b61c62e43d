"""ForecastUsage: how many forecasts a run computed and how many it read back.

Add it to a Cerebro (also under `optstrategy`, where only params and analyzers come back)
to see that a sweep reuses stored forecasts: `computed` counts the windows the model ran
for this strategy's indicators, `reused` those found in the store or in memory.
"""
from __future__ import annotations

from .compat import bt
from .indicator import KronosIndicator


class ForecastUsage(bt.Analyzer):
    def stop(self) -> None:
        """Counted at the end of the run (optstrategy strips the strategy from analyzers)."""
        indicators = [i for i in self.strategy.getindicators() if isinstance(i, KronosIndicator)]
        self.rets["computed"] = sum(i.computed for i in indicators)
        self.rets["reused"] = sum(i.reused for i in indicators)
