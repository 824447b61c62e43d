"""ORM models (SQLAlchemy 2 typed declarative).

All datetimes are naive UTC.  Prices and amounts are floats; free-form
payloads are JSON.  The schema is created by the Alembic migrations in
``migrations/versions``; ``tests/test_store_schema.py`` checks that the two
stay in sync.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .order_state import OPEN_STATUSES, OrderStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids everywhere except SQLite, where only INTEGER PRIMARY KEY autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")

RUN_KINDS = ("backtest", "paper", "live")
RUN_STATUSES = ("running", "finished", "failed")
ORDER_SIDES = ("buy", "sell")
ORDER_TYPES = ("market", "limit")
ORDER_STATUSES = tuple(s.value for s in OrderStatus)
OPEN_ORDER_STATUSES = OPEN_STATUSES
EVENT_LEVELS = ("info", "warning", "error")


def utcnow() -> datetime:
    """Current time as naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_run_id() -> str:
    return uuid.uuid4().hex


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSON,
        datetime: DateTime(),
        float: Float(),
    }

    def __repr__(self) -> str:
        cols = ", ".join(
            f"{c.key}={getattr(self, c.key, None)!r}" for c in self.__table__.columns  # type: ignore[attr-defined]
        )
        return f"{type(self).__name__}({cols})"


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("kind", RUN_KINDS), name="kind"),
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index(None, "kind", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_run_id)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[Optional[dict[str, Any]]]
    code_version: Mapped[Optional[str]] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[datetime]]
    status: Mapped[str] = mapped_column(String(16), default="running")
    summary: Mapped[Optional[dict[str, Any]]]


class Candle(Base):
    __tablename__ = "candles"
    __table_args__ = (UniqueConstraint("source", "symbol", "timeframe", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    symbol: Mapped[str] = mapped_column(String(50))
    timeframe: Mapped[str] = mapped_column(String(16))
    ts: Mapped[datetime]  # bar open time
    open: Mapped[float]
    high: Mapped[float]
    low: Mapped[float]
    close: Mapped[float]
    volume: Mapped[Optional[float]]
    amount: Mapped[Optional[float]]


class Forecast(Base):
    __tablename__ = "forecasts"
    __table_args__ = (
        UniqueConstraint("model_id", "data_hash", "settings_hash"),
        Index(None, "symbol", "timeframe", "window_end"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200))
    data_hash: Mapped[str] = mapped_column(String(128))
    settings_hash: Mapped[str] = mapped_column(String(128))
    symbol: Mapped[str] = mapped_column(String(50))
    timeframe: Mapped[str] = mapped_column(String(16))
    window_end: Mapped[datetime]  # close time of the window's last bar
    horizon: Mapped[int]
    sample_count: Mapped[int]
    seed: Mapped[Optional[int]]
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Signal(Base):
    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("run_id", "symbol", "timeframe", "bar_time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(50))
    timeframe: Mapped[str] = mapped_column(String(16))
    bar_time: Mapped[datetime]  # close time of the decision bar
    forecast_id: Mapped[Optional[int]] = mapped_column(
        BigId, ForeignKey("forecasts.id", ondelete="SET NULL"), index=True
    )
    target_position: Mapped[float]
    details: Mapped[Optional[dict[str, Any]]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_in("side", ORDER_SIDES), name="side"),
        CheckConstraint(_in("type", ORDER_TYPES), name="type"),
        CheckConstraint(_in("status", ORDER_STATUSES), name="status"),
        Index(None, "run_id", "status"),
        Index(None, "exchange_order_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    symbol: Mapped[str] = mapped_column(String(50))
    timeframe: Mapped[str] = mapped_column(String(16))
    bar_time: Mapped[datetime]
    side: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16), default="market")
    amount: Mapped[float]
    price: Mapped[Optional[float]]
    status: Mapped[str] = mapped_column(String(20), default="new")
    exchange_order_id: Mapped[Optional[str]] = mapped_column(String(100))
    reason: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Fill(Base):
    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("order_id", "seq"),
        Index(None, "run_id", "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("orders.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int]
    ts: Mapped[datetime]
    price: Mapped[float]
    amount: Mapped[float]
    fee: Mapped[float] = mapped_column(default=0.0)
    fee_currency: Mapped[Optional[str]] = mapped_column(String(16))


class EquitySnapshot(Base):
    __tablename__ = "equity_snapshots"
    __table_args__ = (UniqueConstraint("run_id", "ts"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ts: Mapped[datetime]
    equity: Mapped[float]
    cash: Mapped[float]
    position_value: Mapped[float]
    details: Mapped[Optional[dict[str, Any]]]


class Balance(Base):
    __tablename__ = "balances"
    __table_args__ = (UniqueConstraint("run_id", "currency"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    currency: Mapped[str] = mapped_column(String(16))
    free: Mapped[float]
    used: Mapped[float]
    #: live runs: the exchange balance when the run started (what is not the run's own)
    opening: Mapped[Optional[float]]
    #: live runs started with --adopt: the part of the opening balance that is the run's
    #: position from the start, and the price it was adopted at (its entry)
    adopted: Mapped[Optional[float]]
    adopted_price: Mapped[Optional[float]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Trade(Base):
    """A closed round trip (backtest reports)."""

    __tablename__ = "trades"
    __table_args__ = (UniqueConstraint("run_id", "symbol", "entry_time"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(50))
    entry_time: Mapped[datetime]
    exit_time: Mapped[datetime]
    side: Mapped[str] = mapped_column(String(8))
    size: Mapped[float]
    entry_price: Mapped[float]
    exit_price: Mapped[float]
    pnl: Mapped[float]
    pnl_pct: Mapped[float]
    fees: Mapped[float] = mapped_column(default=0.0)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in("level", EVENT_LEVELS), name="level"),
        Index(None, "run_id", "level", "symbol", "ts"),
        Index(None, "ts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[Optional[str]] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    ts: Mapped[datetime] = mapped_column(default=utcnow)
    symbol: Mapped[Optional[str]] = mapped_column(String(50))
    level: Mapped[str] = mapped_column(String(16), default="info")
    message: Mapped[str] = mapped_column(Text)


class SweepJournalEntry(Base):
    """One entry of the Optuna journal that holds parameter sweeps (kronos_trader.sweep.storage)."""

    __tablename__ = "sweep_journal"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry: Mapped[str] = mapped_column(Text)


class Lease(Base):
    """An advisory lock held by one process: one live run per (exchange, account, pair).
    Renewed while the run trades; an expired lease may be taken over."""

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    token: Mapped[str] = mapped_column(String(64))
    holder: Mapped[str] = mapped_column(String(300))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


__all__ = [
    "Base",
    "Run",
    "Candle",
    "Forecast",
    "Signal",
    "Order",
    "Fill",
    "EquitySnapshot",
    "Balance",
    "Trade",
    "Event",
    "SweepJournalEntry",
    "Lease",
    "utcnow",
]
