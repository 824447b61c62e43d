"""Per-app state shared by the routes: settings, the store (opened lazily), datasets, jobs."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request

from kronos_trader.config import Settings
from kronos_trader.text import one_line

from .errors import WebError
from .services.datasets import DatasetRegistry
from .services.jobs import JobManager
from .services.models import Loader, default_loader


@dataclass
class WebContext:
    settings: Settings
    store_obj: object | None = None
    loader: Loader = default_loader
    datasets: DatasetRegistry = field(default_factory=DatasetRegistry)
    jobs: JobManager = field(default_factory=JobManager)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def store(self):
        """The database, opened on first use; 503 with the reason when it cannot be."""
        with self._lock:
            if self.store_obj is None:
                from kronos_trader.store import StoreError, open_store

                try:
                    self.store_obj = open_store(self.settings.database.url)
                except (StoreError, OSError, ValueError) as exc:
                    raise WebError(503, f"database unavailable: {one_line(exc, 300)}") from None
            return self.store_obj

    @property
    def upload_limit(self) -> int:
        return int(self.settings.web.max_upload_mb * 1_000_000)


def ctx(request: Request) -> WebContext:
    return request.app.state.ctx
