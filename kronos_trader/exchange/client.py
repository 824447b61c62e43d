"""Construction of ccxt clients (``make_client``)."""
from __future__ import annotations

import copy
import difflib
import logging
import os
from typing import Any
from urllib.parse import urlsplit

import ccxt

from .errors import ExchangeConfigError, redact, register_secret

__all__ = ["make_client", "SPOT_ONLY_EXCHANGES"]

log = logging.getLogger(__name__)

#: exchanges whose ``options['fetchMarkets']['types']`` is narrowed to spot so
#: that load_markets never touches futures/options hosts.
SPOT_ONLY_EXCHANGES = frozenset({"binance", "binanceus"})

_CLASS_CACHE: dict[str, type] = {}

#: endpoints (path suffixes) that always answer a JSON object; an empty list or
#: ``null`` from them is a broken response (ccxt would silently parse it to
#: empty markets / balances / a ``None`` server time).
_OBJECT_ENDPOINTS = {
    "binance": ("/api/v3/time", "/api/v3/exchangeInfo", "/api/v3/account", "/api/v3/order", "/api/v3/avgPrice"),
    "binanceus": ("/api/v3/time", "/api/v3/exchangeInfo", "/api/v3/account", "/api/v3/order", "/api/v3/avgPrice"),
}


class _RedactingFilter(logging.Filter):
    """Replaces registered API keys/secrets in records of ccxt's logger.

    ccxt logs full request headers (``X-MBX-APIKEY`` ...) at DEBUG level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # pragma: no cover - malformed record, leave it alone
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_FILTER = _RedactingFilter()


def _install_log_filter(logger: logging.Logger) -> None:
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def _guarded_class(exchange_id: str) -> type:
    """Subclass of the ccxt exchange class with stricter response checks:

    * HTTP 5xx always raises ``ccxt.ExchangeNotAvailable`` (retryable), even
      when the body carries an exchange error code that ccxt would map to a
      generic ``ExchangeError``;
    * a 2xx response whose body is not JSON (empty, truncated, HTML) raises
      ``ccxt.BadResponse`` instead of being handed to the parsers as text.
    """
    cls = _CLASS_CACHE.get(exchange_id)
    if cls is not None:
        return cls
    base = getattr(ccxt, exchange_id)

    def handle_errors(self, code, reason, url, method, headers, body, response, requestHeaders, requestBody):
        path = (urlsplit(url).path if url else "") or "?"
        if code is not None and code >= 500:
            raise ccxt.ExchangeNotAvailable(f"{self.id} {method} {path} HTTP {code} {reason or ''}".strip())
        result = base.handle_errors(self, code, reason, url, method, headers, body, response, requestHeaders, requestBody)
        if code is not None and 200 <= code < 300:
            if response is None:
                snippet = (body or "")[:60]
                what = "an empty body" if not body else f"a non-JSON body ({snippet!r})"
                raise ccxt.BadResponse(f"{self.id} {method} {path} returned {what}")
            if not response and path.endswith(_OBJECT_ENDPOINTS.get(self.id, ())):
                raise ccxt.NullResponse(f"{self.id} {method} {path} returned an empty {type(response).__name__}")
        return result

    cls = type(base.__name__, (base,), {"handle_errors": handle_errors, "__module__": __name__})
    _CLASS_CACHE[exchange_id] = cls
    return cls


def _read_env(var: str | None, what: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var)
    if not value:
        raise ExchangeConfigError(f"{what} environment variable {var} is not set or empty")
    register_secret(value)
    return value


def _rebase_url(url: str, api_url: str) -> str:
    """Point ``url`` at ``api_url``'s scheme/host, keeping the path
    (``https://api.binance.com/api/v3`` -> ``http://127.0.0.1:9999/api/v3``)."""
    src = urlsplit(url)
    dst = urlsplit(api_url)
    prefix = dst.path.rstrip("/")
    return f"{dst.scheme}://{dst.netloc}{prefix}{src.path}"


def _rebase_tree(node: Any, api_url: str) -> Any:
    if isinstance(node, str):
        return _rebase_url(node, api_url) if "://" in node else node
    if isinstance(node, dict):
        return {key: _rebase_tree(value, api_url) for key, value in node.items()}
    if isinstance(node, list):
        return [_rebase_tree(value, api_url) for value in node]
    return node


def _deep_merge(target: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def make_client(
    exchange_id: str,
    api_url: str | None = None,
    api_key_env: str | None = None,
    secret_env: str | None = None,
    options: dict | None = None,
    timeout_ms: int = 10000,
    *,
    rate_limit_ms: float | None = None,
    password_env: str | None = None,
) -> ccxt.Exchange:
    """Create a synchronous ccxt client.

    * ``enableRateLimit`` is always on; ``rate_limit_ms`` overrides ccxt's
      per-request spacing (tests use ~1 ms).
    * ``api_url`` (e.g. ``http://127.0.0.1:8080``) re-points every entry of
      ``urls['api']`` at that host, keeping each entry's path, and turns off
      binance's auxiliary sapi calls in ``load_markets`` (margin pairs,
      currencies) so only spot endpoints are used.
    * Credentials are read only from the named environment variables; they
      are redacted from ccxt's debug log and from every adapter error.
    * ``options`` is deep-merged into the exchange's ccxt ``options``.
    """
    exchange_id = (exchange_id or "").strip().lower()
    if exchange_id not in ccxt.exchanges:
        close = difflib.get_close_matches(exchange_id, ccxt.exchanges, n=3, cutoff=0.6)
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        raise ExchangeConfigError(
            f"unknown exchange id {exchange_id!r}{hint}; list valid ids with: "
            "python -c \"import ccxt; print(ccxt.exchanges)\""
        )
    if (api_key_env is None) != (secret_env is None):
        raise ExchangeConfigError("api_key_env and secret_env must be given together")

    api_key = _read_env(api_key_env, "API key")
    secret = _read_env(secret_env, "API secret")
    password = _read_env(password_env, "API password")

    cls = _guarded_class(exchange_id)
    merged_options: dict = {}
    if exchange_id in SPOT_ONLY_EXCHANGES:
        merged_options["fetchMarkets"] = {"types": ["spot"]}
    if api_url is not None and exchange_id in SPOT_ONLY_EXCHANGES:
        merged_options["fetchCurrencies"] = False  # sapi capital/config/getall
        merged_options["fetchMargins"] = False  # sapi margin/allPairs, isolated/allPairs
    if options:
        _deep_merge(merged_options, options)

    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_ms),
        "options": merged_options,
    }
    if rate_limit_ms is not None:
        config["rateLimit"] = rate_limit_ms
    if api_key is not None:
        config["apiKey"] = api_key
        config["secret"] = secret
    if password is not None:
        config["password"] = password

    client = cls(config)
    if api_url is not None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ExchangeConfigError(f"invalid api_url {api_url!r}: expected http(s)://host[:port]")
        client.urls = dict(client.urls)
        client.urls["api"] = _rebase_tree(client.urls.get("api"), api_url)
        # sandbox/test urls would otherwise be swapped back in by set_sandbox_mode
        if "test" in client.urls:
            client.urls["test"] = _rebase_tree(client.urls["test"], api_url)
    _install_log_filter(client.logger)
    log.debug("created %s client (api_url=%s, credentials=%s)", exchange_id, api_url or "default", "yes" if api_key else "no")
    return client
