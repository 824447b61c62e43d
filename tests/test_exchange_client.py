"""make_client: exchange ids, URL override, credentials and secret hygiene."""
import logging

import ccxt
import pytest

from fake_exchange.helpers import FAKE_API_KEY, FAKE_API_SECRET, KEY_ENV, fast_client
from kronos_trader.exchange import (
    ExchangeAdapterError,
    ExchangeAuthError,
    ExchangeConfigError,
    ExchangeFault,
    call_with_retry,
    fetch_closed_candles,
    make_client,
)

pytest_plugins = ["fake_exchange.fixtures"]


def test_unknown_exchange_id_is_one_line_with_hint():
    with pytest.raises(ExchangeConfigError) as err:
        make_client("binanse")
    msg = str(err.value)
    assert "\n" not in msg
    assert "'binanse'" in msg and "binance" in msg and "ccxt.exchanges" in msg
    assert isinstance(err.value, ValueError)


def test_default_client_has_rate_limit_and_timeout():
    client = make_client("binance", timeout_ms=1234)
    assert isinstance(client, ccxt.binance)
    assert client.enableRateLimit is True and client.timeout == 1234
    assert client.options["fetchMarkets"]["types"] == ["spot"]
    assert client.urls["api"]["public"] == "https://api.binance.com/api/v3"  # untouched without api_url
    assert not client.apiKey


def test_api_url_overrides_every_api_entry(binance_server):
    client = fast_client(binance_server, keys=False, options={"recvWindow": 5000})
    api = client.urls["api"]
    assert api["public"] == f"{binance_server.url}/api/v3"
    assert api["private"] == f"{binance_server.url}/api/v3"
    assert api["sapi"] == f"{binance_server.url}/sapi/v1"
    assert all(url.startswith(binance_server.url) for url in api.values() if isinstance(url, str))
    assert client.options["fetchCurrencies"] is False and client.options["fetchMargins"] is False
    assert client.options["recvWindow"] == 5000  # user options are deep-merged
    assert client.options["fetchMarkets"]["types"] == ["spot"]


def test_load_markets_only_hits_spot_exchange_info(binance_client, binance_server):
    binance_client.load_markets()
    assert [(r.method, r.path) for r in binance_server.requests] == [("GET", "/api/v3/exchangeInfo")]


def test_missing_env_var_names_the_variable_only(monkeypatch):
    monkeypatch.delenv("KRONOS_NOPE_KEY", raising=False)
    monkeypatch.setenv("KRONOS_NOPE_SECRET", "s3cr3t-value-123")
    with pytest.raises(ExchangeConfigError) as err:
        make_client("binance", api_key_env="KRONOS_NOPE_KEY", secret_env="KRONOS_NOPE_SECRET")
    assert "KRONOS_NOPE_KEY" in str(err.value) and "s3cr3t" not in str(err.value)
    with pytest.raises(ExchangeConfigError, match="together"):
        make_client("binance", api_key_env="KRONOS_NOPE_KEY")


def test_keys_come_from_env(binance_client):
    assert binance_client.apiKey == FAKE_API_KEY and binance_client.secret == FAKE_API_SECRET


def test_public_client_cannot_call_private_endpoints(binance_public_client):
    with pytest.raises(ExchangeAuthError) as err:
        call_with_retry(binance_public_client.fetch_balance, retries=0)
    assert "apiKey" in str(err.value)


def test_keys_never_in_logs_or_errors(binance_server, binance_env, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    client = fast_client(binance_server)
    # successful public + private calls, retries and a fault that exhausts retries
    fetch_closed_candles(client, "BTC/USDT", "1m", since=None, limit_per_call=5, backoff=0.001)
    client.fetch_balance()
    client.create_order("BTC/USDT", "limit", "buy", 0.001, 30000, {"clientOrderId": "log-check-1"})
    binance_server.inject("server_error", count=5, path="/api/v3/account")
    errors = []
    with pytest.raises(ExchangeFault) as err:
        call_with_retry(client.fetch_balance, retries=2, backoff=0.001)
    errors.append(str(err.value))
    binance_server.clear_faults()
    # authentication failure with a wrong key configured in the environment
    monkeypatch.setenv(KEY_ENV, "wrong-key-abcdef123456")
    bad = fast_client(binance_server)
    with pytest.raises(ExchangeAuthError) as err:
        call_with_retry(bad.fetch_balance, retries=0)
    errors.append(str(err.value))
    assert "-2015" in errors[-1]
    # ccxt logs request headers at DEBUG: the adapter redacts them
    assert "X-MBX-APIKEY" in caplog.text and "***" in caplog.text
    for secret in (FAKE_API_KEY, FAKE_API_SECRET, "wrong-key-abcdef123456"):
        assert secret not in caplog.text
        for message in errors:
            assert secret not in message
    for message in errors:
        assert "\n" not in message and "signature=" not in message
    # the server did receive the key (so the redaction above was not vacuous)
    assert binance_server.requests_to("/api/v3/account")[0].headers["X-MBX-APIKEY"] == FAKE_API_KEY


def test_adapter_errors_are_single_line():
    err = ExchangeAdapterError("first line\nsecond   line")
    assert str(err) == "first line second line"
    err = ExchangeAdapterError("binance GET http://h:1/api/v3/account?timestamp=1&signature=ab 500 why?")
    assert str(err) == "binance GET http://h:1/api/v3/account?... 500 why?"


def test_a_ticker_without_a_last_price_is_an_error_not_zero(binance_public_client):
    """The exchange broker read a missing last price as 0.0, and at 0 any holding is dust: a real
    holding was then neither adopted nor refused. One lookup, shared with the paper broker."""
    from kronos_trader.exchange import ExchangeConfigError, last_price

    assert last_price(binance_public_client, "BTC/USDT") > 1000
    with pytest.raises(ExchangeConfigError, match="the ticker of ETH/BTC has no last price"):
        last_price(binance_public_client, "ETH/BTC")  # a market without trades: lastPrice 0
