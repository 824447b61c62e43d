"""The skill gate in a live replay through the local exchange (real ccxt client): it opens and
closes at the same bars as in the backtest, survives a restart, records why it closed, and
notifies a local webhook through apprise."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pandas as pd
import pytest
from fake_exchange.helpers import fast_client
from sqlalchemy import select
from test_live_support import RUN_ID, cycle_times, make_server, series, settings_for

from kronos_trader.backtest.runner import run_backtest
from kronos_trader.config import parse_settings
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.live import LiveRunner
from kronos_trader.live.gate_state import gate_status
from kronos_trader.store import Event, open_store

BARS = 80
GATE = {"rule": "crps_skill", "window": 5, "step": 1}


class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def webhook():
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"json://127.0.0.1:{server.server_port}/gate"
    server.shutdown()


def gated(model_dir, url, db):
    raw = settings_for(model_dir, url, db, notify_urls_env="KT_TEST_NOTIFY").model_dump(mode="json")
    raw["strategy"]["gate"] = GATE
    return parse_settings(raw)


@pytest.fixture(scope="module")
def replay(tiny_model_dir, tmp_path_factory, webhook):
    tmp = tmp_path_factory.mktemp("gate")
    server = make_server(BARS)
    mp = pytest.MonkeyPatch()
    mp.setenv("KT_TEST_NOTIFY", webhook)
    try:
        candles = series(server)
        settings = gated(tiny_model_dir, server.url, f"sqlite:///{tmp / 'live.db'}")
        store = open_store(settings.database.url)
        model = load_model(tiny_model_dir, "cpu")
        bt = run_backtest(settings, candles, "BTC/USDT", "1m", None, progress=False,
                          service=ForecastService(model, settings.forecast, store, False))
        times = cycle_times(candles)
        half = len(times) // 2
        for part in (times[:half], times[half:]):  # a restart in the middle: the gate state is rebuilt
            runner = LiveRunner(settings, store=store, client=fast_client(server, keys=False), run_id=RUN_ID,
                                service=ForecastService(model, settings.forecast, store, False),
                                backoff=0.001).start()
            for now in part:
                server.set_now(now)
                runner.run_cycle()
            runner.close()  # the process ends (its lease is released)
        yield {"bt": bt, "store": store, "runner": runner, "url": settings.database.url}
    finally:
        mp.undo()
        server.stop()


def test_gate_opens_and_closes_at_the_same_bars_as_the_backtest(replay):
    bt = [(pd.Timestamp(s.bar_time), s.target_position, s.reason) for s in replay["bt"].journal.signals]
    live = replay["store"].load_signals(RUN_ID)
    got = [(pd.Timestamp(t), x, d["reason"]) for t, x, d in zip(live["bar_time"], live["target_position"],
                                                                 live["details"])]
    assert got == bt
    reasons = [r for _, _, r in bt]
    assert reasons[0].startswith("gate warming up")
    opened = [i for i, r in enumerate(reasons) if "[gate open" in r]
    closed = [i for i, r in enumerate(reasons) if r.startswith("gate closed")]
    assert opened and closed and max(closed) > min(opened)  # it opened and closed again
    assert all(x == 0 for _, x, r in bt if r.startswith("gate closed"))


def test_closing_is_recorded_shown_and_notified(replay):
    status = gate_status(replay["store"], RUN_ID)
    assert status["BTC/USDT"].message.startswith("skill gate ")
    with replay["store"].session(readonly=True) as s:
        events = list(s.scalars(select(Event).where(Event.run_id == RUN_ID, Event.message.like("skill gate%"))))
    closes = [e for e in events if e.message.startswith("skill gate closed")]
    assert closes and all(e.level == "warning" and "CRPS skill" in e.message for e in closes)
    assert any(e.message.startswith("skill gate open") and e.level == "info" for e in events)
    bodies = [m.get("message", "") for m in Hook.received]
    assert len(bodies) == len(closes) and all("skill gate closed" in b for b in bodies)
    assert all("127.0.0.1" not in e.message for e in events)  # the destination is never written down


def test_status_command_shows_the_gate(replay, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from kronos_trader.cli import app

    monkeypatch.chdir(tmp_path)  # no config.yaml here
    result = CliRunner().invoke(app, ["status", "--db", replay["url"], "--run-id", RUN_ID])
    assert result.exit_code == 0, result.output
    line = next(l for l in result.output.splitlines() if "skill gate" in l)
    latest = gate_status(replay["store"], RUN_ID)["BTC/USDT"].message
    assert line.startswith("BTC/USDT: " + latest[:30])
