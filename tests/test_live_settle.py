"""The live loop's settle step and start-up do no needless work (issue 21), counted against
the local Binance-protocol server with the real ccxt client and a real SQLite database: an
order of a pair no longer configured is looked up once per settle (not once per book), the
candles are read by the paper broker only, the start-up balance check runs once, and only
the exchange broker keeps lost orders."""
from __future__ import annotations

import pandas as pd
import pytest

from kronos_trader.live import audit
from kronos_trader.live.broker import Broker
from kronos_trader.records import OrderRecord, SignalRecord
from test_live_support import events, module_env, restored_server, runner_for

ORDER = "/api/v3/order"
#: two books of one pair (the fake exchange lists one market): settled together by `_settle`
TWO_BOOKS = {"pairs": [{"symbol": "BTC/USDT", "timeframe": "1m"}, {"symbol": "BTC/USDT", "timeframe": "3m"}]}


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    yield from module_env(tiny_model_dir, tmp_path_factory, "settle")


@pytest.fixture
def server(env):
    yield from restored_server(env)


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
