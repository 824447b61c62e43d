"""Retry policy for ccxt calls (``call_with_retry``)."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import ccxt

from .errors import (
    BadSymbolError,
    ExchangeAuthError,
    ExchangeFault,
    ExchangeRejected,
    InsufficientFundsError,
    InvalidOrderError,
    OrderNotFoundError,
    one_line,
)

__all__ = ["call_with_retry", "is_retryable", "to_adapter_error", "DEFAULT_RETRIES", "DEFAULT_BACKOFF"]

log = logging.getLogger(__name__)

DEFAULT_RETRIES = 4
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 30.0

# ccxt.OperationFailed covers NetworkError (RequestTimeout, DDoSProtection,
# RateLimitExceeded, ExchangeNotAvailable/OnMaintenance, InvalidNonce) and
# BadResponse/NullResponse: "the request may succeed if repeated".
_RETRYABLE = (ccxt.OperationFailed,)
_TIMESTAMP_MARKERS = ("-1021", "recvWindow", "ahead of the server", "outside of the recvWindow")


def _is_timestamp_error(exc: BaseException) -> bool:
    if isinstance(exc, ccxt.InvalidNonce):
        return True
    text = str(exc)
    # binance spot maps -1021 to BadRequest, the generic table to InvalidNonce
    return isinstance(exc, ccxt.ExchangeError) and any(marker in text for marker in _TIMESTAMP_MARKERS)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RETRYABLE) or _is_timestamp_error(exc)


def _names(fn: Callable, exchange: str | None, call: str | None) -> tuple[str, str]:
    owner = getattr(fn, "__self__", None)
    if exchange is None:
        exchange = getattr(owner, "id", None) if isinstance(owner, ccxt.Exchange) else None
        exchange = exchange or "exchange"
    if call is None:
        call = getattr(fn, "__name__", None) or type(fn).__name__
    return exchange, call


def to_adapter_error(exc: BaseException, exchange: str, call: str) -> ExchangeRejected:
    """Map a non-retryable ccxt error to a one-line adapter error."""
    kind = type(exc).__name__
    text = str(exc)
    if isinstance(exc, ccxt.AuthenticationError):
        cls = ExchangeAuthError
    elif isinstance(exc, ccxt.InsufficientFunds):
        cls = InsufficientFundsError
    elif isinstance(exc, ccxt.OrderNotFound):
        cls = OrderNotFoundError
    elif isinstance(exc, ccxt.InvalidOrder) or "Filter failure" in text:
        cls = InvalidOrderError
    elif isinstance(exc, ccxt.BadSymbol):
        cls = BadSymbolError
    else:
        cls = ExchangeRejected
    return cls(exchange, call, text, kind=kind)


def _resync_clock(client: Any) -> None:
    try:
        offset = client.load_time_difference()
        log.info("%s: re-synchronised clock with exchange (offset %s ms)", client.id, offset)
    except Exception as exc:  # the retry itself will surface persistent failures
        log.warning("%s: clock re-sync failed: %s", getattr(client, "id", "exchange"), one_line(exc))


def call_with_retry(
    fn: Callable,
    *args: Any,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    max_backoff: float = DEFAULT_MAX_BACKOFF,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    exchange: str | None = None,
    call: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    recover: Callable[[BaseException], Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``fn(*args, **kwargs)``, retrying transient exchange failures.

    Transient = ``ccxt.OperationFailed`` subclasses (timeouts, 429/418
    rate-limit/DDoS, 5xx / maintenance, malformed or empty responses) and
    timestamp/recvWindow errors (Binance -1021), after which the client's
    clock offset is re-synchronised via ``load_time_difference()``.

    Waits ``backoff * 2**(attempt-1)`` seconds (capped at ``max_backoff``)
    between the ``1 + retries`` attempts and calls
    ``on_retry(attempt, exc, delay)`` before each wait.  When exhausted raises
    :class:`ExchangeFault`; other ccxt errors raise an
    :class:`ExchangeRejected` subclass immediately.  ``recover(exc)``, when given, runs
    after each transient failure: a value other than None is returned as the result (e.g.
    an order found by its client id after a timeout), an exception it raises ends the
    retries (e.g. "do not re-send").  Errors are one-line and
    chain the original exception as ``__cause__``.  Non-ccxt exceptions
    (programming errors) propagate unchanged.
    """
    exchange_name, call_name = _names(fn, exchange, call)
    owner = getattr(fn, "__self__", None)
    attempts = max(0, int(retries)) + 1
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except ccxt.BaseError as exc:
            if not is_retryable(exc):
                raise to_adapter_error(exc, exchange_name, call_name) from exc
            if attempt >= attempts:
                raise ExchangeFault(exchange_name, call_name, str(exc), kind=type(exc).__name__, attempts=attempt) from exc
            delay = min(max_backoff, backoff * (2 ** (attempt - 1)))
            log.warning(
                "%s %s attempt %d/%d failed (%s); retrying in %.2fs",
                exchange_name, call_name, attempt, attempts, type(exc).__name__, delay,
            )
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            if _is_timestamp_error(exc) and isinstance(owner, ccxt.Exchange):
                _resync_clock(owner)
            if recover is not None:
                found = recover(exc)
                if found is not None:
                    return found
            if delay > 0:
                sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
