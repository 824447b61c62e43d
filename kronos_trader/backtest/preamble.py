"""The one line a backtest prints before it starts, and the one it prints when stopped.

Before: the data and its span, the model, how many windows it needs (how many are stored
and how many to compute, with what lookback, horizon and paths) and an estimate of the
forecasting time. The estimate is measured: the run's first batch is computed (and kept:
the run uses it) and timed, and the rest is priced at its time per window. A smaller or
shorter probe misleads on a CPU: the time per window grows with the batch, and one step
already costs most of a whole horizon (the window's encoding dominates). Stored windows
cost nothing. After Ctrl-C: how many forecasts were computed and kept in the database, so a
rerun resumes from them.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kronos_trader.data import infer_bar_interval, titled
from kronos_trader.forecasting.progress import duration
from kronos_trader.forecasting.values import WindowRequest

__all__ = ["run_preamble", "interrupted_line", "estimate_run", "RunEstimate"]


@dataclass(frozen=True)
class RunEstimate:
    windows: int  # decision windows of the run
    to_compute: int  # of them, neither stored nor in memory
    probed: int  # computed and timed for the estimate (the run uses them)
    seconds: float  # estimated time to compute the rest
    threads: int

    def describe(self) -> str:
        head = f"{self.windows} windows ({self.windows - self.to_compute} stored, {self.to_compute} to compute)"
        if not self.to_compute:
            return f"{head}: no forecasting"
        return (f"{head}; estimated forecasting time about {duration(self.seconds)} (an estimate from "
                f"timing the first batch of {self.probed} windows on {self.threads} threads)")


def estimate_run(service, candles: pd.DataFrame | dict[str, pd.DataFrame], symbol: str, timeframe: str
                 ) -> RunEstimate:
    """How many windows the run needs, how many it must compute, and how long that takes."""
    import torch

    panel = candles if isinstance(candles, dict) else {symbol: candles}
    requests = []
    for name, frame in panel.items():
        interval = infer_bar_interval(frame.index)
        requests += [WindowRequest(p, frame, p, name, timeframe, interval)
                     for p in service.decision_positions(len(frame))]
    pending = service.to_compute(requests)
    if not pending:
        return RunEstimate(len(requests), 0, 0, 0.0, torch.get_num_threads())
    probe = pending[:service.settings.batch_windows]
    per_window = service.probe(probe) / len(probe)
    return RunEstimate(len(requests), len(pending), len(probe), per_window * (len(pending) - len(probe)),
                       torch.get_num_threads())


def run_preamble(settings, candles: pd.DataFrame | dict[str, pd.DataFrame], symbol: str, timeframe: str,
                 model_name: str, estimate: RunEstimate) -> str:
    panel = candles if isinstance(candles, dict) else {symbol: candles}
    first = next(iter(panel.values()))
    bars = sum(len(c) for c in panel.values())
    f = settings.forecast
    what = titled(f"{symbol} {timeframe}", first)
    return (f"backtest {what}: {bars} bars {first.index[0]} .. {first.index[-1]}, model {model_name}, "
            f"lookback {f.lookback}, horizon {f.horizon}, {f.sample_count} paths, batches of {f.batch_windows}; "
            f"{estimate.describe()}"
            + ("; the walk-forward fine-tuning comes on top" if settings.finetune.refit_every is not None else ""))


def interrupted_line(computed: int, store_url: str | None) -> str:
    where = f"kept in {store_url}" if store_url else "not kept (no database)"
    return (f"interrupted: {computed} forecasts computed in this run, {where}; the same command resumes from "
            f"them" if store_url else f"interrupted: {computed} forecasts computed in this run, {where}")
