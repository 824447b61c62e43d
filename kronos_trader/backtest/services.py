"""Forecast services for Backtrader objects: shared within a process, rebuilt in each process.

Indicators on one model share one ForecastService (the model loads once). Backtrader's
`optstrategy` pickles the Cerebro, its strategies' parameters and (with `optreturn=False`)
the strategies themselves into other processes; a ForecastService then travels as its
recipe (model name, device, settings, database URL) and each process opens the model and
its own database engine on first use; a connection pool is never shared across a fork.
Forecasts are shared through the store, and `computing_lock` lets one process compute a
series while the others wait and then read it back, so each window is computed once.
"""
from __future__ import annotations

import copyreg
import hashlib
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock

from kronos_trader.config import ForecastSettings
from kronos_trader.forecasting.models import LoadedModel, load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.store import Store, open_store


@dataclass(frozen=True)
class ServiceRecipe:
    """What rebuilds a ForecastService in another process."""

    model: str
    device: str
    max_context: int | None
    settings_json: str
    db_url: str | None  # with its password: it only travels through multiprocessing pipes
    model_id: str | None = None  # checked on rebuild: the weights must be the same
    calendar: str = "auto"
    precision: str = "float32"


_stores: dict[tuple[int, str], Store] = {}
_services: dict[tuple, ForecastService] = {}
_models: dict[str, LoadedModel] = {}  # by model_id; safe to inherit across a fork


def shared_store(url: str) -> Store:
    """One Store per database URL in this process (a forked child opens its own engine)."""
    key = (os.getpid(), url)
    if key not in _stores:
        _stores[key] = open_store(url)
    return _stores[key]


def service_for(model: str, settings: ForecastSettings, db_url: str | None = None, device: str = "auto",
                progress: bool = False, max_context: int | None = None, calendar: str = "auto",
                precision: str = "float32") -> ForecastService:
    """The ForecastService of this process for a model name, settings and database."""
    return _service(ServiceRecipe(model, device, max_context, settings.model_dump_json(), db_url, None, calendar,
                                  precision), progress)


def _service(recipe: ServiceRecipe, progress: bool = False) -> ForecastService:
    key = (os.getpid(), *_key_fields(recipe))
    if key not in _services:
        loaded = _models.get(recipe.model_id) if recipe.model_id else None
        if loaded is None:
            loaded = load_model(recipe.model, recipe.device, recipe.max_context, recipe.precision)
        if recipe.model_id and loaded.model_id != recipe.model_id:
            raise ValueError(f"model {recipe.model!r} loaded in process {os.getpid()} has weights "
                             f"{loaded.model_id}, not {recipe.model_id}: the checkpoint changed during the run")
        _models[loaded.model_id] = loaded
        settings = ForecastSettings.model_validate_json(recipe.settings_json)
        store = shared_store(recipe.db_url) if recipe.db_url else None
        _services[key] = ForecastService(loaded, settings, store, progress, recipe.calendar)
    return _services[key]


def recipe_of(service: ForecastService) -> ServiceRecipe:
    """The recipe of a service (its model must be loadable by name or directory)."""
    loaded = service.model
    _models[loaded.model_id] = loaded
    store = service.store
    url = None if store is None else store.engine.url.render_as_string(hide_password=False)
    return ServiceRecipe(loaded.name, str(loaded.predictor.device), loaded.max_context,
                         service.settings.model_dump_json(), url, loaded.model_id, service.calendar,
                         loaded.precision)


def _reduce_service(service: ForecastService):
    key = (os.getpid(), *_key_fields(recipe_of(service)))
    _services.setdefault(key, service)  # unpickled here again (results coming back): the same object
    return _service, (recipe_of(service), service.progress)


def _key_fields(recipe: ServiceRecipe) -> tuple:
    return (recipe.model, recipe.device, recipe.max_context, recipe.settings_json, recipe.db_url, recipe.calendar,
            recipe.precision)


copyreg.pickle(ForecastService, _reduce_service)


def _one_torch_thread_after_fork() -> None:
    """A forked child (optstrategy's workers on Linux) cannot use the OpenMP threads its
    parent started; the first parallel torch op would wait for them forever."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_after_fork)


def shares_store(service: ForecastService) -> bool:
    """Whether other processes see this service's stored forecasts (not in-memory SQLite)."""
    store = service.store
    if store is None:
        return False
    url = store.engine.url
    return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))


@contextmanager
def computing_lock(service: ForecastService, series_key: str) -> Iterator[None]:
    """Hold an inter-process lock while computing one series into a shared store: a second
    process asking for the same series waits, then reads the stored forecasts."""
    if not shares_store(service):
        yield
        return
    store_url = service.store.engine.url.render_as_string(hide_password=True)
    digest = hashlib.sha256("|".join((store_url, service.model.model_id, service.settings_hash,
                                      series_key)).encode()).hexdigest()[:32]
    folder = Path(tempfile.gettempdir()) / "kronos-trader-locks"
    folder.mkdir(exist_ok=True)
    with FileLock(str(folder / f"{digest}.lock")):
        yield
