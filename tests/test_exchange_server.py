"""The fake Binance server itself: Binance kline semantics, clock, faults, log.

Raw HTTP (urllib) so these pin the wire format independently of ccxt.
"""
import json
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from fake_exchange import FakeBinance, make_candles
from fake_exchange.helpers import FAKE_API_KEY

pytest_plugins = ["fake_exchange.fixtures"]

START_MS = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MIN = 60_000


def get(server, path, headers=None, method="GET"):
    req = urllib.request.Request(server.url + path, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return err.code, json.loads(body)
        except ValueError:
            return err.code, body.decode()


def test_time_and_exchange_info(binance_server):
    status, body = get(binance_server, "/api/v3/time")
    assert status == 200 and body == {"serverTime": binance_server.now_ms}
    status, info = get(binance_server, "/api/v3/exchangeInfo")
    assert status == 200
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert btc["status"] == "TRADING" and btc["baseAsset"] == "BTC" and btc["quoteAsset"] == "USDT"
    assert btc["permissionSets"] == [["SPOT"]]
    kinds = {f["filterType"]: f for f in btc["filters"]}
    assert kinds["PRICE_FILTER"]["tickSize"] == "0.01"
    assert kinds["LOT_SIZE"]["stepSize"] == "0.00001"
    assert kinds["NOTIONAL"]["minNotional"] == "5.00"
    ethbtc = next(s for s in info["symbols"] if s["symbol"] == "ETHBTC")
    assert any(f["filterType"] == "MIN_NOTIONAL" for f in ethbtc["filters"])
    status, one = get(binance_server, "/api/v3/exchangeInfo?symbol=ETHUSDT")
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]


def test_klines_row_format(binance_server):
    status, rows = get(binance_server, f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={START_MS}&limit=2")
    assert status == 200 and len(rows) == 2
    row = rows[0]
    assert len(row) == 12 and row[0] == START_MS and row[6] == START_MS + MIN - 1
    assert all(isinstance(x, str) for x in row[1:6]) and isinstance(row[8], int)


def test_klines_pagination_semantics(binance_server):
    base = "/api/v3/klines?symbol=BTCUSDT&interval=1m"
    # default limit 500, ascending from startTime (inclusive)
    _, rows = get(binance_server, f"{base}&startTime={START_MS}")
    opens = [r[0] for r in rows]
    assert len(rows) == 500 and opens[0] == START_MS and opens == sorted(opens)
    assert np.all(np.diff(opens) == MIN)
    # limit is capped at 1000
    _, rows = get(binance_server, f"{base}&startTime={START_MS}&limit=5000")
    assert len(rows) == 1000
    # unaligned startTime: first candle with open >= startTime
    _, rows = get(binance_server, f"{base}&startTime={START_MS + 1}&limit=1")
    assert rows[0][0] == START_MS + MIN
    # start + end: both inclusive on open time
    _, rows = get(binance_server, f"{base}&startTime={START_MS}&endTime={START_MS + 2 * MIN}")
    assert [r[0] for r in rows] == [START_MS, START_MS + MIN, START_MS + 2 * MIN]
    # only endTime: the most recent `limit` candles ending at endTime
    _, rows = get(binance_server, f"{base}&endTime={START_MS + 9 * MIN}&limit=3")
    assert [r[0] for r in rows] == [START_MS + 7 * MIN, START_MS + 8 * MIN, START_MS + 9 * MIN]
    # neither: most recent, including the forming candle
    _, rows = get(binance_server, f"{base}&limit=2")
    last_open = START_MS + 2999 * MIN
    assert [r[0] for r in rows] == [last_open - MIN, last_open]
    assert binance_server.now_ms - last_open == 30_000  # the fixture puts "now" inside the last candle
    # nothing at/after startTime
    _, rows = get(binance_server, f"{base}&startTime={last_open + MIN}")
    assert rows == []


def test_klines_only_reveal_up_to_server_clock(binance_server):
    binance_server.set_now(pd.Timestamp("2024-01-01 00:10:00"))
    _, rows = get(binance_server, f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={START_MS}")
    assert rows[-1][0] == START_MS + 10 * MIN  # the candle opening exactly "now" is forming
    assert len(rows) == 11
    binance_server.set_now(START_MS + 10 * MIN - 1)
    _, rows = get(binance_server, f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={START_MS}")
    assert len(rows) == 10


def test_klines_aggregate_coarser_interval():
    frame = make_candles("2024-01-01", 12, "1min", seed=3)
    with FakeBinance() as server:
        server.add_market("BTCUSDT", "BTC", "USDT", candles=frame, interval="1m")
        server.set_now(frame.index[-1] + pd.Timedelta(seconds=1))
        _, rows = get(server, "/api/v3/klines?symbol=BTCUSDT&interval=5m&limit=10")
    assert [r[0] for r in rows] == [START_MS, START_MS + 5 * MIN, START_MS + 10 * MIN]
    first = frame.iloc[:5]
    assert float(rows[0][1]) == first["open"].iloc[0] and float(rows[0][4]) == first["close"].iloc[-1]
    assert float(rows[0][2]) == first["high"].max() and float(rows[0][3]) == first["low"].min()
    assert float(rows[0][5]) == pytest.approx(first["volume"].sum())
    assert float(rows[2][4]) == frame["close"].iloc[-1]  # partial (forming) bucket of 2 bars


def test_klines_errors(binance_server):
    status, body = get(binance_server, "/api/v3/klines?symbol=NOPE&interval=1m")
    assert status == 400 and body["code"] == -1121
    status, body = get(binance_server, "/api/v3/klines?symbol=BTCUSDT&interval=7m")
    assert status == 400 and body["code"] == -1120


def test_tickers(binance_server):
    _, tick = get(binance_server, "/api/v3/ticker/24hr?symbol=BTCUSDT")
    _, price = get(binance_server, "/api/v3/ticker/price?symbol=BTCUSDT")
    _, rows = get(binance_server, "/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1")
    assert tick["lastPrice"] == price["price"] == rows[0][4]
    _, all_prices = get(binance_server, "/api/v3/ticker/price")
    assert {p["symbol"] for p in all_prices} == {"BTCUSDT", "ETHUSDT", "ETHBTC"}


def test_signed_endpoints_require_api_key_header(binance_server):
    status, body = get(binance_server, "/api/v3/account?timestamp=1&signature=x")
    assert status == 401 and body["code"] == -2014
    status, body = get(binance_server, "/api/v3/account?timestamp=1&signature=x", headers={"X-MBX-APIKEY": "wrong"})
    assert status == 401 and body["code"] == -2015
    status, body = get(binance_server, "/api/v3/account?timestamp=1&signature=x", headers={"X-MBX-APIKEY": FAKE_API_KEY})
    assert status == 400 and body["code"] == -1022  # the fixture server verifies HMAC signatures


@pytest.mark.parametrize(
    "fault, status",
    [("rate_limit", 429), ("429", 429), ("ddos", 418), ("unavailable", 503), ("server_error", 500),
     ("malformed_json", 200), ("empty_body", 200), ("empty_list", 200)],
)
def test_fault_injection_is_consumed(binance_server, fault, status):
    binance_server.inject(fault, count=2, path="/api/v3/time")
    get(binance_server, "/api/v3/ping")  # other paths are unaffected
    for _ in range(2):
        req = urllib.request.Request(binance_server.url + "/api/v3/time")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                got, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            got, body = err.code, err.read()
        assert got == status
        if fault == "empty_list":
            assert json.loads(body) == []
        elif status == 200:
            with pytest.raises(ValueError):
                json.loads(body)
    assert binance_server.pending_faults == 0
    assert get(binance_server, "/api/v3/time")[0] == 200
    faults = [r.fault for r in binance_server.requests_to("/api/v3/time")]
    assert faults[:2] == [{"429": "rate_limit"}.get(fault, fault)] * 2 and faults[2] is None


def test_clock_skew_and_unknown_fault(binance_server):
    binance_server.inject("clock_skew", skew_ms=-7000)
    assert get(binance_server, "/api/v3/time")[1]["serverTime"] == binance_server.now_ms - 7000
    assert get(binance_server, "/api/v3/time")[1]["serverTime"] == binance_server.now_ms
    with pytest.raises(ValueError, match="unknown fault"):
        binance_server.inject("gremlins")


def test_rate_limit_counter(binance_server):
    binance_server.set_rate_limit(3, window_s=60)
    statuses = [get(binance_server, "/api/v3/ping")[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    binance_server.set_rate_limit(None)
    assert get(binance_server, "/api/v3/ping")[0] == 200


def test_request_log(binance_server):
    get(binance_server, f"/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={START_MS}&limit=3")
    (rec,) = binance_server.requests_to("/api/v3/klines")
    assert rec.method == "GET" and rec.status == 200
    assert rec.params == {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(START_MS), "limit": "3"}
