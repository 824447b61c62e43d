"""Money at risk in live trading (issue 21), each reproduced against the local
Binance-protocol server with the real ccxt client and a real SQLite database: a lost
database while the account holds a position (adopt or refuse), an exchange clock behind
(nothing sent on a stale candle), two runs on one account (a lease in the database), a lost
order under ``--once`` (time-based grace from the database), no new order while one is
unconfirmed, and dust (flat for decisions, shown as dust)."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from fake_exchange.helpers import fast_client
from kronos_trader.exchange import ExchangeConfigError
from kronos_trader.live import audit_run
from kronos_trader.store import open_store
from test_live_support import module_env, restored_server, events, replay_clock, runner_for

ORDER = "/api/v3/order"
BOOK = ("BTC/USDT", "1m")


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    yield from module_env(tiny_model_dir, tmp_path_factory, "money")


@pytest.fixture
def server(env):
    yield from restored_server(env)


def posts(server, run_id: str) -> list[str]:
    return [r.params["newClientOrderId"] for r in server.requests_to(ORDER, "POST")
            if r.params["newClientOrderId"].startswith(f"kt{run_id[:8]}")]


# ---------------------------------------------------------------------- 1: a lost database
def test_a_new_run_on_an_account_holding_the_pair_refuses_or_adopts(env, server):
    """One cycle long, the database lost: a new run must not buy again. Without --adopt it
    refuses to start (naming the holding); with it the holding is the run's position."""
    first, store = runner_for(env, "held-1", live=True)
    first.run_cycle(now=env["times"][0])
    first.close()
    (order,) = store.load_orders(first.run_id).to_dict("records")
    assert order["side"] == "buy" and order["status"] == "filled"
    held = sum(server.balances["BTC"])
    assert held > 0

    # the database is gone: a fresh one, a new run
    with pytest.raises(ExchangeConfigError, match=r"holds [0-9.]+ BTC.*--adopt"):
        runner_for(env, "held-2", live=True, new_run=True)
    runner, store = runner_for(env, "held-3", live=True, new_run=True, adopt=True)
    assert runner.broker.account.position(BOOK).size == pytest.approx(held)
    (report,) = runner.run_cycle(now=env["times"][1])
    (order,) = store.load_orders(runner.run_id).to_dict("records")
    assert order["side"] == "sell"  # the Alternating policy sees the adopted long: no second buy
    assert sum(server.balances["BTC"]) < held
    assert audit_run(store, runner.run_id) == []
    runner.close()


def test_a_new_run_reconciles_open_orders_with_our_prefix(env, server):
    """A resting order placed by a lost run (our client-id prefix) is never ignored."""
    server.balances["BTC"] = [0.0, 0.0]
    client = fast_client(server)
    price = float(server.series["BTCUSDT"].c[-1]) * 0.5
    client.create_order("BTC/USDT", "limit", "buy", 0.001, price, {"clientOrderId": "ktdeadbeef-BTCUSDT-1-b"})
    with pytest.raises(ExchangeConfigError, match="ktdeadbeef-BTCUSDT-1-b"):
        runner_for(env, "prefix-1", live=True)
    runner, store = runner_for(env, "prefix-2", live=True, adopt=True)  # --adopt cancels it first
    assert client.fetch_open_orders("BTC/USDT") == []
    assert any("canceled open order ktdeadbeef-BTCUSDT-1-b" in m for m in events(store))
    runner.close()


# ---------------------------------------------------------------------- 2: exchange clock behind
def test_an_exchange_clock_behind_sends_nothing_on_a_stale_candle(env, server):
    """30 s behind, a new run: the exchange's newest closed candle is the one before the
    local clock's. Nothing is decided on it; "could not decide" means nothing was sent."""
    runner, store = runner_for(env, "stale", live=True, local_clock=replay_clock(server), sleep=lambda s: None)
    server.set_now(env["times"][1])
    server.inject("clock_skew", count=1000, skew_ms=-30_000)
    (report,) = runner.run_cycle()
    assert report.undecided and report.decisions == 0
    assert store.load_signals(runner.run_id).empty and store.load_orders(runner.run_id).empty
    assert posts(server, runner.run_id) == []
    runner.close()


def test_an_exchange_clock_behind_decides_the_newest_candle_once(env, server):
    """Behind at the first attempt only: the retry decides the local clock's candle, and
    only it (not the previous one late and then this one: two orders in one run)."""
    runner, store = runner_for(env, "stale-once", live=True, local_clock=replay_clock(server),
                               sleep=lambda s: None)
    server.set_now(env["times"][1])
    server.inject("clock_skew", count=1, skew_ms=-30_000)
    (report,) = runner.run_cycle()
    assert report.decisions == 1 and not report.undecided
    signals = store.load_signals(runner.run_id)
    assert [pd.Timestamp(t) for t in signals["bar_time"]] == [env["times"][1].floor("1min")]
    assert len(posts(server, runner.run_id)) == 1
    runner.close()


# ---------------------------------------------------------------------- 3: one run per account
def test_two_runs_cannot_trade_the_same_account(env, server):
    server.balances["BTC"] = [0.0, 0.0]
    first, store = runner_for(env, "lease", live=True)
    with pytest.raises(ExchangeConfigError, match=rf"held by live run {first.run_id}.*pid \d+"):
        runner_for(env, "lease", live=True, db=store.engine.url.render_as_string(), new_run=True, run_id=None)
    from kronos_trader.live.scheduler import build_scheduler

    jobs = {job.id for job in build_scheduler(first, blocking=False).get_jobs()}
    assert jobs == {"cycle-1m", "lease"}  # the scheduler renews the lease between candles
    first.run_cycle(now=env["times"][0])
    first.close()
    second, _ = runner_for(env, "lease", live=True, db=store.engine.url.render_as_string(), new_run=True,
                           run_id=None, adopt=True)
    assert second.run_id != first.run_id
    second.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_lease_is_a_row_in_the_database(request, tmp_path, backend):
    """Held, refused to another holder with its name, renewed, taken over once expired or
    released; a holder whose process died on this host is taken over at once."""
    from kronos_trader.live.lease import _dead_here
    from kronos_trader.store import LeaseHeld

    url = f"sqlite:///{tmp_path / 'lease.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")
    store = open_store(url)
    key = "binance|KEY_ENV|BTC/USDT"
    store.acquire_lease(key, "tok-a", "live run a (pid 1 on h)", ttl_s=60)
    store.acquire_lease(key, "tok-a", "live run a (pid 1 on h)", ttl_s=60)  # its holder again: renewed
    with pytest.raises(LeaseHeld, match=r"live run a \(pid 1 on h\)"):
        store.acquire_lease(key, "tok-b", "live run b", ttl_s=60)
    store.acquire_lease("binance|KEY_ENV|ETH/USDT", "tok-b", "live run b", ttl_s=60)  # another pair: free
    store.release_lease(key, "tok-a")
    store.acquire_lease(key, "tok-b", "live run b", ttl_s=0.01)
    time.sleep(0.05)
    store.acquire_lease(key, "tok-c", "live run c", ttl_s=60)  # expired: taken over
    assert not store.renew_lease(key, "tok-b", ttl_s=60)
    assert store.renew_lease(key, "tok-c", ttl_s=60)
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    ghost = f"{socket.gethostname()}|{dead.stdout.strip()}|x"
    store.acquire_lease("k2", ghost, "live run ghost", ttl_s=60)
    store.acquire_lease("k2", "tok-d", "live run d", ttl_s=60, is_stale=_dead_here)  # killed -9: taken over
    store.close()


# ---------------------------------------------------------------------- 4: a lost order under --once
def test_a_lost_order_is_decided_again_across_once_runs(env, server):
    """A 5xx on placement: the order is 'unknown'. Each `--once` run is a new process: the
    grace period counts from the order's time in the database, so a later run finds it lost
    and decides again instead of asking "later" for good."""
    server.balances["BTC"] = [0.0, 0.0]
    long, grace = pd.Timedelta(minutes=10), pd.Timedelta(seconds=1)  # the later run: the order is older than this
    first, store = runner_for(env, "once-lost", live=True, not_found_grace=long)
    server.inject("server_error", count=1, path=ORDER)  # refused by the server: never placed
    first.run_cycle(now=env["times"][0])
    first.close()
    (order,) = store.load_orders(first.run_id).to_dict("records")
    assert order["status"] == "unknown"
    db = store.engine.url.render_as_string()
    second, _ = runner_for(env, "once-lost", live=True, db=db, not_found_grace=long)  # within the grace
    second.run_cycle(now=env["times"][1])
    second.close()
    assert store.load_orders(first.run_id).set_index("client_order_id").loc[
        order["client_order_id"], "status"] == "unknown"
    time.sleep(1.1)
    third, _ = runner_for(env, "once-lost", live=True, db=db, not_found_grace=grace)
    (report,) = third.run_cycle(now=env["times"][2])
    third.close()
    orders = store.load_orders(first.run_id).set_index("client_order_id")
    assert orders.loc[order["client_order_id"], "status"] == "expired"
    later = orders[orders.index != order["client_order_id"]].sort_values("bar_time")
    assert later.iloc[0]["side"] == "buy" and set(later["status"]) == {"filled"}  # the lost buy, decided again
    assert report.orders == list(later.index)
    assert audit_run(store, first.run_id) == []


# ---------------------------------------------------------------------- 5: unconfirmed orders
def test_no_new_order_while_one_of_the_pair_is_unconfirmed(env, server):
    """An order's answer is lost (the exchange executes it late) and lookups do not find it
    yet: the next decision must not size a new order from the stale position."""
    server.balances["BTC"] = [0.0, 0.0]
    runner, store = runner_for(env, "unconfirmed", live=True, strategy="test_live_support:Steps")
    server.inject("timeout", count=1, path=ORDER)
    runner.run_cycle(now=env["times"][0])
    (order,) = store.load_orders(runner.run_id).to_dict("records")
    assert order["status"] == "unknown"
    time.sleep(1.0)  # executed by the exchange meanwhile
    server.inject("not_found", count=1000, path=ORDER)
    sent = len(posts(server, runner.run_id))
    (report,) = runner.run_cycle(now=env["times"][1])
    assert len(posts(server, runner.run_id)) == sent and report.orders == []
    assert any("unconfirmed" in m for m in events(store))
    server.clear_faults()
    runner.run_cycle(now=env["times"][2])  # confirmed: the targets are traded from the real position
    orders = store.load_orders(runner.run_id)
    assert set(orders["status"]) == {"filled"}
    signals = store.load_signals(runner.run_id)
    last = signals.iloc[-1]
    price = last["details"]["price"]
    exposure = sum(server.balances["BTC"]) * price / last["details"]["equity"]
    assert exposure == pytest.approx(last["target_position"], abs=0.02)  # not 0.3 more than the target
    assert audit_run(store, runner.run_id) == []
    runner.close()


# ---------------------------------------------------------------------- 6: dust
def test_dust_is_flat_for_decisions_and_shown_as_dust(env, server, tmp_path):
    """The fee in the base asset leaves a residual below the market minimum after each
    round trip: a policy trading only from flat keeps trading (as in a backtest)."""
    from typer.testing import CliRunner

    from kronos_trader.cli import app

    server.balances["BTC"] = [0.0, 0.0]
    runner, store = runner_for(env, "dust", live=True, strategy="test_live_support:StrictAlternating")
    for now in env["times"][:5]:
        runner.run_cycle(now=now)
    runner.close()
    orders = store.load_orders(runner.run_id)
    assert list(orders.sort_values("bar_time")["side"]) == ["buy", "sell", "buy", "sell", "buy"]
    assert set(orders["status"]) == {"filled"}
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {store.engine.url.render_as_string()}\n")
    result = CliRunner().invoke(app, ["status", "--config", str(config), "--run-id", runner.run_id])
    assert result.exit_code == 0, result.output
    runner2, _ = runner_for(env, "dust", live=True, db=store.engine.url.render_as_string(),
                            strategy="test_live_support:StrictAlternating")
    runner2.run_cycle(now=env["times"][5])  # sells: a dust residual remains
    runner2.close()
    result = CliRunner().invoke(app, ["status", "--config", str(config), "--run-id", runner.run_id])
    assert "dust" in result.output, result.output


# ---------------------------------------------------------------------- review (issue 21)
def test_a_lease_that_expired_during_a_cycle_is_not_traded_on(env, server):
    """A `--once` cycle that waits (a lagging exchange clock, retries) longer than the lease
    lasts: a second run (the next cron start) takes the expired lease and trades the candle.
    The first run must not then decide and send on the same account as well."""
    server.balances["BTC"] = [0.0, 0.0]
    server.set_now(env["times"][1])
    db = {}

    def wait(seconds):  # while the first run waits for the exchange's clock, its lease runs out
        if "second" in db:
            return
        time.sleep(0.2)
        second, _ = runner_for(env, "lease-mid", live=True, db=db["url"], new_run=True, run_id=None,
                               local_clock=replay_clock(server))
        db["second"] = second
        second.run_cycle()
        second.close()

    first, store = runner_for(env, "lease-mid", live=True, local_clock=replay_clock(server), sleep=wait)
    db["url"] = store.engine.url.render_as_string()
    first.lease.ttl_s = 0.1  # the lease lasts less than the wait (120 s vs minutes of retries in real life)
    server.inject("clock_skew", count=1, skew_ms=-30_000)
    (report,) = first.run_cycle()
    first.close()
    second = db["second"]
    assert len(posts(server, second.run_id)) == 1  # the run holding the lease traded the candle
    assert posts(server, first.run_id) == []  # ... and the one that lost it sent nothing
    assert report.undecided and report.decisions == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_lease_is_taken_on_a_host_with_a_long_name(request, tmp_path, monkeypatch, backend):
    """Cloud hosts have long names (EC2: ip-172-31-100-200.ap-southeast-2.compute.internal):
    the lease's token must still fit its column, so a run can start at all on PostgreSQL;
    and a holder that died on such a host is still recognised as dead."""
    import socket
    import subprocess
    import sys
    from types import SimpleNamespace

    from kronos_trader.live.lease import RunLease, _dead_here

    monkeypatch.setattr(socket, "gethostname", lambda: "ip-172-31-100-200.ap-southeast-2.compute.internal")
    monkeypatch.setattr("os.getpid", lambda: 4194303)  # pid_max on 64-bit Linux
    url = f"sqlite:///{tmp_path / 'lease.db'}" if backend == "sqlite" else request.getfixturevalue("fresh_pg_url")
    store = open_store(url)
    paper = SimpleNamespace(exchange="binance", api_key_env="KEY_ENV", api_url=None)
    lease = RunLease(store, "live", paper, ["BTC/USDT"])
    lease.acquire(None)
    lease.renew()
    monkeypatch.undo()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    monkeypatch.setattr(socket, "gethostname", lambda: "ip-172-31-100-200.ap-southeast-2.compute.internal")
    monkeypatch.setattr("os.getpid", lambda: int(dead.stdout))
    ghost = RunLease(store, "live", paper, ["ETH/USDT"])
    ghost.acquire(None)
    assert _dead_here(ghost.token)  # its process is gone on this host: taken over at once
    store.close()


def test_the_cycle_report_counts_what_every_attempt_did(env, server):
    """A cycle that catches up a missed candle (decided, traded) and then has to wait for
    the newest one (retried): the report (the `--once` summary line) counts both attempts'
    decisions, orders and fills, not only the last attempt's."""
    server.balances["BTC"] = [0.0, 0.0]
    times = env["times"]
    runner, store = runner_for(env, "attempts", live=True, sleep=lambda s: server.set_now(times[2]))
    runner.run_cycle(now=times[0])  # buys
    server.set_now(times[1])  # the exchange has not closed the newest candle yet
    (report,) = runner.run_cycle(now=times[2])
    runner.close()
    orders = store.load_orders(runner.run_id)
    assert len(orders) == 3 and set(orders["status"]) == {"filled"}
    assert report.attempts == 2 and not report.undecided
    assert (report.decisions, len(report.orders), report.fills) == (2, 2, 2)


def test_an_order_stored_but_not_sent_does_not_block_the_pair_for_good(env, server):
    """A cycle fails between storing an order ('new') and sending it (e.g. the database is
    locked when the order is marked 'sent'): the order never left. The scheduler's later
    cycles must settle it (expired, decided again), not hold the pair as 'unconfirmed'
    until the process is restarted."""
    server.balances["BTC"] = [0.0, 0.0]
    failed = []

    def fail_once(name, **kw):
        if not failed:
            failed.append(name)
            raise RuntimeError("database is locked")

    runner, store = runner_for(env, "new-stuck", live=True, hooks={"orders_new": fail_once})
    (report,) = runner.run_cycle(now=env["times"][0])
    assert posts(server, runner.run_id) == []
    for now in env["times"][1:4]:
        runner.run_cycle(now=now)
    runner.close()
    assert len(posts(server, runner.run_id)) >= 1  # the pair trades again in the same process
    orders = store.load_orders(runner.run_id)
    assert "new" not in set(orders["status"])
    assert audit_run(store, runner.run_id) == []


def test_replay_of_a_paper_run_with_its_own_starting_cash_has_no_difference(env, server):
    """`replay` reruns a run through the backtest with the run's settings: a paper run that
    started with paper.quote_balance (not backtest.cash) must replay with the same order
    amounts, not report every order as a difference of fills."""
    from kronos_trader.backtest.replay import replay_run

    runner, store = runner_for(env, "replay-cash", paper={"quote_balance": 2_500.0})
    for now in env["times"][:8]:
        server.set_now(now)
        runner.run_cycle()
    runner.close()
    assert len(store.load_orders(runner.run_id)) >= 2, "the scenario should trade"
    assert replay_run(store, runner.run_id, service=runner.service) == []


def test_a_resumed_run_on_an_older_copy_of_its_database_does_not_buy_again(env, server):
    """The database restored from a copy taken before the last buy (a backup, a snapshot):
    the run's records say flat, the account holds the bought BTC. Resuming must not decide
    on that (a second buy, as with a lost database): it refuses, naming the difference."""
    import sqlite3

    server.balances["BTC"] = [0.0, 0.0]
    runner, store = runner_for(env, "restored", live=True)
    runner.close()
    path = store.engine.url.database
    backup = env["tmp"] / "restored-backup.db"
    with sqlite3.connect(path) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)  # taken while the run is flat
    runner, _ = runner_for(env, "restored", live=True, db=f"sqlite:///{path}")
    runner.run_cycle(now=env["times"][0])
    runner.close()
    assert sum(server.balances["BTC"]) > 0
    bought = len(posts(server, runner.run_id))
    with pytest.raises(ExchangeConfigError, match=r"BTC"):
        runner_for(env, "restored", live=True, db=f"sqlite:///{backup}")
    assert len(posts(server, runner.run_id)) == bought
