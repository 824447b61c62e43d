"""The live loop's clock: the exchange's server time, checked against the local clock.

A skew in either direction is logged and the client's time offset (used to sign
requests) resynced. An exchange clock running behind means the candle the local clock
says has closed is not closed on the exchange yet (``behind``): the loop waits for it
instead of deciding the previous candle again. Differences above ``CLOCK_REPLAY`` are a
replaying or simulated exchange, not a drifting clock, and are left alone.
"""
from __future__ import annotations

import logging
from typing import Callable

import ccxt
import pandas as pd

from kronos_trader.exchange import exchange_now, last_closed_candle_open
from kronos_trader.exchange.errors import one_line

log = logging.getLogger(__name__)

#: exchange vs local clock differences below this are noise
CLOCK_TOLERANCE = pd.Timedelta(seconds=1)
#: ... above this the exchange is a replay or simulation, not a drifting clock
CLOCK_REPLAY = pd.Timedelta(days=1)


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


class Clock:
    """``source`` is "exchange", "local" or a callable giving the time."""

    def __init__(self, source: str | Callable[[], pd.Timestamp], client: ccxt.Exchange, *,
                 local: Callable[[], pd.Timestamp] = utc_now, retry: dict | None = None,
                 event: Callable[..., None] | None = None, on_retry: Callable | None = None):
        self.source, self.client, self.local = source, client, local
        self.retry = dict(retry or {})
        self.event = event or (lambda level, message, symbol=None: log.warning(message))
        self.on_retry = on_retry
        self.skew: pd.Timedelta | None = None  # exchange minus local, when it matters

    def now(self) -> pd.Timestamp:
        if callable(self.source):
            return pd.Timestamp(self.source())
        if self.source == "local":
            return pd.Timestamp(self.local())
        before = pd.Timestamp(self.local())
        now = exchange_now(self.client, on_retry=self.on_retry, **self.retry)
        skew = now - (before + (pd.Timestamp(self.local()) - before) / 2)
        self.skew = skew if CLOCK_TOLERANCE < abs(skew) < CLOCK_REPLAY else None
        if self.skew is not None:
            self.event("warning", f"the exchange's clock is {abs(skew.total_seconds()):.1f}s "
                                  f"{'ahead of' if skew > pd.Timedelta(0) else 'behind'} the local clock; resynced")
            try:
                self.client.load_time_difference()
            except Exception as exc:  # signing keeps the old offset; the next call retries
                log.warning("clock resync failed: %s", one_line(exc))
        return now

    def local_now(self, now: pd.Timestamp) -> pd.Timestamp:
        """``now`` (the exchange's) on the local clock."""
        return now - (self.skew if self.skew is not None else pd.Timedelta(0))

    def behind(self, timeframe: str, now: pd.Timestamp, boundary: pd.Timestamp) -> str | None:
        """Why the candle the local clock says has closed cannot be decided yet, if the
        exchange's clock runs behind."""
        if self.skew is None or self.skew >= pd.Timedelta(0):
            return None
        local_boundary = last_closed_candle_open(self.local_now(now), timeframe)
        if local_boundary <= boundary:
            return None
        return (f"the exchange's clock is {abs(self.skew.total_seconds()):.1f}s behind: the candle "
                f"{local_boundary} has not closed there yet")

    def wait_for_exchange(self) -> float:
        """Seconds until a lagging exchange clock reaches the local time (0 when it does not lag)."""
        return -self.skew.total_seconds() + 1.0 if self.skew is not None and self.skew < pd.Timedelta(0) else 0.0
