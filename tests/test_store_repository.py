"""Writers are idempotent, constraints hold, data round-trips (SQLite and PostgreSQL)."""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from kronos_trader.store import (
    Balance,
    Candle,
    EquitySnapshot,
    Event,
    Fill,
    Forecast,
    IllegalTransition,
    Order,
    Run,
    Signal,
    StoreError,
    Trade,
    open_store,
)

ALL_MODELS = (Run, Candle, Forecast, Signal, Order, Fill, EquitySnapshot, Balance, Trade, Event)
T0 = datetime(2024, 1, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kt.db'}"
    else:
        url = request.getfixturevalue("fresh_pg_url")
    st = open_store(url)
    yield st
    st.close()


def counts(st) -> dict[str, int]:
    with st.session(readonly=True) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) for m in ALL_MODELS}


def candles(n: int, start="2024-01-01", freq="1h", tz="UTC", seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=n, freq=freq, tz=tz)
    close = 100 + rng.standard_normal(n).cumsum()
    return pd.DataFrame(
        {"open": close + 0.1, "high": close + 1, "low": close - 1, "close": close,
         "volume": rng.random(n) * 10, "amount": rng.random(n) * 1000},
        index=idx,
    )


def forecast_row(data_hash: str, settings_hash="s1", model_id="kronos-small@abc", **kw):
    row = dict(model_id=model_id, data_hash=data_hash, settings_hash=settings_hash,
               symbol="BTC/USDT", timeframe="1h", window_end=T0, horizon=3, sample_count=8,
               seed=1, payload={"mean": [1.0, 2.0, 3.0], "p_up": [0.5, 0.6, float("nan")]})
    row.update(kw)
    return row


def write_everything(st, run_id: str) -> None:
    """Call every idempotent writer once with fixed inputs."""
    st.create_run("paper", "demo", {"symbols": ["BTC/USDT"], "when": T0,
                                    "x": np.float64(1.5)}, "abc123", run_id=run_id)
    st.upsert_candles("binance", "BTC/USDT", "1h", candles(50))
    st.add_forecasts([forecast_row("h1"), forecast_row("h2")])
    fid = st.get_forecasts("kronos-small@abc", "s1", ["h1"])["h1"].id
    st.record_signal(run_id, "BTC/USDT", "1h", T0, 0.5, forecast_id=fid, details={"p_up": 0.6})
    order = st.record_order(run_id, "cid-1", "BTC/USDT", "1h", T0, "buy", 0.01, reason="signal")
    replay = not any(o.client_order_id == "cid-1" for o in st.open_orders(run_id))
    if not replay:  # status moves are not idempotent: the state machine refuses filled -> sent
        st.update_order_status("cid-1", "sent", exchange_order_id="ex-1")
    st.record_fill(order.id, 0, T0 + timedelta(minutes=1), 42000.0, 0.004, fee=0.1,
                   fee_currency="USDT")
    st.record_fill(order.id, 1, T0 + timedelta(minutes=2), 42010.0, 0.006, fee=0.1,
                   fee_currency="USDT")
    st.update_order_status("cid-1", "filled")  # filled -> filled is allowed
    st.record_equity(run_id, T0, 1000.0, 580.0, 420.0, {"pos": 0.01})
    st.record_equity_many(run_id, pd.DataFrame(
        {"equity": [1001.0, 1002.0], "cash": [580.0, 580.0], "position_value": [421.0, 422.0]},
        index=pd.DatetimeIndex([T0 + timedelta(hours=1), T0 + timedelta(hours=2)], name="ts")))
    st.set_balance(run_id, "USDT", 580.0, 0.0)
    st.set_balance(run_id, "BTC", 0.01, 0.0)
    st.record_trades(run_id, [dict(symbol="BTC/USDT", entry_time=T0, exit_time=T0 + timedelta(hours=5),
                                   side="long", size=0.01, entry_price=42000, exit_price=43000,
                                   pnl=10.0, pnl_pct=0.0238, fees=0.2)])
    st.finish_run(run_id, "finished", {"sharpe": np.float64(1.2), "final": 1002.0})


def test_every_writer_is_idempotent(store):
    write_everything(store, "r" * 32)
    first = counts(store)
    write_everything(store, "r" * 32)
    assert counts(store) == first
    assert first == {"runs": 1, "candles": 50, "forecasts": 2, "signals": 1, "orders": 1,
                     "fills": 2, "equity_snapshots": 3, "balances": 2, "trades": 1, "events": 0}


def test_run_lifecycle_and_json(store):
    rid = store.create_run("backtest", "bt", {"when": T0, "arr": np.arange(3)}, "v1")
    other = store.create_run("paper", "p", None, None)
    assert len(rid) == 32 and rid != other
    run = store.get_run(rid)
    assert run.status == "running" and run.finished_at is None
    assert run.config == {"when": T0.isoformat(), "arr": [0, 1, 2]}
    store.finish_run(rid, "failed", {"ret": float("nan"), "n": np.int64(3)})
    run = store.get_run(rid)
    assert run.status == "failed" and run.finished_at is not None
    assert run.summary == {"ret": None, "n": 3}
    assert [r.id for r in store.list_runs("backtest")] == [rid]
    assert {r.id for r in store.list_runs()} == {rid, other}
    with pytest.raises(StoreError, match="unknown run"):
        store.finish_run("nope")
    with pytest.raises(ValueError):
        store.create_run("simulation", "x")


def test_candles_round_trip_and_upsert(store):
    df = candles(48, tz="Europe/Berlin")
    df.loc[df.index[3], "amount"] = np.nan
    assert store.upsert_candles("file:btc.csv", "BTC/USDT", "1h", df) == 48
    out = store.load_candles("file:btc.csv", "BTC/USDT", "1h")
    assert out.index.tz is None and out.index.name == "ts"
    assert (out.index == df.index.tz_convert("UTC").tz_localize(None)).all()
    assert list(out.columns) == ["open", "high", "low", "close", "volume", "amount"]
    np.testing.assert_allclose(out[["open", "high", "low", "close", "volume"]].to_numpy(),
                               df[["open", "high", "low", "close", "volume"]].to_numpy())
    assert math.isnan(out["amount"].iloc[3])

    # inclusive bounds, aware bounds converted to UTC
    start = df.index[10].tz_convert("UTC")
    part = store.load_candles("file:btc.csv", "BTC/USDT", "1h", start, df.index[19])
    assert len(part) == 10 and part.index[0] == start.tz_localize(None)

    # re-upsert with changed values updates in place; duplicates keep the last row
    changed = df.iloc[:2].copy()
    changed["close"] = [1.0, 2.0]
    dup = pd.concat([changed.iloc[[0]].assign(close=-5.0), changed])
    store.upsert_candles("file:btc.csv", "BTC/USDT", "1h", dup)
    out = store.load_candles("file:btc.csv", "BTC/USDT", "1h")
    assert len(out) == 48 and list(out["close"].iloc[:2]) == [1.0, 2.0]

    # other keys are separate series; empty result still has the right shape
    store.upsert_candles("binance", "BTC/USDT", "1h", df.iloc[:5])
    assert len(store.load_candles("binance", "BTC/USDT", "1h")) == 5
    empty = store.load_candles("binance", "ETH/USDT", "1h")
    assert empty.empty and isinstance(empty.index, pd.DatetimeIndex)

    with pytest.raises(ValueError, match="NaN"):
        store.upsert_candles("binance", "ETH/USDT", "1h", df.assign(close=np.nan))
    assert counts(store)["candles"] == 53


def test_candles_bulk_20k_rows_is_fast(store):
    df = candles(20_000, freq="1min")
    t = time.perf_counter()
    store.upsert_candles("binance", "BTC/USDT", "1m", df)
    store.upsert_candles("binance", "BTC/USDT", "1m", df)
    out = store.load_candles("binance", "BTC/USDT", "1m")
    assert len(out) == 20_000
    assert time.perf_counter() - t < 10


def test_forecasts_lookup_by_hash(store):
    store.add_forecasts([forecast_row("a"), forecast_row("b"), forecast_row("a", settings_hash="s2"),
                         forecast_row("a", model_id="kronos-base@def")])
    got = store.get_forecasts("kronos-small@abc", "s1", ["a", "b", "missing", "a"])
    assert set(got) == {"a", "b"}
    f = got["a"]
    assert (f.symbol, f.horizon, f.sample_count, f.seed, f.window_end) == ("BTC/USDT", 3, 8, 1, T0)
    assert f.payload == {"mean": [1.0, 2.0, 3.0], "p_up": [0.5, 0.6, None]}
    assert set(store.get_forecasts("kronos-small@abc", "s2", ["a", "b"])) == {"a"}
    assert store.get_forecasts("kronos-small@abc", "s1", []) == {}

    # existing keys are ignored, not overwritten
    store.add_forecasts([forecast_row("a", payload={"mean": [9.0]}), forecast_row("c")])
    assert store.get_forecasts("kronos-small@abc", "s1", ["a"])["a"].payload["mean"] == [1.0, 2.0, 3.0]
    assert counts(store)["forecasts"] == 5

    many = [forecast_row(f"h{i}", window_end=T0 + timedelta(hours=i)) for i in range(1200)]
    store.add_forecasts(many)
    assert len(store.get_forecasts("kronos-small@abc", "s1", [r["data_hash"] for r in many])) == 1200
    window = store.load_forecasts("BTC/USDT", "1h", T0 + timedelta(hours=10), T0 + timedelta(hours=12),
                                  model_id="kronos-small@abc")
    assert [f.data_hash for f in window] == ["h10", "h11", "h12"]


def test_orders_fills_and_reads(store):
    rid = store.create_run("paper", "p", {}, "v")
    aware = datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))  # == T0 UTC
    o = store.record_order(rid, "c1", "BTC/USDT", "1h", aware, "buy", 0.5, type="limit", price=100.0)
    assert (o.status, o.bar_time, o.type, o.price) == ("new", T0, "limit", 100.0)
    again = store.record_order(rid, "c1", "BTC/USDT", "1h", T0, "sell", 9.0)
    assert (again.id, again.side, again.amount) == (o.id, "buy", 0.5)
    store.record_order(rid, "c2", "ETH/USDT", "1h", T0, "sell", 1.0)
    assert {x.client_order_id for x in store.open_orders(rid)} == {"c1", "c2"}

    store.update_order_status("c1", "sent")
    upd = store.update_order_status("c1", "partially_filled", exchange_order_id="X1")
    assert upd.status == "partially_filled" and upd.exchange_order_id == "X1"
    assert upd.updated_at >= o.updated_at
    with pytest.raises(IllegalTransition, match="new -> canceled"):
        store.update_order_status("c2", "canceled")  # never sent: cannot be canceled
    store.update_order_status("c2", "expired", reason="timeout")
    assert [x.client_order_id for x in store.open_orders(rid)] == ["c1"]
    with pytest.raises(StoreError):
        store.update_order_status("nope", "filled")
    with pytest.raises(ValueError):
        store.update_order_status("c1", "exploded")
    store.update_order_status("c1", "filled")
    with pytest.raises(IllegalTransition, match="filled -> partially_filled"):
        store.update_order_status("c1", "partially_filled")  # a stale answer cannot reopen it

    f0 = store.record_fill(o.id, 0, T0, 100.0, 0.2, fee=0.01, fee_currency="USDT")
    assert store.record_fill(o.id, 0, T0, 999.0, 9.9).price == 100.0  # first one kept
    store.record_fill(o.id, 1, T0 + timedelta(seconds=5), 100.5, 0.3)
    assert f0.run_id == rid
    with pytest.raises(StoreError):
        store.record_fill(123456, 0, T0, 1.0, 1.0)

    fills = store.load_fills(rid)
    assert list(fills["seq"]) == [0, 1] and fills["ts"].dtype.kind == "M"
    orders = store.load_orders(rid)
    assert list(orders["client_order_id"]) == ["c1", "c2"]
    assert list(orders["status"]) == ["filled", "expired"]


def test_signals_equity_balances_trades_events(store):
    rid = store.create_run("backtest", "bt", {}, "v")
    s1 = store.record_signal(rid, "BTC/USDT", "1h", T0, 1.0, details={"p_up": 0.7})
    s2 = store.record_signal(rid, "BTC/USDT", "1h", T0, -1.0)
    assert s2.id == s1.id and s2.target_position == 1.0
    store.record_signal(rid, "BTC/USDT", "1h", T0 + timedelta(hours=1), 0.0)
    sig = store.load_signals(rid)
    assert list(sig["target_position"]) == [1.0, 0.0] and sig["details"].iloc[0] == {"p_up": 0.7}

    store.record_equity(rid, T0, 100.0, 100.0, 0.0)
    store.record_equity(rid, T0, 101.0, 50.0, 51.0, {"note": "replaced"})
    eq = store.load_equity(rid)
    assert list(eq.index) == [pd.Timestamp(T0)] and eq["equity"].iloc[0] == 101.0

    store.set_balance(rid, "USDT", 10.0, 1.0)
    store.set_balance(rid, "USDT", 12.0, 0.0)
    bal = store.load_balances(rid)
    assert bal[["currency", "free", "used"]].values.tolist() == [["USDT", 12.0, 0.0]]

    trades = pd.DataFrame([dict(symbol="BTC/USDT", entry_time=T0, exit_time=T0 + timedelta(hours=1),
                                side="long", size=1.0, entry_price=1.0, exit_price=2.0, pnl=1.0,
                                pnl_pct=1.0)])
    assert store.record_trades(rid, trades) == 1
    store.record_trades(rid, trades.assign(pnl=2.0))
    t = store.load_trades(rid)
    assert len(t) == 1 and t["pnl"].iloc[0] == 2.0 and t["fees"].iloc[0] == 0.0

    store.record_event(rid, "error", "old", symbol="BTC/USDT", ts=T0)
    store.record_event(rid, "error", "new", symbol="BTC/USDT", ts=T0 + timedelta(hours=1))
    store.record_event(rid, "warning", "ignored", symbol="BTC/USDT", ts=T0 + timedelta(hours=2))
    store.record_event(rid, "error", "eth", symbol="ETH/USDT", ts=T0)
    store.record_event(None, "error", "global")
    errs = store.last_errors(rid)
    assert {k: e.message for k, e in errs.items()} == {"BTC/USDT": "new", "ETH/USDT": "eth"}
    assert store.last_errors()[None].message == "global"
    with pytest.raises(ValueError):
        store.record_event(rid, "fatal", "x")


UNIQUE_CASES = {
    "candles": lambda rid: Candle(source="s", symbol="X", timeframe="1h", ts=T0, open=1, high=1,
                                  low=1, close=1),
    "forecasts": lambda rid: Forecast(model_id="m", data_hash="d", settings_hash="s", symbol="X",
                                      timeframe="1h", window_end=T0, horizon=1, sample_count=1,
                                      payload={}),
    "signals": lambda rid: Signal(run_id=rid, symbol="X", timeframe="1h", bar_time=T0,
                                  target_position=1),
    "orders": lambda rid: Order(run_id=rid, client_order_id="c", symbol="X", timeframe="1h",
                                bar_time=T0, side="buy", amount=1),
    "equity_snapshots": lambda rid: EquitySnapshot(run_id=rid, ts=T0, equity=1, cash=1,
                                                   position_value=0),
    "balances": lambda rid: Balance(run_id=rid, currency="USDT", free=1, used=0),
    "trades": lambda rid: Trade(run_id=rid, symbol="X", entry_time=T0, exit_time=T0, side="long",
                                size=1, entry_price=1, exit_price=1, pnl=0, pnl_pct=0),
}


def test_uniqueness_and_integrity_constraints_hold(store):
    rid = store.create_run("backtest", "bt", {}, "v")
    for table, make in UNIQUE_CASES.items():
        with store.session() as s:
            s.add(make(rid))
        with pytest.raises(IntegrityError):
            with store.session() as s:
                s.add(make(rid))
        assert counts(store)[table] == 1, table

    order = store.record_order(rid, "c-f", "X", "1h", T0, "buy", 1.0)
    with store.session() as s:
        s.add(Fill(order_id=order.id, run_id=rid, seq=0, ts=T0, price=1, amount=1))
    with pytest.raises(IntegrityError):
        with store.session() as s:
            s.add(Fill(order_id=order.id, run_id=rid, seq=0, ts=T0, price=2, amount=2))

    bad = [
        Signal(run_id="missing-run", symbol="X", timeframe="1h", bar_time=T0, target_position=0),
        Run(kind="simulation", name="x"),
        Order(run_id=rid, client_order_id="c-x", symbol="X", timeframe="1h", bar_time=T0,
              side="hold", amount=1),
        Event(level="debug", message="x"),
    ]
    for obj in bad:
        with pytest.raises(IntegrityError):  # foreign key / CHECK constraints
            with store.session() as s:
                s.add(obj)


def test_exception_in_session_rolls_everything_back(store):
    before = counts(store)
    with pytest.raises(RuntimeError, match="boom"):
        with store.session() as s:
            run = Run(kind="paper", name="half-written")
            s.add(run)
            s.flush()
            s.add(Event(run_id=run.id, level="info", message="x"))
            s.add(Candle(source="s", symbol="X", timeframe="1h", ts=T0, open=1, high=1, low=1,
                         close=1))
            s.flush()
            raise RuntimeError("boom")
    assert counts(store) == before

    # a failing statement inside a transaction also leaves nothing behind
    rid = store.create_run("paper", "p", {}, "v")
    before = counts(store)
    with pytest.raises(IntegrityError):
        with store.session() as s:
            s.add(EquitySnapshot(run_id=rid, ts=T0, equity=1, cash=1, position_value=0))
            s.flush()
            s.add(Signal(run_id="missing", symbol="X", timeframe="1h", bar_time=T0,
                         target_position=0))
    assert counts(store) == before


def test_order_state_machine_allows_only_its_moves():
    from kronos_trader.store import OrderStatus, transition

    legal = [("new", "sent"), ("sent", "unknown"), ("unknown", "filled"), ("sent", "open"),
             ("open", "partially_filled"), ("partially_filled", "filled"), ("new", "rejected"),
             ("new", "expired"), ("unknown", "expired"), ("filled", "filled")]
    for a, b in legal:
        assert transition(a, b) is OrderStatus(b)
    for a, b in [("filled", "open"), ("canceled", "filled"), ("new", "filled"), ("open", "sent"),
                 ("rejected", "new"), ("expired", "sent"), ("open", "rejected")]:
        with pytest.raises(IllegalTransition):
            transition(a, b)
