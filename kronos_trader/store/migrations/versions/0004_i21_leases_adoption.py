"""run leases (one live run per exchange account and pair); adopted opening holdings of live runs

Revision ID: 0004_i21
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004_i21"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=300), nullable=False),
        sa.Column("acquired_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_leases")),
    )
    with op.batch_alter_table("balances") as batch:
        batch.add_column(sa.Column("adopted", sa.Float(), nullable=True))
        batch.add_column(sa.Column("adopted_price", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("balances") as batch:
        batch.drop_column("adopted_price")
        batch.drop_column("adopted")
    op.drop_table("leases")
