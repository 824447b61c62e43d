"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _id() -> sa.Column:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _run_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["run_id"], ["runs.id"], name=op.f(f"fk_{table}_run_id_runs"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("code_version", sa.String(length=100), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.CheckConstraint("kind IN ('backtest', 'paper', 'live')", name=op.f("ck_runs_kind")),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'failed')", name=op.f("ck_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_kind_started_at"), "runs", ["kind", "started_at"])

    op.create_table(
        "candles",
        _id(),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("timeframe", sa.String(length=16), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=True),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candles")),
        sa.UniqueConstraint(
            "source", "symbol", "timeframe", "ts",
            name=op.f("uq_candles_source_symbol_timeframe_ts"),
        ),
    )

    op.create_table(
        "forecasts",
        _id(),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("data_hash", sa.String(length=128), nullable=False),
        sa.Column("settings_hash", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("timeframe", sa.String(length=16), nullable=False),
        sa.Column("window_end", sa.DateTime(), nullable=False),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecasts")),
        sa.UniqueConstraint(
            "model_id", "data_hash", "settings_hash",
            name=op.f("uq_forecasts_model_id_data_hash_settings_hash"),
        ),
    )
    op.create_index(
        op.f("ix_forecasts_symbol_timeframe_window_end"),
        "forecasts",
        ["symbol", "timeframe", "window_end"],
    )

    op.create_table(
        "signals",
        _id(),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("timeframe", sa.String(length=16), nullable=False),
        sa.Column("bar_time", sa.DateTime(), nullable=False),
        sa.Column(
            "forecast_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("target_position", sa.Float(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["forecast_id"], ["forecasts.id"],
            name=op.f("fk_signals_forecast_id_forecasts"), ondelete="SET NULL",
        ),
        _run_fk("signals"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
        sa.UniqueConstraint(
            "run_id", "symbol", "timeframe", "bar_time",
            name=op.f("uq_signals_run_id_symbol_timeframe_bar_time"),
        ),
    )
    op.create_index(op.f("ix_signals_forecast_id"), "signals", ["forecast_id"])

    op.create_table(
        "orders",
        _id(),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("timeframe", sa.String(length=16), nullable=False),
        sa.Column("bar_time", sa.DateTime(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_orders_side")),
        sa.CheckConstraint(
            "status IN ('new', 'sent', 'filled', 'partially_filled', 'canceled', 'rejected')",
            name=op.f("ck_orders_status"),
        ),
        sa.CheckConstraint("type IN ('market', 'limit')", name=op.f("ck_orders_type")),
        _run_fk("orders"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_orders_client_order_id")),
    )
    op.create_index(op.f("ix_orders_run_id_status"), "orders", ["run_id", "status"])
    op.create_index(op.f("ix_orders_exchange_order_id"), "orders", ["exchange_order_id"])

    op.create_table(
        "fills",
        _id(),
        sa.Column(
            "order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("fee_currency", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders"), ondelete="CASCADE"
        ),
        _run_fk("fills"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fills")),
        sa.UniqueConstraint("order_id", "seq", name=op.f("uq_fills_order_id_seq")),
    )
    op.create_index(op.f("ix_fills_run_id_ts"), "fills", ["run_id", "ts"])

    op.create_table(
        "equity_snapshots",
        _id(),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("position_value", sa.Float(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        _run_fk("equity_snapshots"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_equity_snapshots")),
        sa.UniqueConstraint("run_id", "ts", name=op.f("uq_equity_snapshots_run_id_ts")),
    )

    op.create_table(
        "balances",
        _id(),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("free", sa.Float(), nullable=False),
        sa.Column("used", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        _run_fk("balances"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balances")),
        sa.UniqueConstraint("run_id", "currency", name=op.f("uq_balances_run_id_currency")),
    )

    op.create_table(
        "trades",
        _id(),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=False),
        sa.Column("entry_time", sa.DateTime(), nullable=False),
        sa.Column("exit_time", sa.DateTime(), nullable=False),
        sa.Column("side", sa.String(length=8), nullable=False),
        sa.Column("size", sa.Float(), nullable=False),
        sa.Column("entry_price", sa.Float(), nullable=False),
        sa.Column("exit_price", sa.Float(), nullable=False),
        sa.Column("pnl", sa.Float(), nullable=False),
        sa.Column("pnl_pct", sa.Float(), nullable=False),
        sa.Column("fees", sa.Float(), nullable=False),
        _run_fk("trades"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
        sa.UniqueConstraint(
            "run_id", "symbol", "entry_time", name=op.f("uq_trades_run_id_symbol_entry_time")
        ),
    )

    op.create_table(
        "events",
        _id(),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("ts", sa.DateTime(), nullable=False),
        sa.Column("symbol", sa.String(length=50), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.CheckConstraint("level IN ('info', 'warning', 'error')", name=op.f("ck_events_level")),
        _run_fk("events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(
        op.f("ix_events_run_id_level_symbol_ts"), "events", ["run_id", "level", "symbol", "ts"]
    )
    op.create_index(op.f("ix_events_ts"), "events", ["ts"])


def downgrade() -> None:
    for table in (
        "events", "trades", "balances", "equity_snapshots", "fills",
        "orders", "signals", "forecasts", "candles", "runs",
    ):
        op.drop_table(table)  # indexes go with their tables
