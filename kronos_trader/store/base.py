"""The Store core: engine, sessions and dialect-aware idempotent inserts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, Table
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ._util import chunks
from .engine import SQLITE_BEGIN_OPTION, SQLITE_BUSY_TIMEOUT_S, safe_url
from .errors import StoreError

BATCH_ROWS = 5000


class StoreBase:
    """Holds the engine; every public operation runs in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - create_store_engine rejects others
            raise StoreError(f"unsupported dialect {self.dialect}")
        self._insert = insert
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        reader = engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})
        self._read_sessions = sessionmaker(reader, expire_on_commit=False)

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return safe_url(self.engine.url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A transaction: commit on success, roll back on any exception.

        On SQLite a normal session begins with ``BEGIN IMMEDIATE`` (takes the
        write lock up front, so short writers queue on the busy timeout instead
        of failing with "database is locked"); ``readonly=True`` uses a plain
        deferred ``BEGIN`` so readers never wait for writers under WAL.
        """
        factory = self._read_sessions if readonly else self._sessions
        with factory() as s:
            try:
                yield s
                s.commit()
            except OperationalError as exc:
                s.rollback()
                if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                    # SQLite waited its busy timeout for another process's write lock
                    raise StoreError(f"database {self.url} is locked by another process (waited "
                                     f"{SQLITE_BUSY_TIMEOUT_S:g}s for it): {str(exc.orig).splitlines()[0]}") from None
                raise
            except BaseException:
                s.rollback()
                raise

    # ------------------------------------------------------------------ upserts
    def _write(
        self,
        s: Session,
        table: Table,
        rows: Sequence[dict[str, Any]],
        keys: Sequence[str],
        update: Sequence[str] | None = None,
        returning: str | None = None,
    ) -> list[Any]:
        """INSERT .. ON CONFLICT (keys) DO NOTHING, or DO UPDATE SET ``update`` columns.

        With ``returning`` (a column name), the values of that column in the rows this
        statement inserted or updated (not those a conflict skipped): what this
        transaction itself wrote, even when another writer stored a row meanwhile."""
        if not rows:
            return []
        stmt = self._insert(table)
        if update:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(keys), set_={c: stmt.excluded[c] for c in update}
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        if returning is None:
            for part in chunks(rows, BATCH_ROWS):
                s.execute(stmt, list(part))
            return []
        stmt = stmt.returning(table.c[returning])
        return [v for part in chunks(rows, BATCH_ROWS) for v in s.scalars(stmt, list(part))]
