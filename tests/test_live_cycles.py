"""The live loop's answers to the faults of issue 13, each reproduced against the local
Binance-protocol server with the real ccxt client: a clock ahead of the klines (no decision
on a forming candle), "not found" answers, orders that never reached the exchange, skipped
decisions (warned, retried within the candle, a non-zero exit for `paper --once`), history
on a market with gaps, and the smaller points (one-line errors); and the settle step's
waste (issue 21): an order of a pair no longer configured is looked up once per settle, the
candles are read by the paper broker only, the start-up balance check runs once, and only
the exchange broker keeps lost orders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fake_exchange import drop_bars, make_candles
from fake_exchange.helpers import FAKE_API_KEY, FAKE_API_SECRET, fast_client
from kronos_trader.exchange import ExchangeConfigError
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.live import LiveRunner, audit, audit_run
from kronos_trader.live.broker import Broker
from kronos_trader.records import OrderRecord, SignalRecord
from kronos_trader.store import open_store
from test_live_support import (
    module_env,
    restored_server,
    LOOKBACK,
    RUN_ID,
    START,
    copy_db,
    events,
    replay_clock,
    runner_for,
    settings_for,
)

ORDER = "/api/v3/order"
KLINES = "/api/v3/klines"


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    yield from module_env(tiny_model_dir, tmp_path_factory, "cycles")


@pytest.fixture
def server(env):
    yield from restored_server(env)


# ---------------------------------------------------------------------- 2: forming candles
def test_a_clock_ahead_of_the_klines_never_decides_on_a_forming_candle(env, server):
    candles = env["candles"]
    k = LOOKBACK + 2
    server.set_now(candles.index[k] + pd.Timedelta(seconds=30))  # candle k is forming in the kline feed
    server.inject("clock_skew", count=1000, skew_ms=61_000)       # the served clock: a bar ahead
    runner, store = runner_for(env, "ahead", local_clock=replay_clock(server))
    (report,) = runner.run_cycle()
    assert report.boundary == candles.index[k]  # the clock says k has closed ...
    assert report.decisions == 0 and report.undecided  # ... the klines do not confirm it
    assert "not closed on the exchange yet" in report.undecided[0]
    assert store.load_signals(runner.run_id).empty
    assert any("ahead of the local clock; resynced" in m for m in events(store))
    # once a later candle confirms it, the real closed candle is decided (not skipped)
    server.clear_faults()
    server.set_now(candles.index[k + 1] + pd.Timedelta(seconds=2))
    (report,) = runner.run_cycle()
    signals = store.load_signals(runner.run_id)
    assert report.decisions == 1 and not report.undecided
    (row,) = signals.to_dict("records")
    assert pd.Timestamp(row["bar_time"]) == candles.index[k] + pd.Timedelta(minutes=1)
    assert row["details"]["price"] == candles["close"].iloc[k]  # its close, not a forming value


# ---------------------------------------------------------------------- 3: not found
def test_one_not_found_answer_does_not_lose_a_filled_order(env, server):
    """The order filled, but a lookup says "Order does not exist" (the exchange's order
    index lagging): it stays unknown and the next lookup settles it, never re-sent."""
    runner, store = runner_for(env, "notfound", live=True, not_found_grace=pd.Timedelta(0))
    server.inject("timeout", count=1, path=ORDER)   # the answer is lost; the exchange executes it late
    runner.run_cycle(now=env["times"][0])
    (order,) = store.load_orders(runner.run_id).to_dict("records")
    assert order["status"] == "unknown"
    import time
    time.sleep(1.0)
    server.inject("not_found", count=1, path=ORDER)
    runner.broker.poll()
    assert store.load_orders(runner.run_id)["status"].tolist() == ["unknown"]  # one miss is not "lost"
    runner.broker.poll()
    assert store.load_orders(runner.run_id)["status"].tolist() == ["filled"]
    posts = [r for r in server.requests_to(ORDER, "POST") if r.params["newClientOrderId"] == order["client_order_id"]]
    assert len(posts) == 1
    assert audit_run(store, runner.run_id) == []


# ---------------------------------------------------------------------- 4: never reached
@pytest.mark.parametrize("fault", [("server_error", 1), ("rate_limit", 2)])  # 429 until the retries run out
def test_an_order_that_never_reached_the_exchange_is_decided_again(env, server, fault):
    """5xx (ambiguous: looked up several times, then given up) and 429 x5 (refused before
    processing): the order expires, is never sent late, and the next candle decides again."""
    runner, store = runner_for(env, f"never-{fault[0]}", live=True, not_found_grace=pd.Timedelta(0))
    name, count = fault
    server.inject(name, count=count, path=ORDER)
    runner.run_cycle(now=env["times"][0])
    (first,) = store.load_orders(runner.run_id).to_dict("records")
    assert first["status"] in ("unknown", "expired")
    for now in env["times"][1:4]:
        runner.run_cycle(now=now)
    orders = store.load_orders(runner.run_id).set_index("client_order_id")
    assert orders.loc[first["client_order_id"], "status"] == "expired"
    assert "never reached the exchange" in orders.loc[first["client_order_id"], "reason"]
    posts = [r.params["newClientOrderId"] for r in server.requests_to(ORDER, "POST")
             if r.params["newClientOrderId"].startswith(f"kt{runner.run_id[:8]}")]
    assert posts.count(first["client_order_id"]) == (1 if name == "server_error" else 2)  # never re-sent later
    later = orders[orders.index != first["client_order_id"]]
    assert len(later) and (later["status"] == "filled").all()
    assert later["bar_time"].min() > pd.Timestamp(first["bar_time"])  # decided again on a later candle
    assert later.iloc[0]["side"] == first["side"]  # the same trade, placed at the current price
    assert audit_run(store, runner.run_id) == []


# ---------------------------------------------------------------------- 5: skipped decisions
@pytest.mark.parametrize("fault,reason", [
    (("empty_list", 2, KLINES, {}), "not closed on the exchange yet"),
    (("server_error", 2, KLINES, {}), "candles not fetched"),
])
def test_a_skipped_decision_is_retried_within_the_candle(env, server, fault, reason):
    runner, store = runner_for(env, f"retry-{fault[0]}")
    kind, count, path, kw = fault
    server.inject(kind, count=count, path=path, **kw)
    (report,) = runner.run_cycle(now=env["times"][0])
    assert report.decisions == 1 and report.attempts == 2 and not report.undecided
    assert any("no decision yet" in m and reason in m for m in events(store))


def test_an_exchange_clock_behind_is_waited_for_not_a_silent_zero(env, server):
    candles = env["candles"]
    waits = []
    runner, store = runner_for(env, "behind", local_clock=replay_clock(server), sleep=waits.append)
    server.set_now(env["times"][0])
    assert runner.run_cycle()[0].decisions == 1
    server.set_now(env["times"][1])
    server.inject("clock_skew", count=1, skew_ms=-30_000)  # 30 s behind: the candle has not closed there
    (report,) = runner.run_cycle()
    assert report.decisions == 1 and report.attempts == 2
    assert waits == [31.0]  # it waited for the exchange's clock to pass the close
    assert pd.Timestamp(store.load_signals(runner.run_id)["bar_time"].max()) == env["times"][1].floor("1min")
    assert any("30.0s behind the local clock" in m for m in events(store))
    assert any("has not closed there yet" in m for m in events(store))
    del candles


def test_paper_once_exits_non_zero_when_it_could_not_decide(env, server, tmp_path):
    """And its output has no alembic INFO lines."""
    db = copy_db(env["template"], tmp_path / "cli.db")
    settings = settings_for(env["model_dir"], server.url, db)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    server.set_now(env["times"][0])
    server.inject("empty_list", count=10_000, path=KLINES)
    repo = Path(__file__).parents[1]
    proc = subprocess.run([sys.executable, "-m", "kronos_trader.cli", "paper", "--config", str(config), "--once",
                           "--run-id", RUN_ID], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "could not decide" in out and "not closed on the exchange yet" in out
    assert "alembic" not in out and "Context impl" not in out


# ---------------------------------------------------------------------- 6: history by count
def test_a_window_starting_in_a_gap_gets_its_history_by_count(env, tmp_path):
    candles = make_candles(START, 60, "1min", seed=7, price=42_000.0)
    gappy = drop_bars(candles, (candles.index[10], candles.index[29]))  # 20 bars missing
    from fake_exchange import FakeBinance

    srv = FakeBinance(api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET)
    srv.add_market("BTCUSDT", "BTC", "USDT", candles=gappy, interval="1m", tick_size="0.01",
                   step_size="0.00001", min_qty="0.00001", min_notional="5.00")
    srv.set_now(candles.index[-1] + pd.Timedelta(seconds=30))
    srv.start()
    try:
        settings = settings_for(env["model_dir"], srv.url, f"sqlite:///{tmp_path / 'gap.db'}")
        store = open_store(settings.database.url)
        service = ForecastService(load_model(env["model_dir"], "cpu"), settings.forecast, store, False)
        runner = LiveRunner(settings, store=store, client=fast_client(srv, keys=False), service=service,
                            run_id=RUN_ID, backoff=0.001, retry_delay=0.0).start()
        bar = candles.index[35]  # its window of 16 bars starts at bar 20, inside the gap
        (report,) = runner.run_cycle(now=bar + pd.Timedelta(minutes=1, seconds=2))
        assert report.decisions == 1 and not report.undecided, report
        assert not any("lookback" in m for m in events(store))
    finally:
        srv.stop()


# ---------------------------------------------------------------------- smaller points
def test_an_unsupported_timeframe_is_refused_at_start(env):
    with pytest.raises(ExchangeConfigError, match="7h"):
        runner_for(env, "7h", paper={"pairs": [{"symbol": "BTC/USDT", "timeframe": "7h"}]})


def test_a_cross_sectional_policy_is_refused_at_start(env):
    settings = settings_for(env["model_dir"], env["server"].url, copy_db(env["template"], env["tmp"] / "topk.db"))
    settings = settings.model_copy(update={"strategy": settings.strategy.model_copy(
        update={"name": "strategies.cross_sectional:TopK", "params": {"k": 1}, "gate": None})})
    with pytest.raises(ExchangeConfigError, match="cross-sectional"):
        LiveRunner(settings, store=open_store(settings.database.url), client=fast_client(env["server"], keys=False))


def test_refused_orders_are_counted_as_rejected(env, server):
    runner, store = runner_for(env, "refused", live=True)
    server.markets["BTCUSDT"]["status"] = "BREAK"  # the exchange refuses every order
    (report,) = runner.run_cycle(now=env["times"][0])
    (order,) = store.load_orders(runner.run_id).to_dict("records")
    assert order["status"] == "rejected" and "Market is closed" in order["reason"]
    assert report.rejected == [order["client_order_id"]]


def test_ticker_fills_are_stamped_with_the_runs_clock(env, server):
    stamp = env["times"][0] + pd.Timedelta(seconds=7)
    runner, store = runner_for(env, "tickerclock", fill="ticker", clock=lambda: stamp)
    runner.run_cycle()
    (fill,) = store.load_fills(runner.run_id).to_dict("records")
    assert pd.Timestamp(fill["ts"]) == stamp


def test_cuda_on_a_cpu_torch_is_a_one_line_error():
    import torch

    from kronos_trader.forecasting.models import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this torch has CUDA")
    with pytest.raises(ValueError, match="no usable CUDA") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value)


def test_password_is_masked_as_a_whole_token_only():
    from kronos_trader.store.engine import _one_line

    msg = _one_line(Exception('connection failed: password authentication failed for "on"'), "on")
    assert msg == 'Exception: connection failed: password authentication failed for "***"'


def test_log_level_is_validated(tmp_path):
    from typer.testing import CliRunner

    from kronos_trader.cli import app

    result = CliRunner().invoke(app, ["paper", "--log-level", "LOUD"])
    assert result.exit_code == 1 and "--log-level must be one of" in result.output


def test_risk_and_costs_sections_are_shared():
    from kronos_trader.config import ConfigError, parse_settings

    legacy = parse_settings({"backtest": {"commission": 0.002, "stop_loss": 0.01}})
    assert legacy.costs.commission == 0.002 and legacy.risk.stop_loss == 0.01
    shared = parse_settings({"costs": {"commission": 0.003}, "risk": {"take_profit": 0.2}})
    assert shared.backtest.commission == 0.003 and shared.backtest.take_profit == 0.2
    assert parse_settings(shared.model_dump(mode="json")).costs == shared.costs
    with pytest.raises(ConfigError, match="backtest.commission differs from costs"):
        parse_settings({"costs": {"commission": 0.003}, "backtest": {"commission": 0.001}})


def test_too_little_history_is_reported_without_pointless_retries(env, server):
    runner, store = runner_for(env, "short", sleep=lambda s: pytest.fail("no retry can add history"))
    (report,) = runner.run_cycle(now=env["candles"].index[5] + pd.Timedelta(minutes=1, seconds=2))
    assert report.decisions == 0 and report.attempts == 1 and report.final == 1
    assert "6 candles up to" in report.undecided[0] and "< lookback 16" in report.undecided[0]

# ---------------------------------------------------------------------- settle waste (issue 21)
#: two books of one pair (the fake exchange lists one market): settled together by `_settle`
TWO_BOOKS = {"pairs": [{"symbol": "BTC/USDT", "timeframe": "1m"}, {"symbol": "BTC/USDT", "timeframe": "3m"}]}


class Reads(dict):
    """Candle frames by book that note which books were read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read: list = []

    def get(self, key, default=None):
        self.read.append(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.read.append(key)
        return super().__getitem__(key)


def lookups(server, client_order_id: str) -> list:
    return [r for r in server.requests_to(ORDER, "GET") if r.params.get("origClientOrderId") == client_order_id]


def test_an_order_of_a_pair_no_longer_configured_is_looked_up_once_per_settle(env, server):
    runner, store = runner_for(env, "orphan", live=True, paper=TWO_BOOKS, not_found_grace=pd.Timedelta(hours=1))
    try:
        # an order of a book the config no longer lists (BTC/USDT 5m), sent and not settled
        bar = pd.Timestamp(env["times"][0]).floor("min")
        cid = f"kt{runner.run_id[:8]}-BTCUSDT-orphan-b"
        store.record_decisions(runner.run_id, [SignalRecord("BTC/USDT", "5m", bar, 0.5, "earlier config")],
                               [OrderRecord(cid, "BTC/USDT", "5m", bar, "buy", 0.001, "new", "earlier config")])
        store.update_order_status(cid, "sent")
        runner.broker.load()
        assert runner.broker.pending[cid].book not in runner.books and len(runner.books) == 2
        server.clear_requests()
        runner._settle(list(runner.books.values()), {}, bar)
        assert len(lookups(server, cid)) == 1  # was once per configured book
        assert runner.broker.pending[cid].status == "unknown"  # not found: asked again at the next settle
        runner._settle(list(runner.books.values()), {}, bar)
        assert len(lookups(server, cid)) == 2
    finally:
        runner.close()


def test_the_exchange_broker_never_reads_the_candles(env, server):
    runner, _ = runner_for(env, "frames-live", live=True, paper=TWO_BOOKS)
    try:
        frames = Reads({book: env["candles"] for book in runner.books})
        runner._settle(list(runner.books.values()), frames, env["candles"].index[-1])
        assert frames.read == []  # the runner sliced one frame per book for it
    finally:
        runner.close()


def test_the_paper_broker_reads_the_candles_of_books_with_an_order_only(env, server):
    runner, store = runner_for(env, "frames-paper")
    try:
        runner.run_cycle(now=env["times"][0])
        (book,) = runner.books
        (order,) = runner.broker.pending.values()
        frames = Reads({book: env["candles"]})
        assert runner._settle(list(runner.books.values()), frames, order.bar_time) == 1
        assert frames.read == [book]
        frames.read.clear()
        assert runner._settle(list(runner.books.values()), frames, order.bar_time) == 0
        assert frames.read == []  # nothing pending: nothing to fill
        assert store.load_orders(runner.run_id)["status"].tolist() == ["filled"]
    finally:
        runner.close()


def test_the_start_up_balance_check_runs_once(env, server, monkeypatch):
    first, store = runner_for(env, "balances-once", live=True)
    first.run_cycle(now=env["times"][0])
    first.close()
    assert store.load_fills(first.run_id).shape[0] == 1
    server.balances["USDT"][0] += 100.0  # a deposit the run's records do not explain
    real, checks = audit.balance_gaps, []

    def counted(store_, run_id):
        checks.append(run_id)
        return real(store_, run_id)

    monkeypatch.setattr(audit, "balance_gaps", counted)
    runner, store = runner_for(env, "balances-once", live=True, db=str(store.url))
    try:
        assert checks == [runner.run_id]  # was twice: when the broker opened and after the orders settled
        gaps = [m for m in events(store) if m.startswith("balance reconciliation: USDT")]
        assert len(gaps) == 1, gaps
    finally:
        runner.close()


def test_only_the_exchange_broker_keeps_lost_orders(env, server):
    assert "lost" not in getattr(Broker, "__annotations__", {})
    runner, _ = runner_for(env, "lost-paper")
    try:
        assert not hasattr(runner.broker, "lost") and runner.broker.take_lost() == []
    finally:
        runner.close()
