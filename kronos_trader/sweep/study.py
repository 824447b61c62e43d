"""The sweep driver: an Optuna study in the project database, asked and told here.

Before any forecast: the space, the strategy, the data, the study and the executor are
checked. Then every forecast the trials need is computed once (or read back) and the trials
run, `workers` at a time, each told to the study as soon as it ends. A killed sweep
resumes: finished trials stay, trials that were running are run again, and only the rest
of the budget (or of the grid) is asked for.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from kronos_trader.config import Settings

from .executors import check_executor, for_workers, make_executor
from .space import LEGACY_FIELDS, SearchSpace, build_space, canonical_params
from .storage import study_storage
from .trial import SweepData, TrialJob

INTERRUPTED = "interrupted: the sweep stopped while it ran; run again"


@dataclass
class SweepSummary:
    study: optuna.Study
    forecasts_computed: int
    forecasts_reused: int
    trials_run: int
    failed: int
    forecast_seconds: float = 0.0
    trial_seconds: float = 0.0
    notes: tuple[str, ...] = ()   # about the space (merged P(up) thresholds), said once


def walk_forward_split(data: SweepData, settings: Settings) -> SweepData:
    """Cut the decision bars at `sweep.walk_forward` (a fraction): train before, test after."""
    fraction = settings.sweep.walk_forward
    if fraction is None:
        return data
    lookback = settings.forecast.lookback
    bars = len(next(iter(data.panel.values())))
    decisions = bars - lookback + 1
    split = lookback - 1 + int(fraction * decisions)
    if split - lookback + 1 < 2 or bars - split < 2:
        raise ValueError(f"sweep.walk_forward {fraction}: {decisions} decision bars leave fewer than 2 on a side")
    return SweepData(data.panel, data.timeframe, split)


def sweep_spec(settings: Settings, data: SweepData) -> dict[str, Any]:
    """What makes trials of one study comparable (a study is resumed only on the same)."""
    s = settings.sweep
    return {"strategy": settings.strategy.model_dump(mode="json"), "space": canonical_params(s.params),
            "sampler": s.sampler, "objective": s.objective, "max_drawdown": s.max_drawdown,
            "walk_forward": s.walk_forward,
            "symbols": list(data.panel), "timeframe": data.timeframe,
            "bars": {k: [str(v.index[0]), str(v.index[-1]), len(v)] for k, v in data.panel.items()},
            "model": settings.model.name, "forecast": settings.forecast.model_dump(mode="json"),
            "backtest": settings.backtest.model_dump(mode="json", exclude={"report_dir", *LEGACY_FIELDS}),
            "risk": settings.risk.model_dump(mode="json"), "costs": settings.costs.model_dump(mode="json"),
            **({"finetune": settings.finetune.model_dump(mode="json", exclude={"cache_dir"})}
               if settings.finetune.refit_every is not None else {})}


def open_study(settings: Settings, data: SweepData, space: SearchSpace) -> optuna.Study:
    spec = sweep_spec(settings, data)
    fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = settings.sweep.name or f"{settings.strategy.name.rpartition(':')[2]}-{fingerprint}"
    storage = study_storage(settings.database.url)
    # a grid's points are all queued by `_plan` (each exactly once, also across resumes), so
    # its sampler never samples; Optuna's GridSampler assumes it picks the points itself
    sampler = (optuna.samplers.RandomSampler(seed=settings.sweep.seed) if space.grid is not None
               else optuna.samplers.TPESampler(seed=settings.sweep.seed))
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", sampler=sampler,
                                load_if_exists=True)
    known = study.user_attrs.get("fingerprint")
    if known is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("spec", json.loads(json.dumps(spec, default=str)))
    elif known != fingerprint:
        raise ValueError(f"sweep '{name}' exists in {storage_label(settings)} with another space, data or "
                         f"settings: pass another --name")
    return study


def storage_label(settings: Settings) -> str:
    from kronos_trader.store import safe_url

    return safe_url(settings.database.url)


def _counts(trial: FrozenTrial) -> bool:
    """A trial that used up budget: finished, or failed on its own (not interrupted)."""
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("error") != INTERRUPTED)


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _plan(study: optuna.Study, space: SearchSpace, budget: int) -> int:
    """Mark trials left running by a killed sweep as interrupted, queue what must still run
    and return how many trials to ask for."""
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(t._trial_id, "error", INTERRUPTED)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            if space.grid is None:
                study.enqueue_trial(t.params)
    trials = study.get_trials(deepcopy=False)
    if space.grid is not None:
        seen = {_key(t.params) for t in trials if _counts(t)}
        seen |= {_key(t.system_attrs.get("fixed_params", {})) for t in trials if t.state == TrialState.WAITING}
        for point in space.grid:
            if _key(point) not in seen:
                study.enqueue_trial(point)
        budget = len(space.grid)
    return max(0, budget - sum(1 for t in trials if _counts(t)))


def run_sweep(settings: Settings, data: SweepData, progress: bool = True) -> SweepSummary:
    space = build_space(settings, settings.sweep)
    data = walk_forward_split(data, settings)
    check_executor(settings)
    study = open_study(settings, data, space)
    remaining = _plan(study, space, settings.sweep.trials)
    workers = for_workers(settings) if settings.sweep.executor == "ray" else settings
    executor = make_executor(workers, progress)
    try:
        start = time.perf_counter()
        computed, reused = executor.precompute(data) if remaining else (0, 0)
        forecast_s = time.perf_counter() - start
        executor.start(TrialJob(workers.model_dump(mode="json"), data))
        failed = _drive(study, space, executor, remaining, progress)
        trial_s = time.perf_counter() - start - forecast_s
    finally:
        executor.close()
    return SweepSummary(study, computed, reused, remaining, failed, forecast_s, trial_s, space.notes)


def _drive(study: optuna.Study, space: SearchSpace, executor, remaining: int, progress: bool) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    running: dict[int, optuna.Trial] = {}
    asked = failed = 0
    with Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), disable=not progress, transient=True) as bar:
        task = bar.add_task("", total=remaining)
        while asked < remaining or running:
            while asked < remaining and len(running) < executor.slots:
                trial = study.ask(space.distributions)
                running[trial.number] = trial
                executor.submit(trial.number, trial.params)
                asked += 1
            for number, outcome in executor.collect():
                trial = running.pop(number)
                for key, value in outcome.attrs.items():
                    trial.set_user_attr(key, _finite(value))
                if outcome.error is None:
                    study.tell(trial, outcome.value)
                else:
                    failed += 1
                    trial.set_user_attr("error", outcome.error)
                    study.tell(trial, state=TrialState.FAIL)
                bar.advance(task)
                best = _best(study)
                bar.update(task, description=f"best {best.value:.4g} (#{best.number})" if best else "")
    return failed


def _finite(value: Any) -> Any:
    """JSON has no infinities: store them as text."""
    return str(value) if isinstance(value, float) and math.isinf(value) else value


def _best(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(done, key=lambda t: t.value) if done else None


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Finished trials best first (by the in-sample objective, what the search maximised),
    then the failed ones."""
    trials = study.get_trials(deepcopy=False)
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    return done + [t for t in trials if t.state == TrialState.FAIL]


def oos_value(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get("oos_value")
    return float(value) if value is not None else None
