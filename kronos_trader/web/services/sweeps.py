"""Sweeps for the web UI: studies from the project database, their trials and plots' data."""
from __future__ import annotations

import math
from typing import Any

import optuna

from kronos_trader.sweep.report import trial_rows
from kronos_trader.sweep.study import ranked_trials
from kronos_trader.sweep.storage import study_storage

from ..errors import WebError

BEST_CURVES = 5


def _num(value: Any) -> Any:
    """JSON-safe numbers (infinities as null)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def list_sweeps(url: str) -> list[dict[str, Any]]:
    rows = []
    storage = study_storage(url)
    for s in optuna.get_all_study_summaries(storage, include_best_trial=True):
        spec = s.user_attrs.get("spec", {})
        best = s.best_trial
        # the trials the sweep's table shows: not the asks a process discarded (s.n_trials counts them)
        trials = len(ranked_trials(optuna.load_study(study_name=s.study_name, storage=storage)))
        rows.append({"name": s.study_name, "trials": trials, "objective": spec.get("objective"),
                     "sampler": spec.get("sampler"), "symbols": ", ".join(spec.get("symbols", [])),
                     "walk_forward": spec.get("walk_forward"), "best": _num(best.value) if best else None,
                     "best_oos": _num(best.user_attrs.get("oos_value")) if best else None,
                     "started": s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else None})
    return sorted(rows, key=lambda r: r["started"] or "", reverse=True)


def sweep_detail(url: str, name: str) -> dict[str, Any]:
    try:
        study = optuna.load_study(study_name=name, storage=study_storage(url))
    except KeyError:
        raise WebError(404, f"no sweep named {name!r}") from None
    spec = study.user_attrs.get("spec", {})
    rows = trial_rows(study)
    for row in rows:
        row.update({k: _num(row[k]) for k in ("oos", "value", "screen")})
    by_number = {t.number: t for t in study.trials}
    best = [r["number"] for r in rows if r["state"] == "complete"][:BEST_CURVES]
    curves = []
    for number in best:
        attrs = by_number[number].user_attrs
        equity = attrs.get("oos_equity") or attrs.get("equity") or []
        curves.append({"number": number, "span": "out-of-sample" if attrs.get("oos_equity") else "all",
                       "x": [p[0] for p in equity], "y": [p[1] for p in equity]})
    return {"name": name, "spec": spec, "params": list(spec.get("space", {})), "trials": rows, "curves": curves}
