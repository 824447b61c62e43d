"""Cross-sectional skill of multi-symbol forecasts: the information coefficient (IC).

At each rebalance t every symbol has a predicted return (its forecast's mean close at
`step` over the last close) and, once the step has passed, a realised one. The IC is their
Pearson correlation across symbols, the rank IC their Spearman correlation: does the model
order the symbols right? Over the rebalances: mean, standard deviation, ICIR = mean / sd
and the t-statistic mean / (sd / sqrt(n)). Rebalances are taken every `step` bars so that
the outcomes do not overlap; overlapping ones would inflate the t-statistic. A rebalance
needs at least 3 symbols with a resolved outcome.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from kronos_trader.forecasting.values import WindowForecast

from .skill import _clean, correlation, non_overlapping, rank_correlation

__all__ = ["CrossSectionalIC", "cross_sectional_ic", "summarise_ic"]

MIN_SYMBOLS = 3


@dataclass
class CrossSectionalIC:
    step: int
    symbols: int
    rebalances: pd.DataFrame  # time, symbols, ic, rank_ic
    ic: dict[str, float]
    rank_ic: dict[str, float]

    def to_dict(self) -> dict:
        return _clean({"step": self.step, "symbols": self.symbols, "rebalances": len(self.rebalances),
                       "ic": self.ic, "rank_ic": self.rank_ic,
                       "per_rebalance": [{"time": str(r.time), "symbols": int(r.symbols), "ic": r.ic,
                                          "rank_ic": r.rank_ic} for r in self.rebalances.itertuples()]})

    def describe(self) -> str:
        if not len(self.rebalances):
            return f"Cross-sectional IC: no rebalance with {MIN_SYMBOLS}+ resolved symbols at step {self.step}"
        ic, rank = self.ic, self.rank_ic
        return (f"Cross-sectional skill at step {self.step} over {len(self.rebalances)} non-overlapping rebalances "
                f"of {self.symbols} symbols: IC {ic['mean']:+.3f} (ICIR {_num(ic['icir'])}, t {_num(ic['t_stat'])}), "
                f"rank IC {rank['mean']:+.3f} (ICIR {_num(rank['icir'])}, t {_num(rank['t_stat'])})")


def _num(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:+.2f}"


def summarise_ic(values) -> dict[str, float]:
    """Mean, sd, ICIR and t-statistic of per-rebalance ICs (NaNs dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    mean = float(v.mean()) if n else float("nan")
    sd = float(v.std(ddof=1)) if n > 1 else float("nan")
    icir = mean / sd if n > 1 and sd > 0 else float("nan")
    return {"mean": mean, "sd": sd, "icir": icir, "t_stat": icir * math.sqrt(n) if np.isfinite(icir) else float("nan"),
            "n": n}


def cross_sectional_ic(forecasts: Mapping[str, Mapping[int, WindowForecast]], panel: Mapping[str, pd.DataFrame],
                       step: int | None = None) -> CrossSectionalIC:
    """IC and rank IC per rebalance of the symbols' forecasts (`forecasts[symbol][position]`,
    positions in `panel[symbol]`) at `step` (default: the horizon)."""
    rows: dict[pd.Timestamp, list[tuple[float, float]]] = {}
    horizon = min((f.horizon for fs in forecasts.values() for f in fs.values()), default=1)
    step = horizon if step is None else step
    if not 1 <= step <= horizon:
        raise ValueError(f"step {step} is outside the forecasts' 1..{horizon} steps")
    for symbol, by_position in forecasts.items():
        close = panel[symbol]["close"].to_numpy(dtype=np.float64)
        for position, f in by_position.items():
            target = position + step
            if target < len(close):
                rows.setdefault(pd.Timestamp(f.bar_open), []).append((f.expected_return(step),
                                                                      close[target] / f.last_close - 1))
    times = sorted(t for t, pairs in rows.items() if len(pairs) >= MIN_SYMBOLS)
    interval = pd.Series(times).diff().min() if len(times) > 1 else pd.Timedelta(0)
    records = []
    for t in non_overlapping(times, interval * step):  # at least `step` bars apart
        pred, real = (np.array(v) for v in zip(*rows[t]))
        records.append({"time": t, "symbols": len(pred), "ic": correlation(pred, real),
                        "rank_ic": rank_correlation(pred, real)})
    frame = pd.DataFrame(records, columns=["time", "symbols", "ic", "rank_ic"])
    return CrossSectionalIC(step, len(forecasts), frame, summarise_ic(frame["ic"]), summarise_ic(frame["rank_ic"]))
