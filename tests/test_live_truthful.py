"""Truthful `paper --once` runs (issue 21): the summary counts fills and orders sent again
after a stop, the exit status says when an order ended unknown, a locked SQLite database is
a one-line error, and a market gap is not "missed candles"."""
from __future__ import annotations

import sqlite3

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fake_exchange import FakeBinance, drop_bars, make_candles
from fake_exchange.helpers import FAKE_API_KEY, FAKE_API_SECRET, KEY_ENV, SECRET_ENV
from kronos_trader.cli import app
from test_live_support import (
    module_env,
    restored_server,
    START,
    copy_db,
    events,
    live_settings,
    runner_for,
    settings_for,
)

ORDER = "/api/v3/order"


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    yield from module_env(tiny_model_dir, tmp_path_factory, "truthful")


@pytest.fixture
def server(env):
    yield from restored_server(env)


def live_config(env, tmp_path, name):
    settings = live_settings(env["model_dir"], env["server"].url, copy_db(env["template"], tmp_path / f"{name}.db"))
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return config


def test_once_counts_live_fills_and_exits_non_zero_for_an_unknown_order(env, server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_API_KEY)
    monkeypatch.setenv(SECRET_ENV, FAKE_API_SECRET)
    config = live_config(env, tmp_path, "count")
    cli = CliRunner()
    server.set_now(env["times"][0])
    result = cli.invoke(app, ["paper", "--config", str(config), "--once", "--live", "--run-id", "c0a7" + "0" * 28])
    assert result.exit_code == 0, result.output
    assert "1 order(s), 0 rejected, 1 fill(s)" in result.output
    server.set_now(env["times"][1])
    server.inject("server_error", count=1, path=ORDER)  # no answer to the placement ...
    server.inject("not_found", count=1000, path=ORDER)  # ... and lookups do not find it yet: unknown at the end
    result = cli.invoke(app, ["paper", "--config", str(config), "--once", "--live"])
    assert result.exit_code == 1, result.output
    assert "order not settled" in result.output and "unknown" in result.output


def test_a_locked_sqlite_database_is_a_one_line_error(env, server, tmp_path, monkeypatch):
    from kronos_trader.store import base, engine

    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    monkeypatch.setattr(base, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    db = copy_db(env["template"], tmp_path / "locked.db")
    settings = settings_for(env["model_dir"], server.url, db)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    holder = sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        server.set_now(env["times"][0])
        result = CliRunner().invoke(app, ["paper", "--config", str(config), "--once"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert "is locked by another process" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("missed", ["skip", "catch_up"])
def test_a_market_gap_is_not_missed_candles(env, tmp_path, missed):
    """A weekend: the exchange has no candles for 20 bars. The first candle after it is
    decided (not 20 flat-filled candles that never traded), nothing is "skipped" and nothing
    is left undecided."""
    candles = make_candles(START, 70, "1min", seed=7, price=42_000.0)
    gappy = drop_bars(candles, (candles.index[30], candles.index[49]))
    srv = FakeBinance(api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET)
    srv.add_market("BTCUSDT", "BTC", "USDT", candles=gappy, interval="1m", tick_size="0.01",
                   step_size="0.00001", min_qty="0.00001", min_notional="5.00")
    srv.set_now(candles.index[-1] + pd.Timedelta(seconds=30))
    srv.start()
    try:
        gap_env = {**env, "server": srv, "template": None}
        runner, store = runner_for(gap_env, "gap", db=f"sqlite:///{tmp_path / 'gap.db'}",
                                   paper={"missed_candles": missed})
        before, after = candles.index[29], candles.index[50]
        (report,) = runner.run_cycle(now=before + pd.Timedelta(minutes=1, seconds=2))
        assert report.decisions == 1
        (report,) = runner.run_cycle(now=after + pd.Timedelta(minutes=1, seconds=2))
        assert report.decisions == 1 and not report.undecided and not report.skipped, report
        assert not any("missed" in m for m in events(store))
        runner.close()
    finally:
        srv.stop()
