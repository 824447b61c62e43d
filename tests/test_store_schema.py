"""Store schema, migrations, engine setup and error reporting (SQLite and PostgreSQL)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from kronos_trader.store import StoreError, alembic_config, open_store
from kronos_trader.store.models import Base

TABLES = {
    "runs", "candles", "forecasts", "signals", "orders", "fills",
    "equity_snapshots", "balances", "trades", "events", "sweep_journal", "leases",
}
STORE_DIR = Path(__file__).resolve().parents[1] / "kronos_trader" / "store"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kt.db'}"
    return request.getfixturevalue("fresh_pg_url")


def test_migrations_create_all_tables(db_url):
    with open_store(db_url) as st:
        insp = inspect(st.engine)
        assert TABLES | {"alembic_version"} == set(insp.get_table_names())
        idx = {i["name"] for t in TABLES for i in insp.get_indexes(t)}
        assert {"ix_forecasts_symbol_timeframe_window_end", "ix_orders_run_id_status",
                "ix_events_run_id_level_symbol_ts"} <= idx


def test_models_match_migrations(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with open_store(db_url) as st, st.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_open_is_idempotent_and_downgrade_roundtrips(db_url):
    from alembic import command

    open_store(db_url).close()
    with open_store(db_url) as st:
        with st.engine.connect() as conn:
            from alembic.script import ScriptDirectory

            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(head,)]
        with st.engine.begin() as conn:
            command.downgrade(alembic_config(connection=conn), "base")
        assert set(inspect(st.engine).get_table_names()) <= {"alembic_version"}
    with open_store(db_url) as st:  # upgrades again on open
        assert TABLES <= set(inspect(st.engine).get_table_names())


def test_postgres_engine_uses_pre_ping(pg_url, fresh_pg_url):
    with open_store(fresh_pg_url) as st:
        assert st.dialect == "postgresql"
        assert st.engine.pool._pre_ping


def test_script_location_is_a_package_resource():
    cfg = alembic_config()
    assert cfg.get_main_option("script_location") == "kronos_trader.store:migrations"
    for path in (STORE_DIR / "migrations").rglob("*.py"):
        assert "/work/" not in path.read_text()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "url, fragment",
    [
        (f"postgresql+psycopg://bob:hunter2@127.0.0.1:{_closed_port()}/db", "bob:***@127.0.0.1"),
        ("postgresql://bob:hunter2@127.0.0.1:{port}/db", "postgresql+psycopg://bob:***@"),
        ("not a url at all", "invalid database URL"),
        ("mysql://bob:hunter2@localhost/db", "unsupported database"),
    ],
)
def test_bad_url_gives_one_line_error_without_password(url, fragment):
    url = url.replace("{port}", str(_closed_port()))
    with pytest.raises(StoreError) as info:
        open_store(url)
    msg = str(info.value)
    assert fragment in msg
    assert "hunter2" not in msg
    assert "\n" not in msg


def test_sqlite_creates_parent_directory(tmp_path):
    path = tmp_path / "a" / "b" / "kt.db"
    with open_store(f"sqlite:///{path}"):
        pass
    assert path.exists()


def test_import_is_light_and_never_pulls_trading_libs():
    code = ("import sys, kronos_trader.store; "
            "print(sorted(m for m in ('alembic', 'backtrader', 'ccxt', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for path in STORE_DIR.rglob("*.py"):
        src = path.read_text()
        assert "import backtrader" not in src and "import ccxt" not in src, path


def test_in_memory_sqlite_is_shared_across_threads():
    import threading

    st = open_store("sqlite://")
    rid = st.create_run("backtest", "mem", {}, None)
    seen = []
    t = threading.Thread(target=lambda: seen.append(st.get_run(rid)))
    t.start()
    t.join()
    assert seen[0] is not None and seen[0].name == "mem"
    st.close()
