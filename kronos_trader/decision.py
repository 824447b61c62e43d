"""The one place a forecast becomes a target position, for backtests and live trading alike.

A policy maps (forecast, position) to a target exposure; `decide` adds the risk exits
(stop-loss, take-profit) that every policy shares. Inputs carry their own time (the
forecast's window end), so nothing here reads a clock.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Hashable, Protocol, runtime_checkable

from kronos_trader.forecasting.values import WindowForecast


@dataclass(frozen=True)
class PositionState:
    """What the trader holds when deciding: signed units, average entry, account equity and
    the decision bar's close."""

    size: float
    entry_price: float | None
    equity: float
    price: float

    @property
    def exposure(self) -> float:
        """Signed position value as a fraction of equity."""
        return 0.0 if self.equity <= 0 else self.size * self.price / self.equity


@dataclass(frozen=True)
class Decision:
    """Target exposure (fraction of equity, negative = short) and why."""

    target: float
    reason: str


@dataclass(frozen=True)
class RiskLimits:
    stop_loss: float | None = None    # close when the price moved this fraction against the entry
    take_profit: float | None = None  # close when it moved this fraction in favour


@runtime_checkable
class Policy(Protocol):
    def decide(self, forecast: WindowForecast, position: PositionState) -> Decision: ...


@runtime_checkable
class CrossSectionalPolicy(Protocol):
    """Decides for several symbols at once (e.g. hold the top-k by predicted return).

    `allocate` returns a decision per symbol at a rebalance, or None to keep the targets
    held (between rebalances); symbols it leaves out go flat."""

    def allocate(self, forecasts: dict[str, WindowForecast],
                 positions: dict[str, PositionState]) -> dict[str, Decision] | None: ...


def decide(policy: Policy, forecast: WindowForecast, position: PositionState, risk: RiskLimits) -> Decision:
    """Risk exits (on the decision bar's close) override the policy. The policy is asked
    every time, so a stateful wrapper (the skill gate) sees every forecast either way."""
    decision = policy.decide(forecast, position)
    if position.size != 0 and position.entry_price:
        move = position.price / position.entry_price - 1.0
        if position.size < 0:
            move = -move
        if risk.stop_loss is not None and move <= -risk.stop_loss:
            return Decision(0.0, f"stop-loss ({move:+.2%})")
        if risk.take_profit is not None and move >= risk.take_profit:
            return Decision(0.0, f"take-profit ({move:+.2%})")
    return decision


def series_policy(policy: Policy, series: Hashable) -> Policy:
    """The policy for one series (pair): stateful wrappers such as the skill gate keep one
    state per series; plain policies are shared."""
    for_series = getattr(policy, "for_series", None)
    return for_series(series) if callable(for_series) else policy


@dataclass(frozen=True)
class _Chosen:
    """The decision an allocation already made, as a policy, so `decide` adds the risk exits."""

    decision: Decision

    def decide(self, forecast: WindowForecast, position: PositionState) -> Decision:
        return self.decision


def decide_all(policy: CrossSectionalPolicy, forecasts: dict[str, WindowForecast],
               positions: dict[str, PositionState], held: dict[str, float], risk: RiskLimits) -> dict[str, Decision]:
    """`decide` for a cross-sectional policy: its allocation at a rebalance (the targets
    held in between), then each symbol's risk exits, exactly as for one symbol."""
    chosen = policy.allocate(forecasts, positions)
    out = {}
    for symbol, forecast in forecasts.items():
        if chosen is None:
            decision = Decision(held.get(symbol, 0.0), "hold")
        else:
            decision = chosen.get(symbol, Decision(0.0, "flat: not selected"))
        out[symbol] = decide(_Chosen(decision), forecast, positions[symbol], risk)
    return out


def rebalance(decision: Decision, held_target: float, position: PositionState,
              min_change: float = 0.02) -> float:
    """Signed units to trade so the position matches the decision (0 when nothing to do).

    Targets closer than `min_change` to the one already held are ignored (no churn from
    small moves); a flat target always closes an open position. Units are computed at the
    decision bar's close, as Backtrader's order_target_percent does.
    """
    closing = decision.target == 0 and position.size != 0
    if not closing and abs(decision.target - held_target) < min_change:
        return 0.0
    if position.price <= 0:
        return 0.0
    return decision.target * position.equity / position.price - position.size


def load_policy(name: str, params: dict[str, Any] | None = None, gate: Any = None) -> Policy | CrossSectionalPolicy:
    """Instantiate 'package.module:Class' with params (how config names a strategy),
    wrapped in the skill gate when `gate` (config `strategy.gate`) is given."""
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"strategy.name '{name}' cannot be loaded: {exc}") from None
    try:
        policy = cls(**(params or {}))
    except TypeError as exc:
        raise ValueError(f"strategy.params for '{name}': {exc}") from None
    if not isinstance(policy, (Policy, CrossSectionalPolicy)):
        raise ValueError(f"strategy.name '{name}' has no decide(forecast, position) or "
                         f"allocate(forecasts, positions) method")
    if gate is None:
        return policy
    if not isinstance(policy, Policy):
        raise ValueError(f"strategy.gate: the skill gate wraps a per-symbol policy; '{name}' is cross-sectional "
                         f"(remove strategy.gate)")
    from kronos_trader.gate import GateRule, SkillGate  # here: the gate module imports this one

    fields = gate.model_dump() if hasattr(gate, "model_dump") else dict(gate)
    return SkillGate(policy, GateRule(**fields))
