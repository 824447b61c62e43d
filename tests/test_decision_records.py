"""One record of a decided bar for backtests and live trading: the same decision made by
the backtest's PolicyStrategy and by the live decision step is the same record, and the
store's one writer (`Store.record_decisions`) stores the same rows for both."""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from kronos_trader.backtest.runner import run_backtest
from kronos_trader.decision import RiskLimits, load_policy
from kronos_trader.exchange import MarketRules
from kronos_trader.live.accounting import Account
from kronos_trader.live.persister import Persister
from kronos_trader.live.step import BookInput, Costs, decide_bar
from kronos_trader.records import OrderRecord, SignalRecord
from kronos_trader.store import open_store

BOOK = ("BTC/USDT", "1h")
RULES = MarketRules("BTC/USDT", "BTC", "USDT", None, None, None, None, None, None, None, None, None, None)
#: columns that name the run or the moment of writing, and the order's life after the decision
LIFECYCLE = ["id", "run_id", "created_at", "updated_at", "client_order_id", "exchange_order_id", "status"]


def test_a_backtest_bar_and_a_live_bar_store_the_same_decision(fast_settings, sample_candles):
    store = open_store(fast_settings.database.url)
    bt = run_backtest(fast_settings, sample_candles.iloc[:80], *BOOK, store, progress=False)
    # the first bar the backtest traded at: flat before it, so the account is its starting cash
    first = bt.journal.orders[0]
    signal = next(s for s in bt.journal.signals if s.bar_time == first.bar_time)
    assert all(s.target_position == 0 for s in bt.journal.signals if s.bar_time < first.bar_time)
    forecast = next(f for f in bt.forecasts.values() if f.window_end == first.bar_time)

    s = fast_settings
    policy = load_policy(s.strategy.name, s.strategy.params, s.strategy.gate)
    account = Account("USDT", {"USDT": s.backtest.cash})
    step = decide_bar(policy, RiskLimits(s.risk.stop_loss, s.risk.take_profit),
                      [BookInput(BOOK, RULES, 0.0, forecast)], account, {BOOK: forecast.last_close},
                      run_id="0" * 32, costs=Costs(s.costs.commission, s.costs.slippage), min_change=0.02)

    # the same record type, field for field (the backtest's order is named when stored)
    assert isinstance(signal, SignalRecord) and isinstance(first, OrderRecord)
    assert step.signals == [signal]
    [order] = step.orders
    assert order.status == "new" and first.status == "filled"
    assert replace(order, client_order_id="", status="filled", ref=first.ref) == first

    # ... written by the one writer into the same rows
    run_id = store.create_run("paper", "paper:test")
    persister = Persister(store, run_id)
    assert persister.record(step, first.bar_time, account, {BOOK: forecast.last_close}) == {order.client_order_id}
    signals = {r: store.load_signals(r) for r in (bt.run_id, run_id)}
    live_signal = signals[run_id].drop(columns=LIFECYCLE, errors="ignore")
    bt_signal = signals[bt.run_id][pd.to_datetime(signals[bt.run_id]["bar_time"]) == first.bar_time.tz_localize(None)]
    pd.testing.assert_frame_equal(live_signal.reset_index(drop=True),
                                  bt_signal.drop(columns=LIFECYCLE, errors="ignore").reset_index(drop=True))
    orders = {r: store.load_orders(r) for r in (bt.run_id, run_id)}
    bt_order = orders[bt.run_id][pd.to_datetime(orders[bt.run_id]["bar_time"]) == first.bar_time.tz_localize(None)]
    pd.testing.assert_frame_equal(orders[run_id].drop(columns=LIFECYCLE).reset_index(drop=True),
                                  bt_order.drop(columns=LIFECYCLE).reset_index(drop=True))
    assert set(bt_signal["details"].iloc[0]) >= {"reason", "p_up", "expected_return", "held_target", "equity",
                                                 "price"}


def test_the_writer_is_idempotent_and_names_new_orders(fast_settings):
    store = open_store(fast_settings.database.url)
    run_id = store.create_run("paper", "paper:test")
    bar = pd.Timestamp("2024-01-01 01:00", tz="UTC")
    signal = SignalRecord("BTC/USDT", "1h", bar, 0.5, "long", p_up=0.7, held_target=0.5, equity=100.0, price=10.0)
    order = OrderRecord("kt-1", "BTC/USDT", "1h", bar, "buy", 5.0, "new", "long")
    assert store.record_decisions(run_id, [signal], [order]) == {"kt-1"}
    assert store.record_decisions(run_id, [replace(signal, target_position=-1.0)], [order]) == set()
    stored = store.load_signals(run_id)
    assert list(stored["target_position"]) == [0.5]  # the first decision of a bar stays
    assert stored["details"].iloc[0] == {"reason": "long", "p_up": 0.7, "expected_return": None,
                                         "held_target": 0.5, "equity": 100.0, "price": 10.0}
    assert list(store.load_orders(run_id)["client_order_id"]) == ["kt-1"]


def test_a_backtest_with_thousands_of_orders_links_every_fill(fast_settings):
    """The writer looks stored orders up in parts: SQLite and PostgreSQL cap the bound
    parameters of one statement, and a long backtest names thousands of orders."""
    store = open_store(fast_settings.database.url)
    run_id = store.create_run("backtest", "bt:test")
    bars = pd.date_range("2024-01-01", periods=1200, freq="h", tz="UTC")
    orders = [OrderRecord(f"bt-{i}", "BTC/USDT", "1h", t, "buy", 1.0, "filled", "long", ref=i)
              for i, t in enumerate(bars)]
    fills = [{"client_order_id": o.client_order_id, "seq": 0, "ts": o.bar_time, "price": 10.0, "amount": 1.0,
              "fee": 0.01} for o in orders]
    signals = [SignalRecord("BTC/USDT", "1h", t, 0.5, "long") for t in bars]
    assert len(store.record_decisions(run_id, signals, orders, fills=fills)) == 1200
    assert len(store.load_fills(run_id)) == 1200 and len(store.load_signals(run_id)) == 1200
    assert store.record_decisions(run_id, signals, orders, fills=fills) == set()  # again: nothing new
    assert len(store.load_fills(run_id)) == 1200
