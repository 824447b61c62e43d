"""Who is running a study's trials: a lease per running trial, so several processes (on one
machine or many, against one database) share a study and only the trials of a process
that is gone are retried.

Each running trial carries its owner (`host:pid:token`) and a heartbeat (Unix time) in its
user attributes, refreshed every HEARTBEAT_S by a thread of the owning process. Another
process takes a running trial as gone when its owner is a dead process on the same host,
or when its heartbeat is older than LEASE_S (another host: clocks are assumed in sync, as
NTP keeps them). Why not Optuna's own `heartbeat_interval`: in Optuna 4 only RDBStorage
records heartbeats, and the study lives in the project's journal table (storage.py); the
lease here is the same rule on public Trial attributes.

A trial's point is claimed in the store (`PointClaims.claim`) before it runs: a row per point and
study, taken in one locked transaction, so two processes can never both run one point. The
journal alone cannot decide that: a trial's number is one journal row and its point the rows
after, so a process could judge its trial before an earlier trial's point was written.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from kronos_trader.store import LeaseHeld, Store

from .storage import project_store, study_storage

CLAIM_S = 100 * 365 * 86400.0  # a point's claim never lapses: a finished point stays taken
HEARTBEAT_S = 10.0   # how often an owner refreshes the lease of its running trials
LEASE_S = 60.0       # a heartbeat this old means the owner is gone (another host)
_ACTIVE: set[str] = set()  # owners of the sweeps running in this process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gone(trial: FrozenTrial, now: float, lease_s: float) -> bool:
    """Whether a running trial's owner has stopped (its trial will never be told)."""
    owner = trial.user_attrs.get("owner")
    if owner:
        host, pid, _ = owner.rsplit(":", 2)
        if host == socket.gethostname() and pid.isdigit():
            return owner not in _ACTIVE if int(pid) == os.getpid() else not _alive(int(pid))
    beat = trial.user_attrs.get("heartbeat")
    last = float(beat) if beat is not None else trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - last > lease_s


class Leases:
    """The running trials of this process, their heartbeats sent by a daemon thread."""

    def __init__(self, heartbeat_s: float):
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._trials: dict[int, optuna.Trial] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True, name="sweep-leases")
        _ACTIVE.add(self.owner)
        self._thread.start()

    def take(self, trial: optuna.Trial) -> None:
        trial.set_user_attr("owner", self.owner)
        trial.set_user_attr("heartbeat", time.time())
        with self._lock:
            self._trials[trial.number] = trial

    def release(self, number: int) -> None:
        with self._lock:
            self._trials.pop(number, None)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            with self._lock:
                trials = list(self._trials.values())
            for trial in trials:
                try:
                    trial.set_user_attr("heartbeat", time.time())
                except Exception:  # noqa: BLE001 - told meanwhile (or reaped): nothing to renew
                    self.release(trial.number)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        _ACTIVE.discard(self.owner)


def reap(study: optuna.Study, trials: list[FrozenTrial], lease_s: float) -> list[FrozenTrial]:
    """Fail the running trials whose owner is gone (no error attribute: interrupted, not
    scored, not counted against the budget); returns those this call failed."""
    now, out = time.time(), []
    for t in trials:
        if t.state == TrialState.RUNNING and gone(t, now, lease_s):
            try:
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError):
                continue  # another process reaped or its owner told it first
            out.append(t)
    return out


@dataclass(frozen=True)
class PointClaims:
    """Where a study's points are claimed: the project store of its database, under the
    study's id (a study recreated under the same name starts with no claims)."""

    store: Store
    namespace: str

    @classmethod
    def of(cls, url: str, study: optuna.Study) -> "PointClaims":
        study_id = study_storage(url).get_study_id_from_name(study.study_name)
        return cls(project_store(url), f"{study_id}\0{study.study_name}")

    def claim(self, study: optuna.Study, trial: optuna.Trial, key: str, trials: list[FrozenTrial],
              released: Callable[[FrozenTrial], bool]) -> int | None:
        """Claim `trial`'s point (`key`) for it: None when claimed, else the number of the
        trial that holds the point. A holding trial that is `released` (interrupted, its
        owner gone; or discarded) in `trials` is taken over, so an interrupted point runs
        again, once. `trials` are read before the claim's transaction (SQLite: it holds the
        write lock the journal's reads would wait on); a trial released stays released, so
        an older view cannot free a live claim."""
        digest = hashlib.sha256(f"{self.namespace}\0{key}".encode()).hexdigest()[:40]
        by_number = {t.number: t for t in trials}

        def stale(token: str) -> bool:
            holder = by_number.get(int(token))
            return holder is not None and released(holder)

        try:
            self.store.acquire_lease(f"sweep-point:{digest}", str(trial.number),
                                     f"{study.study_name[:200]} #{trial.number}", ttl_s=CLAIM_S, is_stale=stale)
        except LeaseHeld as held:
            return int(held.token)
        return None
