"""One live run per (exchange, account, pair) at a time: a lease row in the database.

A live run takes the lease of each of its pairs before it creates or resumes the run, so a
second process on the same account (a `--new` run, a second scheduler) is refused with an
error naming the holder; a paper run leases its own run id's pairs. The account is named by
the environment variable holding its API key and the API URL (never the key itself). The
lease is renewed by every cycle and by the scheduler's heartbeat; a holder that died (its
pid gone on this host) or stopped renewing for ``TTL_S`` may be taken over.
"""
from __future__ import annotations

import os
import socket
import uuid

from kronos_trader.exchange import ExchangeConfigError
from kronos_trader.store import LeaseHeld, Store, StoreError

#: seconds a lease lasts without renewal
TTL_S = 120.0
#: how often the scheduler's heartbeat renews it
HEARTBEAT_S = 30.0


def _host() -> str:
    """This host's name as tokens hold it (cut so a token fits its 64-character column:
    cloud host names run to 60 characters)."""
    return socket.gethostname()[:40]


def _dead_here(token: str) -> bool:
    """A token of a process on this host that no longer runs."""
    host, _, rest = token.partition("|")
    pid = rest.partition("|")[0]
    if host != _host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunLease:
    def __init__(self, store: Store, kind: str, paper, symbols: list[str], ttl_s: float = TTL_S):
        self.store, self.kind, self.ttl_s = store, kind, ttl_s
        self.exchange = paper.exchange
        self.account = f"key:{paper.api_key_env or '-'}@{paper.api_url or 'default'}"
        self.symbols = sorted(set(symbols))
        self.token = f"{_host()}|{os.getpid()}|{uuid.uuid4().hex[:12]}"
        self.keys: list[str] = []

    def _holder(self, run_id: str | None) -> str:
        return f"{self.kind} run {run_id or '(starting)'} (pid {os.getpid()} on {socket.gethostname()})"

    def acquire(self, run_id: str | None) -> None:
        """Take the leases (``run_id`` None: a live run not resolved yet; paper runs lease
        their run, so they need it); raises a one-line error naming the holder."""
        if self.kind == "live":
            keys = [f"{self.exchange}|{self.account}|{s}" for s in self.symbols]
        elif run_id is None:
            return
        else:
            keys = [f"{self.exchange}|paper:{run_id}|{s}" for s in self.symbols]
        try:
            for key in keys:
                self.store.acquire_lease(key, self.token, self._holder(run_id), ttl_s=self.ttl_s, is_stale=_dead_here)
                if key not in self.keys:
                    self.keys.append(key)
        except LeaseHeld as exc:
            self.release()
            raise ExchangeConfigError(f"another run trades this account: {exc} (one {self.kind} run per exchange "
                                      f"account and pair; stop it first)") from None

    def renew(self) -> None:
        for key in self.keys:
            if not self.store.renew_lease(key, self.token, ttl_s=self.ttl_s):
                raise StoreError(f"the lease {key} was taken over by another run (not renewed for {self.ttl_s:g}s): "
                                 f"this run stops trading")

    def release(self) -> None:
        for key in self.keys:
            try:
                self.store.release_lease(key, self.token)
            except StoreError:
                pass  # it expires
        self.keys = []
