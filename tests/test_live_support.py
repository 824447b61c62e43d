"""Shared setup for the live-trading tests (no tests here).

A FakeBinance replays one short 1-minute candle series; settings use the tiny random-weight
model with a small lookback/horizon so a cycle takes a fraction of a second.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from fake_exchange import FakeBinance, make_candles
from fake_exchange.helpers import FAKE_API_KEY, FAKE_API_SECRET, fast_client
from kronos_trader.config import parse_settings
from kronos_trader.exchange import fetch_closed_candles

LOOKBACK = 16
BARS = 40          # candles in the series; decisions at bars LOOKBACK-1 .. BARS-1
START = "2024-03-01"
RUN_ID = "7e57c0de" + "0" * 24


def make_server(bars: int = BARS) -> FakeBinance:
    # the account holds only quote: live runs start flat (a holding is adopted or refused)
    server = FakeBinance(api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET, timeout_delay_s=0.6,
                         balances={"USDT": 10_000.0, "BTC": 0.0, "ETH": 10.0})
    candles = make_candles(START, bars, "1min", seed=7, price=42_000.0)
    server.add_market("BTCUSDT", "BTC", "USDT", candles=candles, interval="1m", tick_size="0.01",
                      step_size="0.00001", min_qty="0.00001", min_notional="5.00")
    server.set_now(candles.index[-1] + pd.Timedelta(seconds=30))  # everything revealed, the last bar forming
    return server.start()


def settings_for(model_dir: str, server_url: str, db_url: str, **paper) -> object:
    return parse_settings({
        "model": {"name": model_dir, "device": "cpu"},
        "forecast": {"lookback": LOOKBACK, "horizon": 3, "sample_count": 4, "batch_windows": 256},
        "strategy": {"params": {"long_threshold": 0.5, "short_threshold": 0.3, "allow_short": True}},
        "backtest": {"cash": 10_000.0, "commission": 0.001, "slippage": 0.0005, "stop_loss": 0.003,
                     "take_profit": 0.004},
        "database": {"url": db_url},
        "paper": {"exchange": "binance", "api_url": server_url, "pairs": [{"symbol": "BTC/USDT", "timeframe": "1m"}],
                  "quote_balance": 10_000.0, "delay_seconds": 2.0, "missed_candles": "catch_up", **paper},
    })


def series(server: FakeBinance) -> pd.DataFrame:
    """The candles exactly as the runner sees them through ccxt (closed ones only)."""
    client = fast_client(server, keys=False)
    first = pd.Timestamp(START)
    return fetch_closed_candles(client, "BTC/USDT", "1m", first, backoff=0.001)


def cycle_times(candles: pd.DataFrame, first: int = LOOKBACK - 1, delay: float = 2.0) -> list[pd.Timestamp]:
    """'now' of the cycle after each candle close, from the first decision bar on."""
    return [candles.index[i] + pd.Timedelta(minutes=1, seconds=delay) for i in range(first, len(candles))]


def copy_db(template: Path, target: Path) -> str:
    shutil.copy(template, target)
    return f"sqlite:///{target}"


_TEMPLATES: dict[str, Path] = {}


def forecast_template(model_dir: str, server: FakeBinance, directory: Path) -> Path:
    """A database holding the forecasts of every window of the series (computed once per
    session, batched); runners on a copy reuse them instead of recomputing. Reuse needs
    bit-identical windows, so it also checks that the runner builds the backtest's windows."""
    if model_dir not in _TEMPLATES:
        from kronos_trader.forecasting.models import load_model
        from kronos_trader.forecasting.service import ForecastService
        from kronos_trader.store import open_store

        path = directory / "forecasts.db"
        settings = settings_for(model_dir, server.url, f"sqlite:///{path}")
        store = open_store(settings.database.url)
        service = ForecastService(load_model(model_dir, "cpu"), settings.forecast, store, False)
        service.forecast_series(series(server), "BTC/USDT", "1m")
        store.close()
        _TEMPLATES[model_dir] = path
    return _TEMPLATES[model_dir]


def run_state(store, run_id: str) -> dict:
    """Everything a run decided and did, comparable across runs (ids and wall times dropped)."""
    signals = store.load_signals(run_id)
    orders = store.load_orders(run_id).sort_values("client_order_id")
    fills = store.load_fills(run_id).sort_values(["ts", "order_id"])
    order_ids = dict(zip(orders["id"], orders["client_order_id"]))
    return {
        "signals": [(str(r["symbol"]), str(r["bar_time"]), r["target_position"], r["forecast_id"],
                     r["details"]) for r in signals.to_dict("records")],
        "orders": [(r["client_order_id"], str(r["bar_time"]), r["side"], r["amount"], r["status"], r["reason"])
                   for r in orders.to_dict("records")],
        "fills": [(order_ids[r["order_id"]], str(r["ts"]), r["price"], r["amount"], r["fee"])
                  for r in fills.to_dict("records")],
        "balances": {r["currency"]: r["free"] for r in store.load_balances(run_id).to_dict("records")},
        "equity": store.load_equity(run_id)[["equity", "cash", "position_value"]].round(8).to_dict("index"),
    }


class Alternating:
    """Test policy: long ``fraction`` of equity when flat, flat when long: every decision
    trades, buys and sells alternate (a residual below 1% of equity counts as flat)."""

    def __init__(self, fraction: float = 0.5):
        self.fraction = fraction

    def decide(self, forecast, position):
        from kronos_trader.decision import Decision

        flat = position.equity <= 0 or abs(position.exposure) < 0.01
        return Decision(self.fraction if flat else 0.0, "alternate: " + ("buy" if flat else "sell"))


def live_settings(model_dir: str, server_url: str, db_url: str, **paper) -> object:
    """settings_for with real orders and the Alternating policy."""
    from fake_exchange.helpers import KEY_ENV, SECRET_ENV

    settings = settings_for(model_dir, server_url, db_url, live=True, api_key_env=KEY_ENV, api_secret_env=SECRET_ENV,
                            **paper)
    raw = settings.model_dump(mode="json")
    raw["strategy"] = {"name": "test_live_support:Alternating", "params": {}}
    return parse_settings(raw)


class StrictAlternating:
    """Test policy: long ``fraction`` when the position it is shown is exactly flat, else flat
    (no tolerance: a dust residual shown as a position would stop it trading)."""

    def __init__(self, fraction: float = 0.5):
        self.fraction = fraction

    def decide(self, forecast, position):
        from kronos_trader.decision import Decision

        flat = position.size == 0
        return Decision(self.fraction if flat else 0.0, "strict: " + ("buy" if flat else "sell"))


class Steps:
    """Test policy: targets 0.3, 0.6, 0.9, ... of equity at successive decisions (each
    decision grows the position, sized from what the broker says is held)."""

    def __init__(self, step: float = 0.3):
        self.step, self.n = step, 0

    def decide(self, forecast, position):
        from kronos_trader.decision import Decision

        self.n += 1
        return Decision(min(1.0, self.step * self.n), f"step {self.n}")


def runner_for(env, name, *, live=False, start=True, db=None, strategy=None, **kwargs):
    """A LiveRunner on a copy of the forecast template (``db``: an existing database URL),
    the module's server, fast retries; started unless ``start=False``."""
    import os
    import zlib

    from fake_exchange.helpers import KEY_ENV, SECRET_ENV
    from kronos_trader.forecasting.models import load_model
    from kronos_trader.forecasting.service import ForecastService
    from kronos_trader.live import LiveRunner
    from kronos_trader.store import open_store

    paper = kwargs.pop("paper", {})
    db = db or copy_db(env["template"], env["tmp"] / f"{name}.db")
    if live:
        settings = live_settings(env["model_dir"], env["server"].url, db, **paper)
        os.environ[KEY_ENV], os.environ[SECRET_ENV] = FAKE_API_KEY, FAKE_API_SECRET
    else:
        settings = settings_for(env["model_dir"], env["server"].url, db, **paper)
    if strategy is not None:
        raw = settings.model_dump(mode="json")
        raw["strategy"] = {"name": strategy, "params": {}}
        settings = parse_settings(raw)
    store = open_store(settings.database.url)
    service = ForecastService(load_model(env["model_dir"], "cpu"), settings.forecast, store, False)
    kwargs.setdefault("run_id", f"{zlib.crc32(name.encode()):08x}" + "0" * 24)  # client ids unique per test
    kwargs.setdefault("retry_delay", 0.0)
    runner = LiveRunner(settings, store=store, client=fast_client(env["server"], keys=live), service=service,
                        retries=1, backoff=0.001, live=live, **kwargs)
    return (runner.start() if start else runner), store


def events(store) -> list[str]:
    from sqlalchemy import select

    from kronos_trader.store import Event

    with store.session(readonly=True) as s:
        return [e.message for e in s.scalars(select(Event))]


def replay_clock(server):
    return lambda: pd.Timestamp(server.clock_ms(), unit="ms")


def module_env(tiny_model_dir, tmp_path_factory, name: str):
    """Body of a module-scoped ``env`` fixture: a started server, the forecast template and
    the cycle times (``yield from module_env(...)``)."""
    tmp = tmp_path_factory.mktemp(name)
    server = make_server()
    try:
        template = forecast_template(tiny_model_dir, server, tmp)
        candles = series(server)
        yield {"server": server, "template": template, "tmp": tmp, "times": cycle_times(candles),
               "candles": candles, "model_dir": tiny_model_dir, "end": server.now_ms}
    finally:
        server.stop()


def restored_server(env):
    """Body of a ``server`` fixture: the module's server, its clock, balances, faults and
    market status restored after each test."""
    s = env["server"]
    balances = {k: list(v) for k, v in s.balances.items()}
    yield s
    s.clear_faults()
    s.set_now(env["end"])
    s.balances = balances
    for market in s.markets.values():
        market["status"] = "TRADING"
