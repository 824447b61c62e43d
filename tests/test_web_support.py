"""Shared set-up for the web UI tests (no tests here): a tiny random Kronos pair allow-listed
as a local model directory, a SQLite store holding one real backtest run (run_backtest on
400 bars, lookback 64, horizon 8) and one seeded paper run, and helpers to build apps."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from factories import make_candles, save_tiny_pair

MODEL_ID = "local:0"  # the tiny pair: first (and only) entry of web.model_dirs
SYMBOL, TIMEFRAME, SOURCE = "BTC/USDT", "1h", "binance"
HOST = "http://127.0.0.1"


@contextmanager
def one_torch_thread():
    """The tiny model is ~10x faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=None)
def workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="kronos-web-tests-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@lru_cache(maxsize=None)
def tiny_pair() -> Path:
    return save_tiny_pair(workdir() / "tiny-pair", max_context=128)


def candles(n: int = 400, seed: int = 0) -> pd.DataFrame:
    frame = make_candles(n, seed=seed)
    frame.index.name = "timestamp"
    return frame


def settings(db_url: str | None = None, **web):
    from kronos_trader.config import parse_settings

    raw = {"model": {"name": str(tiny_pair()), "device": "cpu"},
           "forecast": {"lookback": 64, "horizon": 8, "sample_count": 2},
           "database": {"url": db_url or f"sqlite:///{workdir() / 'web.db'}"},
           "web": {"model_dirs": [str(tiny_pair())], **web}}
    return parse_settings(raw)


@lru_cache(maxsize=None)
def store():
    from kronos_trader.store import open_store

    return open_store(settings().database.url)


@lru_cache(maxsize=None)
def backtest_run_id() -> str:
    """A real backtest run in the shared store; its candles are stored too, so the report
    can draw them."""
    from kronos_trader.backtest.runner import run_backtest

    bars = candles(400)
    store().upsert_candles(SOURCE, SYMBOL, TIMEFRAME, bars)
    with one_torch_thread():
        result = run_backtest(settings(), bars, SYMBOL, TIMEFRAME, store(), progress=False, name="web-test")
    return result.run_id


@lru_cache(maxsize=None)
def paper_run_id(name: str = "paper-test") -> str:
    """A paper run seeded through the store API the paper trader writes with."""
    s = store()
    bars = candles(120, seed=3)
    bars["amount"] = bars["volume"] * bars["close"]
    s.upsert_candles(SOURCE, "ETH/USDT", TIMEFRAME, bars)
    config = {"paper": {"exchange": SOURCE, "live": False,
                        "pairs": [{"symbol": "ETH/USDT", "timeframe": TIMEFRAME}]}}
    run = s.create_run("paper", name, config)
    last = bars.index[-1]
    interval = pd.Timedelta("1h")
    window_end = last + interval
    horizon = 8
    mean = np.tile(bars[["open", "high", "low", "close", "volume", "amount"]].iloc[-1].to_numpy(), (horizon, 1))
    mean[:, 3] *= np.linspace(1.001, 1.02, horizon)
    payload = {"bar_open": last.isoformat(), "last_close": float(bars["close"].iloc[-1]),
               "mean": mean.round(6).tolist(),
               "quantiles": {q: (mean[:, 3] * f).round(6).tolist()
                             for q, f in (("0.05", 0.97), ("0.25", 0.99), ("0.5", 1.0), ("0.75", 1.01),
                                          ("0.95", 1.03))},
               "p_up": np.linspace(0.55, 0.7, horizon).round(4).tolist()}
    s.add_forecasts([{"model_id": "tiny@paper", "data_hash": "paper-window", "settings_hash": "s",
                      "symbol": "ETH/USDT", "timeframe": TIMEFRAME, "window_end": window_end, "horizon": horizon,
                      "sample_count": 4, "payload": payload}])
    fid = s.get_forecasts("tiny@paper", "s", ["paper-window"])["paper-window"].id
    s.record_signal(run, "ETH/USDT", TIMEFRAME, window_end - interval, 1.0, forecast_id=fid,
                    details={"reason": "long: p_up=0.70", "p_up": 0.7})
    order = s.record_order(run, f"{name}-eth-1", "ETH/USDT", TIMEFRAME, window_end - interval, "buy", 2.5,
                           status="filled", reason="long: p_up=0.70")
    s.record_fill(order.id, 0, window_end, float(bars["close"].iloc[-1]), 2.5, fee=0.25, fee_currency="USDT")
    s.set_balance(run, "USDT", 9500.0, 0.0)
    s.set_balance(run, "ETH", 2.5, 0.0)
    eq = pd.DataFrame({"ts": bars.index[-24:] + interval, "equity": np.linspace(10000, 10100, 24),
                       "cash": 9500.0, "position_value": np.linspace(500, 600, 24)})
    s.record_equity_many(run, eq)
    s.record_event(run, "info", "started", ts=bars.index[-24])
    s.record_event(run, "error", "exchange timeout while fetching ETH/USDT", symbol="ETH/USDT", ts=last)
    return run


def make_app(**kwargs):
    from kronos_trader.web import create_app

    kwargs.setdefault("store", store())
    return create_app(kwargs.pop("settings", None) or settings(), **kwargs)


def client(app=None):
    from fastapi.testclient import TestClient

    return TestClient(app or make_app(), base_url=HOST)


def wait_job(c, job_id: str, timeout: float = 60.0) -> dict:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def assert_one_line_error(response, status: int, *needles: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    message = body["error"]
    assert "\n" not in message and "Traceback" not in message and "kronos-web-" not in message, message
    for needle in needles:
        assert needle.lower() in message.lower(), (needle, message)
    return message
