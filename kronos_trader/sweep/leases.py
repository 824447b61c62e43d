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
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import optuna
from optuna.trial import FrozenTrial, TrialState

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
