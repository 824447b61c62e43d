"""Injected exchange faults: the runner survives every one, the database stays consistent,
and once the fault clears the run ends exactly where an undisturbed run does (transient
faults are retried with backoff; persistent ones skip the pair or the cycle with an
event, and the next cycle catches up)."""
from __future__ import annotations

import pytest

from fake_exchange.helpers import fast_client
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.live import LiveRunner, audit_run
from kronos_trader.store import Event, open_store
from test_live_support import RUN_ID, copy_db, cycle_times, forecast_template, make_server, run_state, series, settings_for

CYCLES = 6      # decisions at cycles 0, 1, 4, 5 trade
FAULT_AT = 4    # the fault hits a cycle that trades
KLINES = "/api/v3/klines"
TIME = "/api/v3/time"


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    server = make_server()
    try:
        template = forecast_template(tiny_model_dir, server, tmp)
        times = cycle_times(series(server))[:CYCLES]
        yield {"server": server, "template": template, "tmp": tmp, "times": times, "model_dir": tiny_model_dir}
    finally:
        server.clear_faults()
        server.stop()


def replay(env, name: str, fault: tuple | None = None):
    server = env["server"]
    server.clear_faults()
    settings = settings_for(env["model_dir"], server.url, copy_db(env["template"], env["tmp"] / f"{name}.db"))
    store = open_store(settings.database.url)
    service = ForecastService(load_model(env["model_dir"], "cpu"), settings.forecast, store, False)
    runner = LiveRunner(settings, store=store, client=fast_client(server, keys=False), run_id=RUN_ID,
                        service=service, retries=2, backoff=0.001, retry_delay=0.0).start()
    reports = []
    for i, now in enumerate(env["times"]):
        server.set_now(now)
        if fault is not None and i == FAULT_AT:
            kind, count, path, kwargs = fault
            server.inject(kind, count=count, path=path, **kwargs)
        reports.append(runner.run_cycle())  # never raises
    server.clear_faults()
    with store.session(readonly=True) as s:
        events = [(e.level, e.message) for e in s.query(Event).filter(Event.run_id == RUN_ID)]
    return store, reports, events


@pytest.fixture(scope="module")
def baseline(env):
    store, reports, events = replay(env, "baseline")
    assert not [e for e in events if e[0] != "info"]
    state = run_state(store, RUN_ID)
    assert len(state["orders"]) >= 4
    return state


FAULTS = {
    # transient: retried with backoff inside the cycle
    "timeout": (("timeout", 1, KLINES, {}), "RequestTimeout"),
    "rate_limit_429": (("rate_limit", 1, KLINES, {}), "429"),
    "ddos_418": (("ddos", 1, KLINES, {}), "418"),
    "unavailable_503": (("unavailable", 2, KLINES, {}), "ExchangeNotAvailable"),
    "server_error_500": (("server_error", 1, KLINES, {}), "ExchangeNotAvailable"),
    "malformed_json": (("malformed_json", 1, KLINES, {}), "BadResponse"),
    "empty_body": (("empty_body", 1, KLINES, {}), "BadResponse"),
    "time_unavailable": (("unavailable", 1, TIME, {}), "fetch_time attempt 1"),
    "clock_skew_ahead": (("clock_skew", 1, None, {"skew_ms": 5_000}), None),
    # persistent within the cycle: the pair / the cycle is skipped, the next one catches up
    "server_error_persistent": (("server_error", 3, KLINES, {}), "candles for 1m skipped"),
    "empty_klines_persistent": (("empty_list", 2, KLINES, {}), "not available from the exchange yet"),
    "time_down": (("unavailable", 3, TIME, {}), "cycle skipped: cannot read the clock"),
    "clock_skew_behind": (("clock_skew", 1, None, {"skew_ms": -90_000}), "catching up 1"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_runner_survives_fault(env, baseline, name):
    fault, expected_event = FAULTS[name]
    store, reports, events = replay(env, name, fault)
    assert env["server"].requests  # the fault was served
    assert audit_run(store, RUN_ID) == []
    assert not [o for o in store.open_orders(RUN_ID) if o.status == "new"]
    if expected_event is not None:
        assert any(expected_event in message for _, message in events), events
    assert run_state(store, RUN_ID) == baseline
