"""Constants and factories shared by the fake-exchange fixtures and tests."""
from __future__ import annotations

import pandas as pd

from kronos_trader.exchange import make_client

from .candles import make_candles
from .server import FakeBinance

__all__ = [
    "FAKE_API_KEY",
    "FAKE_API_SECRET",
    "KEY_ENV",
    "SECRET_ENV",
    "CLIENT_TIMEOUT_MS",
    "DEFAULT_START",
    "DEFAULT_PERIODS",
    "default_server",
    "fast_client",
]

FAKE_API_KEY = "fk-3b9d1c77e2a04f5b8c6d"
FAKE_API_SECRET = "fs-0a8f7e6d5c4b3a29181706f5e4d3c2b1"
KEY_ENV = "KRONOS_TEST_BINANCE_API_KEY"
SECRET_ENV = "KRONOS_TEST_BINANCE_API_SECRET"
#: client-side HTTP timeout used in tests; the server's "timeout" fault sleeps longer
CLIENT_TIMEOUT_MS = 400
DEFAULT_START = "2024-01-01"
DEFAULT_PERIODS = 3000


def default_server(start: bool = True) -> FakeBinance:
    """FakeBinance with BTCUSDT and ETHUSDT (3000 one-minute candles from
    2024-01-01 each; the clock 30 s into the last candle, so it is forming)
    and a candle-less ETHBTC with a legacy MIN_NOTIONAL filter."""
    server = FakeBinance(api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET, timeout_delay_s=1.0)
    btc = make_candles(DEFAULT_START, DEFAULT_PERIODS, "1min", seed=1, price=42_000.0)
    eth = make_candles(DEFAULT_START, DEFAULT_PERIODS, "1min", seed=2, price=2_300.0)
    server.add_market("BTCUSDT", "BTC", "USDT", candles=btc, interval="1m",
                      tick_size="0.01", step_size="0.00001", min_qty="0.00001", min_notional="5.00")
    server.add_market("ETHUSDT", "ETH", "USDT", candles=eth, interval="1m",
                      tick_size="0.01", step_size="0.0001", min_qty="0.0001", min_notional="5.00")
    server.add_market("ETHBTC", "ETH", "BTC", tick_size="0.00001", step_size="0.0001", min_qty="0.0001",
                      min_notional="0.0001", notional_filter="MIN_NOTIONAL")
    server.set_now(btc.index[-1] + pd.Timedelta(seconds=30))
    return server.start() if start else server


def fast_client(server: FakeBinance, *, keys: bool = True, **kwargs):
    """Real ``ccxt.binance`` pointed at ``server`` with a 1 ms rate limiter."""
    kwargs.setdefault("timeout_ms", CLIENT_TIMEOUT_MS)
    kwargs.setdefault("rate_limit_ms", 1)
    if keys:
        kwargs.setdefault("api_key_env", KEY_ENV)
        kwargs.setdefault("secret_env", SECRET_ENV)
    return make_client("binance", api_url=server.url, **kwargs)
