"""Backtest <-> live parity: the runner replaying a series through the fake exchange (real
ccxt.binance client, the server clock advanced one candle per cycle) produces exactly the
backtest's signals and orders."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fake_exchange.helpers import fast_client
from kronos_trader.backtest.runner import run_backtest
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.live import LiveRunner, audit_run
from kronos_trader.store import open_store
from test_live_support import LOOKBACK, RUN_ID, cycle_times, make_server, series, settings_for


@pytest.fixture(scope="module")
def replay(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    server = make_server()
    try:
        candles = series(server)
        settings = settings_for(tiny_model_dir, server.url, f"sqlite:///{tmp / 'live.db'}")
        store = open_store(settings.database.url)
        model = load_model(tiny_model_dir, "cpu")
        # the backtest, batched; its forecasts land in the store the runner will use
        bt = run_backtest(settings, candles, "BTC/USDT", "1m", None, progress=False,
                          service=ForecastService(model, settings.forecast, store, False))
        service = ForecastService(model, settings.forecast, store, False)
        runner = LiveRunner(settings, store=store, client=fast_client(server, keys=False), run_id=RUN_ID,
                            service=service, backoff=0.001, retry_delay=0.0).start()
        reports = []
        for now in cycle_times(candles):
            server.set_now(now)  # the exchange's clock: the runner reads "now" from it
            reports.extend(runner.run_cycle())
        yield {"candles": candles, "store": store, "reports": reports, "bt": bt, "service": service,
               "model": model, "settings": settings}
    finally:
        server.stop()


def test_live_windows_are_the_backtest_windows(replay):
    # a stored forecast is only reused for a bit-identical window (hash of values and times)
    assert replay["service"].computed == 0
    assert replay["service"].reused == len(replay["candles"]) - LOOKBACK + 1


def test_forecasts_do_not_depend_on_the_batch(replay):
    """A window forecast on its own (as a live cycle does) equals the batched backtest one."""
    candles, store = replay["candles"], replay["store"]
    fresh = ForecastService(replay["model"], replay["settings"].forecast, None, False)
    signals = store.load_signals(RUN_ID).iloc[[0, -1]]
    stored = {f.window_end: f for f in store.load_forecasts("BTC/USDT", "1m")}
    for bar_time in signals["bar_time"]:
        position = candles.index.get_loc(pd.Timestamp(bar_time) - pd.Timedelta(minutes=1))
        alone = fresh.forecast_at(candles, [position], "BTC/USDT", "1m")[position]
        payload = stored[pd.Timestamp(bar_time).to_pydatetime()].payload
        assert np.array_equal(np.asarray(payload["p_up"]), np.round(alone.p_up, 6))
        assert np.array_equal(np.asarray(payload["mean"]), alone.mean)  # already at the stored precision


def test_signals_match_the_backtest(replay):
    bt_signals = [(pd.Timestamp(s.bar_time), s.target_position, s.reason) for s in replay["bt"].journal.signals]
    live = replay["store"].load_signals(RUN_ID)
    live_signals = [(pd.Timestamp(t), x, d["reason"]) for t, x, d in
                    zip(live["bar_time"], live["target_position"], live["details"])]
    assert len(bt_signals) == len(replay["candles"]) - LOOKBACK + 1
    assert live_signals == bt_signals
    reasons = " ".join(r for _, _, r in live_signals)
    assert "short" in reasons and "long" in reasons and "stop-loss" in reasons  # the scenario covers these


def test_orders_match_the_backtest(replay):
    bt_orders = replay["bt"].journal.orders
    live = replay["store"].load_orders(RUN_ID).sort_values("bar_time")
    step = 0.00001
    assert len(bt_orders) >= 6, "the scenario should trade"
    # an order decided at the last bar is still pending: it fills at the next, unseen bar
    assert set(live[live["status"] == "sent"]["bar_time"]) <= {live["bar_time"].max()}
    done = live[live["status"] != "sent"]
    assert [(pd.Timestamp(o.bar_time), o.side, o.status) for o in bt_orders] == \
        [(pd.Timestamp(t), side, status) for t, side, status in zip(done["bar_time"], done["side"], done["status"])]
    for o, amount in zip(bt_orders, done["amount"]):
        assert abs(o.amount - amount) <= 2 * step, (o, amount)  # live amounts are truncated to the step
        assert amount == round(amount, 5)


def test_fills_and_equity_match_the_backtest(replay):
    bt = replay["bt"]
    fills = replay["store"].load_fills(RUN_ID)
    assert [pd.Timestamp(f["ts"]) for f in bt.journal.fills] == list(fills["ts"])  # next bar's open
    for f, price in zip(bt.journal.fills, fills["price"]):
        assert price == pytest.approx(f["price"], abs=0.006)  # live prices are rounded to the 0.01 tick
    equity = replay["store"].load_equity(RUN_ID)["equity"]
    bt_equity = bt.equity["equity"].reindex(equity.index)
    assert (equity - bt_equity).abs().max() < 1.0  # rounding of amounts and prices only


def test_run_is_consistent(replay):
    assert audit_run(replay["store"], RUN_ID) == []
    assert all(not r.skipped for r in replay["reports"])
    assert replay["store"].last_errors(RUN_ID) == {}


def test_parity_with_a_forecast_every_third_bar(tiny_model_dir, tmp_path):
    """forecast.every > 1: the live runner forecasts and decides on the same bars as the
    backtest (phase from the first decision bar) and places the same orders."""
    server = make_server()
    try:
        candles = series(server)
        base = settings_for(tiny_model_dir, server.url, f"sqlite:///{tmp_path / 'every.db'}")
        raw = base.model_dump(mode="json")
        raw["forecast"]["every"] = 3
        from kronos_trader.config import parse_settings

        settings = parse_settings(raw)
        store = open_store(settings.database.url)
        model = load_model(tiny_model_dir, "cpu")
        bt = run_backtest(settings, candles, "BTC/USDT", "1m", None, progress=False,
                          service=ForecastService(model, settings.forecast, store, False))
        runner = LiveRunner(settings, store=store, client=fast_client(server, keys=False), run_id=RUN_ID,
                            service=ForecastService(model, settings.forecast, store, False), backoff=0.001,
                            retry_delay=0.0).start()
        for now in cycle_times(candles):
            server.set_now(now)
            runner.run_cycle()
        live = store.load_signals(RUN_ID)
        bt_signals = [(pd.Timestamp(s.bar_time), s.target_position, s.reason) for s in bt.journal.signals]
        live_signals = [(pd.Timestamp(t), x, d["reason"]) for t, x, d in
                        zip(live["bar_time"], live["target_position"], live["details"])]
        assert len(live_signals) == len(range(0, len(candles) - LOOKBACK + 1, 3))  # every third bar
        assert live_signals == bt_signals
        orders = store.load_orders(RUN_ID).sort_values("bar_time")
        done = orders[orders["status"] != "sent"]
        assert [(pd.Timestamp(o.bar_time), o.side, o.status) for o in bt.journal.orders] == \
            [(pd.Timestamp(t), s, st) for t, s, st in zip(done["bar_time"], done["side"], done["status"])]
        assert len(done) >= 2
        assert audit_run(store, RUN_ID) == []
    finally:
        server.stop()


def test_replay_of_a_paper_run_has_no_difference(replay, tmp_path):
    """`kronos-trader replay RUN_ID`: the run's stored candles through the backtest engine
    with its own settings give the same decisions, targets and orders at every bar."""
    from typer.testing import CliRunner

    from kronos_trader.backtest.replay import replay_run
    from kronos_trader.cli import app

    store = replay["store"]
    assert replay_run(store, RUN_ID, service=replay["service"]) == []
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {replay['settings'].database.url}\n")
    result = CliRunner().invoke(app, ["replay", RUN_ID, "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "no difference" in result.output


def test_replay_names_where_a_run_parts_from_the_backtest(replay, tmp_path):
    """A copy of the run where one decision is missing and one order amount was changed."""
    import sqlite3

    from kronos_trader.backtest.replay import replay_run

    path = tmp_path / "parted.db"
    with sqlite3.connect(replay["settings"].database.url.removeprefix("sqlite:///")) as src, \
            sqlite3.connect(path) as dst:
        src.backup(dst)  # WAL included
    store = open_store(f"sqlite:///{path}")
    signals = store.load_signals(RUN_ID)
    orders = store.load_orders(RUN_ID).sort_values("bar_time")
    missed = pd.Timestamp(signals["bar_time"].iloc[3])
    changed = orders.iloc[-2]["client_order_id"]
    from sqlalchemy import delete, update

    from kronos_trader.store import Order, Signal

    with store.session() as s:
        for model in (Order, Signal):
            s.execute(delete(model).where(model.run_id == RUN_ID, model.bar_time == missed.to_pydatetime()))
        s.execute(update(Order).where(Order.client_order_id == changed).values(amount=Order.amount * 1.5))
    found = replay_run(store, RUN_ID, service=replay["service"])
    assert found and found[0].bar_time == missed and "missed candle" in found[0].reason
    assert any(d.what == "order" and d.bar_time == pd.Timestamp(orders.iloc[-2]["bar_time"]) for d in found)
