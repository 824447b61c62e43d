"""Closed-candle fetching (``fetch_closed_candles``)."""
from __future__ import annotations

import logging
from typing import Any, Callable

import ccxt
import numpy as np
import pandas as pd

from .errors import ExchangeConfigError
from .markets import resolve_symbol
from .retry import DEFAULT_BACKOFF, DEFAULT_RETRIES, call_with_retry
from .timeframes import (
    from_ms,
    last_closed_candle_open,
    parse_timeframe,
    shift_open,
    timeframe_to_timedelta,
    to_ms,
    to_utc_timestamp,
)

__all__ = ["CANDLE_COLUMNS", "empty_candle_frame", "exchange_now", "fetch_closed_candles", "fetch_last_candles",
           "ohlcv_to_frame", "fill_candle_gaps"]

log = logging.getLogger(__name__)

#: columns of the canonical candle frame (same as ``kronos_trader.data``):
#: index = tz-naive UTC DatetimeIndex[ns] of bar OPEN times named ``timestamp``;
#: all columns float64
CANDLE_COLUMNS = ["open", "high", "low", "close", "volume", "amount"]


def empty_candle_frame() -> pd.DataFrame:
    index = pd.DatetimeIndex([], dtype="datetime64[ns]", name="timestamp")
    return pd.DataFrame({col: pd.Series([], dtype="float64") for col in CANDLE_COLUMNS}, index=index)


def exchange_now(client: ccxt.Exchange, **retry_kwargs: Any) -> pd.Timestamp:
    """The exchange's clock (``fetch_time``) or, if unsupported, the local
    clock; tz-naive UTC."""
    if client.has.get("fetchTime"):

        def fetch_time() -> int:
            ms = client.fetch_time()
            if ms is None:  # e.g. an empty response: never silently fall back to the local clock
                raise ccxt.NullResponse(f"{client.id} fetch_time returned no server time")
            return int(ms)

        return from_ms(call_with_retry(fetch_time, exchange=client.id, call="fetch_time", **retry_kwargs))
    return pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("ns")


def last_price(client: ccxt.Exchange, symbol: str, **retry_kwargs: Any) -> float:
    """The exchange's last traded price of `symbol`. A ticker without one is an error, never
    0: at a price of 0 any holding would look like dust and be neither adopted nor refused."""
    ticker = call_with_retry(client.fetch_ticker, symbol, **retry_kwargs)
    price = ticker.get("last") or ticker.get("close")
    if not price:
        raise ExchangeConfigError(f"{client.id}: the ticker of {symbol} has no last price")
    return float(price)


def ohlcv_to_frame(rows: list[list]) -> pd.DataFrame:
    """ccxt OHLCV rows ``[ms, o, h, l, c, v(, amount)]`` -> canonical frame
    (sorted, de-duplicated keeping the last row per timestamp).  ``amount``
    is taken from a 7th column when present, else ``volume * mean(OHLC)``."""
    rows = [r for r in rows if r is not None and len(r) >= 6 and r[0] is not None]
    if not rows:
        return empty_candle_frame()
    width = max(len(r) for r in rows)
    data = np.full((len(rows), 7), np.nan, dtype="float64")
    for i, row in enumerate(rows):
        for j in range(min(7, len(row))):
            value = row[j]
            data[i, j] = np.nan if value is None else float(value)
    ts = data[:, 0].astype("int64")
    frame = pd.DataFrame(data[:, 1:6], columns=CANDLE_COLUMNS[:5])
    ohlc_mean = frame[["open", "high", "low", "close"]].mean(axis=1)
    derived = frame["volume"] * ohlc_mean
    if width >= 7:
        frame["amount"] = pd.Series(data[:, 6]).fillna(derived)
    else:
        frame["amount"] = derived
    frame.index = pd.DatetimeIndex(pd.to_datetime(ts, unit="ms"), name="timestamp").as_unit("ns")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame.astype("float64")


def fill_candle_gaps(frame: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Insert missing candles between the first and last row as flat bars at
    the previous close with zero volume/amount."""
    if len(frame) < 2:
        return frame
    _, unit = parse_timeframe(timeframe)
    if unit == "M":
        grid = [frame.index[0]]
        while grid[-1] < frame.index[-1]:
            grid.append(shift_open(grid[-1], timeframe, 1))
        full = pd.DatetimeIndex(grid, name="timestamp").as_unit("ns")
    else:
        full = pd.date_range(frame.index[0], frame.index[-1], freq=timeframe_to_timedelta(timeframe), name="timestamp").as_unit("ns")
    if len(full) == len(frame):
        return frame
    out = frame.reindex(full)
    missing = out["close"].isna()
    prev_close = out["close"].ffill()
    for col in ("open", "high", "low", "close"):
        out[col] = out[col].where(~missing, prev_close)
    out[["volume", "amount"]] = out[["volume", "amount"]].fillna(0.0)
    return out.astype("float64")


def fetch_closed_candles(
    client: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    limit_per_call: int = 1000,
    *,
    fill_gaps: bool = False,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    empty_page_retries: int = 1,
) -> pd.DataFrame:
    """Fetch all CLOSED candles with open time in ``[since, until]``.

    * ``since=None``: the latest ``limit_per_call`` closed candles, by count
      (:func:`fetch_last_candles`).
    * ``until`` is inclusive (an open time); default: the last closed candle.
    * A candle is closed when ``open + timeframe <= now`` on the exchange's
      clock AND the exchange serves a later candle (its kline feed has moved
      on: a clock running ahead of the klines never makes a forming candle
      "closed").  The last closed candle's successor is requested for that and
      dropped; ``now`` defaults to the exchange clock (``fetch_time``), else
      the local clock.
    * Pages through ``fetch_ohlcv`` (``since`` = last open + 1 bar), across
      gaps in the exchange's data; an empty page is re-requested
      ``empty_page_retries`` times before it is taken as the end of data.
    * ``fill_gaps=True`` inserts flat zero-volume bars for missing candles.

    Returns the canonical frame (see :data:`CANDLE_COLUMNS`).  Raises
    UnknownSymbolError / ExchangeConfigError for bad input, ExchangeFault
    when transient errors persist, ExchangeRejected subclasses otherwise.
    """
    retry_kwargs = {"retries": retries, "backoff": backoff, "on_retry": on_retry}
    count, unit = parse_timeframe(timeframe)
    if limit_per_call < 1:
        raise ExchangeConfigError(f"limit_per_call must be >= 1, got {limit_per_call}")
    unified = resolve_symbol(client, symbol, **retry_kwargs)
    supported = getattr(client, "timeframes", None) or {}
    if supported and timeframe not in supported:
        raise ExchangeConfigError(
            f"timeframe {timeframe!r} is not supported by {client.id}; supported: {', '.join(supported)}"
        )

    now_ts = to_utc_timestamp(now) if now is not None else exchange_now(client, **retry_kwargs)
    end = last_closed_candle_open(now_ts, timeframe)
    if until is not None:
        end = min(end, to_utc_timestamp(until))
    if since is None:
        return fetch_last_candles(client, unified, timeframe, limit_per_call, until=end, now=now_ts,
                                  limit_per_call=limit_per_call, fill_gaps=fill_gaps, empty_page_retries=empty_page_retries,
                                  **retry_kwargs)
    start = to_utc_timestamp(since)
    if start > end:
        return empty_candle_frame()

    start_ms = to_ms(start)
    confirm_ms = to_ms(shift_open(end, timeframe, 1))  # the candle after ``end`` confirms it closed
    bar_ms = None if unit == "M" else int(timeframe_to_timedelta(timeframe) / pd.Timedelta(milliseconds=1))
    rows: list[list] = []
    cursor = start_ms
    empty_pages = 0
    pages = 0
    while cursor <= confirm_ms:
        limit = limit_per_call
        if bar_ms is not None:  # never ask beyond the confirming candle
            limit = max(1, min(limit_per_call, (confirm_ms - cursor) // bar_ms + 1))
        page = call_with_retry(client.fetch_ohlcv, unified, timeframe, since=cursor, limit=limit, **retry_kwargs)
        pages += 1
        page = [row for row in (page or []) if row and row[0] is not None]
        if not page:
            if empty_pages < empty_page_retries:
                empty_pages += 1
                continue
            break
        empty_pages = 0
        rows.extend(page)
        last = max(int(row[0]) for row in page)
        nxt = last + bar_ms if bar_ms is not None else to_ms(shift_open(from_ms(last), timeframe, 1))
        if nxt <= cursor:  # exchange ignored ``since``; avoid looping forever
            log.warning("%s fetch_ohlcv(%s) made no progress at %s; stopping", client.id, unified, from_ms(cursor))
            break
        cursor = nxt
    log.debug("%s %s %s: %d rows in %d page(s)", client.id, unified, timeframe, len(rows), pages)

    frame = ohlcv_to_frame(rows)
    if len(frame):
        if frame.index[-1] <= end:  # nothing after it: the newest candle may still be forming
            log.warning("%s %s %s: candle %s has no successor yet; not taken as closed (the exchange's clock "
                        "may run ahead of its klines)", client.id, unified, timeframe, frame.index[-1])
            frame = frame.iloc[:-1]
        frame = frame[(frame.index >= start) & (frame.index <= end)]
    if fill_gaps:
        frame = fill_candle_gaps(frame, timeframe)
    return frame


def fetch_last_candles(
    client: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    count: int,
    until: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    *,
    max_empty_windows: int = 3,
    **kwargs: Any,
) -> pd.DataFrame:
    """The last ``count`` CLOSED candles up to ``until`` (inclusive), by count rather than by
    time span: on a market with gaps (weekends, halts) older windows are fetched until
    ``count`` candles are in hand, or ``max_empty_windows`` windows in a row (each of
    ``limit_per_call`` bars) held nothing (the exchange's history ends). ``kwargs`` go to
    :func:`fetch_closed_candles`."""
    if count < 1:
        raise ExchangeConfigError(f"count must be >= 1, got {count}")
    retry_kwargs = {k: v for k, v in kwargs.items() if k in ("retries", "backoff", "on_retry")}
    now_ts = to_utc_timestamp(now) if now is not None else exchange_now(client, **retry_kwargs)
    end = last_closed_candle_open(now_ts, timeframe)
    if until is not None:
        end = min(end, to_utc_timestamp(until))
    first = shift_open(end, timeframe, -(count - 1))
    frame = fetch_closed_candles(client, symbol, timeframe, first, until=end, now=now_ts, **kwargs)
    window = int(kwargs.get("limit_per_call", 1000))
    empty = 0
    while len(frame) < count and empty < max_empty_windows:
        before = shift_open(first, timeframe, -1)
        first = shift_open(first, timeframe, -max(count - len(frame), window))
        older = fetch_closed_candles(client, symbol, timeframe, first, until=before, now=now_ts, **kwargs)
        empty = empty + 1 if older.empty else 0
        if len(older):
            frame = pd.concat([older, frame])
    return frame.iloc[-count:]
