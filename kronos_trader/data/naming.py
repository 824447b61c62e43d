"""What a candle file holds: its symbol and timeframe, for titles, report folders and rows.

Taken from what the user said (``--symbol``/``--timeframe``), else from the file name where
it follows the usual export patterns (``BTC_USDT-1h``, ``BTCUSDT-1h``, ``ETH-USD_5m``,
``EURUSD_1h``), else the file's own name and the interval its bars show. Never an
invented market.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .bars import infer_bar_interval

__all__ = ["series_names", "names_from_filename", "interval_label"]

# quote currencies a glued pair name (BTCUSDT, EURUSD) may end in, longest first
_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "TUSD", "USD", "EUR", "GBP", "JPY", "CHF", "AUD", "CAD", "BTC", "ETH",
           "BNB", "TRY")
_TIMEFRAME = r"(?P<n>\d+)(?P<unit>s|sec|m|min|h|hr|d|day|w|wk|M|mo)"
_NAME = re.compile(rf"^(?P<symbol>[A-Za-z0-9.]+(?:[-_/][A-Za-z0-9.]+)?)[-_ ]{_TIMEFRAME}$")
_UNITS = {"s": "s", "sec": "s", "m": "m", "min": "m", "h": "h", "hr": "h", "d": "d", "day": "d", "w": "w",
          "wk": "w", "M": "M", "mo": "M"}


def interval_label(interval: pd.Timedelta) -> str:
    """'1m', '5m', '1h', '1d', '1w' (ccxt style) or the Timedelta's text."""
    seconds = interval.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return str(interval)


def names_from_filename(path: str | Path) -> tuple[str, str] | None:
    """(symbol, timeframe) from a name like BTC_USDT-1h.csv, or None if it does not match."""
    match = _NAME.match(Path(path).stem)
    if match is None:
        return None
    raw = match["symbol"]
    parts = re.split(r"[-_/]", raw)
    if len(parts) == 2:
        symbol = f"{parts[0].upper()}/{parts[1].upper()}"
    else:
        upper = raw.upper()
        quote = next((q for q in _QUOTES if upper.endswith(q) and len(upper) > len(q)), None)
        symbol = f"{upper[:-len(quote)]}/{quote}" if quote else upper
    return symbol, f"{int(match['n'])}{_UNITS[match['unit']]}"


def series_names(path: str | Path, candles: pd.DataFrame, symbol: str | None = None,
                 timeframe: str | None = None) -> tuple[str, str]:
    """Symbol and timeframe of a file's candles (see the module docstring)."""
    guessed = names_from_filename(path)
    if symbol is None:
        symbol = guessed[0] if guessed else Path(path).stem
    if timeframe is None:
        timeframe = guessed[1] if guessed else interval_label(infer_bar_interval(candles.index))
    return symbol, timeframe
