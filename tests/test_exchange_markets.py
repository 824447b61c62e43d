"""load_markets parses the fake exchangeInfo; MarketRules and rounding helpers."""
import random

import pytest

from fake_exchange.helpers import fast_client
from kronos_trader.exchange import (
    MarketRules,
    UnknownSymbolError,
    check_min_notional,
    market_rules,
    resolve_symbol,
    round_amount,
    round_price,
)

pytest_plugins = ["fake_exchange.fixtures"]


def test_load_markets_parses_filters(binance_public_client):
    markets = binance_public_client.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "ETH/BTC"}
    btc = markets["BTC/USDT"]
    assert btc["id"] == "BTCUSDT" and btc["spot"] and btc["active"]
    assert btc["base"] == "BTC" and btc["quote"] == "USDT"
    assert btc["precision"]["price"] == 0.01
    assert btc["precision"]["amount"] == 0.00001
    assert btc["limits"]["amount"] == {"min": 0.00001, "max": 9000.0}
    assert btc["limits"]["price"] == {"min": 0.01, "max": 1000000.0}
    assert btc["limits"]["cost"] == {"min": 5.0, "max": 9000000.0}  # NOTIONAL filter
    ethbtc = markets["ETH/BTC"]
    assert ethbtc["precision"]["price"] == 0.00001 and ethbtc["precision"]["amount"] == 0.0001
    assert ethbtc["limits"]["cost"]["min"] == 0.0001  # legacy MIN_NOTIONAL filter


def test_non_trading_status_is_inactive(binance_server):
    binance_server.add_market("XRPUSDT", "XRP", "USDT", status="BREAK", tick_size="0.0001", step_size="0.1")
    client = fast_client(binance_server, keys=False)
    markets = client.load_markets()
    assert markets["XRP/USDT"]["active"] is False
    rules = market_rules(client, "XRP/USDT")
    assert rules.active is False and rules.price_decimals == 4 and rules.amount_decimals == 1


def test_market_rules(binance_public_client):
    rules = market_rules(binance_public_client, "BTC/USDT")
    assert rules == MarketRules(
        symbol="BTC/USDT", base="BTC", quote="USDT", price_tick=0.01, amount_step=0.00001,
        price_decimals=2, amount_decimals=5, min_amount=0.00001, max_amount=9000.0,
        min_price=0.01, max_price=1000000.0, min_notional=5.0, max_notional=9000000.0, active=True,
    )
    assert market_rules(binance_public_client, "ETHBTC").symbol == "ETH/BTC"  # exchange ids resolve


def test_rounding_matches_ccxt(binance_public_client):
    rng = random.Random(7)
    for symbol in ("BTC/USDT", "ETH/USDT", "ETH/BTC"):
        rules = market_rules(binance_public_client, symbol)
        for _ in range(200):
            amount = rng.uniform(0.0001, 50)
            price = rng.uniform(0.001, 90000)
            assert rules.round_amount(amount) == round_amount(binance_public_client, symbol, amount)
            assert rules.round_price(price) == round_price(binance_public_client, symbol, price)
    assert round_amount(binance_public_client, "BTC/USDT", 0.123456789) == 0.12345  # truncates
    assert round_price(binance_public_client, "BTC/USDT", 42000.125) == 42000.13  # rounds
    assert round_amount(binance_public_client, "BTC/USDT", 0.000001) == 0.0  # below one step


def test_check_min_notional(binance_public_client):
    rules = market_rules(binance_public_client, "BTC/USDT")
    assert check_min_notional(rules, 0.0001, 50000) is True  # 5.0 == min
    assert check_min_notional(rules, 0.0001, 49999.99) is False
    assert rules.notional_ok(1, 5) is True
    no_limits = MarketRules("X/Y", "X", "Y", None, None, None, None, None, None, None, None, None, None)
    assert check_min_notional(no_limits, 1e-9, 1e-9) is True
    assert no_limits.round_amount(1.23456) == 1.23456


def test_unknown_symbol_lists_close_matches(binance_public_client):
    with pytest.raises(UnknownSymbolError) as err:
        resolve_symbol(binance_public_client, "BTC/USDC")
    msg = str(err.value)
    assert "\n" not in msg and "'BTC/USDC'" in msg and "BTC/USDT" in msg
    assert err.value.suggestions[0] == "BTC/USDT"
    with pytest.raises(UnknownSymbolError, match="DOGE/USDT"):
        market_rules(binance_public_client, "DOGE/USDT")


def test_ticker_and_last_prices(binance_public_client, binance_server):
    series = binance_server.series["BTCUSDT"]
    last = float(series.c[series.revealed(binance_server.clock_ms()) - 1])
    ticker = binance_public_client.fetch_ticker("BTC/USDT")
    assert ticker["last"] == last and ticker["bid"] < last < ticker["ask"]
    assert binance_server.requests_to("/api/v3/ticker/24hr")[0].params == {"symbol": "BTCUSDT"}
    prices = binance_public_client.fetch_last_prices(["BTC/USDT", "ETH/USDT"])
    assert prices["BTC/USDT"]["price"] == last
