"""Advisory row leases: at most one holder per key, on SQLite and PostgreSQL alike.

A lease is a row (key, token, holder, expires_at). Acquiring runs in one write transaction
that locks the row (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT .. FOR UPDATE`` after
an ``INSERT .. ON CONFLICT DO NOTHING``), so two processes can never both hold it. The holder
renews it while it works; a holder that died leaves a lease that expires.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select

from .base import StoreBase
from .errors import StoreError
from .models import Lease, utcnow


class LeaseHeld(StoreError):
    """The lease is held by someone else (the message names the holder)."""

    def __init__(self, key: str, holder: str, expires_at, token: str) -> None:
        super().__init__(f"{key} is held by {holder} until {expires_at:%Y-%m-%d %H:%M:%S} UTC")
        self.key, self.holder, self.expires_at, self.token = key, holder, expires_at, token


class LeasesMixin(StoreBase):
    def acquire_lease(self, key: str, token: str, holder: str, *, ttl_s: float,
                      is_stale: Callable[[str], bool] | None = None) -> None:
        """Take (or renew, for the same ``token``) the lease ``key`` for ``ttl_s`` seconds.
        Raises :class:`LeaseHeld` naming the holder while another token holds it unexpired,
        unless ``is_stale(token)`` says that holder is dead."""
        now = utcnow()
        row = {"key": key, "token": token, "holder": holder, "acquired_at": now,
               "expires_at": now + timedelta(seconds=ttl_s)}
        with self.session() as s:
            self._write(s, Lease.__table__, [row], ("key",))
            lease = s.scalars(select(Lease).where(Lease.key == key).with_for_update()).one()
            if lease.token != token and lease.expires_at > now and not (is_stale and is_stale(lease.token)):
                raise LeaseHeld(key, lease.holder, lease.expires_at, lease.token)
            if lease.token != token:
                lease.token, lease.acquired_at = token, now
            lease.holder, lease.expires_at = holder, row["expires_at"]

    def renew_lease(self, key: str, token: str, *, ttl_s: float) -> bool:
        """Extend a lease this ``token`` holds; False when it is no longer ours."""
        with self.session() as s:
            lease = s.scalars(select(Lease).where(Lease.key == key).with_for_update()).one_or_none()
            if lease is None or lease.token != token:
                return False
            lease.expires_at = utcnow() + timedelta(seconds=ttl_s)
            return True

    def release_lease(self, key: str, token: str) -> None:
        with self.session() as s:
            s.execute(delete(Lease).where(Lease.key == key, Lease.token == token))
