"""The sweep driver: an Optuna study in the project database, asked and told here.

Before any forecast: the space, the strategy, the data, the study and the executor are
checked. Then every forecast the trials need is computed once (or read back) and the trials
run, `workers` at a time, each told to the study as soon as it ends. A killed sweep
resumes: finished trials stay, trials whose process is gone (leases.py) are run again, and
only the rest of the budget (or of the grid) is asked for. Several processes may run the
same sweep against one database: each point is run once and the budget is met exactly.
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
from .leases import HEARTBEAT_S, LEASE_S, Leases, PointClaims, reap
from .screen import Screen, best, replay, unscreenable
from .space import LEGACY_FIELDS, SearchSpace, build_space, canonical_params
from .storage import study_storage
from .trial import SweepData, TrialJob

MAX_REPEATS = 50  # finished points TPE may propose in a row before the space counts as exhausted
LOST_LIMIT = 10   # trials lost to the executor in a row before the sweep stops
POLL_S = 0.5      # how often a process whose work is done waits on other processes' trials


@dataclass
class SweepSummary:
    study: optuna.Study
    forecasts_computed: int
    forecasts_reused: int
    trials_run: int
    failed: int
    forecast_seconds: float = 0.0
    trial_seconds: float = 0.0
    exhausted: bool = False  # TPE kept proposing finished points: the space has no new one left
    screen: Screen | None = None  # the screening pass, when the grid was screened
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
            **({"finetune": settings.finetune.model_dump(mode="json", exclude={"cache_dir", "keep_models"})}
               if settings.finetune.refit_every is not None else {})}


def open_study(settings: Settings, data: SweepData, space: SearchSpace) -> optuna.Study:
    spec = sweep_spec(settings, data)
    fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = settings.sweep.name or f"{settings.strategy.name.rpartition(':')[2]}-{fingerprint}"
    storage = study_storage(settings.database.url)
    # a grid's missing points are queued one by one by `_drive` (Optuna's GridSampler picks
    # its points itself, per process); TPE gets a sampler seeded for each trial there
    sampler = optuna.samplers.RandomSampler(seed=settings.sweep.seed)
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


def interrupted(trial: FrozenTrial) -> bool:
    """A trial failed for its owner's sake (the process was gone): retried, never scored."""
    return trial.state == TrialState.FAIL and "error" not in trial.user_attrs and "discarded" not in trial.user_attrs


def _counts(trial: FrozenTrial) -> bool:
    """A trial that used up budget: finished, or failed on its own (not interrupted)."""
    if "discarded" in trial.user_attrs:
        return False
    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def _claims(trial: FrozenTrial) -> bool:
    """A trial that holds its point: counted, or running (its owner's lease decides)."""
    return _counts(trial) or (trial.state == TrialState.RUNNING and "discarded" not in trial.user_attrs)


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _tpe_seed(seed: int | None, number: int) -> int | None:
    """The TPE sampler's seed for the trial asked after `number` trials: a resume goes on
    with the next seeds instead of restarting the sequence (None stays unseeded)."""
    if seed is None:
        return None
    return int.from_bytes(hashlib.sha256(f"{seed}:{number}".encode()).digest()[:4], "little")


def run_sweep(settings: Settings, data: SweepData, progress: bool = True) -> SweepSummary:
    space = build_space(settings, settings.sweep)
    data = walk_forward_split(data, settings)
    check_executor(settings)
    k = settings.sweep.screen
    if k is not None:
        reason = unscreenable(settings, space, len(data.panel)) or (
            "the screening pass scores the whole span (drop walk_forward)" if data.split is not None else None)
        if reason:
            raise ValueError(f"sweep.screen: {reason}")
    study = open_study(settings, data, space)
    workers = for_workers(settings) if settings.sweep.executor == "ray" else settings
    summary = SweepSummary(study, 0, 0, 0, 0, notes=space.notes)
    executor = None
    try:
        if k is not None or _remaining(study, space, settings) > 0:
            executor = make_executor(workers, progress)
            start = time.perf_counter()
            summary.forecasts_computed, summary.forecasts_reused = executor.precompute(data)
            summary.forecast_seconds = time.perf_counter() - start
        screens = None
        if k is not None:
            summary.screen, space, screens = _screen(settings, data, space, executor, k)
        if _remaining(study, space, settings) > 0:
            start = time.perf_counter()
            executor.start(TrialJob(workers.model_dump(mode="json"), data, executor.model))
            budget = len(space.grid) if space.grid is not None else settings.sweep.trials
            drive = _drive(study, space, executor, budget, settings.sweep.seed, progress, screens,
                           PointClaims.of(settings.database.url, study))
            summary.trials_run, summary.failed, summary.exhausted = drive.ran, drive.failed, drive.exhausted
            summary.trial_seconds = time.perf_counter() - start
    finally:
        if executor is not None:
            executor.close()
    return summary


def _remaining(study: optuna.Study, space: SearchSpace, settings: Settings) -> int:
    budget = len(space.grid) if space.grid is not None else settings.sweep.trials
    return budget - sum(1 for t in study.get_trials(deepcopy=False) if _counts(t))


def _screen(settings: Settings, data: SweepData, space: SearchSpace, executor, k: int):
    """Score the whole grid with the vectorised replay; the space of its `k` best points
    (what the study then runs through Backtrader) and every point's screening score."""
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.store import open_store

    service = getattr(executor, "service", None) or ForecastService.from_settings(
        settings, open_store(settings.database.url), False, model=executor.model)
    symbol, candles = next(iter(data.panel.items()))
    result = replay(settings, candles, service, symbol, data.timeframe, space.grid)
    scores = {_key(p): float(v) for p, v in zip(space.grid, result.scores)}
    return result, SearchSpace(space.distributions, best(space.grid, result, k), space.notes), scores


def _settle(study: optuna.Study, space: SearchSpace) -> list[FrozenTrial]:
    """The study's trials after failing those whose owner is gone; a TPE point lost that
    way is queued again (a grid point is simply missing again)."""
    trials = study.get_trials(deepcopy=False)
    lost = reap(study, trials, LEASE_S)
    if not lost:
        return trials
    if space.grid is None:
        for t in lost:
            study.enqueue_trial(t.params)
    return study.get_trials(deepcopy=False)


def _refusal(study: optuna.Study, trial: optuna.Trial, budget: int, claims: PointClaims) -> str | None:
    """Why a just-asked trial must not run: its point is held by an earlier trial (a
    finished point, or one another process asked a moment before), or earlier trials take
    the whole budget. Trial numbers order every process's asks, so all agree on the budget;
    the point itself is claimed in the store (an earlier trial's point may not be written yet
    when this one is judged: the claim, not the journal, makes one point one run)."""
    key = _key(trial.params)
    trials = study.get_trials(deepcopy=False)
    ahead = [t for t in trials if t.number < trial.number and _claims(t)]
    same = next((t for t in ahead if _key(t.params) == key), None)
    if same is not None:
        return f"duplicate of #{same.number}"
    if len(ahead) >= budget:
        return "budget taken by earlier trials"
    holder = claims.claim(study, trial, key, trials, lambda t: not _claims(t))
    return None if holder is None else f"duplicate of #{holder}"


@dataclass
class _Drive:
    ran: int = 0
    failed: int = 0
    exhausted: bool = False


def _drive(study: optuna.Study, space: SearchSpace, executor, budget: int, seed: int | None,
           progress: bool, screens: dict[str, float] | None, claims: PointClaims) -> _Drive:
    """Ask, run and tell until the study holds `budget` counted trials, whichever process
    runs them; wait for other processes' running trials (or for their leases to lapse)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out, running, repeats, lost = _Drive(), {}, 0, 0
    leases = Leases(HEARTBEAT_S)
    try:
        with Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.description}"), disable=not progress, transient=True) as bar:
            task = bar.add_task("", total=budget)
            while True:
                trials = _settle(study, space)
                counted = sum(1 for t in trials if _counts(t))
                bar.update(task, completed=counted)
                if counted >= budget or (out.exhausted and not running):
                    break
                free = budget - sum(1 for t in trials if _claims(t))
                if space.grid is not None:
                    held = {_key(t.params) for t in trials if _claims(t)}
                    missing = [p for p in space.grid if _key(p) not in held]
                    free = min(free, len(missing))
                if free > 0 and len(running) < executor.slots and not out.exhausted:
                    if space.grid is not None:
                        study.enqueue_trial(missing[0])
                    else:
                        study.sampler = optuna.samplers.TPESampler(seed=_tpe_seed(seed, len(trials)))
                    trial = study.ask(space.distributions)
                    leases.take(trial)
                    reason = _refusal(study, trial, budget, claims)
                    if reason is not None:
                        trial.set_user_attr("discarded", reason)
                        study.tell(trial, state=TrialState.FAIL)
                        leases.release(trial.number)
                        repeats += reason.startswith("duplicate")
                        out.exhausted = space.grid is None and repeats >= MAX_REPEATS
                        continue
                    repeats = 0
                    if screens is not None:
                        value = screens.get(_key(trial.params), math.nan)
                        trial.set_user_attr("screen_value", None if math.isnan(value) else _finite(value))
                    running[trial.number] = trial
                    executor.submit(trial.number, trial.params)
                    continue
                if not running:
                    time.sleep(POLL_S)  # the rest is running in other processes
                    continue
                for number, outcome in executor.collect():
                    leases.release(number)
                    trial = running.pop(number)
                    if outcome.lost is not None:  # not the trial's fault: its point is run again
                        _lose(study, space, trial, outcome.lost)
                        lost += 1
                        if lost > LOST_LIMIT:
                            raise ValueError(f"sweep: {lost} trials in a row lost to the executor (last: "
                                             f"{outcome.lost}); is the cluster healthy?")
                        continue
                    lost = 0
                    out.failed += _tell(study, trial, outcome)
                    out.ran += 1
                    best = _best(study)
                    bar.update(task, description=f"best {best.value:.4g} (#{best.number})" if best else "")
    finally:
        leases.close()
    return out


def _lose(study: optuna.Study, space: SearchSpace, trial: optuna.Trial, reason: str) -> None:
    """Fail a trial the executor lost (interrupted: not scored, not counted); TPE queues its
    point again (a grid point is simply missing again)."""
    try:
        trial.set_user_attr("lost", reason)
        study.tell(trial, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return
    if space.grid is None:
        study.enqueue_trial(trial.params)


def _tell(study: optuna.Study, trial: optuna.Trial, outcome) -> int:
    """Record a trial's result; 1 if it failed. A trial reaped meanwhile (this process
    looked gone) is left as it is: its point runs again elsewhere."""
    try:
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, _finite(value))
        if outcome.error is None:
            study.tell(trial, outcome.value)
            return 0
        trial.set_user_attr("error", outcome.error)
        study.tell(trial, state=TrialState.FAIL)
        return 1
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return 0


def _finite(value: Any) -> Any:
    """JSON has no infinities: store them as text."""
    return str(value) if isinstance(value, float) and math.isinf(value) else value


def _best(study: optuna.Study) -> FrozenTrial | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(done, key=lambda t: t.value) if done else None


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Finished trials best first (by the in-sample objective, what the search maximised),
    then the failed ones (interrupted ones included; discarded asks left out)."""
    trials = [t for t in study.get_trials(deepcopy=False) if "discarded" not in t.user_attrs]
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    return done + [t for t in trials if t.state == TrialState.FAIL]


def oos_value(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get("oos_value")
    return float(value) if value is not None else None
