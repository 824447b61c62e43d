"""Where forecasts and trials run: in this process, or on a Ray cluster.

The local executor runs one trial at a time in this process (`sweep.workers` is for Ray; to
use more cores locally, start the same sweep command in more processes: they share the
study, see study.py). With Ray, forecast windows are split into shards run by actors that
each load the model once and store every batch as it completes; an actor killed mid-run is
restarted and its shard retried, recomputing only the batches not yet stored. Trials run as
Ray tasks that only read those forecasts back: they get the model's identity, not its
weights. A trial whose worker dies is retried by Ray, and if it is lost all the same it is
run again by the driver, never scored.

The cluster: `sweep.ray_address` (`--ray-address`), else the `RAY_ADDRESS` environment
variable, as Ray's own tools read it (`auto` joins the cluster started on this machine with
`ray start`); else a local Ray of `workers` CPUs. A cluster started with token
authentication (`RAY_AUTH_MODE=token`) is joined with the same `RAY_AUTH_MODE` and
`RAY_AUTH_TOKEN` (or `RAY_AUTH_TOKEN_PATH`) exported: Ray reads them itself.

Why an RDB-backed Optuna study driven from Ray tasks, not Ray Tune: the study lives in
the project database and this driver asks and tells every trial there, so a killed sweep
(or a lost cluster) resumes from the database alone. Ray Tune keeps its experiment state
in its own files beside the driver and restores from those, apart from the database the
rest of the project (and the web UI) reads.
"""
from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from kronos_trader.config import Settings, parse_settings
from kronos_trader.forecasting.finetune import FinetunedForecasts, FoldModelGone, build_finetuned
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import open_store

from .trial import SweepData, TrialJob, TrialOutcome, run_trial

SHARDS_PER_WORKER = 4  # smaller shards balance uneven workers; each is still many model batches
RETRIES = 3             # restarts of a dead forecast actor, retries of a shard or trial lost with its worker
CONNECT_S = 5.0         # how long an address may take to answer as a Ray (gRPC) server


@dataclass(frozen=True)
class ModelIdentity:
    """A model's identity without its weights: all a trial needs to read the forecasts the
    precompute stored. A window that was not stored is an error, never a model load."""

    name: str
    model_id: str
    max_context: int
    trained_window: tuple[int, int] | None = None

    @classmethod
    def of(cls, model) -> "ModelIdentity":
        return cls(model.name, model.model_id, model.max_context, getattr(model, "trained_window", None))

    @property
    def predictor(self):
        raise RuntimeError(f"{self.name}: a trial needs a forecast the sweep's precompute did not store")


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
            self.service = build_finetuned(self.service, data.panel, self.finetune, None, self.service.progress)
        self.model = ModelIdentity.of(self.service.model)
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


def ray_address(settings: Settings) -> str | None:
    """The cluster to join: sweep.ray_address, else RAY_ADDRESS (None: start a local Ray)."""
    return settings.sweep.ray_address or os.environ.get("RAY_ADDRESS") or None


def check_ray_address(address: str, source: str = "sweep.ray_address") -> None:
    """A one-line error, before any work, when a Ray address cannot be reached or does not
    answer as Ray does (a gRPC server: HTTP/2 settings in reply to the HTTP/2 preface)."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{source} {address!r}: expected host:port (or ray://host:port)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_S) as conn:
            conn.settimeout(CONNECT_S)
            conn.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
            frame = conn.recv(9)
    except TimeoutError:
        raise ValueError(f"{source} {address}: no answer in {CONNECT_S:.0f} s; is it a Ray head's address "
                         f"(GCS port 6379, or ray://host:10001)?") from None
    except OSError as exc:
        raise ValueError(f"{source} {address}: cannot connect ({type(exc).__name__}: {exc})") from None
    if len(frame) < 4 or frame[3] != 4:  # an HTTP/2 SETTINGS frame
        raise ValueError(f"{source} {address}: answers, but not as a Ray head (no gRPC); is it a Ray head's "
                         f"address (GCS port 6379, or ray://host:10001)?")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("executor ray needs Ray: pip install -e '.[ray]'") from None
    return ray


@lru_cache(maxsize=2)
def _worker_service(settings_json: str, model: ModelIdentity) -> ForecastService:
    """The forecast service of one Ray worker process: stored forecasts read once and kept,
    no model loaded."""
    import json

    settings = parse_settings(json.loads(settings_json), "sweep")
    return ForecastService.from_settings(settings, open_store(settings.database.url), False, model=model)


_FOLDED: dict[tuple, FinetunedForecasts] = {}  # a worker's fold-routed services, by settings, model and folds


def _remote_trial(job: TrialJob, params: dict[str, Any]) -> TrialOutcome:
    import json

    settings_json = json.dumps(job.settings, sort_keys=True)
    service = _worker_service(settings_json, job.model)
    if job.folds is not None:  # walk-forward: each fold's stored forecasts, by the fold model's identity
        key = (settings_json, job.model, json.dumps(job.folds, sort_keys=True, default=str))
        if key not in _FOLDED:
            _FOLDED.clear()
            _FOLDED[key] = build_finetuned(service, job.data.panel, job.base.finetune, plan=job.folds)
        service = _FOLDED[key]
    return run_trial(job, params, service)


class ForecastShards:
    """A Ray actor: loads the model once, forecasts the windows it is sent, stores them. With
    walk-forward fine-tuning (`folds`, trained by the driver) each window is forecast by its
    fold's stored model, loaded once; nothing is trained here."""

    def __init__(self, settings_json: str, folds: dict | None = None, panel: dict | None = None):
        import json

        settings = parse_settings(json.loads(settings_json), "sweep")
        self.service = forecast_service(settings)
        if folds is not None:
            self.service = build_finetuned(self.service, panel, settings.finetune, plan=folds)

    def run(self, candles, symbol: str, timeframe: str, positions: list[int]) -> int:
        before = self.service.computed
        self.service.forecast_at(candles, positions, symbol, timeframe)
        return self.service.computed - before

    def identity(self) -> ModelIdentity:
        return ModelIdentity.of(self.service.model)


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
        _import_ray()
        address = ray_address(settings)
        if address:
            check_ray_address(address, "sweep.ray_address" if settings.sweep.ray_address else "RAY_ADDRESS")


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
            address = ray_address(settings)
            # joining a cluster: its resources are its own (Ray refuses num_cpus with an address)
            options = {"address": address} if address else {"num_cpus": sweep.workers, "include_dashboard": False}
            try:
                ray.init(log_to_driver=False, configure_logging=False, **options)
            except Exception as exc:  # noqa: BLE001 - Ray's own errors run to many lines
                raise ValueError(f"ray: cannot start or join {address or 'a local Ray'}: "
                                 f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from None
        self._task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_remote_trial)
        self._pending: dict = {}
        self.folds: dict | None = None  # walk-forward: each fold's stored model and report, trained by the driver
        self.service: FinetunedForecasts | None = None  # with folds: the fold-routed reader (sweep screening)

    def _train_folds(self, data: SweepData) -> dict:
        """Every fold model trained once, here, before anything is dispatched (or read back from
        `finetune.cache_dir`): the actors and trials only load or name them."""
        service = forecast_service(self.settings, self.progress)
        return build_finetuned(service, data.panel, self.settings.finetune, None, self.progress).resolved()

    def precompute(self, data: SweepData) -> tuple[int, int]:
        ray = self.ray
        lookback, every = self.settings.forecast.lookback, self.settings.forecast.every
        if self.settings.finetune.refit_every is not None:
            self.folds = self._train_folds(data)
        panel_ref = ray.put(data.panel) if self.folds is not None else None
        shards = []
        for symbol, candles in data.panel.items():
            positions = list(range(lookback - 1, len(candles), every))
            size = max(1, -(-len(positions) // (self.slots * SHARDS_PER_WORKER)))
            ref = ray.put(candles)
            shards += [(ref, symbol, positions[i:i + size]) for i in range(0, len(positions), size)]
        count = min(self.slots, len(shards))
        gpus = ray.cluster_resources().get("GPU", 0) if self.settings.model.device != "cpu" else 0
        actor = ray.remote(num_cpus=1, num_gpus=min(1.0, gpus / count) if gpus else 0, max_restarts=RETRIES,
                           max_task_retries=RETRIES)(ForecastShards)
        actors = [actor.remote(self.settings_json, self.folds, panel_ref) for _ in range(count)]
        refs = [actors[i % len(actors)].run.remote(ref, symbol, data.timeframe, pos)
                for i, (ref, symbol, pos) in enumerate(shards)]
        try:
            computed = sum(_track(ray, refs, "forecast shards", self.progress))
        except ray.exceptions.RayError as exc:  # lost beyond the retries: one line, the stored batches stay
            if isinstance(getattr(exc, "cause", None), FoldModelGone):  # another run pruned a fold model first
                raise FoldModelGone(str(exc.cause)) from None
            raise ValueError(f"ray: a forecast shard was lost after {RETRIES} retries ({type(exc).__name__}); "
                             f"run again: the batches already stored are reused") from None
        self.model = ray.get(actors[0].identity.remote())
        for a in actors:
            ray.kill(a)
        if self.folds is not None:
            reader = ForecastService.from_settings(self.settings, open_store(self.settings.database.url), False,
                                                   model=self.model)
            self.service = build_finetuned(reader, data.panel, self.settings.finetune, plan=self.folds)
        total = sum(len(p) for _, _, p in shards)
        return computed, total - computed

    def start(self, job: TrialJob) -> None:
        self.job_ref = self.ray.put(replace(job, folds=self.folds))

    def lost(self, exc: Exception) -> bool:
        """Whether a trial's error is the infrastructure's (a dead worker or node), not the trial's."""
        errors = self.ray.exceptions
        return isinstance(exc, (errors.WorkerCrashedError, errors.NodeDiedError, errors.TaskCancelledError,
                                errors.ObjectLostError, errors.RayActorError, errors.LocalRayletDiedError))

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
                message = f"ray: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
                lost = self.lost(exc)
                out.append((number, TrialOutcome(None, {}, None if lost else message, message if lost else None)))
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
