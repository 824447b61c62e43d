"""kill -9 in the middle of cycles, then restart: no order duplicated or lost, and the same
final state as an uninterrupted run.

The runner runs in a subprocess that SIGKILLs itself at a hook point (after orders are
stored as 'new' and before they are sent; inside a fill transaction before its commit;
after sending). Each restart resumes from the database; one restarts three candles late
and catches up. The fake exchange (in this process) has the whole series revealed; the
child passes each cycle's "now" explicitly, so candles are fetched as they were closed at
that time.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fake_exchange.helpers import fast_client
from kronos_trader.forecasting.models import load_model
from kronos_trader.forecasting.service import ForecastService
from kronos_trader.live import LiveRunner, audit_run
from kronos_trader.store import open_store
from test_live_support import RUN_ID, copy_db, cycle_times, forecast_template, make_server, run_state, series, settings_for

CHILD = r"""
import json, os, signal, sys
import pandas as pd
from kronos_trader.config import parse_settings
from kronos_trader.exchange import make_client
from kronos_trader.live import LiveRunner

spec = json.loads(sys.argv[1])
settings = parse_settings(spec["settings"])
counts = {}

def killer(name, **kw):
    if not (kw.get("orders") or kw.get("results")):
        return
    counts[name] = counts.get(name, 0) + 1
    if name == spec["kill_at"] and counts[name] == spec["kill_nth"]:
        os.kill(os.getpid(), signal.SIGKILL)

client = make_client("binance", api_url=settings.paper.api_url, rate_limit_ms=1, timeout_ms=2000)
runner = LiveRunner(settings, client=client, run_id=spec["run_id"], backoff=0.001, retry_delay=0.0,
                    hooks={name: killer for name in ("orders_new", "orders_sent", "fill_tx")}).start()
for i, now in enumerate(spec["times"]):
    with open(spec["progress"], "w") as fh:
        fh.write(str(spec["first"] + i))
    runner.run_cycle(now=pd.Timestamp(now))
"""


def run_child(settings, times, first, kill_at, kill_nth, progress: Path) -> tuple[int, int]:
    spec = {"settings": settings.model_dump(mode="json"), "run_id": RUN_ID, "times": [str(t) for t in times],
            "first": first, "kill_at": kill_at, "kill_nth": kill_nth, "progress": str(progress)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode, int(progress.read_text())


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restart")
    server = make_server()
    try:
        template = forecast_template(tiny_model_dir, server, tmp)
        candles = series(server)
        yield {"server": server, "times": cycle_times(candles), "template": template, "tmp": tmp,
               "model_dir": tiny_model_dir}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(setup):
    """The uninterrupted run, in this process."""
    settings = settings_for(setup["model_dir"], setup["server"].url,
                            copy_db(setup["template"], setup["tmp"] / "reference.db"))
    store = open_store(settings.database.url)
    service = ForecastService(load_model(setup["model_dir"], "cpu"), settings.forecast, store, False)
    runner = LiveRunner(settings, store=store, client=fast_client(setup["server"], keys=False), run_id=RUN_ID,
                        service=service, backoff=0.001).start()
    for now in setup["times"]:
        runner.run_cycle(now=now)
    assert service.computed == 0
    return run_state(store, RUN_ID)


def test_kill_9_during_cycles_then_restart(setup, reference):
    settings = settings_for(setup["model_dir"], setup["server"].url,
                            copy_db(setup["template"], setup["tmp"] / "killed.db"))
    times, progress = setup["times"], setup["tmp"] / "progress"
    store = open_store(settings.database.url)

    # 1. killed after the 2nd batch of orders is stored as 'new', before it is sent
    code, died = run_child(settings, times, 0, "orders_new", 2, progress)
    assert code == -signal.SIGKILL
    new = [o for o in store.open_orders(RUN_ID) if o.status == "new"]
    assert len(new) == 1, "the killed cycle left its order stored but unsent"
    assert store.get_run(RUN_ID).status == "running"

    # 2. restarted in the same candle; killed inside the 2nd fill transaction (before commit)
    code, died2 = run_child(settings, times[died:], died, "fill_tx", 2, progress)
    assert code == -signal.SIGKILL
    assert audit_run(store, RUN_ID) == []  # the killed transaction left nothing half-written

    # 3. restarted three candles late (missed candles are caught up); killed after sending
    code, died3 = run_child(settings, times[died2 + 3:], died2 + 3, "orders_sent", 1, progress)
    assert code == -signal.SIGKILL
    assert died3 > died2

    # 4. restarted, runs to the end
    code, _ = run_child(settings, times[died3:], died3, "none", 0, progress)
    assert code == 0

    state = run_state(store, RUN_ID)
    assert state["orders"] == reference["orders"]  # none duplicated, none lost, same amounts
    assert state["fills"] == reference["fills"]
    assert state["signals"] == reference["signals"]
    assert state["balances"] == reference["balances"]
    assert state["equity"] == reference["equity"]
    assert audit_run(store, RUN_ID) == []
    messages = [e.message for e in store.last_errors(RUN_ID).values()]
    assert messages == []
    recovered = open_store(settings.database.url).engine.connect().exec_driver_sql(
        "select message from events where message like 'recovered%' or message like 'catching up%'").fetchall()
    assert any("recovered 1 order" in m for (m,) in recovered) and any("catching up 3" in m for (m,) in recovered)
