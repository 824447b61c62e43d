"""Deterministic client order ids: the same (run, pair, candle, side) always gives the same id.

Binance (and most ccxt exchanges) accept at most 36 characters from ``[A-Za-z0-9._:/-]``;
the id is ``kt`` + 8 characters of the run id + the pair (at most 10 characters, hashed
when longer) + the decision candle's close time to the second + ``b``/``s``.
"""
from __future__ import annotations

import hashlib
import re

import pandas as pd

MAX_LENGTH = 36
#: every client order id of kronos-trader starts with it
PREFIX = "kt"
_PAIR_CHARS = re.compile(r"[^A-Za-z0-9]")


def compact_pair(symbol: str) -> str:
    pair = _PAIR_CHARS.sub("", symbol)
    if len(pair) <= 10:
        return pair
    return pair[:4] + hashlib.sha1(symbol.encode()).hexdigest()[:6]


def client_order_id(run_id: str, symbol: str, bar_time, side: str) -> str:
    """``kt<run8>-<PAIR>-<yymmddHHMMSS>-<b|s>`` for the order decided at ``bar_time``
    (the decision candle's close time)."""
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be buy or sell, got {side!r}")
    stamp = pd.Timestamp(bar_time)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    cid = f"{PREFIX}{run_id[:8]}-{compact_pair(symbol)}-{stamp:%y%m%d%H%M%S}-{side[0]}"
    assert len(cid) <= MAX_LENGTH, cid
    return cid

