"""Error types raised by the exchange adapter.

Every error renders as a single line ("<exchange> <call>: <reason>") and never
contains API keys or secrets: reasons are passed through :func:`one_line`,
which strips query strings (signatures) and redacts registered secrets.
"""
from __future__ import annotations

import re
import threading

__all__ = [
    "ExchangeAdapterError",
    "ExchangeConfigError",
    "UnknownSymbolError",
    "ExchangeFault",
    "ExchangeRejected",
    "ExchangeAuthError",
    "InsufficientFundsError",
    "InvalidOrderError",
    "OrderNotFoundError",
    "BadSymbolError",
    "one_line",
]

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_QUERY_RE = re.compile(r"(\w+://[^\s?\"']*)\?[^\s\"']*")
_WS_RE = re.compile(r"\s+")
MAX_REASON_CHARS = 300


def register_secret(value: str | None) -> None:
    """Remember a credential so that it is redacted from messages and logs."""
    if value and len(value) >= 4:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def one_line(reason: object, max_chars: int = MAX_REASON_CHARS) -> str:
    """Collapse ``reason`` to one redacted line without URL query strings."""
    text = str(reason)
    text = _QUERY_RE.sub(r"\1?...", text)
    text = _WS_RE.sub(" ", text).strip()
    text = redact(text)
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return text


class ExchangeAdapterError(Exception):
    """Base class of every error raised by ``kronos_trader.exchange``."""

    def __init__(self, message: str):
        super().__init__(one_line(message, max_chars=1000))


class ExchangeConfigError(ExchangeAdapterError, ValueError):
    """Bad local configuration: unknown exchange id, missing env var, bad timeframe."""


class UnknownSymbolError(ExchangeConfigError):
    """The symbol is not among the exchange's loaded markets."""

    def __init__(self, message: str, symbol: str = "", suggestions: list[str] | None = None):
        super().__init__(message)
        self.symbol = symbol
        self.suggestions = list(suggestions or [])


class _CallError(ExchangeAdapterError):
    def __init__(self, exchange: str, call: str, reason: object, *, kind: str | None = None, attempts: int = 1):
        self.exchange = exchange
        self.call = call
        self.reason = one_line(reason)
        self.kind = kind
        self.attempts = attempts
        super().__init__(self._format())

    def _format(self) -> str:
        return f"{self.exchange} {self.call}: {self.reason}"


class ExchangeFault(_CallError):
    """A transient failure (network, rate limit, outage, bad response) that
    persisted after all retries."""

    def _format(self) -> str:
        kind = f"{self.kind}: " if self.kind else ""
        return f"{self.exchange} {self.call} failed after {self.attempts} attempt(s): {kind}{self.reason}"


class ExchangeRejected(_CallError):
    """The exchange rejected the request; retrying would not help."""

    def _format(self) -> str:
        kind = f"{self.kind}: " if self.kind else ""
        return f"{self.exchange} {self.call} rejected: {kind}{self.reason}"


class ExchangeAuthError(ExchangeRejected):
    """Missing, invalid or under-privileged API credentials."""


class InsufficientFundsError(ExchangeRejected):
    """Not enough balance for the order."""


class InvalidOrderError(ExchangeRejected):
    """Order parameters violate exchange rules (filters, precision, duplicates)."""


class OrderNotFoundError(InvalidOrderError):
    """The order id / client order id is unknown to the exchange."""


class BadSymbolError(ExchangeRejected):
    """The exchange itself reported an invalid symbol."""
