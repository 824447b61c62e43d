"""Which run a paper/live start continues: the one asked for, else the last running one of
the same kind and exchange, else a new one (its id's first 8 characters unique: client
order ids carry them)."""
from __future__ import annotations

from typing import Callable

from kronos_trader.exchange import ExchangeConfigError
from kronos_trader.store import Run, Store
from kronos_trader.store.models import new_run_id
from kronos_trader.version import code_version


def resolve_run(store: Store, kind: str, name: str, config: dict, requested: str | None, new_run: bool,
                event: Callable[..., None]) -> str:
    runs = store.list_runs()
    if requested:
        rid = requested
        run = next((r for r in runs if r.id == rid), None)
        if run is not None and run.kind != kind:
            raise ExchangeConfigError(f"run {run.id} is a {run.kind} run, not {kind}")
        if run is None:
            clash = [r.id for r in runs if r.id[:8] == rid[:8]]
            if clash or len(rid) < 8:
                raise ExchangeConfigError(f"run id {rid!r}: client order ids use its first 8 characters, "
                                          f"which must be unique ({', '.join(clash) or 'too short'})")
            store.create_run(kind, name, config, code_version(), run_id=rid)
            event("info", f"created {kind} run {rid}", run_id=rid)
            return rid
        _resumed(run, config, event)
        return rid
    if not new_run:
        for run in runs:
            if run.kind == kind and run.name == name and run.status == "running":
                _resumed(run, config, event)
                return run.id
    prefixes = {r.id[:8] for r in runs}
    rid = new_run_id()
    while rid[:8] in prefixes:
        rid = new_run_id()
    store.create_run(kind, name, config, code_version(), run_id=rid)
    event("info", f"created {kind} run", run_id=rid)
    return rid


def _resumed(run: Run, config: dict, event: Callable[..., None]) -> None:
    old = run.config or {}
    changed = [k for k in ("model", "forecast", "strategy", "backtest", "risk", "costs", "paper")
               if old.get(k, config.get(k)) != config.get(k)]
    event("info", "resumed run", run_id=run.id)
    if changed:
        event("warning", f"resumed with changed settings ({', '.join(changed)}); decisions from now on use the new "
                         f"ones", run_id=run.id)
