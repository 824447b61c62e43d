"""pytest fixtures around :class:`FakeBinance`.

Use them from a test module with::

    pytest_plugins = ["fake_exchange.fixtures"]

(or ``from fake_exchange.fixtures import binance_server, ...``).  Helpers and
constants live in :mod:`fake_exchange.helpers`.
"""
from __future__ import annotations

import pytest

from .helpers import FAKE_API_KEY, FAKE_API_SECRET, KEY_ENV, SECRET_ENV, default_server, fast_client

__all__ = ["binance_server", "binance_env", "binance_client", "binance_public_client"]


@pytest.fixture
def binance_server():
    """A started :func:`default_server`; stopped after the test."""
    server = default_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def binance_env(monkeypatch):
    """Puts the fake credentials into the environment; returns (key_env, secret_env)."""
    monkeypatch.setenv(KEY_ENV, FAKE_API_KEY)
    monkeypatch.setenv(SECRET_ENV, FAKE_API_SECRET)
    return KEY_ENV, SECRET_ENV


@pytest.fixture
def binance_client(binance_server, binance_env):
    """Authenticated ``ccxt.binance`` (via ``make_client``) talking to ``binance_server``."""
    return fast_client(binance_server)


@pytest.fixture
def binance_public_client(binance_server):
    """Unauthenticated ``ccxt.binance`` talking to ``binance_server``."""
    return fast_client(binance_server, keys=False)
