"""``Store`` and ``open_store``."""

from __future__ import annotations

from .accounts import AccountsMixin
from .engine import DEFAULT_URL, _one_line, create_store_engine, safe_url, upgrade
from .errors import StoreError
from .leases import LeasesMixin
from .live_reads import LiveReadsMixin
from .market import MarketDataMixin
from .reports import ReportsMixin
from .runs import RunsMixin


class Store(MarketDataMixin, RunsMixin, ReportsMixin, AccountsMixin, LeasesMixin, LiveReadsMixin):
    """Persistence for candles, forecasts and backtest/paper/live runs."""


def open_store(url: str = DEFAULT_URL, *, migrate: bool = True, echo: bool = False) -> Store:
    """Open (creating/upgrading as needed) the database at ``url``.

    SQLite (default ``sqlite:///kronos_trader.db``, parent dir created) runs in
    WAL mode with foreign keys, a busy timeout and ``BEGIN IMMEDIATE``
    transactions; PostgreSQL (``postgresql+psycopg://...``; plain
    ``postgresql://`` means psycopg 3) uses ``pool_pre_ping``.  Migrations run
    to head unless ``migrate=False``.  Failures raise a one-line
    :class:`StoreError` that names the URL without its password.
    """
    engine = create_store_engine(url, echo=echo)
    try:
        if migrate:
            upgrade(engine)
        else:
            with engine.connect():
                pass
    except Exception as exc:
        engine.dispose()
        err = StoreError(f"cannot open store at {safe_url(engine.url)}: "
                         f"{_one_line(exc, engine.url.password)}")
        err.original = exc  # type: ignore[attr-defined]
        raise err from None
    return Store(engine)
