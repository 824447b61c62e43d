"""Several processes opening one fresh SQLite file at once (issue 21: "database is locked" seen
once in test_optstrategy_computes_each_window_once_across_processes).

Switching a file to WAL (`PRAGMA journal_mode = WAL`, run on every new connection) reads the
file under a shared lock, then upgrades to a write lock to mark the file WAL. An upgrade that
meets another connection's write lock is answered SQLITE_BUSY at once, without the busy
handler (SQLite's deadlock avoidance): the 30 s busy timeout never applies, and the open
fails with "database is locked". Between processes opening a fresh file together this takes
two to line up within microseconds (rare); a process holding the write lock of the fresh
file while the others open it is that same state, held for as long as the test likes.
"""
from __future__ import annotations

import multiprocessing
import sqlite3
import time

from sqlalchemy import text

from kronos_trader.store import open_store

WORKERS = 8


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _open(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        store = open_store(url)
        with store.session() as s:
            s.execute(text("SELECT count(*) FROM alembic_version"))
        store.close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def _write_lock(path: str, barrier, results, seconds: float) -> None:
    """Hold the write lock of the (rollback-journal) fresh file while the others open it."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    barrier.wait()
    time.sleep(seconds)
    writer.execute("ROLLBACK")
    writer.close()


def _open_all(path, writer_seconds: float | None = None) -> list[str]:
    """Open the file from WORKERS processes released together by a barrier (with a writer
    process among them when `writer_seconds` is given); each one's outcome."""
    ctx = _context()
    url = f"sqlite:///{path}"
    parties = WORKERS + (writer_seconds is not None)
    barrier, results = ctx.Barrier(parties), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(url, barrier, results)) for _ in range(WORKERS)]
    if writer_seconds is not None:  # its own process: the test process opens no SQLite file before forking
        procs.insert(0, ctx.Process(target=_write_lock, args=(str(path), barrier, results, writer_seconds)))
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=120) for _ in range(WORKERS)]
    finally:
        for p in procs:
            p.join(timeout=30)


def _check_opened(path, outcomes: list[str]) -> None:
    assert outcomes == ["ok"] * WORKERS, [o for o in outcomes if o != "ok"][:2]
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert check.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
    finally:
        check.close()


def test_processes_opening_a_fresh_file_together_all_open_it(tmp_path):
    for round_ in range(3):
        path = tmp_path / f"fresh{round_}.db"
        _check_opened(path, _open_all(path))


def test_opening_waits_while_another_connection_writes_the_fresh_file(tmp_path):
    """Failed at once ("database is locked") in every process, however long the busy timeout."""
    open_store(f"sqlite:///{tmp_path / 'warm.db'}").close()  # imports and migration scripts loaded before the fork:
    path = tmp_path / "fresh.db"                             # the workers reach the file while it is locked
    started = time.monotonic()
    _check_opened(path, _open_all(path, writer_seconds=3.0))
    assert time.monotonic() - started < 30
