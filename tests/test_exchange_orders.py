"""Signed order endpoints through the real ccxt.binance client (live-runner path)."""
import time

import pytest

from kronos_trader.exchange import InvalidOrderError, OrderNotFoundError, call_with_retry, market_rules, round_amount

pytest_plugins = ["fake_exchange.fixtures"]

FAST = {"backoff": 0.001}


def last_close(server, symbol="BTCUSDT"):
    s = server.series[symbol]
    return float(s.c[s.revealed(server.clock_ms()) - 1])


def test_create_order_carries_client_order_id(binance_client, binance_server):
    order = call_with_retry(binance_client.create_order, "BTC/USDT", "limit", "buy", 0.01, 30000.0,
                            {"clientOrderId": "kt-run1-000001"}, **FAST)
    assert order["clientOrderId"] == "kt-run1-000001" and order["status"] == "open"
    (post,) = binance_server.requests_to("/api/v3/order", "POST")
    assert post.params["newClientOrderId"] == "kt-run1-000001"
    assert post.params["symbol"] == "BTCUSDT" and post.params["type"] == "LIMIT" and post.params["timeInForce"] == "GTC"
    assert post.headers["X-MBX-APIKEY"] and "signature" in post.params

    open_orders = call_with_retry(binance_client.fetch_open_orders, "BTC/USDT", **FAST)
    assert [(o["id"], o["clientOrderId"], o["amount"], o["price"], o["side"]) for o in open_orders] == [
        (order["id"], "kt-run1-000001", 0.01, 30000.0, "buy")]
    fetched = binance_client.fetch_order(order["id"], "BTC/USDT")
    by_client_id = binance_client.fetch_order(None, "BTC/USDT", {"clientOrderId": "kt-run1-000001"})
    assert fetched["id"] == by_client_id["id"] == order["id"]
    assert binance_server.requests_to("/api/v3/order", "GET")[-1].params["origClientOrderId"] == "kt-run1-000001"
    # funds are reserved while the order rests
    balance = binance_client.fetch_balance()
    assert balance["USDT"]["used"] == pytest.approx(300.0) and balance["USDT"]["free"] == pytest.approx(9700.0)

    canceled = binance_client.cancel_order(order["id"], "BTC/USDT")
    assert canceled["status"] == "canceled"
    assert binance_client.fetch_open_orders("BTC/USDT") == []
    assert binance_client.fetch_balance()["USDT"]["free"] == pytest.approx(10_000.0)
    with pytest.raises(OrderNotFoundError):
        call_with_retry(binance_client.cancel_order, order["id"], "BTC/USDT", **FAST)


def test_ccxt_generates_a_client_order_id_when_none_given(binance_client, binance_server):
    order = binance_client.create_order("BTC/USDT", "limit", "sell", 0.01, 90000.0)
    sent = binance_server.requests_to("/api/v3/order", "POST")[0].params["newClientOrderId"]
    assert sent and order["clientOrderId"] == sent


def test_duplicate_open_client_order_id_is_rejected(binance_client):
    params = {"clientOrderId": "kt-dup-1"}
    binance_client.create_order("BTC/USDT", "limit", "buy", 0.01, 30000.0, params)
    with pytest.raises(InvalidOrderError) as err:
        call_with_retry(binance_client.create_order, "BTC/USDT", "limit", "buy", 0.01, 30000.0, params, **FAST)
    assert "Duplicate order sent" in str(err.value) and "\n" not in str(err.value)
    assert len(binance_client.fetch_open_orders("BTC/USDT")) == 1


def test_market_order_fills_at_last_price(binance_client, binance_server):
    price = last_close(binance_server)
    order = binance_client.create_order("BTC/USDT", "market", "buy", 0.05, None, {"clientOrderId": "kt-mkt-1"})
    assert order["status"] == "closed" and order["filled"] == 0.05 and order["average"] == price
    balance = binance_client.fetch_balance()
    assert balance["BTC"]["total"] == pytest.approx(1.05 - 0.05 * 0.001)  # the 0.1% fee, paid in BTC
    assert balance["USDT"]["total"] == pytest.approx(10_000 - 0.05 * price)
    assert order["fee"] == {"cost": pytest.approx(0.00005), "currency": "BTC"}
    trades = binance_client.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1 and trades[0]["order"] == order["id"] and trades[0]["price"] == price
    assert trades[0]["fee"]["currency"] == "BTC"


def test_resting_limit_order_fills_when_replayed_candle_touches(binance_client, binance_server):
    series = binance_server.series["BTCUSDT"]
    binance_server.set_now(int(series.open_ms[1000]) + 5_000)
    lows = series.l[1001:1100]
    target = float(round(lows.min() + 0.5, 2))  # touched by some later candle, but not immediately
    assert target < last_close(binance_server)
    order = binance_client.create_order("BTC/USDT", "limit", "buy", 0.01, target, {"clientOrderId": "kt-lim-1"})
    assert order["status"] == "open"
    binance_server.set_now(int(series.open_ms[1100]))
    assert binance_client.fetch_open_orders("BTC/USDT") == []
    done = binance_client.fetch_order(order["id"], "BTC/USDT")
    assert done["status"] == "closed" and done["filled"] == 0.01 and done["price"] == target


def test_min_notional_and_rounding(binance_client):
    rules = market_rules(binance_client, "BTC/USDT")
    with pytest.raises(InvalidOrderError, match="NOTIONAL"):
        call_with_retry(binance_client.create_order, "BTC/USDT", "limit", "buy", 0.0001, 30000.0, **FAST)
    amount = round_amount(binance_client, "BTC/USDT", 0.000123456)
    assert amount == 0.00012 and not rules.notional_ok(amount, 30000.0)
    assert rules.notional_ok(0.0002, 30000.0)


def test_open_orders_are_per_symbol(binance_client):
    binance_client.create_order("BTC/USDT", "limit", "buy", 0.01, 30000.0, {"clientOrderId": "a"})
    binance_client.create_order("ETH/USDT", "limit", "buy", 0.1, 1000.0, {"clientOrderId": "b"})
    assert [o["clientOrderId"] for o in binance_client.fetch_open_orders("ETH/USDT")] == ["b"]
    binance_client.options["fetchOpenOrders"]["warnWithoutSymbol"] = False
    assert sorted(o["clientOrderId"] for o in binance_client.fetch_open_orders()) == ["a", "b"]


def test_timed_out_order_retry_does_not_duplicate(binance_client, binance_server):
    """The "timeout" fault still executes the request after the client gave up
    (response lost, order placed).  Retrying with the same client order id
    leaves exactly one order on the exchange."""
    binance_client.load_markets()
    binance_server.inject("timeout", count=1, path="/api/v3/order")
    order = call_with_retry(binance_client.create_order, "BTC/USDT", "limit", "buy", 0.01, 30000.0,
                            {"clientOrderId": "kt-timeout-1"}, retries=2, backoff=0.001)
    assert order["clientOrderId"] == "kt-timeout-1"
    posts = binance_server.requests_to("/api/v3/order", "POST")
    deadline = time.monotonic() + 3
    while posts[0].status is None and time.monotonic() < deadline:  # the delayed original
        time.sleep(0.05)
    assert [p.fault for p in posts] == ["timeout", None]
    assert posts[0].status == 400  # the late original was refused as a duplicate
    assert [o["clientOrderId"] for o in binance_client.fetch_open_orders("BTC/USDT")] == ["kt-timeout-1"]
