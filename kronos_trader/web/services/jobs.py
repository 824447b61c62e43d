"""Background forecast jobs: one worker thread (forecasts are CPU-heavy), polled by the UI.

A job moves queued -> running (phase and progress) -> done | failed. Only the most
recent jobs are kept; their results stay in memory for the chart and the downloads. A job
dropped from that window answers 410 with the reason, not 404 as if it never existed.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from kronos_trader.text import one_line

from ..errors import WebError

log = logging.getLogger("kronos_trader.web")

Report = Callable[[str, float], None]


@dataclass
class Job:
    id: str
    label: str
    status: str = "queued"  # queued | running | done | failed
    phase: str = "queued"
    progress: float = 0.0
    error: str | None = None
    result: dict | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def public(self) -> dict:
        end = self.finished or time.time()
        return {"id": self.id, "label": self.label, "status": self.status, "phase": self.phase,
                "progress": round(self.progress, 4), "error": self.error,
                "elapsed": round(end - (self.started or end), 2), "has_result": self.result is not None}


DROPPED_IDS = 10_000  # ids remembered after their job was dropped (to answer 410, not 404)


class JobManager:
    def __init__(self, keep: int = 32):
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._dropped: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kronos-web-job")

    def submit(self, label: str, work: Callable[[Report], dict]) -> Job:
        job = Job(uuid.uuid4().hex, label)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                dropped, _ = self._jobs.popitem(last=False)
                self._dropped[dropped] = None
                if len(self._dropped) > DROPPED_IDS:
                    self._dropped.popitem(last=False)
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            dropped = job_id in self._dropped
        if dropped:
            raise WebError(410, f"job '{job_id}' was dropped: the server keeps the last {self.keep} forecast jobs "
                                f"in memory; submit the forecast again")
        if job is None:
            raise WebError(404, f"unknown job '{job_id}' (jobs are kept in memory until the server restarts)")
        return job

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _run(job: Job, work: Callable[[Report], dict]) -> None:
        job.status, job.phase, job.started = "running", "starting", time.time()

        def report(phase: str, progress: float) -> None:
            job.phase, job.progress = phase, max(job.progress if phase == job.phase else 0.0, progress)

        try:
            job.result = work(report)
            job.status, job.phase, job.progress = "done", "done", 1.0
        except WebError as exc:
            job.status, job.error = "failed", exc.message
        except Exception as exc:  # the message only; the trace goes to the log
            log.exception("forecast job %s failed", job.id)
            job.status, job.error = "failed", f"forecast failed: {one_line(exc, 300)}"
        finally:
            job.finished = time.time()
