"""Persistence for kronos-trader: SQLite (default) or PostgreSQL via SQLAlchemy 2 + Alembic.

Backtests and paper/live trading write to the same schema.  Imports only
sqlalchemy and pandas (alembic lazily, when migrating).
"""

from .accounts import OrderUpdate
from .engine import DEFAULT_URL, alembic_config, safe_url
from .errors import StoreError
from .leases import LeaseHeld
from .models import (
    Balance,
    Base,
    Candle,
    EquitySnapshot,
    Event,
    Fill,
    Forecast,
    Lease,
    Order,
    Run,
    Signal,
    Trade,
)
from .order_state import IllegalTransition, OrderStatus, transition
from .store import Store, open_store

__all__ = [
    "DEFAULT_URL",
    "Balance",
    "Base",
    "Candle",
    "EquitySnapshot",
    "Event",
    "Fill",
    "Forecast",
    "IllegalTransition",
    "Lease",
    "LeaseHeld",
    "Order",
    "OrderStatus",
    "OrderUpdate",
    "Run",
    "Signal",
    "Store",
    "StoreError",
    "Trade",
    "alembic_config",
    "open_store",
    "safe_url",
    "transition",
]
