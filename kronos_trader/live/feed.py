"""The candle feed of the live loop: closed candles per pair, fetched, validated and cached.

The store is read first and the exchange asked only for what is missing; every new candle
is stored. "Closed" is :func:`fetch_closed_candles`'s rule (close time passed on the
exchange's clock AND a later candle served). When the window of a decision bar starts in a
gap (a weekend, a halt), older candles are fetched by count, so a market with gaps still
gets ``lookback`` candles. Candles the exchange skipped between ones it has are holes,
filled flat (``fill_candle_gaps``) the same way every cycle.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import ccxt
import pandas as pd

from kronos_trader.exchange import fetch_closed_candles, fetch_last_candles, fill_candle_gaps, shift_open
from kronos_trader.store import Store

CANDLE_CACHE_BARS = 2000


@dataclass
class PairFeed:
    """Cache of one (symbol, timeframe)."""

    symbol: str
    timeframe: str
    interval: pd.Timedelta
    candles: pd.DataFrame | None = None    # recent closed candles (cache of the store)
    holes: set = field(default_factory=set)  # open times the exchange has no candle for
    history_start: pd.Timestamp | None = None  # the exchange has nothing before this open time


class CandleFeed:
    def __init__(self, store: Store, client: ccxt.Exchange, source: str, lookback: int, retry: dict,
                 on_retry: Callable[[str, str], Callable] | None = None):
        self.store, self.client, self.source, self.lookback = store, client, source, lookback
        self.retry = retry
        self.on_retry = on_retry or (lambda symbol, call: None)
        self.pairs: dict[tuple[str, str], PairFeed] = {}

    def pair(self, symbol: str, timeframe: str, interval: pd.Timedelta) -> PairFeed:
        return self.pairs.setdefault((symbol, timeframe), PairFeed(symbol, timeframe, interval))

    def frame(self, feed: PairFeed, first_bar: pd.Timestamp, boundary: pd.Timestamp, now: pd.Timestamp,
              keep_from: pd.Timestamp | None = None) -> pd.DataFrame:
        """Closed candles from the window start of ``first_bar`` (``lookback`` candles back,
        or ``keep_from`` when earlier) to ``boundary``, gaps filled flat."""
        start = shift_open(first_bar, feed.timeframe, -(self.lookback - 1))
        if keep_from is not None:
            start = min(start, keep_from)
        cache = self._load(feed, start, boundary, now)
        have = cache.loc[:first_bar]
        first = have.index[0] if len(have) else first_bar
        if len(have) and first > start and (feed.history_start is None or first > feed.history_start):
            cache = self._older(feed, first, now, cache)  # the window starts in a gap: fetch by count
            have = cache.loc[:first_bar]
        if len(have) >= self.lookback:  # lookback real candles, however far back the gaps push them
            start = min(start, have.index[-self.lookback])
        feed.candles = cache.iloc[-max(CANDLE_CACHE_BARS, self.lookback + 8):]
        feed.holes = {h for h in feed.holes if h >= feed.candles.index[0]} if len(feed.candles) else set()
        return fill_candle_gaps(cache.loc[start:boundary], feed.timeframe)

    def _load(self, feed: PairFeed, start: pd.Timestamp, boundary: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
        cache = feed.candles
        if cache is None or cache.empty or cache.index[0] > start:
            cache = self.store.load_candles(self.source, feed.symbol, feed.timeframe, start, boundary)
            cache.index.name = "timestamp"
        have = cache.loc[start:boundary].index if len(cache) else pd.DatetimeIndex([])
        grid = pd.date_range(start, boundary, freq=feed.interval)
        missing = grid.difference(have).difference(pd.DatetimeIndex(sorted(feed.holes)))
        if len(missing):
            since = missing[0]
            fresh = fetch_closed_candles(self.client, feed.symbol, feed.timeframe, since, until=boundary, now=now,
                                         on_retry=self.on_retry(feed.symbol, "fetch_ohlcv"), **self.retry)
            if len(fresh):
                self.store.upsert_candles(self.source, feed.symbol, feed.timeframe, fresh)
                cache = self._merge(cache, fresh)
                # bars the exchange skipped between candles it has: holes, filled flat
                inside = missing[(missing >= since) & (missing < fresh.index[-1])]
                feed.holes.update(inside.difference(cache.index))
        return cache.astype("float64")

    def _older(self, feed: PairFeed, before: pd.Timestamp, now: pd.Timestamp, cache: pd.DataFrame) -> pd.DataFrame:
        """``lookback`` candles before ``before``, by count (the window starts in a gap)."""
        older = fetch_last_candles(self.client, feed.symbol, feed.timeframe, self.lookback,
                                   until=shift_open(before, feed.timeframe, -1), now=now,
                                   on_retry=self.on_retry(feed.symbol, "fetch_ohlcv"), **self.retry)
        if len(older) < self.lookback:
            feed.history_start = older.index[0] if len(older) else before
        if len(older):
            self.store.upsert_candles(self.source, feed.symbol, feed.timeframe, older)
            grid = pd.date_range(older.index[0], before, freq=feed.interval, inclusive="left")
            feed.holes.update(grid.difference(older.index))
            cache = self._merge(cache, older)
        return cache.astype("float64")

    @staticmethod
    def _merge(cache: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
        cache = pd.concat([cache, fresh]) if len(cache) else fresh
        return cache[~cache.index.duplicated(keep="last")].sort_index()
