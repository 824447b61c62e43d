"""Live trading round trips through the local Binance-protocol server with the real ccxt
client and the exchange's default 0.1% fee (taken from the base asset on buys): every buy
and sell fills, also across a kill -9 while an order is in flight; the exchange's orders
are the database's orders and the account's base balance is the position in the database.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from fake_exchange.helpers import FAKE_API_KEY, FAKE_API_SECRET, KEY_ENV, SECRET_ENV
from kronos_trader.live import PaperBroker, audit_run
from kronos_trader.live.accounting import fill_deltas
from kronos_trader.store import Balance, Event, open_store
from test_live_support import cycle_times, live_settings, make_server, series

TESTS = Path(__file__).parent
RUN_ID = "40dd7e1c" + "0" * 24

CHILD = r"""
import json, os, signal, sys
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["tests"])
import pandas as pd
from kronos_trader.config import parse_settings
from kronos_trader.exchange import make_client
from kronos_trader.live import LiveRunner

settings = parse_settings(spec["settings"])
seen = {"n": 0}

def killer(name, **kw):
    seen["n"] += 1
    if seen["n"] == spec["kill_nth"]:
        os.kill(os.getpid(), signal.SIGKILL)

client = make_client("binance", api_url=settings.paper.api_url, api_key_env=spec["key_env"],
                     secret_env=spec["secret_env"], rate_limit_ms=1, timeout_ms=2000)
hooks = {spec["kill_at"]: killer} if spec["kill_at"] else {}
runner = LiveRunner(settings, client=client, live=True, run_id=spec["run_id"], backoff=0.001, retry_delay=0.0,
                    not_found_grace=pd.Timedelta(0), hooks=hooks).start()
for i, now in enumerate(spec["times"]):
    with open(spec["progress"], "w") as fh:
        fh.write(str(spec["first"] + i))
    runner.run_cycle(now=pd.Timestamp(now))
"""


def run_child(settings, times, first, kill_at, kill_nth, progress: Path) -> int:
    spec = {"settings": settings.model_dump(mode="json"), "run_id": RUN_ID, "times": [str(t) for t in times],
            "first": first, "kill_at": kill_at, "kill_nth": kill_nth, "progress": str(progress),
            "tests": str(TESTS), "key_env": KEY_ENV, "secret_env": SECRET_ENV}
    env = {**os.environ, KEY_ENV: FAKE_API_KEY, SECRET_ENV: FAKE_API_SECRET,
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stderr[-4000:])
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["order_answered", "order_in_flight"])
def test_round_trips_with_fees_and_a_kill_in_flight(tiny_model_dir, tmp_path, kill_at):
    """order_answered: the exchange filled the order, the process died before storing the
    answer. order_in_flight: it died just before sending: the order never reached the
    exchange, is found missing by several lookups, expires and the position is decided
    again (not sent late)."""
    server = make_server(bars=52)
    server.balances["BTC"] = [0.0, 0.0]  # the account holds only what the run bought
    try:
        times = cycle_times(series(server))
        settings = live_settings(tiny_model_dir, server.url, f"sqlite:///{tmp_path / 'live.db'}",
                                 missed_candles="catch_up")
        progress = tmp_path / "progress"
        first = 0
        rc = run_child(settings, times, 0, kill_at, 5, progress)
        assert rc == -signal.SIGKILL  # killed while the 5th order was in flight
        first = int(progress.read_text())
        assert run_child(settings, times[first:], first, None, 0, progress) == 0

        store = open_store(settings.database.url)
        orders = store.load_orders(RUN_ID)
        fills = store.load_fills(RUN_ID)
        # no refusal: every order the exchange saw filled, nothing rejected
        assert "rejected" not in set(orders["status"])
        with store.session(readonly=True) as s:
            messages = [e.message for e in s.scalars(select(Event).where(Event.run_id == RUN_ID))]
        assert not [m for m in messages if "refused" in m or "InsufficientFunds" in m or "insufficient" in m]
        expired = orders[orders["status"] == "expired"]
        assert len(expired) == (1 if kill_at == "order_in_flight" else 0)
        filled = orders[orders["status"] == "filled"]
        assert len(filled) == len(orders) - len(expired)
        buys, sells = (filled["side"] == "buy").sum(), (filled["side"] == "sell").sum()
        assert buys >= 12 and sells >= 12  # round trips, alternating
        assert list(filled.sort_values("bar_time")["side"])[:24] == ["buy", "sell"] * 12

        # exchange orders = database orders (ids, amounts, fills)
        ours = {o["clientOrderId"]: o for o in server.orders.values() if o["clientOrderId"].startswith("kt40dd7e1c")}
        assert set(ours) == set(filled["client_order_id"])
        assert all(o["status"] == "FILLED" for o in ours.values())
        for row in filled.to_dict("records"):
            o = ours[row["client_order_id"]]
            assert row["exchange_order_id"] == str(o["orderId"]) and row["amount"] == pytest.approx(float(o["origQty"]))
            got = fills[fills["order_id"] == row["id"]]
            assert got["amount"].sum() == pytest.approx(float(o["executedQty"]))
            assert set(got["fee_currency"]) == {"BTC" if row["side"] == "buy" else "USDT"}

        # base balance = position, net of the fees taken in BTC
        with store.session(readonly=True) as s:
            opening = {b.currency: b.opening for b in s.scalars(select(Balance).where(Balance.run_id == RUN_ID))}
        broker = PaperBroker(store, RUN_ID, "USDT", {}, commission=0.0, slippage=0.0)
        broker.load()
        position = broker.position(("BTC/USDT", "1m")).size
        exchange_btc = sum(server.balances["BTC"])
        assert exchange_btc - opening["BTC"] == pytest.approx(position, abs=1e-9)
        by_id = dict(zip(orders["id"], zip(orders["symbol"], orders["side"])))
        usdt = sum(fill_deltas(*by_id[f["order_id"]], f["amount"], f["price"], f["fee"], f["fee_currency"])["USDT"]
                   for f in fills.to_dict("records"))
        assert sum(server.balances["USDT"]) - opening["USDT"] == pytest.approx(usdt, rel=1e-9, abs=1e-6)
        assert audit_run(store, RUN_ID) == []
    finally:
        server.stop()
