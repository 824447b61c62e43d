"""The skill gate: a policy wrapper that trades only while the model's recent forecasts beat a naive one.

It watches the forecasts the policy is asked about, one series at a time. A forecast made at
bar t is scored at its `step` (default: the last) once that step's close is known, which is
when the forecast made at that later bar arrives (its `last_close`): nothing after the
decision bar is ever read, so backtest and live, fed the same forecasts, open and close the
gate at the same bars. The step's bar is the first bar at or after the forecast's calendar
stamp (weekends, breaks and closed sessions skipped; a stamp on a holiday or on a bar the
data lacks resolves at the next bar that comes), and bars, not hours, are counted between
closes. With `forecast.every` > 1 a step whose bar gets no forecast resolves at the next
forecast bar's close (the gate sees forecasts only; the report's scorer, which has every
bar, scores it at its own bar). Over the last `window` resolved forecasts the rule is either

- ``crps_skill``: 1 - sum CRPS(model) / sum CRPS(random walk with rolling-vol bands) > 0, or
- ``hit_rate``: the Wilson 95% lower bound of the direction hit rate > 50%.

Until `window` forecasts have resolved the gate is warming up (flat). While closed the
target is flat, which also closes an open position. Scores come from
`kronos_trader.evaluation.skill`, the scorer backtest reports and `evaluate` use.
"""
from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Hashable, Literal

import numpy as np
import pandas as pd

from kronos_trader.decision import Decision, Policy, PositionState
from kronos_trader.evaluation.skill import baseline_crps, forecast_crps, wilson_interval
from kronos_trader.forecasting.values import WindowForecast

__all__ = ["GateRule", "GateState", "GateVerdict", "SkillLedger", "SkillGate", "transition"]


@dataclass(frozen=True)
class GateRule:
    rule: Literal["crps_skill", "hit_rate"] = "crps_skill"
    window: int = 100               # resolved forecasts the rule looks at
    step: int | None = None         # horizon step scored (default: the last)
    vol_window: int = 48            # one-bar returns in the baseline's rolling volatility

    def __post_init__(self) -> None:
        if self.rule not in ("crps_skill", "hit_rate"):
            raise ValueError(f"gate rule must be 'crps_skill' or 'hit_rate', got {self.rule!r}")
        if self.window < 5:
            raise ValueError(f"gate window must be at least 5 resolved forecasts, got {self.window}")


class GateState(enum.Enum):
    WARMING_UP = "warming_up"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class GateVerdict:
    state: GateState
    value: float       # the rule's statistic (CRPS skill, or the hit rate's lower bound)
    resolved: int      # resolved forecasts it is computed on
    reason: str

    @property
    def open(self) -> bool:
        return self.state is GateState.OPEN


def transition(rule: GateRule, resolved: int, value: float) -> GateState:
    """The gate's one transition function: warming up until `window` forecasts resolved,
    then open exactly while the rule holds."""
    if resolved < rule.window:
        return GateState.WARMING_UP
    threshold = 0.0 if rule.rule == "crps_skill" else 0.5
    return GateState.OPEN if np.isfinite(value) and value > threshold else GateState.CLOSED


@dataclass
class _Pending:
    target: pd.Timestamp   # close time of the scored step
    step: int
    last_close: float
    vol: float
    samples: np.ndarray | None
    quantiles: dict[float, float]
    mean: float
    p_up: float


@dataclass
class SkillLedger:
    """One series' record: closes seen, forecasts waiting for their outcome, and the scores
    of the last `window` resolved ones (model CRPS, baseline CRPS, direction call and hit)."""

    rule: GateRule
    closes: deque = field(default_factory=deque)     # (close, bars since the previous one) for the baseline
    pending: list[_Pending] = field(default_factory=list)
    scores: deque = field(default_factory=deque)     # (crps model, crps baseline, called, hit)
    last_time: pd.Timestamp | None = None
    last_stamps: pd.DatetimeIndex | None = None      # the previous forecast's future bars

    def observe(self, forecast: WindowForecast) -> None:
        """Take in the forecast made at its window end: its last close resolves the
        forecasts whose scored step closes then; it joins the pending ones."""
        t = pd.Timestamp(forecast.window_end)
        if self.last_time is not None and t <= self.last_time:
            return  # the same bar again (a retried cycle): already counted
        interval = t - pd.Timestamp(forecast.bar_open)
        y = float(forecast.last_close)
        self.closes.append((y, self._bars_since_last(forecast, interval)))
        self.last_time, self.last_stamps = t, forecast.stamps
        while len(self.closes) > self.rule.vol_window + 1:
            self.closes.popleft()
        waiting = []
        for p in self.pending:
            if p.target <= t:
                # the first bar at or after the step's stamp: a holiday resolves at the next session
                self._score(p, y)
            else:
                waiting.append(p)
        self.pending = waiting
        step = min(self.rule.step or forecast.horizon, forecast.horizon)
        k = step - 1
        # the step's close: the close of its calendar bar (bar-open stamps), else `step` bars on
        target = t + interval * step if forecast.stamps is None else pd.Timestamp(forecast.stamps[k]) + interval
        self.pending.append(_Pending(
            target=target, step=step, last_close=y, vol=self._vol(),
            samples=None if forecast.close_paths is None else np.asarray(forecast.close_paths[:, k], float),
            quantiles={q: float(v[k]) for q, v in forecast.quantiles.items()}, mean=float(forecast.mean[k, 3]),
            p_up=float(forecast.p_up[k])))

    def _bars_since_last(self, forecast: WindowForecast, interval: pd.Timedelta) -> float:
        """Bars from the previous forecast's bar to this one: counted on the previous
        forecast's calendar stamps when this bar is among them (a weekend is one bar
        step), else the time between them in bars."""
        if self.last_time is None:
            return 1.0
        if self.last_stamps is not None:
            found = self.last_stamps.get_indexer([pd.Timestamp(forecast.bar_open)])[0]
            if found >= 0:
                return float(found + 1)
        return (pd.Timestamp(forecast.window_end) - self.last_time) / interval if interval.value > 0 else 1.0

    def _vol(self) -> float:
        """Per-bar volatility of the log returns between the closes seen (gaps scaled)."""
        if len(self.closes) < 3:
            return float("nan")
        values, bars = zip(*self.closes)
        returns = np.diff(np.log(np.maximum(values, 1e-12))) / np.sqrt(np.maximum(bars[1:], 1.0))
        return float(np.std(returns))

    def _score(self, p: _Pending, y: float) -> None:
        model = forecast_crps([y], None if p.samples is None else p.samples[None, :],
                              {q: np.array([v]) for q, v in p.quantiles.items()}, [p.mean])[0]
        base = baseline_crps([y], [p.last_close], [p.vol if np.isfinite(p.vol) else 0.0], p.step)[0]
        called = p.p_up != 0.5 and y != p.last_close
        hit = called and (p.p_up > 0.5) == (y > p.last_close)
        self.scores.append((float(model), float(base), called, hit))
        while len(self.scores) > self.rule.window:
            self.scores.popleft()

    def verdict(self) -> GateVerdict:
        n = len(self.scores)
        if n == 0:
            value = float("nan")
        elif self.rule.rule == "crps_skill":
            model, base = (sum(s[i] for s in self.scores) for i in (0, 1))
            value = 1 - model / base if base > 0 else float("nan")
        else:
            calls = sum(1 for s in self.scores if s[2])
            value = wilson_interval(sum(1 for s in self.scores if s[3]), calls)[0]
        state = transition(self.rule, n, value)
        return GateVerdict(state, value, n, _describe(self.rule, state, value, n))


def _describe(rule: GateRule, state: GateState, value: float, n: int) -> str:
    if state is GateState.WARMING_UP:
        return f"gate warming up: {n}/{rule.window} forecasts resolved"
    stat = (f"CRPS skill vs RW+vol {value:+.3f}" if rule.rule == "crps_skill"
            else f"hit-rate 95% lower bound {value:.1%}" if math.isfinite(value) else "no direction calls")
    return f"gate {state.value}: {stat} over the last {n} resolved"


class SkillGate:
    """Wraps a policy (`inner`); `for_series(key)` gives the gate of one series (a pair),
    sharing the inner policy and the rule. `on_change(series, old, new)` is called when a
    series' gate changes state (the live runner records and notifies it)."""

    def __init__(self, inner: Policy, rule: GateRule, series: Hashable = None,
                 parent: "SkillGate | None" = None):
        self.inner, self.rule, self.series = inner, rule, series
        self.ledger = SkillLedger(rule)
        self.last: GateVerdict | None = None
        self._parent = parent
        self._children: dict[Hashable, SkillGate] = {}
        self.on_change: Callable[[Hashable, GateVerdict | None, GateVerdict], None] | None = None

    def for_series(self, key: Hashable) -> "SkillGate":
        if key not in self._children:
            self._children[key] = SkillGate(self.inner, self.rule, key, parent=self)
        return self._children[key]

    @property
    def series_gates(self) -> dict[Hashable, "SkillGate"]:
        return dict(self._children)

    def observe(self, forecast: WindowForecast) -> GateVerdict:
        """Take in a forecast without deciding (e.g. replaying a run's history)."""
        self.ledger.observe(forecast)
        self.last = self.ledger.verdict()
        return self.last

    def p_up_thresholds(self) -> dict[str, float]:
        """The inner policy's P(up) thresholds (for resolution warnings): the gate adds none."""
        return getattr(self.inner, "p_up_thresholds", dict)()

    def decide(self, forecast: WindowForecast, position: PositionState) -> Decision:
        before = self.last
        verdict = self.observe(forecast)
        callback = self.on_change or (self._parent.on_change if self._parent is not None else None)
        if callback is not None and (before is None or before.state is not verdict.state):
            callback(self.series, before, verdict)
        if verdict.open:
            inner = self.inner.decide(forecast, position)
            return Decision(inner.target, f"{inner.reason} [{verdict.reason}]")
        return Decision(0.0, verdict.reason)
