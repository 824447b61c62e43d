"""Where forecasts and trials run: in this process, or on a Ray cluster.

With Ray, forecast windows are split into shards run by actors that each load the model
once and write to the shared store; trials run as Ray tasks that read those forecasts
back (each worker process keeps its model and forecasts between tasks).

Why an RDB-backed Optuna study driven from Ray tasks, not Ray Tune: the study lives in
the project database and this driver asks and tells every trial there, so a killed sweep
(or a lost cluster) resumes from the database alone. Ray Tune keeps its experiment state
in its own files beside the driver and restores from those, apart from the database the
rest of the project (and the web UI) reads.
"""
from __future__ import annotations

import socket
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from kronos_trader.config import Settings, parse_settings
from kronos_trader.forecasting.finetune import build_finetuned
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import open_store

from .trial import SweepData, TrialJob, TrialOutcome, run_trial

SHARDS_PER_WORKER = 4  # smaller shards balance uneven workers; each is still many model batches


def forecast_service(settings: Settings, progress: bool = False) -> ForecastService:
    return ForecastService.from_settings(settings, open_store(settings.database.url), progress)


class LocalExecutor:
    """Everything in this process, one trial at a time, on one forecast service."""

    slots = 1

    def __init__(self, settings: Settings, progress: bool = True):
        self.service = forecast_service(settings, progress)
        self.finetune = settings.finetune
        self._done: list[tuple[int, TrialOutcome]] = []

    def precompute(self, data: SweepData) -> tuple[int, int]:
        if self.finetune.refit_every is not None:  # every trial trades on the same walk-forward fold models
            if len(data.panel) > 1:
                raise ValueError("walk-forward fine-tuning (--refit-every) sweeps one symbol at a time")
            candles = next(iter(data.panel.values()))
            self.service = build_finetuned(self.service, candles, self.finetune,
                                           self.service.decision_positions(len(candles))[0], self.service.progress)
        before = self.service.computed, self.service.reused
        for symbol, candles in data.panel.items():
            self.service.forecast_series(candles, symbol, data.timeframe)
        self.service.progress = False
        return self.service.computed - before[0], self.service.reused - before[1]

    def start(self, job: TrialJob) -> None:
        self.job = job

    def submit(self, number: int, params: dict[str, Any]) -> None:
        self._done.append((number, run_trial(self.job, params, self.service)))

    def collect(self) -> list[tuple[int, TrialOutcome]]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


def check_ray_address(address: str) -> None:
    """A one-line error, before any work, when a Ray address cannot be reached."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"sweep.ray_address {address!r}: expected host:port (or ray://host:port)")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise ValueError(f"sweep.ray_address {address}: cannot connect ({type(exc).__name__}: {exc})") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


@lru_cache(maxsize=2)
def _worker_service(settings_json: str) -> ForecastService:
    """The forecast service of one Ray worker process: model loaded once, forecasts kept."""
    import json

    return forecast_service(parse_settings(json.loads(settings_json), "sweep"))


def _remote_trial(job: TrialJob, params: dict[str, Any]) -> TrialOutcome:
    import json

    return run_trial(job, params, _worker_service(json.dumps(job.settings, sort_keys=True)))


class ForecastShards:
    """A Ray actor: loads the model once, forecasts the windows it is sent, stores them."""

    def __init__(self, settings_json: str):
        import json

        self.service = forecast_service(parse_settings(json.loads(settings_json), "sweep"))

    def run(self, candles, symbol: str, timeframe: str, positions: list[int]) -> int:
        before = self.service.computed
        self.service.forecast_at(candles, positions, symbol, timeframe)
        return self.service.computed - before


def for_workers(settings: Settings) -> Settings:
    """The settings as Ray workers must read them: a relative SQLite file or model directory
    made absolute (workers do not start in this process's directory)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        url = url.set(database=str(Path(url.database).resolve()))
    model = settings.model.name
    if Path(model).is_dir():
        model = str(Path(model).resolve())
    return settings.model_copy(update={
        "database": settings.database.model_copy(update={"url": url.render_as_string(hide_password=False)}),
        "model": settings.model.model_copy(update={"name": model})})


def check_executor(settings: Settings) -> None:
    """Fail in one line, before the study or any forecast, when Ray is missing or unreachable."""
    if settings.sweep.executor == "ray":
        if settings.finetune.refit_every is not None:
            raise ValueError("walk-forward fine-tuning (--refit-every) runs with sweep.executor local")
        _import_ray()
        if settings.sweep.ray_address:
            check_ray_address(settings.sweep.ray_address)


class RayExecutor:
    """Forecast shards on Ray actors, trials as Ray tasks, `workers` of them at once."""

    def __init__(self, settings: Settings, progress: bool = True):
        import json

        sweep = settings.sweep
        check_executor(settings)
        self.ray = ray = _import_ray()
        self.settings, self.slots, self.progress = settings, sweep.workers, progress
        self.settings_json = json.dumps(settings.model_dump(mode="json"), sort_keys=True)
        self._owned = not ray.is_initialized()
        if self._owned:
            options = {"address": sweep.ray_address} if sweep.ray_address else {
                "num_cpus": sweep.workers, "include_dashboard": False}
            ray.init(log_to_driver=False, configure_logging=False, **options)
        self._task = ray.remote(num_cpus=1, max_retries=0)(_remote_trial)
        self._pending: dict = {}

    def precompute(self, data: SweepData) -> tuple[int, int]:
        ray = self.ray
        lookback, every = self.settings.forecast.lookback, self.settings.forecast.every
        shards = []
        for symbol, candles in data.panel.items():
            positions = list(range(lookback - 1, len(candles), every))
            size = max(1, -(-len(positions) // (self.slots * SHARDS_PER_WORKER)))
            ref = ray.put(candles)
            shards += [(ref, symbol, positions[i:i + size]) for i in range(0, len(positions), size)]
        count = min(self.slots, len(shards))
        gpus = ray.cluster_resources().get("GPU", 0) if self.settings.model.device != "cpu" else 0
        actor = ray.remote(num_cpus=1, num_gpus=min(1.0, gpus / count) if gpus else 0)(ForecastShards)
        actors = [actor.remote(self.settings_json) for _ in range(count)]
        refs = [actors[i % len(actors)].run.remote(ref, symbol, data.timeframe, pos)
                for i, (ref, symbol, pos) in enumerate(shards)]
        computed = sum(_track(ray, refs, "forecast shards", self.progress))
        for a in actors:
            ray.kill(a)
        total = sum(len(p) for _, _, p in shards)
        return computed, total - computed

    def start(self, job: TrialJob) -> None:
        self.job_ref = self.ray.put(job)

    def submit(self, number: int, params: dict[str, Any]) -> None:
        self._pending[self._task.remote(self.job_ref, params)] = number

    def collect(self) -> list[tuple[int, TrialOutcome]]:
        ready, _ = self.ray.wait(list(self._pending), num_returns=1)
        out = []
        for ref in ready:
            number = self._pending.pop(ref)
            try:
                out.append((number, self.ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - a lost worker fails its trial, not the sweep
                out.append((number, TrialOutcome(None, {}, f"ray: {type(exc).__name__}: "
                                                          f"{(str(exc).splitlines() or [''])[0]}")))
        return out

    def close(self) -> None:
        for ref in list(self._pending):
            self.ray.cancel(ref, force=True)
        if self._owned:
            self.ray.shutdown()


def _track(ray, refs: list, label: str, show: bool) -> Iterable[Any]:
    from rich.progress import Progress

    with Progress(disable=not show, transient=True) as bar:
        task = bar.add_task(label, total=len(refs))
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                bar.advance(task)
                yield ray.get(ref)


def make_executor(settings: Settings, progress: bool = True):
    return RayExecutor(settings, progress) if settings.sweep.executor == "ray" else LocalExecutor(settings, progress)
