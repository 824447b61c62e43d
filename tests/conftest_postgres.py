"""pytest plugin: a throwaway PostgreSQL server for tests.

Register with ``pytest_plugins = ["conftest_postgres"]`` in ``tests/conftest.py``
(or ``-p tests.conftest_postgres``).

Fixtures
--------
``pg_url`` (session)
    SQLAlchemy URL of a PostgreSQL database.  Uses ``$KRONOS_TEST_PG_URL`` when
    set (e.g. from ``.ci/postgres.sh``); otherwise starts a private server with
    initdb/pg_ctl from ``/usr/lib/postgresql/*/bin`` (as the ``postgres`` OS user
    when running as root) on a free 127.0.0.1 port, and stops it at the end.
    Skips when psycopg or PostgreSQL is not installed.
``fresh_pg_url`` (function)
    URL of a new, empty database on that server, dropped after the test (the
    role behind ``pg_url`` needs CREATEDB).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ENV_URL = "KRONOS_TEST_PG_URL"


def _bindir() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(x) for x in m.group(1).split(".")) if m else (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        # Not under pytest's tmp dir: that is 0700 root and postgres could not enter it.
        self.root = Path(tempfile.mkdtemp(prefix="kronos-pytest-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> str:
        if self.as_root:
            shutil.chown(self.root, user="postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        last = ""
        for _ in range(3):  # a free port can be taken between probe and bind
            self.port = _free_port()
            opts = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off")
            res = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                            str(self.log), "-w", "-t", "60", "-o", opts, "start", check=False)
            if res.returncode == 0:
                return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
            last = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else res.stderr
        raise RuntimeError(f"could not start PostgreSQL:\n{last}")

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url():
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    env = os.environ.get(ENV_URL)
    if env:
        yield env
        return
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin); "
                    f"apt-get install postgresql, or run .ci/postgres.sh and set {ENV_URL}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root but there is no 'postgres' OS user to run the server")
    server = _Server(bindir)
    try:
        url = server.start()
    except Exception as exc:
        server.stop()
        pytest.fail(f"PostgreSQL is installed but did not start: {exc}", pytrace=False)
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
def fresh_pg_url(pg_url):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(pg_url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    name = f"kt_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            for _ in range(3):
                try:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    break
                except Exception:  # pragma: no cover - a backend still closing
                    time.sleep(0.2)
    finally:
        admin.dispose()
