"""Paper broker, accounting, ids, scheduler, CLI and live (real-order) mode."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from fake_exchange.helpers import FAKE_API_KEY, FAKE_API_SECRET, KEY_ENV, SECRET_ENV, fast_client
from kronos_trader.exchange import market_rules
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.live import LiveRunner, Position, audit_run, client_order_id, slipped_open
from kronos_trader.live.broker import order_problem
from kronos_trader.live.scheduler import build_scheduler, first_fire_time
from kronos_trader.store import Balance, open_store
from test_live_support import RUN_ID, copy_db, cycle_times, forecast_template, make_server, series, settings_for


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("broker")
    server = make_server()
    try:
        template = forecast_template(tiny_model_dir, server, tmp)
        yield {"server": server, "template": template, "tmp": tmp, "times": cycle_times(series(server)),
               "model_dir": tiny_model_dir}
    finally:
        server.stop()


def make_runner(env, name, *, keys=False, **kwargs):
    paper = kwargs.pop("paper", {})
    settings = settings_for(env["model_dir"], env["server"].url, copy_db(env["template"], env["tmp"] / f"{name}.db"),
                            **paper)
    store = open_store(settings.database.url)
    service = ForecastService(load_model(env["model_dir"], "cpu"), settings.forecast, store, False)
    kwargs.setdefault("run_id", RUN_ID)
    runner = LiveRunner(settings, store=store, client=fast_client(env["server"], keys=keys), service=service,
                        retries=1, backoff=0.001, retry_delay=0.0, **kwargs)
    return runner, store


# ---------------------------------------------------------------------- ids and accounting
def test_client_order_ids_are_deterministic_and_exchange_safe():
    bar = pd.Timestamp("2024-03-01 00:16:00")
    cid = client_order_id(RUN_ID, "BTC/USDT", bar, "buy")
    assert cid == client_order_id(RUN_ID, "BTC/USDT", bar, "buy") == "kt7e57c0de-BTCUSDT-240301001600-b"
    others = {client_order_id(RUN_ID, "BTC/USDT", bar, "sell"), client_order_id(RUN_ID, "ETH/USDT", bar, "buy"),
              client_order_id(RUN_ID, "BTC/USDT", bar + pd.Timedelta(minutes=1), "buy"),
              client_order_id("ffff" + RUN_ID[4:], "BTC/USDT", bar, "buy")}
    assert cid not in others and len(others) == 4
    long_pair = client_order_id(RUN_ID, "1000SATS/FDUSD:FDUSD", bar, "sell")
    for x in (cid, long_pair):
        assert len(x) <= 36 and re.fullmatch(r"[.A-Z:/a-z0-9_-]{1,36}", x)


def test_position_follows_backtrader():
    from backtrader.position import Position as BtPosition

    rng = np.random.default_rng(3)
    ours, theirs = Position(), BtPosition()
    for _ in range(300):
        size = float(rng.choice([-1, 1]) * rng.uniform(0.1, 2.0))
        if rng.random() < 0.15:
            size = -ours.size or size  # close exactly
        price = float(rng.uniform(90, 110))
        ours.update(size, price)
        theirs.update(size, price)
        assert ours.size == pytest.approx(theirs.size, abs=1e-9)
        assert ours.price == pytest.approx(theirs.price, rel=1e-9, abs=1e-9)


def test_fill_price_is_the_backtest_rule():
    assert slipped_open("buy", 100.0, 101.0, 99.0, 0.001) == pytest.approx(100.1)
    assert slipped_open("buy", 100.0, 100.05, 99.0, 0.001) == 100.05      # capped at the bar's high
    assert slipped_open("sell", 100.0, 101.0, 99.96, 0.001) == 99.96      # and its low
    assert slipped_open("sell", 100.0, 101.0, 99.0, 0.0) == 100.0


def test_order_checks_use_market_rules(env):
    rules = market_rules(fast_client(env["server"], keys=False), "BTC/USDT")
    assert rules.round_amount(0.123456789) == 0.12345
    assert "rounds to 0" in order_problem(rules, rules.round_amount(0.000004), 42_000)
    assert "notional" in order_problem(rules, 0.0001, 42_000)
    assert order_problem(rules, 0.001, 42_000) is None


# ---------------------------------------------------------------------- paper broker
def test_tiny_account_orders_are_rejected_with_a_reason(env):
    runner, store = make_runner(env, "tiny", paper={"quote_balance": 4.0})
    runner.start()
    runner.run_cycle(now=env["times"][0])
    (order,) = store.load_orders(RUN_ID).to_dict("records")
    assert order["status"] == "rejected" and "notional" in order["reason"]
    assert store.load_fills(RUN_ID).empty and audit_run(store, RUN_ID) == []


def test_a_fill_is_written_in_one_transaction(env):
    def fail(name, **kw):
        raise RuntimeError("disk on fire")

    runner, store = make_runner(env, "atomic", hooks={"fill_tx": fail})
    runner.start()
    runner.run_cycle(now=env["times"][0])                  # decides: a 'sent' order
    before = (store.load_balances(RUN_ID)["free"].tolist(), runner.broker.account.cash)
    (report,) = runner.run_cycle(now=env["times"][1])      # its fill fails inside the transaction
    assert report.undecided and "disk on fire" in report.undecided[0] and report.attempts == 4
    assert store.load_fills(RUN_ID).empty
    assert store.load_orders(RUN_ID)["status"].tolist() == ["sent"]
    assert (store.load_balances(RUN_ID)["free"].tolist(), runner.broker.account.cash) == before
    assert "disk on fire" in store.last_errors(RUN_ID)[None].message
    runner.hooks.clear()
    runner.run_cycle(now=env["times"][2])                  # next cycle: filled, then caught up
    orders = store.load_orders(RUN_ID)
    assert orders["status"].tolist()[:1] == ["filled"] and len(store.load_fills(RUN_ID)) >= 1
    assert audit_run(store, RUN_ID) == []


def test_missed_candles_skip(env):
    runner, store = make_runner(env, "skip", paper={"missed_candles": "skip"})
    runner.start()
    runner.run_cycle(now=env["times"][0])
    runner.run_cycle(now=env["times"][4])                  # three candles missed
    signals = store.load_signals(RUN_ID)
    assert [str(t) for t in signals["bar_time"]] == ["2024-03-01 00:16:00", "2024-03-01 00:20:00"]
    fills = store.load_fills(RUN_ID)
    assert [str(t) for t in fills["ts"]] == ["2024-03-01 00:16:00"]  # the pending order still fills at its next open
    with store.session(readonly=True) as s:
        messages = [m for (m,) in s.execute(__import__("sqlalchemy").text("select message from events"))]
    assert any("skipped 3 missed 1m candle(s)" in m for m in messages)
    assert audit_run(store, RUN_ID) == []


def test_ticker_fill_mode_fills_at_once(env):
    server = env["server"]
    runner, store = make_runner(env, "ticker", fill="ticker")
    runner.start()
    last = float(server.series["BTCUSDT"].c[-1])  # the server's last price (whole series revealed)
    runner.run_cycle(now=env["times"][0])
    (order,) = store.load_orders(RUN_ID).to_dict("records")
    (fill,) = store.load_fills(RUN_ID).to_dict("records")
    assert order["status"] == "filled" and order["side"] == "sell"
    assert fill["price"] == pytest.approx(round(last * (1 - 0.0005), 2))
    assert audit_run(store, RUN_ID) == []


# ---------------------------------------------------------------------- scheduler
def test_scheduler_jobs_fire_after_each_candle_close(env):
    runner, _ = make_runner(env, "sched", paper={"delay_seconds": 2.5, "misfire_grace_seconds": 42,
                                                 "pairs": [{"symbol": "BTC/USDT", "timeframe": "1m"},
                                                           {"symbol": "BTC/USDT", "timeframe": "5m"}]})
    scheduler = build_scheduler(runner, blocking=False)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"cycle-1m", "cycle-5m"}
    for job in jobs.values():
        assert job.coalesce and job.max_instances == 1 and job.misfire_grace_time == 42
    now = pd.Timestamp.now(tz="UTC")
    fire = jobs["cycle-5m"].trigger.get_next_fire_time(None, now.to_pydatetime())
    fire = pd.Timestamp(fire).tz_convert("UTC").tz_localize(None)
    assert fire.second == 2 and fire.microsecond == 500_000 and fire.minute % 5 == 0
    assert first_fire_time("1h", 5, pd.Timestamp("2024-01-01 10:00:03")) == pd.Timestamp("2024-01-01 10:00:05")
    assert first_fire_time("1h", 5, pd.Timestamp("2024-01-01 10:00:06")) == pd.Timestamp("2024-01-01 11:00:05")


# ---------------------------------------------------------------------- CLI
def test_cli_paper_once_and_status(env):
    from kronos_trader.cli import app

    server = env["server"]
    db = copy_db(env["template"], env["tmp"] / "cli.db")
    settings = settings_for(env["model_dir"], server.url, db)
    config = env["tmp"] / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    cli = CliRunner()
    saved = server.now_ms
    server.set_now(env["times"][0])
    try:
        result = cli.invoke(app, ["paper", "--config", str(config), "--once", "--run-id", RUN_ID])
        assert result.exit_code == 0, result.output
        assert "1 decision(s), 1 order(s)" in result.output
        server.set_now(env["times"][1])
        result = cli.invoke(app, ["paper", "--config", str(config), "--once"])  # resumes the same run
        assert result.exit_code == 0, result.output
        assert RUN_ID in result.output and "1 fill(s)" in result.output
    finally:
        server.set_now(saved)
    result = cli.invoke(app, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "BTC/USDT" in result.output and "equity" in result.output and "P(up)" in result.output
    result = cli.invoke(app, ["paper", "--config", str(config), "--once", "--live"])
    assert result.exit_code == 1 and "paper.live" in result.output


# ---------------------------------------------------------------------- live mode
def test_live_orders_carry_client_ids_and_keys_stay_secret(env, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, FAKE_API_KEY)
    monkeypatch.setenv(SECRET_ENV, FAKE_API_SECRET)
    server = env["server"]
    server.clear_requests()
    live = {"live": True, "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV}
    with pytest.raises(ValueError, match="paper.live"):
        make_runner(env, "nolive", live=True)
    runner, store = make_runner(env, "live", keys=True, live=True, paper=live)
    caplog.set_level("DEBUG")
    runner.start()
    for now in env["times"][:3]:
        runner.run_cycle(now=now)
    assert store.get_run(RUN_ID).kind == "live"
    orders = store.load_orders(RUN_ID)
    orders = orders[orders["status"] != "rejected"]  # spot: a sale of nothing held is no order
    posts = [r.params["newClientOrderId"] for r in server.requests_to("/api/v3/order", "POST")]
    assert posts == list(orders["client_order_id"]) and len(posts) >= 2
    assert set(orders["status"]) == {"filled"} and orders["exchange_order_id"].notna().all()
    assert len(store.load_fills(RUN_ID)) == len(orders)
    balances = dict(zip(store.load_balances(RUN_ID)["currency"], store.load_balances(RUN_ID)["free"]))
    assert balances["BTC"] == pytest.approx(server.balances["BTC"][0])
    dump = "\n".join(store.engine.raw_connection().iterdump())
    assert FAKE_API_KEY not in dump and FAKE_API_SECRET not in dump
    assert FAKE_API_KEY not in caplog.text and FAKE_API_SECRET not in caplog.text


def test_live_restart_reconciles_orders_by_client_id(env, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_API_KEY)
    monkeypatch.setenv(SECRET_ENV, FAKE_API_SECRET)
    server = env["server"]
    live = {"live": True, "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV}
    run_id = "2ec0c11e" + "0" * 24
    runner, store = make_runner(env, "reconcile", keys=True, live=True, paper=live, run_id=run_id)
    store.create_run("live", "live:binance", {}, run_id=run_id)
    server.balances["BTC"] = [1.0, 0.0]  # the run's first start read these (not a new run: nothing to adopt)
    bar = pd.Timestamp("2024-03-01 00:16:00")
    current = pd.Timestamp(server.clock_ms(), unit="ms").floor("1min")  # close of the candle just closed
    sent, stale, unsent = (client_order_id(run_id, "BTC/USDT", bar, "buy"),
                           client_order_id(run_id, "BTC/USDT", bar + pd.Timedelta(minutes=1), "sell"),
                           client_order_id(run_id, "BTC/USDT", current, "sell"))
    for cid, t, side in ((sent, bar, "buy"), (stale, bar + pd.Timedelta(minutes=1), "sell"),
                         (unsent, current, "sell")):
        store.record_signal(run_id, "BTC/USDT", "1m", t, 0.5)
        store.record_order(run_id, cid, "BTC/USDT", "1m", t, side, 0.01)  # stored 'new'
    with store.session() as s:  # the run's first start read the account's opening balances
        for currency in ("USDT", "BTC"):
            free, used = server.balances[currency]
            s.add(Balance(run_id=run_id, currency=currency, free=free, used=used, opening=free + used))
    # the first reached the exchange before the process died (its answer never stored)
    fast_client(server).create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": sent})
    server.clear_requests()
    runner.start()  # reconcile
    orders = {o["client_order_id"]: o for o in store.load_orders(run_id).to_dict("records")}
    assert orders[sent]["status"] == "filled" and orders[unsent]["status"] == "filled"
    # never sent, and its candle has passed: not sent late at a stale price, decided again
    assert orders[stale]["status"] == "expired" and "decided again" in orders[stale]["reason"]
    assert np.isnan(runner.books[("BTC/USDT", "1m")].held_target)
    posts = [r.params["newClientOrderId"] for r in server.requests_to("/api/v3/order", "POST")]
    assert posts == [unsent]  # the one the exchange had is not sent again
    assert len(store.load_fills(run_id)) == 2
    assert audit_run(store, run_id) == []
    runner.close()
    server.balances["BTC"] = [0.0, 0.0]


def test_live_order_lost_in_a_timeout_is_not_placed_twice(env, monkeypatch):
    """The exchange executes the order but the answer times out: the runner looks it up by
    client id instead of sending it again; the next cycle finds it filled."""
    import time

    monkeypatch.setenv(KEY_ENV, FAKE_API_KEY)
    monkeypatch.setenv(SECRET_ENV, FAKE_API_SECRET)
    server = env["server"]
    live = {"live": True, "api_key_env": KEY_ENV, "api_secret_env": SECRET_ENV}
    server.balances["BTC"] = [1.0, 0.0]  # adopted: the policy's first decision sells part of it
    runner, store = make_runner(env, "livetimeout", keys=True, live=True, paper=live, run_id="71e0u7" + "0" * 26,
                                adopt=True)
    runner.start()
    server.clear_requests()
    server.inject("timeout", count=1, path="/api/v3/order")
    runner.run_cycle(now=env["times"][0])
    (order,) = store.load_orders(runner.run_id).to_dict("records")
    # in flight: not confirmed, never re-sent (on a loaded machine the exchange may have executed the
    # delayed original before the cycle's own lookup, which then finds it filled: also never re-sent)
    assert order["status"] in ("unknown", "filled")
    time.sleep(1.0)  # the delayed original is executed by the exchange meanwhile
    runner.run_cycle(now=env["times"][1])
    posts = [r for r in server.requests_to("/api/v3/order", "POST")
             if r.params["newClientOrderId"] == order["client_order_id"]]
    assert len(posts) == 1
    orders = store.load_orders(runner.run_id).set_index("client_order_id")
    assert orders.loc[order["client_order_id"], "status"] == "filled"
    assert audit_run(store, runner.run_id, paper=False) == []
    runner.close()
    server.balances["BTC"] = [0.0, 0.0]
