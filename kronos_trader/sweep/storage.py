"""Optuna studies in the project database, in a table of our own.

Optuna's RDBStorage keeps its schema version in Alembic's default `alembic_version`
table, which the project's own migrations already own in the same database, so the two
cannot share one URL. Optuna's JournalStorage needs only an append-only log: this backend
keeps that log in `sweep_journal` (created by the project's migration 0002), on SQLite or
PostgreSQL alike. Every ask/tell of a study is a row, so a killed sweep resumes from the
database where it stopped.

Log numbers are row ranks in id order. Appends are serialised (SQLite: the store's
BEGIN IMMEDIATE; PostgreSQL: an exclusive table lock), so ids commit in order and a
reader never sees a later entry before an earlier one.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages.journal import BaseJournalBackend, JournalStorage

from kronos_trader.store import Store, open_store
from kronos_trader.store.models import SweepJournalEntry

JOURNAL = SweepJournalEntry.__table__


class SQLJournalBackend(BaseJournalBackend):
    def __init__(self, store: Store):
        self.engine = store.engine

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        query = sa.select(JOURNAL.c.entry).order_by(JOURNAL.c.id).offset(log_number_from)
        with self.engine.connect() as conn:
            return [json.loads(entry) for (entry,) in conn.execute(query)]

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if not logs:
            return
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("LOCK TABLE sweep_journal IN EXCLUSIVE MODE")
            conn.execute(JOURNAL.insert(), [{"entry": json.dumps(log)} for log in logs])


@lru_cache(maxsize=8)
def study_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage of the database at `url` (migrated to head first), once per process."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return JournalStorage(SQLJournalBackend(project_store(url)))


@lru_cache(maxsize=8)
def project_store(url: str) -> Store:
    """The project store of the database at `url` (the one its studies' journal is kept in)."""
    return open_store(url)
