"""The order state machine shared by the paper and the exchange broker.

Every status change of an order goes through :func:`transition`, which refuses a move the
machine does not allow, so a stale or repeated answer can never turn a filled order back
into an open one. The states (hummingbot's in-flight order model)::

    new ──> sent ──> open ──> partially_filled ──> filled
     │        │        └──────────┴──────────────> canceled / expired
     │        └──> unknown (answer lost in flight: looked up until settled)
     └──> rejected / expired (refused, or never reached the exchange: re-decided)

``new``: stored with its decision, not yet handed to the network. ``sent``: the request is
on its way. ``unknown``: the request may or may not have reached the exchange. Terminal
states (filled, canceled, rejected, expired) accept only themselves (an idempotent replay).
"""
from __future__ import annotations

from enum import Enum


class OrderStatus(str, Enum):
    NEW = "new"
    SENT = "sent"
    UNKNOWN = "unknown"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value


class IllegalTransition(ValueError):
    """A status change the order state machine does not allow."""


_S = OrderStatus
_SETTLED = {_S.FILLED, _S.CANCELED, _S.REJECTED, _S.EXPIRED}
_ON_EXCHANGE = {_S.OPEN, _S.PARTIALLY_FILLED} | _SETTLED
ALLOWED: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.NEW: frozenset({_S.SENT, _S.UNKNOWN, _S.REJECTED, _S.EXPIRED}),
    _S.SENT: frozenset({_S.UNKNOWN} | _ON_EXCHANGE),
    _S.UNKNOWN: frozenset(_ON_EXCHANGE),
    _S.OPEN: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELED, _S.EXPIRED}),
    _S.PARTIALLY_FILLED: frozenset({_S.FILLED, _S.CANCELED, _S.EXPIRED}),
    **{s: frozenset() for s in _SETTLED},
}

TERMINAL_STATUSES = tuple(s.value for s in OrderStatus if s in _SETTLED)
OPEN_STATUSES = tuple(s.value for s in OrderStatus if s not in _SETTLED)


def transition(current: str | OrderStatus, new: str | OrderStatus) -> OrderStatus:
    """The new status when ``current -> new`` is allowed (staying put always is);
    raises :class:`IllegalTransition` otherwise."""
    try:
        cur, nxt = OrderStatus(current), OrderStatus(new)
    except ValueError as exc:
        raise IllegalTransition(f"unknown order status: {exc}") from None
    if nxt is cur or nxt in ALLOWED[cur]:
        return nxt
    raise IllegalTransition(f"order status {cur.value} -> {nxt.value} is not allowed")


def is_open(status: str | OrderStatus) -> bool:
    return OrderStatus(status).value in OPEN_STATUSES
