"""Engine creation, SQLite pragmas/locking and programmatic Alembic migrations."""

from __future__ import annotations

import json
import math
import random
import re
import sqlite3
import time
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from .errors import StoreError

DEFAULT_URL = "sqlite:///kronos_trader.db"
SCRIPT_LOCATION = "kronos_trader.store:migrations"  # package resource, not a machine path
SQLITE_BUSY_TIMEOUT_S = 30.0
# Execution option that selects the BEGIN flavour on SQLite ("IMMEDIATE" by default).
SQLITE_BEGIN_OPTION = "kronos_sqlite_begin"
_PG_MIGRATION_LOCK = 0x4B524F4E4F53  # "KRONOS": pg_advisory_xact_lock key for upgrades


# --------------------------------------------------------------------------- URLs
def safe_url(url: str | URL) -> str:
    """The URL as text with any password masked (also for unparsable URLs)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _one_line(exc: BaseException, password: str | None = None) -> str:
    orig = getattr(exc, "orig", None) or exc
    msg = (str(orig).strip().splitlines() or [type(orig).__name__])[0].strip()
    if password:  # the password as a whole token only: "on" must not garble "connection"
        msg = re.sub(rf"(?<![\w]){re.escape(password)}(?![\w])", "***", msg)
    return f"{type(orig).__name__}: {msg}" if msg else type(orig).__name__


def _parse_url(url: str | URL) -> URL:
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL {safe_url(url)!r}: {_one_line(exc)}") from None
    if u.drivername == "postgresql":  # psycopg 3 is the supported driver
        u = u.set(drivername="postgresql+psycopg")
    return u


# --------------------------------------------------------------------------- JSON
def _json_default(obj: Any) -> Any:
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    tolist = getattr(obj, "tolist", None)  # numpy scalars/arrays, pandas Series
    if callable(tolist):
        return tolist()
    isoformat = getattr(obj, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_dumps(obj: Any) -> str:
    """Strict JSON (NaN/inf become null, so PostgreSQL accepts it); numpy/datetime aware."""
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False)
    except ValueError:
        plain = json.loads(json.dumps(obj, default=_json_default))
        return json.dumps(_finite(plain), allow_nan=False)


# --------------------------------------------------------------------------- engines
def _journal_mode_wal(cursor, timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> None:
    """``PRAGMA journal_mode = WAL`` on a new connection, waiting up to ``timeout_s`` for others.

    On a file not yet in WAL (a fresh one) the switch reads the file under a shared lock, then
    upgrades to a write lock to mark it WAL. SQLite answers an upgrade that meets another
    connection's lock with "database is locked" at once, without the busy handler (deadlock
    avoidance), so processes opening a fresh file together could fail at once, the busy
    timeout never applied. The failed statement has released its lock: retry, with a
    jittered back-off, until the file is WAL or the busy timeout has passed. On a file
    already in WAL the switch only reads, and the busy handler applies.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 0.1)


def _install_sqlite_listeners(engine: Engine, in_memory: bool) -> None:
    # SQLAlchemy's documented recipe ("Enabling Non-Legacy SQLite Transactional
    # Modes"): stop pysqlite from emitting BEGIN itself and emit our own.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                # synchronous stays at SQLite's default FULL: order records must survive power loss
                _journal_mode_wal(cur)
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else f"BEGIN {mode}")


def create_store_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """Create (but do not migrate) an engine configured for the store."""
    u = _parse_url(url)
    try:
        backend = u.get_backend_name()
        if backend == "sqlite":
            if sqlite3.sqlite_version_info < (3, 35):  # the writers use INSERT .. RETURNING
                raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old for the store: it needs 3.35 or newer")
            db = u.database or ""
            in_memory = db in ("", ":memory:") or "mode=memory" in db
            if not in_memory and not db.startswith("file:"):
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            extra: dict[str, Any] = {"poolclass": StaticPool} if in_memory else {}
            engine = create_engine(
                u,
                echo=echo,
                json_serializer=json_dumps,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                **extra,
            )
            _install_sqlite_listeners(engine, in_memory)
        elif backend == "postgresql":
            engine = create_engine(u, echo=echo, json_serializer=json_dumps, pool_pre_ping=True)
        else:
            raise StoreError(f"unsupported database {safe_url(u)!r}: use sqlite or postgresql")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot open store at {safe_url(u)}: {_one_line(exc, u.password)}") from None
    return engine


# --------------------------------------------------------------------------- alembic
def alembic_config(url: str | URL | None = None, connection: Any = None):
    """An Alembic ``Config`` for the packaged migrations (no alembic.ini needed).

    Use it for maintenance, e.g. a new revision::

        from alembic import command
        command.revision(alembic_config("sqlite:///dev.db"), "add x", autogenerate=True)
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        cfg.set_main_option(
            "sqlalchemy.url", _parse_url(url).render_as_string(hide_password=False).replace("%", "%%")
        )
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _heads(cfg) -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(cfg).get_heads())


def _current(conn) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    return set(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run ``alembic upgrade`` on ``engine``; a cheap no-op when already at head.

    Concurrent callers are serialised: on SQLite by the write lock that
    ``BEGIN IMMEDIATE`` takes, on PostgreSQL by a transaction-scoped advisory
    lock.  The version check is repeated under the lock and the whole upgrade
    runs in that single transaction.
    """
    from alembic import command

    cfg = alembic_config()
    heads = _heads(cfg)
    reader = engine.execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})
    with reader.connect() as conn:
        if revision == "head" and _current(conn) == heads:
            return
    with engine.connect() as conn:
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
