"""The skill gate in live trading: a kill switch that records why it closed.

`attach_gate(runner)` (called once the run and its pair books are known) replays the run's
stored decisions through each pair's gate, so a restarted runner continues with the gate
state it had, then records every change of state as an event ("skill gate closed: ...", a
warning; opening is info) and sends it to the optional notifier. `gate_status` reads those
events back for `kronos-trader status` and the web paper page.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from kronos_trader.forecasting.values import WindowForecast
from kronos_trader.gate import GateState, GateVerdict, SkillGate
from kronos_trader.notify import notifier_from_env
from kronos_trader.store import Event, Store

__all__ = ["attach_gate", "gate_status", "GATE_EVENT"]

GATE_EVENT = "skill gate"


def _replay(gate: SkillGate, store: Store, run_id: str) -> int:
    """Feed each pair's gate the forecasts of its stored decisions, in time order."""
    rows = store.decided_forecasts(run_id)
    for symbol, timeframe, _, window_end, payload in rows:
        gate.for_series((symbol, timeframe)).observe(WindowForecast.from_payload(pd.Timestamp(window_end), payload))
    return len(rows)


def attach_gate(runner: Any) -> None:
    """Restore the gates of `runner`'s pairs and make state changes events (+ notifications).
    A no-op when the runner's policy has no skill gate."""
    gate = runner.policy
    if not isinstance(gate, SkillGate):
        return
    _replay(gate, runner.store, runner.run_id)
    notifier = notifier_from_env(runner.settings.paper.notify_urls_env)

    def changed(series, before: GateVerdict | None, after: GateVerdict) -> None:
        if before is None and after.state is GateState.WARMING_UP:
            return
        symbol = series[0] if isinstance(series, tuple) else str(series)
        closed = after.state is not GateState.OPEN
        message = f"{GATE_EVENT} {after.state.value}: {after.reason.split(': ', 1)[-1]}"
        runner.event("warning" if closed else "info", message, symbol)
        if notifier is not None and closed:
            notifier.send(f"kronos-trader: {symbol} stopped trading", message)

    gate.on_change = changed


def gate_status(store: Store, run_id: str) -> dict[str | None, Event]:
    """The latest skill-gate event per symbol of a run."""
    return {e.symbol: e for e in store.events_like(run_id, f"{GATE_EVENT} ")}
