"""SQLite WAL / BEGIN IMMEDIATE and concurrent writers (several processes, both backends)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from kronos_trader.store import Balance, Event, Run, open_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sqlite_store(tmp_path):
    path = tmp_path / "kt.db"
    st = open_store(f"sqlite:///{path}")
    yield st, path
    st.close()


def test_sqlite_pragmas(sqlite_store):
    st, path = sqlite_store
    with st.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    other = sqlite3.connect(path)  # WAL is a property of the file, seen by anyone
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_sessions_begin_immediate_and_readers_do_not(sqlite_store):
    st, path = sqlite_store
    seen: list[str] = []
    event.listen(st.engine, "before_cursor_execute",
                 lambda conn, cur, stmt, *a: seen.append(stmt))
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with st.session() as s:
            s.execute(select(Run.id)).all()  # only a read, yet the write lock is held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        assert "BEGIN IMMEDIATE" in seen
        other.execute("BEGIN IMMEDIATE")  # released on commit
        other.execute("ROLLBACK")

        seen.clear()
        with st.session(readonly=True) as s:
            s.execute(select(Run.id)).all()
            other.execute("BEGIN IMMEDIATE")  # a deferred reader does not block writers
            other.execute("ROLLBACK")
        assert "BEGIN" in seen and "BEGIN IMMEDIATE" not in seen
    finally:
        other.close()


def test_two_engines_read_modify_write_in_threads(tmp_path):
    url = f"sqlite:///{tmp_path / 'kt.db'}"
    stores = [open_store(url), open_store(url)]
    rid = stores[0].create_run("paper", "p", {}, "v")
    errors: list[BaseException] = []

    def work(st, n=40):
        try:
            for _ in range(n):  # read then write in one transaction: the classic deadlock
                with st.session() as s:
                    bal = s.scalar(select(Balance).filter_by(run_id=rid, currency="USDT"))
                    if bal is None:
                        s.add(Balance(run_id=rid, currency="USDT", free=1.0, used=0.0))
                    else:
                        bal.free += 1.0
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(st,)) for st in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with stores[0].session(readonly=True) as s:
        assert s.scalar(select(Balance.free).filter_by(run_id=rid)) == 80.0
    for st in stores:
        st.close()


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sqlalchemy import func, select
    from kronos_trader.store import Balance, Event, open_store

    url, barrier, workers, wid, n = sys.argv[1:]
    Path(barrier, f"ready-{wid}").touch()
    deadline = time.time() + 60
    while len(list(Path(barrier).glob("ready-*"))) < int(workers):
        assert time.time() < deadline, "barrier timeout"
        time.sleep(0.005)
    st = open_store(url)  # all open a fresh database at once: concurrent migrations
    rid = st.create_run("paper", f"worker-{wid}", {"wid": wid}, "test")
    for i in range(int(n)):
        st.record_event(rid, "info", f"{wid}:{i}", symbol="BTC/USDT")
        st.set_balance(rid, "USDT", float(i), 0.0)
        with st.session() as s:  # read-modify-write
            seen = s.scalar(select(func.count()).select_from(Event))
            s.add(Event(run_id=rid, level="info", message=f"saw {seen}"))
    st.close()
    print("done", wid)
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_open_and_write_concurrently(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'kt.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    workers, n = 3, 30
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(barrier), str(workers), str(w), str(n)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for w in range(workers)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err
    with open_store(url) as st:
        with st.session(readonly=True) as s:
            assert s.scalar(select(func.count()).select_from(Event)) == workers * n * 2
            assert s.scalar(select(func.count()).select_from(Run)) == workers
            assert s.scalar(select(func.count()).select_from(Balance)) == workers
            assert s.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_writers_of_one_order_only_one_adds_it(backend, tmp_path, request):
    """`record_decisions` reports only the orders its own INSERT stored: a second writer that
    stores the same client_order_id while the first is inside its transaction (after any
    look-up, before its insert) makes the first report nothing new, so the live loop
    sends the order once. On PostgreSQL the second writer commits in between; on SQLite it
    waits for the first one's write lock and then finds the order stored."""
    import pandas as pd

    from kronos_trader.records import OrderRecord

    url = f"sqlite:///{tmp_path / 'kt.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")
    first, second = open_store(url), open_store(url)
    run_id = first.create_run("paper", "two-writers")
    order = OrderRecord("kt-race", "BTC/USDT", "1h", pd.Timestamp("2024-01-01 10:00", tz="UTC"), "buy", 0.1, "new", "r")
    added: dict[str, set[str]] = {}

    def second_writer():
        added["second"] = second.record_decisions(run_id, [], [order])

    other = threading.Thread(target=second_writer)

    @event.listens_for(first.engine, "before_cursor_execute")
    def between(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO ORDERS") and other.ident is None:
            other.start()
            other.join(timeout=1.0)  # PostgreSQL: it commits now; SQLite: it waits for our lock

    try:
        added["first"] = first.record_decisions(run_id, [], [order])
        other.join(timeout=60)
        assert not other.is_alive()
        assert sorted(map(sorted, added.values())) == [[], ["kt-race"]], added
        assert list(first.load_orders(run_id)["client_order_id"]) == ["kt-race"]
    finally:
        event.remove(first.engine, "before_cursor_execute", between)
        first.close()
        second.close()
