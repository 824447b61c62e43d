"""order state machine statuses; opening exchange balances of live runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_OLD = ("new", "sent", "filled", "partially_filled", "canceled", "rejected")
_NEW = ("new", "sent", "unknown", "open", "partially_filled", "filled", "canceled", "rejected", "expired")


def _status_check(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_status"), type_="check")
        batch.create_check_constraint(op.f("ck_orders_status"), _status_check(_NEW))
    with op.batch_alter_table("balances") as batch:
        batch.add_column(sa.Column("opening", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("balances") as batch:
        batch.drop_column("opening")
    op.execute("UPDATE orders SET status = 'sent' WHERE status IN ('unknown', 'open')")
    op.execute("UPDATE orders SET status = 'canceled' WHERE status = 'expired'")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(op.f("ck_orders_status"), type_="check")
        batch.create_check_constraint(op.f("ck_orders_status"), _status_check(_OLD))
